"""Resume and load: on CPU and GPU, for both runner types, in one process
or distributed with only global rank 0 able to read the checkpoint.

Rank 0 decides what to resume from (``resume_from``, the newest
checkpoint of the work_dir that loads with ``auto_resume``, or the weights
of ``load_from``) and loads it; ranks that cannot read the same file get its
state from rank 0 through the process group; every rank then checks that
all of them restored the same step, and all fail together otherwise.
Whether a checkpoint is taken at all is decided in :mod:`.accept`.
"""
import glob
import hashlib
import os
import os.path as osp
import re

import torch
from torch.optim import Optimizer

from ..constants import (BEST_CKPT_NAME, LAST_CHECKPOINT_FILE,
                         LATEST_LINK_NAME, LATEST_MODEL_NAME)
from . import state
from .accept import (CheckpointLoadError, accept_checkpoint,
                     load_accepted, load_state, load_weights_into)
from .accept import reason as _reason
from .elastic import restart_attempt
from .progress import EPOCH_POSITION, is_iter_based, resume_position


def default_map_location():
    """The current GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        device = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device)
    return 'cpu'


# ---------------------------------------------------------------- apply
def load_weights(runner, ckpt, source='checkpoint'):
    """Load the weights of the accepted checkpoint ``ckpt``
    (:func:`~davarocr_mmcv.core.accept.accept_checkpoint`) into
    ``runner.model`` as mmcv's ``runner.load_checkpoint`` does
    (non-strict, ``module.`` prefixes dropped, wrappers unwrapped); what
    did not fill the model is logged with counts, naming ``source``."""
    load_weights_into(runner.model, ckpt, source, runner.logger)


def restore(runner, ckpt, resume_optimizer=True, source='checkpoint'):
    """Resume ``runner`` from the accepted checkpoint dict ``ckpt``
    (:func:`~davarocr_mmcv.core.accept.accept_checkpoint` with
    ``resume=True``): weights,
    epoch and iteration (inside an epoch, see
    :func:`~davarocr_mmcv.core.progress.resume_position`), ``runner.meta``
    (``hook_msgs`` included, for both runner types) and the optimizer
    state when present. As mmcv does, an
    EpochBasedRunner's iteration is rescaled when the number of processes
    changed since the checkpoint was written. ``source`` names the
    checkpoint in messages."""
    meta = dict(ckpt['meta'])
    position = meta.pop(EPOCH_POSITION, None)  # the runner's, not meta
    load_weights(runner, ckpt, source)
    runner._epoch = meta['epoch']
    runner._iter = meta['iter']
    if is_iter_based(runner):
        runner._inner_iter = meta['iter']
    if position:  # written inside an epoch (or a pass of the data)
        resume_position(runner, position)
    if not is_iter_based(runner) and 'config' in meta:
        from mmcv import Config
        try:
            previous = Config.fromstring(meta['config'], '.py').get(
                'gpu_ids') or []
        except Exception:  # noqa: B902  an unreadable config: keep iter
            previous = []
        if previous and len(previous) != runner.world_size:
            runner._iter = int(runner._iter * len(previous) /
                               runner.world_size)
            runner.logger.info('the iteration number is changed due to '
                               'change of GPU number')
    runner.meta = dict(runner.meta or {}, **meta)
    state.hook_msgs(runner)
    if resume_optimizer and 'optimizer' in ckpt:
        if isinstance(runner.optimizer, Optimizer):
            runner.optimizer.load_state_dict(ckpt['optimizer'])
        else:
            for name, optim in runner.optimizer.items():
                optim.load_state_dict(ckpt['optimizer'][name])
    runner.logger.info(f'resumed from epoch: {runner.epoch}, '
                       f'iter {runner.iter}')
    return runner.meta


def resume_runner(runner, checkpoint, resume_optimizer=True,
                  map_location='cpu'):
    """``runner.resume`` that also works without a GPU, and restores
    ``runner.meta`` (with ``hook_msgs``) for IterBasedRunner too, which
    mmcv 1.7.1 leaves out.

    Args:
        checkpoint (str | dict): a path, or a loaded checkpoint.
        map_location: where tensors are loaded before being copied into
            the model and the optimizer (which keep their devices).

    Returns:
        dict: ``runner.meta``.

    Raises:
        CheckpointLoadError: the checkpoint does not load, is refused
            (:mod:`~davarocr_mmcv.core.accept`) or does not apply.
    """
    if isinstance(checkpoint, dict):
        path = '(a loaded checkpoint)'
        checkpoint = accept_checkpoint(checkpoint, path, 'resume_from',
                                       runner.model, runner.logger,
                                       resume=True)
    else:
        if map_location == 'default':
            map_location = default_map_location()
        path = checkpoint
        checkpoint = load_accepted(path, 'resume_from', runner.model,
                                   runner.logger, resume=True,
                                   map_location=map_location)
    try:
        return restore(runner, checkpoint, resume_optimizer,
                       f'resume_from: {path}')
    except Exception as exc:  # noqa: B902  e.g. an optimizer that differs
        raise _apply_error('resume', path, exc) from exc


def _apply_error(mode, path, exc):
    return CheckpointLoadError(f'{mode} from {path} failed: '
                               f'{type(exc).__name__}: {_reason(exc)}')


# --------------------------------------------------------------- lookup
_NUMBERED = re.compile(r'(?:epoch|iter)_(\d+)\.pth$')


def _in_work_dir(target, work_dir):
    """Ways to read the pointer's ``target``: inside ``work_dir``, as a
    path under ``work_dir`` as given (the pointer holds an absolute path;
    the work_dir is what every node is configured with); else as written,
    relative to the working folder, then to ``work_dir``."""
    inside = osp.relpath(osp.abspath(target), osp.abspath(work_dir))
    if not inside.startswith(os.pardir):
        return [osp.join(work_dir, inside)]
    return [target] if osp.isabs(target) else [target,
                                               osp.join(work_dir, target)]


def checkpoint_candidates(work_dir):
    """The checkpoints of ``work_dir`` to resume from, newest first.

    In order: the file named by ``last_checkpoint``, ``latest_model.pth``
    (lightweight mode), ``latest.pth``, the ``epoch_N.pth`` / ``iter_N.pth``
    from the highest N, and last ``Best_checkpoint.pth`` (weights without
    optimizer state). Paths reaching the same file are listed once.
    """
    paths = []
    pointer = osp.join(work_dir, LAST_CHECKPOINT_FILE)
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if target:
            paths += _in_work_dir(target, work_dir)
    paths += [osp.join(work_dir, n) for n in (LATEST_MODEL_NAME,
                                              LATEST_LINK_NAME)]
    numbered = sorted(((int(m.group(1)), p)
                       for p in glob.glob(osp.join(work_dir, '*.pth'))
                       for m in [_NUMBERED.search(osp.basename(p))] if m),
                      reverse=True)
    paths += [p for _, p in numbered]
    paths.append(osp.join(work_dir, BEST_CKPT_NAME))
    seen, out = set(), []
    for path in paths:
        real = osp.realpath(path)
        if osp.isfile(path) and real not in seen:
            seen.add(real)
            out.append(path)
    return out


def find_latest_checkpoint(work_dir):
    """The newest checkpoint in ``work_dir`` (not the best), or None.

    Looked up in order: the ``last_checkpoint`` pointer file,
    ``latest_model.pth`` (lightweight mode), ``latest.pth``, and the
    highest-numbered ``epoch_N.pth`` / ``iter_N.pth``.
    """
    for path in checkpoint_candidates(work_dir):
        if osp.basename(path) != BEST_CKPT_NAME:
            return path
    return None


def find_resumable(work_dir, logger, model=None):
    """The newest checkpoint of ``work_dir`` that loads and is accepted to
    resume ``model`` from
    (:func:`~davarocr_mmcv.core.accept.accept_checkpoint`), skipping (never
    deleting) those that are not, each named with the reason in the log.

    Returns:
        tuple: (path, accepted checkpoint), or (None, None).
    """
    for path in checkpoint_candidates(work_dir):
        try:
            ckpt = load_accepted(path, 'auto-resume', model, logger,
                                 resume=True)
        except CheckpointLoadError as exc:
            logger.warning(f'{exc}; skipped, trying an older checkpoint')
            continue
        if osp.basename(path) == BEST_CKPT_NAME and 'optimizer' not in ckpt:
            logger.warning(
                f'auto-resume: only {path} loads; resuming from it at '
                f'epoch {ckpt["meta"]["epoch"]}, iter {ckpt["meta"]["iter"]}'
                f' with the weights of the best result; the optimizer '
                f'state starts fresh')
        return path, ckpt
    return None, None


def later_best(work_dir, path, ckpt, logger):
    """The ``best_*`` entries of ``hook_msgs`` that ``Best_checkpoint.pth``
    of ``work_dir`` records when it was written after the checkpoint
    ``ckpt`` (read from ``path``) that a run resumes from, else {}.

    A process killed after writing a new best and before the next save
    leaves a latest file that does not know of that best. The best file is
    only ever written for a score better than every earlier one, the
    resumed checkpoint's best included, so its record stands; resuming
    without it would let a worse score replace the file.
    """
    best_path = osp.join(work_dir, BEST_CKPT_NAME)
    if osp.basename(path) == BEST_CKPT_NAME or not osp.isfile(best_path):
        return {}
    try:
        best = load_state(best_path)['meta']
    except (CheckpointLoadError, KeyError, TypeError):
        return {}
    if not isinstance(best, dict) or not isinstance(best.get('iter'), int) \
            or best['iter'] <= ckpt['meta']['iter']:
        return {}
    entries = state.best_items(state.msgs_of(best))
    if entries:
        logger.info(f'{best_path} was written at iter {best["iter"]}, after '
                    f'{path}; its best stands: ' + ', '.join(
                        f'{k}={v}' for k, v in sorted(entries.items())))
    return entries


# ------------------------------------------------------- resume or load
def _fingerprint(path):
    """Size and a digest of the first 64 KiB and last 1 MiB of a local
    file (the zip directory at the end of a torch checkpoint holds a CRC of
    every record), or None when this process cannot read it."""
    if path is None or '://' in str(path):
        return None
    try:
        size = os.path.getsize(path)
        digest = hashlib.sha1()
        with open(path, 'rb') as f:
            digest.update(f.read(64 * 1024))
            f.seek(max(0, size - 2 ** 20))
            digest.update(f.read(2 ** 20))
        return size, digest.hexdigest()
    except OSError:
        return None


def _auto_resume_plan(cfg, path, ckpt, logger):
    """The plan to resume from ``path`` of the work_dir (``ckpt`` loaded),
    with the best a later ``Best_checkpoint.pth`` records
    (:func:`later_best`)."""
    best = later_best(cfg.work_dir, path, ckpt, logger)
    return dict(mode='resume', what='auto-resume', path=path,
                best=best), ckpt


def _decide(cfg, logger, model=None):
    """What to start from, on rank 0: (plan dict, accepted checkpoint for
    ``model``).

    A torchrun restart (attempt 1 and later) continues from the newest
    checkpoint of the work_dir that loads, whatever the first attempt
    started from; from that start when the work_dir has none.
    """
    attempt = restart_attempt()
    if attempt is not None and attempt.index > 0:
        path, ckpt = find_resumable(cfg.work_dir, logger, model)
        if path:
            logger.info(f'torchrun restart {attempt.index} of at most '
                        f'{attempt.max_restarts}: auto-resume from {path}')
            return _auto_resume_plan(cfg, path, ckpt, logger)
    resume_from = cfg.get('resume_from')
    if resume_from:
        ckpt = load_accepted(resume_from, 'resume_from', model, logger,
                             resume=True)
        return dict(mode='resume', what='resume_from',
                    path=resume_from), ckpt
    if cfg.get('auto_resume'):
        path, ckpt = find_resumable(cfg.work_dir, logger, model)
        if path:
            logger.info(f'auto-resume from {path}')
            return _auto_resume_plan(cfg, path, ckpt, logger)
        logger.info(f'auto-resume: no checkpoint that loads in '
                    f'{cfg.work_dir}; training starts from the beginning' +
                    (' with the weights of load_from'
                     if cfg.get('load_from') else ''))
    if cfg.get('load_from'):
        ckpt = load_accepted(cfg.load_from, 'load_from', model, logger)
        return dict(mode='load', what='load_from', path=cfg.load_from), ckpt
    return dict(mode=None, path=None), None


def _share(plan, ckpt, logger, model):
    """The checkpoint on every rank: read locally (and accepted as rank 0
    accepted it) where the same file is readable on every rank, else sent
    from rank 0 through the group."""
    import torch.distributed as dist
    from .comm import broadcast_object
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local = None
    if rank != 0 and _fingerprint(plan['path']) == plan['fingerprint']:
        try:
            local = load_accepted(plan['path'], plan['what'], model, logger,
                                  resume=plan['mode'] == 'resume')
        except CheckpointLoadError:
            local = None
    readable = [None] * world_size
    dist.all_gather_object(readable, rank == 0 or local is not None)
    lacking = [r for r, ok in enumerate(readable) if not ok]
    if not lacking:
        return ckpt if rank == 0 else local
    if rank == 0:
        logger.info(f'rank(s) {lacking} cannot read {plan["path"]}; rank 0 '
                    f'sends its state through the process group')
    received = broadcast_object(ckpt if rank == 0 else None, src=0)
    return ckpt if rank == 0 else received


def resume_or_load(runner, cfg, logger, distributed=False):
    """Resume ``runner`` (``cfg.resume_from``, or with ``cfg.auto_resume``
    the newest checkpoint of ``cfg.work_dir`` that loads) or load the
    weights of ``cfg.load_from``, as mmdet's ``train_detector`` does.

    Distributed, only global rank 0 needs to read the file: it decides and
    loads, and the state reaches the other ranks through the process group
    when they cannot read the same file. Every rank continues from the same
    step, or every rank raises.

    Returns:
        dict | None: ``dict(mode='resume'|'load', path=...)``, or None when
        training starts from scratch.

    Raises:
        CheckpointLoadError: the file asked for is missing, does not load
            or is refused (:mod:`~davarocr_mmcv.core.accept`), or a rank
            could not apply the state (on every rank).
    """
    import torch.distributed as dist
    from mmcv.runner import get_dist_info
    rank, world_size = get_dist_info()
    shared = distributed and world_size > 1
    plan = ckpt = None
    if rank == 0 or not shared:
        try:
            plan, ckpt = _decide(cfg, logger, runner.model)
            plan['fingerprint'] = _fingerprint(plan['path'])
        except CheckpointLoadError as exc:
            plan = dict(error=str(exc))
    if shared:
        holder = [plan]
        dist.broadcast_object_list(holder, src=0)
        plan = holder[0]
    if plan.get('error'):
        if rank == 0:
            logger.error(plan['error'])
        raise CheckpointLoadError(plan['error']) from None
    if plan['mode'] is None:
        return None
    if shared:
        ckpt = _share(plan, ckpt, logger, runner.model)
    error = None
    try:
        if plan['mode'] == 'resume':
            restore(runner, ckpt, source=f'{plan["what"]}: {plan["path"]}')
            # the same on every rank: the plan came from rank 0
            state.hook_msgs(runner).update(plan.get('best') or {})
        else:
            load_weights(runner, ckpt, f'{plan["what"]}: {plan["path"]}')
            logger.info(f'loaded the weights of {plan["path"]}')
    except Exception as exc:  # noqa: B902  reported on every rank below
        if not shared:
            raise _apply_error(plan['mode'], plan['path'], exc) from exc
        error = f'{type(exc).__name__}: {_reason(exc)}'
    del ckpt
    if shared:
        states = [None] * world_size
        dist.all_gather_object(states, (error, runner.epoch, runner.iter))
        failed = [f'rank {r}: {s[0]}' for r, s in enumerate(states) if s[0]]
        if failed:
            raise CheckpointLoadError(
                f'{plan["mode"]} from {plan["path"]} failed on '
                f'{"; ".join(failed)}')
        steps = sorted({tuple(s[1:]) for s in states})
        if len(steps) > 1:
            raise CheckpointLoadError(
                f'ranks restored different steps (epoch, iter) {steps} '
                f'from {plan["path"]}')
        if plan['mode'] == 'resume':
            logger.info(f'all {world_size} ranks continue from '
                        f'{plan["path"]} at epoch {runner.epoch}, '
                        f'iter {runner.iter}')
    return dict(mode=plan['mode'], path=plan['path'])
