"""mmcv 1.7.1's runners without the 2 s pause at each epoch transition.

``EpochBasedRunner.train`` / ``val`` and ``IterLoader.__next__`` (used by
``IterBasedRunner``) call ``time.sleep(2)`` whenever an epoch begins. The
classes here run mmcv's own code for those methods, the same bytecode, with
the module-level name ``time`` looked up in a namespace where ``sleep``
returns at once. Everything else is inherited unchanged, including the
1 s pause at the end of ``run``.
"""
import functools
import inspect
import time
import types

import torch
from mmcv.runner import RUNNERS, EpochBasedRunner, IterBasedRunner
from mmcv.runner.iter_based_runner import IterLoader


class _NoPauseTime:
    """The ``time`` module as mmcv's epoch-transition code sees it here:
    ``sleep`` returns at once; any other attribute is the real module's."""

    @staticmethod
    def sleep(seconds):
        return None

    def __getattr__(self, name):
        return getattr(time, name)


def with_globals(func, **names):
    """``func``'s code (decorators stripped) run with the module-level
    ``names`` replaced; its own module is left untouched.

    Tracebacks still point at ``func``'s source file and lines.
    """
    raw = inspect.unwrap(func)
    namespace = dict(raw.__globals__, **names)
    new = types.FunctionType(raw.__code__, namespace, raw.__name__,
                             raw.__defaults__, raw.__closure__)
    new.__kwdefaults__ = raw.__kwdefaults__
    return functools.update_wrapper(new, raw)


_NO_PAUSE = _NoPauseTime()


@RUNNERS.register_module()
class DavarEpochBasedRunner(EpochBasedRunner):
    """mmcv's ``EpochBasedRunner`` without the 2 s sleep at the start of
    every train and val epoch. Same arguments, hooks, checkpoints and logs.

    Use it with ``runner = dict(type='DavarEpochBasedRunner',
    max_epochs=N)``.
    """

    train = with_globals(EpochBasedRunner.train, time=_NO_PAUSE)
    # mmcv decorates val with torch.no_grad(); the copy keeps it
    val = torch.no_grad()(with_globals(EpochBasedRunner.val, time=_NO_PAUSE))


class DavarIterLoader(IterLoader):
    """mmcv's ``IterLoader`` without the 2 s sleep when the data loader
    starts a new epoch."""

    __next__ = with_globals(IterLoader.__next__, time=_NO_PAUSE)


@RUNNERS.register_module()
class DavarIterBasedRunner(IterBasedRunner):
    """mmcv's ``IterBasedRunner`` whose loaders do not sleep 2 s when the
    data loader starts a new epoch. Same arguments, hooks, checkpoints and
    logs.

    Use it with ``runner = dict(type='DavarIterBasedRunner',
    max_iters=N)``.
    """

    run = with_globals(IterBasedRunner.run, IterLoader=DavarIterLoader)


@RUNNERS.register_module()
class DistillRunner(DavarEpochBasedRunner):
    """DavarOCR's runner for distillation: an epoch-based runner that hands
    itself to the model in every batch, as ``data_batch['runner']``, so
    that ``train_step`` / ``val_step`` can read the epoch, the iteration or
    the hooks (e.g. to schedule a distillation loss).

    Like :class:`DavarEpochBasedRunner`, it does not sleep at epoch
    transitions (DavarOCR's, built on mmcv's runner, sleeps 2 s).
    """

    def run_iter(self, data_batch, train_mode, **kwargs):
        data_batch['runner'] = self
        super().run_iter(data_batch, train_mode, **kwargs)
