"""Publish the best model of a training: weights without optimizer state,
named after their sha256, with the config and the best metrics, in one
``.tar.gz`` (``python tools/publish.py WORK_DIR``)."""
import glob
import hashlib
import io
import json
import os
import os.path as osp
import re
import tarfile

import torch

from .constants import BEST_CKPT_NAME
from .core import state
from .core.resume import find_latest_checkpoint
from .core.writer import atomic_write
from .serialization import load_checkpoint_file, to_plain

#: Name of the metrics file inside a published folder.
METRICS_FILE = 'metrics.json'
#: Default output folder, inside work_dir.
PUBLISH_DIR = 'publish'
#: Checkpoint entries kept in a published file; the rest (optimizer, ...)
#: is training state.
KEPT_KEYS = ('meta', 'state_dict')
_BEST_KEYS = (state.BEST_SCORE, state.BEST_METRIC, state.BEST_STEP,
              state.BEST_UNIT)


def _load_meta(path):
    return dict(load_checkpoint_file(path).get('meta') or {})


def _local(path, work_dir):
    """``path`` if it exists, else the file of that name in ``work_dir``
    (a work_dir moved since training)."""
    if path and osp.isfile(path):
        return path
    if path and osp.isfile(osp.join(work_dir, osp.basename(path))):
        return osp.join(work_dir, osp.basename(path))
    return None


def _best_keys(msgs, metric=None):
    """The ``hook_msgs`` suffix of the best to publish: '' for a single
    tracked metric, ``_{metric}`` when several are.

    Raises:
        ValueError: if several metrics are tracked and ``metric`` names none.
    """
    suffixes = [s for s in state.best_suffixes(msgs)
                if msgs[state.best_key(state.BEST_CKPT, s)]]
    if metric is not None:
        for suffix in suffixes:
            if msgs.get(state.best_key(state.BEST_METRIC, suffix)) == metric:
                return suffix
        raise ValueError(f'metric {metric!r} has no best checkpoint; '
                         f'tracked: {_tracked(msgs, suffixes)}')
    if '' in suffixes or not suffixes:
        return ''
    if len(suffixes) == 1:
        return suffixes[0]
    raise ValueError(f'several best checkpoints ({_tracked(msgs, suffixes)});'
                     ' choose one with metric=')


def _tracked(msgs, suffixes):
    return sorted(str(msgs.get(state.best_key(state.BEST_METRIC, s)))
                  for s in suffixes)


def find_best_checkpoint(work_dir, metric=None):
    """The best checkpoint of ``work_dir`` and the ``hook_msgs`` describing
    it.

    Looked up in order: ``best_ckpt`` in the ``hook_msgs`` of the newest
    checkpoint, ``Best_checkpoint.pth``, the newest ``best_*.pth``.

    Returns:
        tuple: (path, hook_msgs with the best_* keys unsuffixed)

    Raises:
        FileNotFoundError: if ``work_dir`` holds no best checkpoint.
    """
    latest = find_latest_checkpoint(work_dir)
    msgs = state.msgs_of(_load_meta(latest)) if latest else {}
    suffix = _best_keys(msgs, metric)
    path = _local(msgs.get(state.best_key(state.BEST_CKPT, suffix)), work_dir)
    if path is None:
        path = _local(osp.join(work_dir, BEST_CKPT_NAME), work_dir)
    if path is None:
        found = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')),
                       key=osp.getmtime)
        if metric is not None:
            found = [p for p in found
                     if osp.basename(p).startswith(f'best_{metric}_')]
        path = found[-1] if found else None
    if path is None:
        raise FileNotFoundError(
            f'no best checkpoint in {work_dir}: no best_ckpt in the newest '
            f'checkpoint ({latest}), no {BEST_CKPT_NAME}, no best_*.pth. '
            'Train with evaluation and save_best (or DavarCheckpointHook '
            "save_mode='lightweight').")
    if not msgs.get(state.best_key(state.BEST_CKPT, suffix)):
        # No newer record: the best file's own meta describes it.
        msgs = state.msgs_of(_load_meta(path))
        suffix = _best_keys(msgs, metric)
    best = {k: msgs.get(k + suffix) for k in _BEST_KEYS}
    return path, dict(msgs, **best)


