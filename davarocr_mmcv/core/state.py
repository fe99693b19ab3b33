"""The run's shared state, in one place.

* **Keys**: every entry of ``runner.meta['hook_msgs']`` (carried by each
  checkpoint, restored by a resume) is a constant here, with the functions
  that read and write them. No other module spells a key.
* **Events** hooks hear, in the runner's hook order, through
  :func:`notify` (a hook listens by defining the method):

  ========================  ==============================================
  ``before_evaluation``     ``(runner, point)``: an evaluation starts
                            (:mod:`.observe`).
  ``after_evaluation``      ``(runner, record)``: an evaluation is done,
                            its best decided (:mod:`.best`).
  ``on_train_failure``      ``(runner, exc)``: training raised.
  ``on_train_interrupt``    ``(runner, exc, resume)``: Ctrl-C.
  ``on_train_preempted``    ``(runner, exc, resume)``: a stop was
                            requested by a pre-emption signal.
  ========================  ==============================================

  A save point is asked of one hook, not told to all: the
  :class:`ResumableSaver` (:func:`resumable_saver`) writes the state when a
  stop is requested (PreemptionHook), before ``on_train_preempted``.

* **Roles** by which hooks and runners find one another (a class, not an
  attribute name): :class:`Evaluator` (says whether it evaluates at a save
  point), :class:`ResumableSaver` (writes a save point on request),
  :class:`BestOwner` (keeps the run's best in its own file) and
  :class:`PositionedRunner` (records and restores the position inside an
  epoch, :class:`EpochPosition`).
"""
from typing import NamedTuple, Optional

#: Entry of ``runner.meta`` holding the hooks' state.
HOOK_MSGS = 'hook_msgs'
#: The best of a metric; each with a suffix (``_{metric}``) when several
#: metrics are kept (mmengine's naming).
BEST_PREFIX = 'best_'
BEST_SCORE = 'best_score'
BEST_CKPT = 'best_ckpt'
BEST_METRIC = 'best_metric'
BEST_UNIT = 'best_unit'
BEST_STEP = 'best_step'
#: The newest checkpoint (mmcv's key), the regular ones kept so far, and
#: every evaluation of the run (:meth:`EvalRecord.as_dict`).
LAST_CKPT = 'last_ckpt'
CKPT_HISTORY = 'ckpt_history'
EVAL_HISTORY = 'eval_history'
#: ReduceonplateauLrUpdaterHook's state.
LR_PLATEAU = 'lr_plateau'

EVENTS = ('before_evaluation', 'after_evaluation', 'on_train_failure',
          'on_train_interrupt', 'on_train_preempted')


def hook_msgs(runner):
    """``runner.meta['hook_msgs']``, created when missing."""
    if runner.meta is None:
        runner.meta = {}
    return runner.meta.setdefault(HOOK_MSGS, {})


def msgs_of(meta):
    """The ``hook_msgs`` of a checkpoint's ``meta`` (a copy; {} if none or
    not a dict)."""
    msgs = meta.get(HOOK_MSGS) if isinstance(meta, dict) else None
    return dict(msgs) if isinstance(msgs, dict) else {}


def best_key(key, suffix=''):
    """``key`` (e.g. :data:`BEST_SCORE`) of the best kept under ``suffix``."""
    return key + suffix


def best_suffixes(msgs, key=BEST_CKPT):
    """The suffixes under which ``msgs`` hold a ``key`` ('' for the single
    best, ``_{metric}`` for per-metric ones), in the order of ``msgs``."""
    return [k[len(key):] for k in msgs if k.startswith(key)]


def best_items(msgs):
    """The ``best_*`` entries of ``msgs``."""
    return {k: v for k, v in msgs.items() if k.startswith(BEST_PREFIX)}


def best_entries(msgs, fields=('score', 'unit', 'step', 'ckpt')):
    """``{metric: {field: value}}`` of every best in ``msgs``: the single
    best (``best_score``) and per-metric ones (``best_score_NED``)."""
    best = {}
    for suffix in best_suffixes(msgs, BEST_SCORE):
        metric = msgs.get(BEST_METRIC + suffix) or suffix.lstrip('_')
        best[metric] = {field: msgs.get(f'{BEST_PREFIX}{field}{suffix}')
                        for field in fields}
    return best


def record_evaluation(runner, record):
    """Append ``record`` to ``hook_msgs['eval_history']``."""
    hook_msgs(runner).setdefault(EVAL_HISTORY, []).append(record.as_dict())


