"""TrainStatusHook: a small ``status.json`` that says where a training stands,
for people and scripts polling ``work_dir`` (``python tools/status.py``)."""
import datetime
import json
import math
import os
import os.path as osp
import socket
import time

from mmcv.runner import HOOKS, Hook, get_dist_info

from ..constants import STATUS_FILE
from ..core import state as run_state
from ..core.observe import observe_evaluations
from ..core.preempt import Preempted
from ..core.writer import atomic_write
from ..serialization import to_plain
# The command-line side (tools/status.py, the resume command), at their old
# import path.
from ..status import (STATES, format_status, read_status,  # noqa: F401
                      resume_command)


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def _json_safe(value):
    """Plain JSON values; non-finite floats become strings ('nan', 'inf') so
    the file stays strict JSON."""
    value = to_plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@HOOKS.register_module()
class TrainStatusHook(Hook):
    """Keep ``work_dir/status.json`` up to date: state, progress, latest
    loss and metrics, best checkpoint, elapsed time and ETA.

    The file is replaced atomically (a reader never sees a partial file),
    only on global rank 0: at the start, every ``interval`` iterations, at
    each state change (evaluating, back to training, finished, failed,
    interrupted, preempted).
    Other iterations cost one modulo. A failed write is logged once and
    never stops training.

    Args:
        interval (int): iterations between refreshes. Default: 50.
        filename (str): name of the file in ``work_dir``.
            Default: 'status.json'.
    """

    def __init__(self, interval=50, filename=STATUS_FILE):
        if isinstance(interval, bool) or not isinstance(interval, int) or \
                interval <= 0:
            raise ValueError(f'interval must be a positive int, '
                             f'got {interval!r}')
        if not isinstance(filename, str) or not filename or \
                osp.basename(filename) != filename:
            raise ValueError('filename must be a plain file name inside '
                             f'work_dir, got {filename!r}')
        self.interval = interval
        self.filename = filename
        self.enabled = False

    # --------------------------------------------------------------- WHEN
    def before_run(self, runner):
        observe_evaluations(runner)
        self.enabled = get_dist_info()[0] == 0
        self.path = osp.join(runner.work_dir, self.filename)
        self.started_at = _now()
        self.start_time = time.time()
        self.start_iter = runner.iter
        self.epoch_start_iter = runner.iter
        self.state = 'training'
        self.error = None
        self.resume = None
        self.last_eval = None
        self.loss = None
        self._written_best = None
        self._recheck_best = False
        self._write_failed = False
        self._refresh(runner, runner.iter)

    def before_train_epoch(self, runner):
        # a resumed epoch starts after the batches trained before
        self.epoch_start_iter = runner.iter - \
            run_state.resumed_batches(runner)

    def before_train_iter(self, runner):
        # Hooks notified after this one may have set a new best after the
        # last evaluation was written.
        if self._recheck_best:
            self._recheck_best = False
            if self._best(runner) != self._written_best:
                self._refresh(runner, runner.iter)

    def after_train_iter(self, runner):
        if self.every_n_iters(runner, self.interval):
            self._refresh(runner, runner.iter + 1)

    def before_evaluation(self, runner, point):
        self.state = 'evaluating'
        self._refresh(runner, point.iters_done)

    def after_evaluation(self, runner, record):
        self.state = 'training'
        self.last_eval = record.as_dict()
        self._recheck_best = True
        self._refresh(runner, record.iters_done)

    def after_run(self, runner):
        self.state = 'finished'
        self._refresh(runner, runner.iter)

    def on_train_failure(self, runner, exc):
        if isinstance(exc, KeyboardInterrupt):
            self.on_train_interrupt(runner, exc)
            return
        if isinstance(exc, Preempted):
            self.on_train_preempted(runner, exc)
            return
        self.state = 'failed'
        message = str(exc)
        self.error = type(exc).__name__ + (f': {message}' if message else '')
        self._refresh(runner, runner.iter)

    def on_train_interrupt(self, runner, exc, resume=None):
        """Ctrl-C (``KeyboardInterrupt``): state 'interrupted', with the
        command that continues the training when ``resume`` is given."""
        self.state = 'interrupted'
        self.error = type(exc).__name__
        self.resume = resume
        self._refresh(runner, runner.iter)

    def on_train_preempted(self, runner, exc, resume=None):
        """A pre-emption signal (:class:`PreemptionHook`): state
        'preempted', ``error`` the signal, ``last_ckpt`` the checkpoint
        written at the iteration it stopped at, and the command that
        continues the training when ``resume`` is given."""
        self.state = 'preempted'
        self.error = exc.signal_name
        self.resume = resume
        self._refresh(runner, exc.iter)

    # --------------------------------------------------------------- WHAT
    def _best(self, runner):
        return run_state.best_entries(run_state.hook_msgs(runner))

    def _epoch_progress(self, runner, iters_done):
        """(samples done, samples total) in the current pass over the
        training set, or (None, None) before the first one starts."""
        loader = getattr(runner, 'data_loader', None)
        if loader is None:
            return None, None
        if hasattr(loader, '_dataloader'):  # IterBasedRunner's IterLoader
            loader = loader._dataloader
            done = iters_done - self.start_iter
            in_epoch = (done - 1) % len(loader) + 1 if done > 0 else 0
        else:
            in_epoch = iters_done - self.epoch_start_iter
        dataset = getattr(loader, 'dataset', None)
        total = len(dataset) if dataset is not None else None
        if total is None or not len(loader):
            return None, total
        if loader.batch_size:
            done = in_epoch * loader.batch_size * get_dist_info()[1]
        else:
            done = round(total * in_epoch / len(loader))
        return min(done, total), total

    def snapshot(self, runner, iters_done):
        """The content of status.json, ``iters_done`` iterations in."""
        now = time.time()
        elapsed = now - self.start_time
        done_here = iters_done - self.start_iter
        running = self.state in ('training', 'evaluating')
        eta = None
        if running and done_here > 0 and runner.max_iters:
            eta = elapsed / done_here * max(runner.max_iters - iters_done, 0)
        outputs = getattr(runner, 'outputs', None)
        if runner.mode == 'train' and isinstance(outputs, dict) and \
                'log_vars' in outputs:
            self.loss = outputs['log_vars']
        samples_done, samples_total = self._epoch_progress(runner,
                                                           iters_done)
        max_epochs = runner.max_epochs
        # the epoch under way; once finished, the epochs completed
        epoch = runner.epoch + (0 if self.state == 'finished' else 1)
        if max_epochs:
            epoch = min(max(epoch, 1), max_epochs)
        best = self._best(runner)
        status = dict(
            state=self.state,
            error=self.error,
            epoch=epoch,
            max_epochs=max_epochs,
            iter=iters_done,
            max_iters=runner.max_iters,
            samples_done=samples_done,
            samples_total=samples_total,
            loss=self.loss,
            last_eval=self.last_eval,
            best=best,
            last_ckpt=run_state.last_ckpt(runner),
            resume=self.resume,
            elapsed_s=round(elapsed, 3),
            eta_s=None if eta is None else round(eta, 3),
            started_at=self.started_at,
            updated_at=_now(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        return _json_safe(status), best

    # -------------------------------------------------------------- WRITE
    def _refresh(self, runner, iters_done):
        if not self.enabled:
            return
        status, best = self.snapshot(runner, iters_done)
        data = json.dumps(status, indent=2, allow_nan=False).encode()
        try:
            atomic_write(self.path, lambda f: f.write(data))
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                runner.logger.warning(f'TrainStatusHook: could not write '
                                      f'{self.path}: {exc!r}')
            return
        self._written_best = best