def resolve_config(work_dir, meta=None, config=None):
    """The training config: ``config`` (a path), else the ``*.py`` that
    tools/train.py dumped in ``work_dir`` (the one named
    ``meta['exp_name']`` if several), else ``meta['config']``.

    Returns:
        tuple: (file name, text), or (None, None) if there is none.
    """
    meta = meta or {}
    if config is None:
        dumped = sorted(glob.glob(osp.join(work_dir, '*.py')),
                        key=osp.getmtime)
        named = [p for p in dumped
                 if osp.basename(p) == meta.get('exp_name')]
        config = (named or dumped or [None])[-1]
    if config is not None:
        with open(config) as f:
            return osp.basename(config), f.read()
    if meta.get('config'):
        name = osp.splitext(osp.basename(meta.get('exp_name') or
                                         osp.abspath(work_dir)))[0]
        return name + '.py', meta['config']
    return None, None


def best_metrics(msgs):
    """What ``metrics.json`` holds: the best_* values and the evaluation
    that produced them (from ``eval_history``)."""
    out = {k: to_plain(msgs.get(k)) for k in _BEST_KEYS}
    matches = [h for h in state.eval_history(msgs)
               if h.get('unit') == out[state.BEST_UNIT] and
               h.get('step') == out[state.BEST_STEP]]
    evaluation = matches[-1] if matches else {}
    out['iters_done'] = evaluation.get('iters_done')
    out['metrics'] = to_plain(dict(evaluation.get('metrics') or {}))
    metric = out[state.BEST_METRIC]
    if not out['metrics'] and metric is not None:
        out['metrics'] = {metric: out[state.BEST_SCORE]}
    return out


def _safe_name(name):
    return re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'model'


def publish(work_dir, out_dir=None, config=None, name=None, metric=None,
            keys=KEPT_KEYS, require_config=True):
    """Publish the best checkpoint of ``work_dir``.

    Writes into ``out_dir``: ``<name>-<sha8>.pth`` (``state_dict`` and
    ``meta`` only; ``sha8``: the first 8 hex digits of the file's sha256, as
    mmengine's publish_model), ``<name>.py`` (the config), ``metrics.json``
    (the best metrics), and ``<name>-<sha8>.tar.gz`` holding those three in a
    ``<name>-<sha8>/`` folder. Every file is written atomically.

    Args:
        work_dir (str): the training's work_dir.
        out_dir (str | None): output folder. Default: ``work_dir/publish``.
        config (str | None): config file; default: found by
            :func:`resolve_config`.
        name (str | None): base name; default: the config's name, else
            the work_dir's.
        metric (str | None): which best to publish when several metrics are
            tracked.
        keys (tuple[str]): top-level checkpoint entries kept. Default:
            ``('meta', 'state_dict')``.
        require_config (bool): fail without a config; else publish the
            weights and metrics alone. Default: True.

    Returns:
        str: path of the archive.

    Raises:
        FileNotFoundError: if there is no best checkpoint or no config.
    """
    out_dir = out_dir or osp.join(work_dir, PUBLISH_DIR)
    best_path, msgs = find_best_checkpoint(work_dir, metric)
    checkpoint = load_checkpoint_file(best_path)
    meta = dict(checkpoint.get('meta') or {})
    config_name, config_text = resolve_config(work_dir, meta, config)
    if config_text is None and require_config:
        raise FileNotFoundError(
            f'no config for {work_dir}: no *.py in it and no meta["config"] '
            f'in {best_path}; pass config=')
    name = _safe_name(name or osp.splitext(
        config_name or osp.basename(osp.abspath(work_dir)))[0])
    published = {k: checkpoint[k] for k in keys if k in checkpoint}

    buffer = io.BytesIO()
    torch.save(published, buffer)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    stem = f'{name}-{sha256[:8]}'
    config_file = name + '.py' if config_text is not None else None
    metrics = dict(best_metrics(msgs), checkpoint=stem + '.pth',
                   sha256=sha256, config=config_file,
                   source_checkpoint=osp.abspath(best_path))
    files = {stem + '.pth': data}
    if config_file:
        files[config_file] = config_text.encode()
    files[METRICS_FILE] = json.dumps(metrics, indent=2, default=str).encode()
    os.makedirs(out_dir, exist_ok=True)
    for file_name, content in files.items():
        atomic_write(osp.join(out_dir, file_name),
                     lambda f, content=content: f.write(content))
    archive = osp.join(out_dir, stem + '.tar.gz')
    atomic_write(archive, lambda f: _write_tar_gz(f, stem, files))
    return archive


def _write_tar_gz(fileobj, folder, files):
    """Write a .tar.gz of ``files`` (name -> bytes) inside ``folder/``."""
    with tarfile.open(fileobj=fileobj, mode='w:gz') as tar:
        for file_name, content in files.items():
            info = tarfile.TarInfo(f'{folder}/{file_name}')
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
