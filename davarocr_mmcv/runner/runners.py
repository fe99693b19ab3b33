"""mmcv 1.7.1's runners without the 2 s pause at each epoch transition,
and an epoch runner that resumes in the middle of an epoch.

``EpochBasedRunner.train`` / ``val`` and ``IterLoader.__next__`` (used by
``IterBasedRunner``) call ``time.sleep(2)`` whenever an epoch begins. The
classes here run mmcv's own code for ``val`` and ``IterLoader.__next__``,
the same bytecode, with the module-level name ``time`` looked up in a
namespace where ``sleep`` returns at once. ``DavarEpochBasedRunner.train``
is mmcv's loop (same hooks in the same order) that can start after the
batches of an interrupted epoch already trained (see
:meth:`DavarEpochBasedRunner.resume_in_epoch`). Everything else is
inherited unchanged, including the 1 s pause at the end of ``run``.
"""
import functools
import inspect
import random
import time
import types

import numpy as np
import torch
from mmcv.runner import RUNNERS, EpochBasedRunner, IterBasedRunner
from mmcv.runner.iter_based_runner import IterLoader
from torch.utils.data import DataLoader, IterableDataset

from ..core.state import EpochPosition, PositionedRunner


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


def rng_state():
    """The global random states that decide a data loader's order (torch's
    for ``RandomSampler`` and the workers' seeds, numpy's for mmdet's
    ``GroupSampler``, Python's), as plain values and a CPU tensor."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return dict(torch=torch.get_rng_state(),
                numpy=[kind, keys.tolist(), int(pos), int(has_gauss),
                       float(cached)],
                python=[version, list(internal), gauss])


def set_rng_state(state):
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos,
                         has_gauss, cached))
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))


_END = object()


def _skip(iterator, count):
    for _ in range(count):
        if next(iterator, _END) is _END:
            break
    return iterator


class _Skipping:
    """An iterator over ``iterator`` after its first ``skip`` items, which
    are taken at the first ``next`` or :meth:`draw`."""

    def __init__(self, iterator, skip):
        self.iterator = iterator
        self.skip = skip

    def __iter__(self):
        return self

    def draw(self):
        skip, self.skip = self.skip, 0
        _skip(self.iterator, skip)

    def __next__(self):
        self.draw()
        return next(self.iterator)


class SkipBatches:
    """The batches of ``batch_sampler`` after the first ``skip``: their
    indices are drawn, from the same random state at the same moment of
    the iteration (so the order is the same), but no data is loaded."""

    def __init__(self, batch_sampler, skip):
        self.batch_sampler = batch_sampler
        self.skip = skip
        self.current = None

    def __iter__(self):
        self.current = _Skipping(iter(self.batch_sampler), self.skip)
        return self.current

    def draw(self):
        """Draw the order of the iteration under way now, as a data loader
        with workers does when it starts."""
        if self.current is not None:
            self.current.draw()

    def __len__(self):
        return max(len(self.batch_sampler) - self.skip, 0)


def remaining_batches(loader, skip):
    """An iterator over what is left of one pass over ``loader`` after
    ``skip`` batches, in the order of a pass started now; that order is
    drawn before this returns. A torch ``DataLoader`` over a map-style
    dataset loads only those batches (a loader like it, over the same
    dataset, whose batch sampler drops the first ``skip``); any other
    iterable loads the skipped batches and drops them."""
    if not skip:
        return iter(loader)
    if isinstance(loader, DataLoader) and loader.batch_sampler is not None \
            and not isinstance(loader.dataset, IterableDataset):
        extra = {}
        if 'in_order' in inspect.signature(DataLoader).parameters:
            extra['in_order'] = getattr(loader, 'in_order', True)
        remaining = SkipBatches(loader.batch_sampler, skip)
        iterator = iter(DataLoader(
            loader.dataset,
            batch_sampler=remaining,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            generator=loader.generator,
            prefetch_factor=loader.prefetch_factor
            if loader.num_workers else None,
            persistent_workers=False,
            pin_memory_device=loader.pin_memory_device, **extra))
        remaining.draw()
        return iterator
    return _skip(iter(loader), skip)


def ordered_batches(loader, skip=0, rng=None, rng_now=None):
    """One pass over ``loader`` after ``skip`` batches (see
    :func:`remaining_batches`), its order drawn from the random states
    ``rng`` when given, the states ``rng_now`` put back afterwards when
    given.

    Returns:
        tuple: (the batches, the random states the order was drawn from)
    """
    if rng is not None:
        set_rng_state(rng)
    drawn_from = rng_state()
    batches = remaining_batches(loader, skip)  # the order is drawn here
    if rng_now is not None:
        set_rng_state(rng_now)
    return batches, drawn_from


def replay_states(position, world_size):
    """``(rng, rng_now)`` of ``position`` for :func:`ordered_batches`: in
    one process, the states a pass's order was drawn from and, when
    batches were done, those to go on with (with none done the order is
    drawn later, at the first batch); ``(None, None)`` when distributed,
    where the samplers are seeded by the epoch."""
    if world_size != 1:
        return None, None
    rng_now = position.get('rng_now') if position['batches_done'] else None
    return position.get('rng'), rng_now


@RUNNERS.register_module()
class DavarEpochBasedRunner(EpochBasedRunner, PositionedRunner):
    """mmcv's ``EpochBasedRunner`` without the 2 s sleep at the start of
    every train and val epoch, that resumes in the middle of an epoch. Same
    arguments, hooks, checkpoints and logs.

    A checkpoint written inside an epoch records how many of its batches
    were trained (and, in one process, the random states its data order
    came from); resuming from it continues that epoch with the same data
    order after those batches, so no finished iteration is repeated or
    lost.

    Use it with ``runner = dict(type='DavarEpochBasedRunner',
    max_epochs=N)``.
    """

    #: Batches of the epoch in progress trained before the checkpoint the
    #: run resumed from (skipped by ``train``), and that epoch's position
    #: as recorded; reset when the epoch starts.
    resumed_batches = 0
    _resume_position = None
    #: Random states the current epoch's data order was drawn from (one
    #: process; distributed samplers are seeded by the epoch).
    epoch_rng = None

    def data_state(self, point=None):
        """What a checkpoint written inside an epoch records, in one
        process, besides how many batches were trained: the random states
        the epoch's order was drawn from (``rng``), and those of now
        (``rng_now``), so that a resume draws the same order and then goes
        on with the random numbers the uninterrupted run would have used.
        Empty when distributed: the samplers are seeded by the epoch."""
        if self.world_size != 1 or self.epoch_rng is None:
            return {}
        return dict(rng=self.epoch_rng, rng_now=rng_state())

    def resume_in_epoch(self, position):
        """Continue the epoch in progress (``self.epoch``) after
        ``position['batches_done']`` batches (see
        :func:`davarocr_mmcv.core.progress.epoch_position`).

        Returns:
            bool: False when it cannot (another number of processes): the
            epoch then restarts.
        """
        if position.get('world_size') != self.world_size:
            self.logger.warning(
                f'the checkpoint was written inside epoch {self.epoch + 1} '
                f'by {position.get("world_size")} process(es), now '
                f'{self.world_size}: that epoch restarts from its first '
                'batch')
            return False
        self._resume_position = position
        return True

    def _take_resume_point(self, data_loader):
        """The position of the epoch beginning now: batches to skip, and
        the random states to draw its order from and to go on with (each
        None when not recorded)."""
        position, self._resume_position = self._resume_position, None
        if not position:
            return 0, None, None
        done = position['batches_done']
        if position.get('batches') != len(data_loader):
            self.logger.warning(
                f'the data loader has {len(data_loader)} batches, '
                f'{position.get("batches")} when the checkpoint was written '
                f'inside epoch {self.epoch + 1}: that epoch restarts from '
                'its first batch')
            self._iter -= done
            return 0, None, None
        self.logger.info(f'epoch {self.epoch + 1} continues after its '
                         f'first {done} batches (iter {self._iter})')
        return (done, *replay_states(position, self.world_size))

    def train(self, data_loader, **kwargs):
        self.model.train()
        self.mode = 'train'
        self.data_loader = data_loader
        self._max_iters = self._max_epochs * len(self.data_loader)
        skip, rng, rng_now = self._take_resume_point(data_loader)
        self.resumed_batches = skip
        self.call_hook('before_train_epoch')
        # no sleep here (mmcv's 2 s one)
        batches, drawn_from = ordered_batches(self.data_loader, skip, rng,
                                              rng_now)
        self.epoch_rng = drawn_from if self.world_size == 1 else None
        for i, data_batch in enumerate(batches, start=skip):
            self.data_batch = data_batch
            self._inner_iter = i
            self.call_hook('before_train_iter')
            self.run_iter(data_batch, train_mode=True, **kwargs)
            self.call_hook('after_train_iter')
            del self.data_batch
            self._iter += 1

        self.call_hook('after_train_epoch')
        self._epoch += 1
        self.resumed_batches = 0

    # mmcv decorates val with torch.no_grad(); the copy keeps it
    val = torch.no_grad()(with_globals(EpochBasedRunner.val, time=_NO_PAUSE))


class DavarIterLoader(IterLoader):
    """mmcv's ``IterLoader`` without the 2 s sleep when the data loader
    starts a new epoch, that knows how far into the pass it is and can
    continue a pass after the batches trained before a resume."""

    def __init__(self, dataloader):
        self._dataloader = dataloader
        self._epoch = 0
        self._start_pass()

    def _start_pass(self, skip=0, rng=None, rng_now=None):
        #: the pass, and the random states its order was drawn from
        self.iter_loader, self.pass_rng = ordered_batches(
            self._dataloader, skip, rng, rng_now)
        #: batches taken from the current pass
        self.batches_done = skip

    def __next__(self):
        try:
            data = next(self.iter_loader)
        except StopIteration:
            self._epoch += 1
            if hasattr(self._dataloader.sampler, 'set_epoch'):
                self._dataloader.sampler.set_epoch(self._epoch)
            # no sleep here (mmcv's 2 s one)
            self._start_pass()
            data = next(self.iter_loader)
        self.batches_done += 1
        return data

    def position(self, batches_done, world_size):
        """This pass and ``batches_done`` of it, as a checkpoint records
        it (see :func:`davarocr_mmcv.core.progress.checkpoint_meta`)."""
        extra = dict(rng=self.pass_rng, rng_now=rng_state()) \
            if world_size == 1 else {}
        return EpochPosition(batches_done, len(self._dataloader),
                             world_size, self._epoch, extra).as_dict()

    def resume_at(self, position, world_size):
        """Continue pass ``position['epoch']`` after its first
        ``batches_done`` batches, in the order it had; False (nothing
        changed) when the loader or the number of processes differ."""
        if position.get('batches') != len(self._dataloader) or \
                position.get('world_size') != world_size:
            return False
        self._epoch = position['epoch']
        if hasattr(self._dataloader.sampler, 'set_epoch'):
            self._dataloader.sampler.set_epoch(self._epoch)
        self._start_pass(position['batches_done'],
                         *replay_states(position, world_size))
        return True


@RUNNERS.register_module()
class DavarIterBasedRunner(IterBasedRunner, PositionedRunner):
    """mmcv's ``IterBasedRunner`` whose loaders do not sleep 2 s when the
    data loader starts a new epoch, and that continues the interrupted pass
    over the data after a resume. Same arguments, hooks, checkpoints and
    logs.

    A checkpoint records the pass of the training loader and how many of
    its batches were taken (and, in one process, the random states its
    order came from); resuming from it continues that pass in the same
    order.

    Use it with ``runner = dict(type='DavarIterBasedRunner',
    max_iters=N)``.
    """

    run = with_globals(IterBasedRunner.run, IterLoader=DavarIterLoader)
    _resume_position = None

    def data_state(self, point):
        """Where the training loader stands at ``point`` (see
        :meth:`DavarIterLoader.position`); empty before it has started."""
        loader = getattr(self, 'data_loader', None)
        if not isinstance(loader, DavarIterLoader):
            return {}
        # before an iteration's hooks, its batch is taken but not trained
        taken = self.iter + 1 - point.iters_done
        return loader.position(max(loader.batches_done - taken, 0),
                               self.world_size)

    def resume_in_epoch(self, position):
        """Continue the recorded pass of the training loader when training
        starts (see :meth:`DavarIterLoader.resume_at`)."""
        self._resume_position = position
        return True

    def train(self, data_loader, **kwargs):
        position, self._resume_position = self._resume_position, None
        if position and isinstance(data_loader, DavarIterLoader):
            if data_loader.resume_at(position, self.world_size):
                self.logger.info(
                    f'the data loader continues pass {position["epoch"]} '
                    f'after its first {position["batches_done"]} batches')
            else:
                self.logger.warning(
                    'the checkpoint was written with another data loader '
                    'or number of processes: the data loader starts a new '
                    'pass')
        super().train(data_loader, **kwargs)


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
