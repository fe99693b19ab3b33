"""PreemptionHook: on SIGTERM / SIGUSR1, stop at the next iteration boundary
with a resumable checkpoint (WHEN; the checkpoint hook's writer WRITES)."""
from mmcv.runner import HOOKS, Hook

from ..constants import ITER_TMPL, LATEST_LINK_NAME
from ..core import state
from ..core.preempt import (DEFAULT_SIGNALS, REPEAT_WINDOW, Preempted,
                            SignalCatcher, agree, report_to_launcher,
                            wait_for_rank0)
from ..core.progress import current_point, is_iter_based
from ..core.writer import run_writer, save_step
from ..utils.checks import check_positive_int


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop training on a pre-emption signal, with a checkpoint to resume
    from.

    From ``before_run`` to the end of training, the first of ``signals``
    is recorded and training goes on to the end of the iteration under way.
    There every rank learns whether any rank received one (one
    all-reduce every ``interval`` iterations), so all stop at the same
    iteration: the checkpoint hook that saves (a
    :class:`~davarocr_mmcv.core.state.ResumableSaver`, e.g.
    :class:`DavarCheckpointHook`) writes the state, on rank 0 only (without
    one, ``iter_N.pth`` is written into the work_dir through the run's
    writer there); every rank waits until it is on disk, then raises
    :class:`~davarocr_mmcv.core.preempt.Preempted` (exit status 75 when
    uncaught). At the last iteration of an epoch the stop comes after the
    epoch's hooks (its evaluation and checkpoint). A second signal, later
    than ``repeat_window`` seconds after the first, stops at once. The
    previous signal handlers are back once training ends, however it ends.

    Registered at LOWEST priority by ``train_model``: every other hook of
    the iteration (optimizer step, evaluation, regular save, log) is done
    when it acts.

    Args:
        signals (Sequence[str]): Default: ('SIGTERM', 'SIGUSR1').
        interval (int): iterations between agreements of the ranks.
            Default: 1.
        repeat_window (float): seconds after the first signal during which
            the same signal again is the same request (slurm signals every
            process of a job step; torchrun forwards the signal it receives
            to its workers). Default: 2.0.
    """

    def __init__(self, signals=DEFAULT_SIGNALS, interval=1,
                 repeat_window=REPEAT_WINDOW):
        self.interval = check_positive_int(interval, 'interval',
                                           when='(iterations)')
        self.catcher = SignalCatcher(signals, repeat_window)
        self._at_epoch_end = None

    def before_run(self, runner):
        self.catcher.logger = runner.logger
        self._at_epoch_end = None
        if not self.catcher.install():
            runner.logger.warning('PreemptionHook: training does not run '
                                  'in the main thread; signals are not '
                                  'caught')

    # --------------------------------------------------------------- WHEN
    def after_train_iter(self, runner):
        if not self.catcher.installed or \
                not self.every_n_iters(runner, self.interval):
            return
        received = agree(self.catcher.received)
        if received is None:
            return
        if not is_iter_based(runner) and \
                runner.inner_iter + 1 == len(runner.data_loader):
            self._at_epoch_end = received  # after the epoch's own hooks
            return
        self._stop(runner, received, current_point(runner, 'iter'))

    def after_train_epoch(self, runner):
        received, self._at_epoch_end = self._at_epoch_end, None
        if received is None and self.catcher.installed:
            received = agree(self.catcher.received)
        if received is not None:
            self._stop(runner, received, current_point(runner, 'epoch'))

    def after_run(self, runner):
        self.catcher.restore()

    def on_train_failure(self, runner, exc):
        self.catcher.restore()

    def on_train_interrupt(self, runner, exc, resume=None):
        self.catcher.restore()

    def on_train_preempted(self, runner, exc, resume=None):
        self.catcher.restore()

    # --------------------------------------------------------------- stop
    def _stop(self, runner, received, point):
        if point.iters_done >= runner.max_iters:
            runner.logger.info(f'{received}: this was the last iteration; '
                               'training finishes')
            return
        runner.logger.warning(
            f'pre-empted by {received}: saving a resumable checkpoint at '
            f'{point.unit} {point.step} (iter {point.iters_done})')
        path = save_resumable(runner, point)
        wait_for_rank0()  # the file is on disk before any rank exits
        self.catcher.restore()  # a signal from now on ends the process
        epoch = runner.epoch + (point.unit == 'epoch')
        exc = Preempted(received, epoch, point.iters_done, path)
        report_to_launcher(exc)
        raise exc


def save_resumable(runner, point):
    """Write the state at ``point`` through the run's checkpoint hook (its
    :class:`~davarocr_mmcv.core.state.ResumableSaver`), or else as
    ``iter_N.pth`` in the work_dir, through the run's writer there; the
    path of the file to resume from."""
    saver = state.resumable_saver(runner)
    if saver is not None:
        return saver.save_resumable(runner, point)
    writer = run_writer(runner, runner.work_dir)
    writer.prepare()
    name = ITER_TMPL.format(point.iters_done)
    msgs = state.hook_msgs(runner)
    writer.submit([save_step(runner, point, name,
                             state.last_ckpt_entry(writer.path(name)),
                             link=LATEST_LINK_NAME)], msgs, msgs.update)
    writer.wait()
    return state.last_ckpt(runner)
