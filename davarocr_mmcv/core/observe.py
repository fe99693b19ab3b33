"""Hearing every evaluation of a run, whichever eval hook makes it.

The one place where evaluations become :class:`EvalRecord` s. Any hook that
is an mmcv ``EvalHook`` (mmcv's own, mmdet's, a toolbox's subclass, the Davar
hooks) is observed through its instance's ``_do_evaluate``, mmcv's extension
point that every evaluation goes through: the metrics it writes to
``runner.log_buffer`` (and the key score its ``evaluate`` returns, heard
only while the evaluation runs) become a record, published to the listeners
(``after_evaluation(runner, record)``) while the weights are still the ones
that were scored. Nothing is patched at class level; only the hook
instances of this runner are wrapped, once, in ``before_run`` of whoever
listens.
"""
import collections

import torch.distributed as dist
from mmcv.runner import DistEvalHook, EvalHook, get_dist_info

from ..serialization import to_plain
from . import state
from .best import publish_evaluation
from .metrics import EvalRecord
from .progress import Point

#: log_buffer entries an evaluation writes that are not metrics.
NOT_METRICS = frozenset({'eval_iter_num'})
_TAPPED = '_davar_observed'
_MISSING = object()


def is_eval_hook(hook):
    return isinstance(hook, EvalHook)


def evaluates_at(hook, runner, unit):
    """Whether eval hook ``hook`` evaluates in ``after_train_{unit}`` now,
    by its own predicate (mmcv's ``_should_evaluate``)."""
    if isinstance(hook, state.Evaluator):
        return hook.evaluates_at(runner, unit)
    if (unit == 'epoch') != bool(hook.by_epoch):
        return False
    return bool(hook._should_evaluate(runner))


def evaluation_point(hook, runner):
    """The :class:`Point` an evaluation by ``hook`` happening now scores.

    mmcv's hooks evaluate in ``after_train_{unit}``, and before training
    (``initial_flag`` still set) on resumed weights. ``unit`` is the hook's
    schedule: ``hook.unit`` for the Davar hooks, else by ``by_epoch``.
    """
    unit = getattr(hook, 'unit', None) or (
        'epoch' if hook.by_epoch else 'iter')
    before_training = bool(getattr(hook, 'initial_flag', False))
    if unit == 'epoch':
        return Point('epoch', runner.epoch + (not before_training),
                     runner.iter)
    done = runner.iter + (not before_training)
    return Point('iter', done, done)


class _Recording(collections.OrderedDict):
    """``log_buffer.output`` while an evaluation runs: remembers what is
    written, even if the buffer is cleared meanwhile. The entries it starts
    with (a training record no logger has taken yet, anything a hook left
    there) are kept, and are not taken for what the evaluation wrote."""

    def __init__(self, entries=()):
        self.written = {}
        super().__init__(entries)
        self.written.clear()

    def __setitem__(self, key, value):
        self.written[key] = value
        super().__setitem__(key, value)


def _metrics(written, hook, key_score):
    metrics = {str(k): to_plain(v) for k, v in written.items()
               if k not in NOT_METRICS}
    key = getattr(hook, 'key_indicator', None)
    if key_score is not None and isinstance(key, str) and key != 'auto' \
            and key not in metrics:
        metrics[key] = to_plain(key_score)  # an evaluate() that only returns
    return metrics


def _from_rank0(outcome, hook):
    """A distributed hook evaluates on rank 0 only: hand its outcome to
    every rank, so that all of them take the same decisions."""
    if not isinstance(hook, DistEvalHook) or get_dist_info()[1] == 1:
        return outcome
    holder = [outcome]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class _HearKeyScore:
    """While an evaluation runs, ``hook.evaluate`` (whatever it is then: the
    class's method, or what a subclass or a test put on the instance) is
    heard through a wrapper on the instance; afterwards the instance holds
    what it held before, so nothing outside an evaluation sees the
    wrapper."""

    def __init__(self, hook):
        self.hook = hook
        self.heard = {}

    def __enter__(self):
        hook, heard = self.hook, self.heard
        self.own = hook.__dict__.get('evaluate', _MISSING)
        evaluate = hook.evaluate

        def heard_evaluate(*args, **kwargs):
            heard['key_score'] = score = evaluate(*args, **kwargs)
            return score
        self.wrapper = hook.evaluate = heard_evaluate
        return heard

    def __exit__(self, *exc):
        if self.hook.__dict__.get('evaluate') is self.wrapper:
            if self.own is _MISSING:
                del self.hook.evaluate
            else:
                self.hook.evaluate = self.own


#: hook_msgs entries an mmcv-style hook sets when it keeps a new best.
_OWN_BEST = (state.BEST_SCORE, state.BEST_CKPT)


def _date_own_best(runner, point, before):
    """An mmcv-style hook that keeps its own best (mmcv's, mmdet's, mmseg's
    ``EvalHook`` with ``save_best``) sets ``best_score`` / ``best_ckpt`` in
    its ``_do_evaluate``, but not when: the evaluation that changed them
    adds ``best_unit`` / ``best_step``, so that hook_msgs' best always says
    its step. (The Davar hooks decide after the evaluation, with the
    step.)"""
    msgs = state.hook_msgs(runner)
    if tuple(msgs.get(k) for k in _OWN_BEST) != before:
        msgs.update({state.BEST_UNIT: point.unit, state.BEST_STEP: point.step})


def observe(runner, hook):
    """Wrap ``hook``'s ``_do_evaluate`` on this instance (once) so that each
    evaluation is published."""
    if getattr(hook, _TAPPED, False):
        return
    do_evaluate = hook._do_evaluate

    def observed_do_evaluate(runner):
        point = evaluation_point(hook, runner)
        state.notify(runner, 'before_evaluation', point)
        buffer = runner.log_buffer
        recording = buffer.output = _Recording(buffer.output)
        best = tuple(state.hook_msgs(runner).get(k) for k in _OWN_BEST)
        try:
            with _HearKeyScore(hook) as heard:
                do_evaluate(runner)
        finally:
            if buffer.output is recording:
                buffer.output = collections.OrderedDict(recording)
        _date_own_best(runner, point, best)
        # An evaluation happened if it wrote results or called evaluate (a
        # _do_evaluate may decide to skip, as mmdet's does).
        happened = bool(recording.written) or 'key_score' in heard
        happened, metrics = _from_rank0(
            (happened, _metrics(recording.written, hook,
                                heard.get('key_score'))), hook)
        if happened:
            publish_evaluation(runner, EvalRecord(
                point.unit, point.step, point.iters_done, metrics, hook),
                source=hook)

    hook._do_evaluate = observed_do_evaluate
    setattr(hook, _TAPPED, True)


def observe_evaluations(runner):
    """Observe every eval hook of ``runner``; idempotent. Called in
    ``before_run`` by the eval hooks and by every listener."""
    for hook in runner.hooks:
        if is_eval_hook(hook):
            observe(runner, hook)

