"""Where a runner stands: one value shared by the checkpoint and eval hooks."""
from typing import NamedTuple

from mmcv.runner import RUNNERS, IterBasedRunner


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


def checkpoint_meta(runner, point):
    """``epoch``/``iter`` for a checkpoint's meta, so that a resume continues
    after ``point``: mmcv's values for its own save points, and for an
    iteration inside an unfinished epoch, that epoch restarts."""
    if point.unit == 'epoch' or is_iter_based(runner):
        return dict(epoch=runner.epoch + 1, iter=point.iters_done)
    return dict(epoch=runner.epoch, iter=point.iters_done)


def max_steps(runner, unit):
    return runner.max_epochs if unit == 'epoch' else runner.max_iters
