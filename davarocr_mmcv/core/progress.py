"""Where a runner stands: one value shared by the checkpoint and eval hooks."""
from typing import NamedTuple

from mmcv.runner import RUNNERS, IterBasedRunner

from . import state


class Point(NamedTuple):
    """A moment of training at which hooks may act.

    Attributes:
        unit (str): 'epoch' (after_train_epoch) or 'iter' (after_train_iter).
        step (int): epochs or iterations completed, in ``unit``.
        iters_done (int): iterations completed; identifies the weights.
    """
    unit: str
    step: int
    iters_done: int

    @property
    def key(self):
        return self.unit, self.iters_done


def is_iter_based(runner):
    return isinstance(runner, IterBasedRunner)


def is_iter_based_type(runner_type):
    """Whether ``runner_type`` (a RUNNERS name or a class) is an
    IterBasedRunner or a subclass of it."""
    cls = RUNNERS.get(runner_type) if isinstance(runner_type, str) \
        else runner_type
    return isinstance(cls, type) and issubclass(cls, IterBasedRunner)


def current_point(runner, unit):
    """The point of ``runner`` inside its ``after_train_{unit}`` hooks."""
    if unit == 'epoch':
        # The runner has already counted the epoch's last iteration.
        return Point('epoch', runner.epoch + 1, runner.iter)
    return Point('iter', runner.iter + 1, runner.iter + 1)


#: Checkpoint meta entry: where inside the epoch in progress it was written.
EPOCH_POSITION = 'epoch_position'


def epoch_position(runner, point):
    """Where ``point`` (an iteration inside an epoch of an epoch-based
    runner) stands in its epoch: ``batches_done`` of ``batches``, the
    number of processes (a :class:`~.state.EpochPosition`), and what a
    :class:`~.state.PositionedRunner` adds (the random states of the
    epoch's data order)."""
    start = runner.iter - runner.inner_iter  # the epoch's first iteration
    loader = getattr(runner, 'data_loader', None)
    return state.EpochPosition(
        point.iters_done - start, None if loader is None else len(loader),
        runner.world_size, extra=state.data_state(runner, point)).as_dict()


def checkpoint_meta(runner, point):
    """``epoch``/``iter`` for a checkpoint's meta, so that a resume continues
    after ``point``: mmcv's values for its own save points; for an
    iteration inside an epoch, the epoch in progress and, under
    :data:`EPOCH_POSITION`, how far into it (see :func:`resume_position`);
    for an iteration-based :class:`~.state.PositionedRunner` (the
    package's), how far into its loader's pass."""
    if point.unit == 'epoch' or is_iter_based(runner):
        meta = dict(epoch=runner.epoch + 1, iter=point.iters_done)
        if is_iter_based(runner):
            position = state.data_state(runner, point)  # the loader's pass
            if position:
                meta[EPOCH_POSITION] = position
        return meta
    return {'epoch': runner.epoch, 'iter': point.iters_done,
            EPOCH_POSITION: epoch_position(runner, point)}


def resume_position(runner, position):
    """Set ``runner``, resumed at the ``iter`` of a checkpoint written
    inside an epoch (or a pass of an iteration-based runner's data), to
    continue after ``position`` (:func:`epoch_position`): a
    :class:`~.state.PositionedRunner` (the package's runners) continues
    there; else an epoch restarts, with the iteration count of its start,
    as mmcv's ``EpochBasedRunner`` can only do, and mmcv's
    ``IterBasedRunner`` starts a new pass over the data."""
    positioned = isinstance(runner, state.PositionedRunner)
    if positioned and runner.resume_in_epoch(position):
        return
    if is_iter_based(runner):
        return  # a new pass over the data, as mmcv's IterLoader does
    runner._iter -= position['batches_done']
    if not positioned:
        runner.logger.info(
            f'{type(runner).__name__} cannot resume inside an epoch: epoch '
            f'{runner.epoch + 1} restarts from its first batch (iter '
            f'{runner.iter}); DavarEpochBasedRunner would continue it')


def max_steps(runner, unit):
    return runner.max_epochs if unit == 'epoch' else runner.max_iters