def eval_history(msgs):
    return msgs.get(EVAL_HISTORY) or []


def record_checkpoint(runner, path):
    """Add ``path`` to the regular checkpoints kept; the list."""
    history = hook_msgs(runner).setdefault(CKPT_HISTORY, [])
    if path not in history:
        history.append(path)
    return history


def last_ckpt(runner):
    return hook_msgs(runner).get(LAST_CKPT)


def last_ckpt_entry(path):
    """The ``hook_msgs`` entry a newest checkpoint ``path`` sets."""
    return {LAST_CKPT: path}


# ------------------------------------------------------------------ events
def notify(runner, event, *args, first=None):
    """Call ``hook.<event>(runner, *args)`` on every hook that defines it,
    in the runner's order, ``first`` before the others (see
    :data:`EVENTS`)."""
    for hook in sorted(runner.hooks, key=lambda h: h is not first):
        listener = getattr(hook, event, None)
        if listener is not None:
            listener(runner, *args)


# ------------------------------------------------------------------- roles
class Evaluator:
    """An eval hook that can say, without changing anything, whether it
    evaluates in ``after_train_{unit}`` now."""

    def evaluates_at(self, runner, unit):
        raise NotImplementedError


class ResumableSaver:
    """A checkpoint hook that writes the state at a point on request (a
    pre-emption) and returns the path to resume from."""

    def save_resumable(self, runner, point):
        raise NotImplementedError


class BestOwner:
    """A hook that owns the run's best (DavarCheckpointHook in lightweight
    mode): the Davar eval hooks then keep no best of their own."""

    def owns_best(self):
        raise NotImplementedError


class PositionedRunner:
    """A runner that records where its data stands inside an epoch (or a
    pass of an iteration-based runner's loader) and continues there."""

    #: Batches of the epoch in progress trained before the checkpoint the
    #: run resumed from.
    resumed_batches = 0

    def data_state(self, point):
        """Entries :class:`EpochPosition` adds for ``point`` ({} if none)."""
        return {}

    def resume_in_epoch(self, position):
        """Continue after ``position`` (a dict); False when it cannot."""
        return False


def evaluators(runner, after=None):
    """The :class:`Evaluator` hooks of ``runner`` (after hook ``after``)."""
    hooks = runner.hooks
    if after is not None:
        hooks = hooks[hooks.index(after) + 1:] if after in hooks else []
    return [h for h in hooks if isinstance(h, Evaluator)]


def resumable_saver(runner):
    """The first :class:`ResumableSaver` hook of ``runner``, or None."""
    return next((h for h in runner.hooks if isinstance(h, ResumableSaver)),
                None)


def best_owner(runner):
    """The first :class:`BestOwner` hook of ``runner`` that owns the best,
    or None."""
    return next((h for h in runner.hooks
                 if isinstance(h, BestOwner) and h.owns_best()), None)


def data_state(runner, point):
    """What ``runner`` records of its data at ``point`` ({} for a runner
    that is not a :class:`PositionedRunner`)."""
    if isinstance(runner, PositionedRunner):
        return runner.data_state(point) or {}
    return {}


def resumed_batches(runner):
    """Batches of the current epoch trained before the resumed checkpoint
    (0 for a runner that is not a :class:`PositionedRunner`)."""
    return runner.resumed_batches if isinstance(runner, PositionedRunner) \
        else 0


class EpochPosition(NamedTuple):
    """Where a checkpoint written inside an epoch (or a pass of an
    iteration-based runner's loader) stands; stored in the checkpoint's
    meta as a plain dict (:meth:`as_dict`).

    Attributes:
        batches_done (int): batches of the epoch (pass) trained.
        batches (int | None): its length.
        world_size (int): processes that trained it.
        epoch (int | None): the pass of an iteration-based loader.
        extra (dict): what the runner adds (random states).
    """
    batches_done: int
    batches: Optional[int]
    world_size: int
    epoch: Optional[int] = None
    extra: dict = {}

    def as_dict(self):
        out = dict(batches_done=self.batches_done, batches=self.batches,
                   world_size=self.world_size)
        if self.epoch is not None:
            out = dict(epoch=self.epoch, **out)
        out.update(self.extra)
        return out


def slot(runner, name, factory):
    """The run-wide object ``name`` of ``runner`` (made by ``factory()`` at
    the first call): the one keeper of the best, the writers."""
    slots = runner.__dict__.setdefault('_davar_run_slots', {})
    if name not in slots:
        slots[name] = factory()
    return slots[name]
