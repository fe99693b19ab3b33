"""The single writer: every file the hooks create, replace or delete goes
through :class:`CheckpointWriter`, and only global rank 0 touches the disk.
A run has one writer per folder (:func:`run_writer`)."""
import copy
import io
import os
import os.path as osp
import threading
import time
from typing import NamedTuple, Optional

import mmcv
import torch
from mmcv.fileio import FileClient
from mmcv.runner import get_dist_info
from mmcv.runner.checkpoint import get_state_dict, weights_to_cpu
from mmcv.parallel import is_module_wrapper
from torch.optim import Optimizer

from ..constants import LAST_CHECKPOINT_FILE, TMP_PREFIX
from . import state
from .progress import checkpoint_meta
from ..serialization import to_plain
from ..utils.checks import check_choice
from ..utils.process import pid_alive

ON_ERROR = ('raise', 'continue')


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Write ``path`` through a temporary file in the same directory: flush,
    fsync, rename. A crash at any instant leaves the old file or the new one,
    never a partial file under ``path``."""
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'{TMP_PREFIX}{os.getpid()}-{osp.basename(path)}')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def remove_stale_tmp(folder):
    """Delete temporary files left by writers that died mid-write."""
    if not osp.isdir(folder):
        return []
    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            if not name.startswith(TMP_PREFIX):
                continue
            pid = name[len(TMP_PREFIX):].split('-', 1)[0]
            if pid.isdigit() and pid_alive(int(pid)) and \
                    int(pid) != os.getpid():
                continue
            try:
                os.unlink(osp.join(root, name))
                removed.append(osp.join(root, name))
            except OSError:
                pass
    return removed


def build_checkpoint(runner, meta, save_optimizer=True):
    """The dict mmcv's ``save_checkpoint`` writes, for ``runner``'s model."""
    model = runner.model.module if is_module_wrapper(runner.model) \
        else runner.model
    meta = dict(meta, mmcv_version=mmcv.__version__, time=time.asctime())
    classes = getattr(model, 'CLASSES', None)
    if classes is not None:
        meta['CLASSES'] = classes
    checkpoint = dict(meta=meta,
                      state_dict=weights_to_cpu(get_state_dict(model)))
    optimizer = runner.optimizer if save_optimizer else None
    if isinstance(optimizer, Optimizer):
        checkpoint['optimizer'] = optimizer.state_dict()
    elif isinstance(optimizer, dict):
        checkpoint['optimizer'] = {k: v.state_dict()
                                   for k, v in optimizer.items()}
    return checkpoint


class SaveStep(NamedTuple):
    """One file of a save: ``checkpoint`` is written to ``out_dir/name``
    with ``hook_msgs`` holding ``updates``; with ``link`` not None, the
    latest pointer (``last_checkpoint``, and ``link`` itself unless it is
    '') then names it."""
    name: str
    checkpoint: dict
    updates: dict
    link: Optional[str] = None


def save_step(runner, point, name, updates, save_optimizer=True, link=None,
              extra_meta=None):
    """A :class:`SaveStep` of ``runner``'s current state, its meta saying
    where training stands at ``point`` (so that a resume continues after
    it). ``extra_meta`` (``checkpoint_config.meta``, as mmdet's train.py
    sets it) is stored too, under the runner's own entries, as mmcv does."""
    meta = {**(extra_meta or {}), **(runner.meta or {}),
            **checkpoint_meta(runner, point)}
    return SaveStep(name, build_checkpoint(runner, meta, save_optimizer),
                    updates, link)


def snapshot(obj, pool=None, key=()):
    """A copy of ``obj`` whose tensors no longer share memory with the
    model or optimizer: one extra copy of the state, in host memory.

    With ``pool`` (a dict kept between saves), the copies go into the
    tensors of the previous snapshot when shapes and dtypes match, so a
    save costs a memory copy and no new allocation.
    """
    if isinstance(obj, torch.Tensor):
        src = obj.detach()
        if pool is None:
            return src.to('cpu', copy=True)
        buf = pool.get(key)
        if buf is None or buf.shape != src.shape or buf.dtype != src.dtype:
            buf = pool[key] = torch.empty(src.shape, dtype=src.dtype)
        return buf.copy_(src)
    if isinstance(obj, dict):
        return type(obj)((k, snapshot(v, pool, key + (k, )))
                         for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(snapshot(v, pool, key + (i, ))
                         for i, v in enumerate(obj))
    return obj


class CheckpointWriter:
    """Writes checkpoints and pointers into ``out_dir``.

    Local paths are written atomically (temporary file, fsync, rename);
    remote backends (``file_client_args``, ``s3://``) receive whole objects
    through the backend's ``put``. On ranks other than global rank 0 every
    method does nothing and reports success.

    Args:
        out_dir (str): directory of the files.
        file_client (FileClient): backend for ``out_dir``.
        logger: where failures are reported.
        on_error (str): 'raise' stops training when a write fails;
            'continue' logs it and lets the next save point retry.
        async_save (bool): copy each checkpoint to host memory and write it
            in a background thread (atomically all the same).
    """

    def __init__(self, out_dir, file_client=None, logger=None,
                 on_error='raise', async_save=False):
        check_choice(on_error, ON_ERROR, 'on_save_error')
        self.async_save = async_save
        self._pending = None
        self._pool = {}  # host-memory copies reused by async saves
        self.out_dir = out_dir
        self.file_client = file_client or FileClient.infer_client(
            None, out_dir)
        self.local = self.file_client.name in ('HardDiskBackend',
                                               'DiskBackend')
        self.logger = logger
        self.on_error = on_error
        self.rank = get_dist_info()[0]

    def path(self, name):
        return self.file_client.join_path(self.out_dir, name)

    def prepare(self):
        """Create ``out_dir`` and remove temporaries of dead writers."""
        if self.rank != 0 or not self.local:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        for path in remove_stale_tmp(self.out_dir):
            self._log('info', f'removed stale temporary file {path}')

    def submit(self, steps, base_msgs, on_commit):
        """Write ``steps`` (:class:`SaveStep`) in order, then hand the
        ``hook_msgs`` entries of the files that were written to
        ``on_commit(updates)``.

        Each file records ``base_msgs`` plus the entries of the steps
        written before it and its own; a step that fails is left out of
        what later files record and of what is committed, so no entry names
        a file that does not exist. Synchronously, ``on_commit`` runs before
        this returns. With ``async_save``, the checkpoints are copied to host
        memory here and written by a background thread; ``on_commit`` runs
        at the next :meth:`wait` (the next save point, or the end of
        training).
        """
        self.wait()
        if self.rank != 0:
            updates = {}
            for step in steps:
                updates.update(step.updates)
            on_commit(updates)
            return
        if not self.async_save:
            on_commit(self._run(steps, base_msgs))
            return
        steps = [step._replace(checkpoint=snapshot(
            step.checkpoint, self._pool, (step.name, ))) for step in steps]
        base_msgs = copy.deepcopy(base_msgs)
        box = {}

        def work():
            try:
                box['updates'] = self._run(steps, base_msgs)
            except BaseException as exc:  # noqa: B902  re-raised in wait()
                box['error'] = exc
        thread = threading.Thread(target=work, name='davar-checkpoint-save',
                                  daemon=False)
        thread.start()
        self._pending = (thread, box, on_commit)

    def wait(self):
        """Finish the background save in flight, if any, and commit it.

        Raises:
            RuntimeError: the write failure, with ``on_save_error='raise'``.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        thread, box, on_commit = pending
        thread.join()
        if 'error' in box:
            raise box['error']
        on_commit(box['updates'])

    def _run(self, steps, base_msgs):
        written = {}
        for step in steps:
            # Plain values only, whoever put them there (mmcv's EvalHook
            # stores numpy scalars), so that a plain torch.load reads it.
            step.checkpoint['meta'] = to_plain(dict(
                step.checkpoint['meta'],
                **{state.HOOK_MSGS: dict(base_msgs, **written,
                                         **step.updates)}))
            if self._write(step.name, step.checkpoint, base_msgs):
                written.update(step.updates)
                if step.link is not None:
                    self.point_latest(step.name, step.link or None)
        return written

    def _write(self, name, checkpoint, base_msgs):
        path = self.path(name)
        try:
            if self.local:
                atomic_write(path, lambda f: torch.save(checkpoint, f))
            else:
                buf = io.BytesIO()
                torch.save(checkpoint, buf)
                self.file_client.put(buf.getvalue(), path)
        except Exception as exc:  # noqa: B902  OSError, pickling, backend
            safe = ', '.join(base_msgs[k]
                             for k in (state.BEST_CKPT, state.LAST_CKPT)
                             if base_msgs.get(k)) or 'nothing yet'
            msg = (f'failed to write checkpoint {path}: {exc!r}. Files '
                   f'already written are intact: {safe}.')
            if self.on_error == 'raise':
                raise RuntimeError(msg + ' (on_save_error="raise"; set '
                                   'on_save_error="continue" to keep '
                                   'training and retry)') from exc
            self._log('error', msg + ' Training goes on; the next save '
                      'point retries.')
            return False
        return True

    def point_latest(self, target_name, link_name=None):
        """Record ``target_name`` as the newest checkpoint: a plain-text
        ``last_checkpoint`` file naming it (readable on any backend), and
        with ``link_name`` a ``latest.pth`` that leads to it: a symlink
        replaced atomically, or a copy where symlinks are refused."""
        if self.rank != 0:
            return
        target = self.path(target_name)
        try:
            if link_name and self.local:
                self._link_or_copy(target, self.path(link_name))
            elif link_name:
                self.file_client.put(self.file_client.get(target),
                                     self.path(link_name))
            if self.local:
                atomic_write(self.path(LAST_CHECKPOINT_FILE),
                             lambda f: f.write(target.encode()))
            else:
                self.file_client.put_text(target,
                                          self.path(LAST_CHECKPOINT_FILE))
        except Exception as exc:  # noqa: B902
            if self.on_error == 'raise':
                raise
            self._log('error', f'failed to update the latest pointer to '
                      f'{target}: {exc!r}')

    @staticmethod
    def _link_or_copy(target, link):
        tmp = osp.join(osp.dirname(link),
                       f'{TMP_PREFIX}{os.getpid()}-{osp.basename(link)}')
        try:
            if osp.lexists(tmp):
                os.unlink(tmp)
            os.symlink(osp.relpath(target, osp.dirname(link)), tmp)
            os.replace(tmp, link)
            return
        except OSError:
            if osp.lexists(tmp):
                os.unlink(tmp)
        with open(target, 'rb') as src:
            data = src.read()
        atomic_write(link, lambda f: f.write(data))

    def remove(self, path):
        """Delete a file this writer wrote earlier."""
        if self.rank != 0 or not path:
            return
        try:
            if self.file_client.isfile(path):
                self.file_client.remove(path)
        except Exception as exc:  # noqa: B902
            self._log('warning', f'could not remove {path}: {exc!r}')

    def _log(self, level, msg):
        if self.logger is not None:
            getattr(self.logger, level)(msg)


def run_writer(runner, out_dir, file_client=None, logger=None,
               on_error='raise', async_save=False, replace=False):
    """The run's writer for ``out_dir``: made at the first call (or anew
    with ``replace``, by the checkpoint hook, whose options then hold for
    every file written there: checkpoints, best files, pre-emption
    saves)."""
    writers = state.slot(runner, 'writers', dict)
    writer = writers.get(out_dir)
    if writer is None or replace:
        writer = writers[out_dir] = CheckpointWriter(
            out_dir, file_client, logger or runner.logger, on_error,
            async_save)
    return writer
