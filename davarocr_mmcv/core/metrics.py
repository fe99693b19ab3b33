"""Metric rules and the record of the best score: the one place that decides
what counts as better (the keeper, :mod:`.best`, acts on it)."""
import math
from numbers import Real
from typing import NamedTuple

from ..serialization import to_plain
from ..utils.checks import KeyedValueError, Kind
from . import state
from .state import hook_msgs, notify  # noqa: F401  (their old home)

RULES = ('greater', 'less')
#: Other spellings of a rule: DavarOCR's README writes "lower".
RULE_ALIASES = {'lower': 'less'}

#: Metric names that are better when greater (matched case-insensitively,
#: exactly first, then as substrings). Covers mmcv's defaults and the metrics
#: of DavarOCR's detectors, recognizers, spotters and layout models.
GREATER_KEYS = (
    'accuracy', 'acc', 'hmean', 'precision', 'recall', 'f1', 'macro_f1',
    'avg_f1', 'mAP', 'bbox_mAP', 'segm_mAP', 'AR@', 'auc', 'top', 'mDice',
    'mIoU', 'mAcc', 'aAcc', 'text_acc', 'line_acc', 'img_level_edge_acc',
    'total_order_acc', 'hard_f1', 'tree_f1', 'teds')
#: Metric names that are better when smaller. NED is DavarOCR's normalized
#: edit distance.
LESS_KEYS = ('NED', 'loss', 'cer', 'wer', 'edit_distance', 'error')


#: What a ``rule`` argument accepts (see :mod:`davarocr_mmcv.utils.checks`):
#: a TypeError for a value that is not a str; for another name a
#: ValueError that is also the KeyError mmcv raises.
RULE = Kind(f"one of {RULES}, or {tuple(RULE_ALIASES)} (DavarOCR's "
            'spelling of less)', lambda v: isinstance(v, str),
            lambda v: None if v in RULES or v in RULE_ALIASES else
            f"must be one of {RULES}, None, or {tuple(RULE_ALIASES)} "
            "(DavarOCR's spelling of less)",
            value_error=KeyedValueError)


def check_rule(rule, arg='rule'):
    """``rule`` as 'greater', 'less' or None ('lower' is 'less').

    Raises:
        TypeError: a rule that is not a str.
        ValueError: for any other name; also a KeyError, as mmcv's
            EvalHook raises.
    """
    if rule is None:
        return None
    RULE.check(None, arg, rule)
    return RULE_ALIASES.get(rule, rule)


def infer_rule(key, rule=None, greater_keys=(), less_keys=(), arg='rule',
               defaults=True):
    """Return 'greater' or 'less' for metric ``key``.

    Precedence (case-insensitive): an explicit ``rule`` (see
    :func:`check_rule`); ``key`` equal to a greater key, then to a less key;
    a greater key inside ``key``, then a less key inside it.
    ``greater_keys``/``less_keys`` extend the built-in lists
    (:data:`GREATER_KEYS`, :data:`LESS_KEYS`), or replace them with
    ``defaults=False`` (mmcv's EvalHook, whose lists start as the defaults).

    Raises:
        ValueError: for an unknown ``rule`` (:func:`check_rule`), and for a
            key whose rule cannot be inferred.
    """
    rule = check_rule(rule, arg)
    if rule is not None:
        return rule
    low = key.lower()
    builtin = (GREATER_KEYS, LESS_KEYS) if defaults else ((), ())
    greater = [k.lower() for k in (*greater_keys, *builtin[0])]
    less = [k.lower() for k in (*less_keys, *builtin[1])]
    for table, matches in ((greater, low.__eq__), (less, low.__eq__),
                           (greater, low.__contains__),
                           (less, low.__contains__)):
        if any(matches(k) for k in table):
            return 'greater' if table is greater else 'less'
    raise ValueError(
        f'cannot infer whether a greater or a smaller {key!r} is better; '
        f'set {arg}= to one of {RULES}, or name it in greater_keys/less_keys')


def initial_best(rule):
    return -math.inf if rule == 'greater' else math.inf


def check_score(metric, value):
    """The metric as a float; NaN and inf pass through (they are never best).

    Raises:
        TypeError: if the value is not a real number.
    """
    value = to_plain(value)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'metric {metric!r} must be a real number to rank '
                        f'checkpoints, got {value!r} ({type(value).__name__})')
    return float(value)


def is_better(score, best, rule):
    """Whether ``score`` beats ``best``. A non-finite score never does; any
    finite score beats a missing or NaN best. 0.0 is an ordinary score."""
    if not math.isfinite(score):
        return False
    if best is None or math.isnan(best):
        return True
    return score > best if rule == 'greater' else score < best


class EvalRecord(NamedTuple):
    """One evaluation of the current weights (see :mod:`.observe`);
    ``source`` is the eval hook that made it (not stored)."""
    unit: str
    step: int
    iters_done: int
    metrics: dict
    source: object = None

    def as_dict(self):
        return dict(unit=self.unit, step=self.step,
                    iters_done=self.iters_done, metrics=self.metrics)

    def score(self, metric):
        """``metrics[metric]`` as a float.

        Raises:
            KeyError: listing the metrics this evaluation produced.
        """
        return check_score(metric, metric_value(self.metrics, metric))


def metric_value(metrics, metric):
    """``metrics[metric]`` as the evaluation returned it.

    Raises:
        KeyError: listing the metrics the evaluation produced.
    """
    if metric not in metrics:
        raise KeyError(
            f'metric {metric!r} is not among the evaluation results; '
            f'available metrics: {sorted(metrics)}')
    return metrics[metric]


class BestTracker:
    """The best score of one metric, kept in ``runner.meta['hook_msgs']`` so
    that a checkpoint carries it and a resume restores it.

    Keys: :data:`~.state.BEST_SCORE`, ``BEST_CKPT``, ``BEST_METRIC``,
    ``BEST_UNIT``, ``BEST_STEP``, each with ``suffix`` appended (mmengine's
    ``_{metric}`` when several metrics are tracked); all plain Python
    values. Whether a record is kept, and where, is the
    :class:`~.best.BestKeeper`'s.
    """

    def __init__(self, metric, rule, init_metric=None, suffix=''):
        self.metric = metric
        self.rule = rule
        self.suffix = suffix
        self.init_metric = (initial_best(rule) if init_metric is None
                            else float(init_metric))

    def best(self, runner):
        msgs = state.hook_msgs(runner)
        if msgs.get(state.best_key(state.BEST_METRIC, self.suffix),
                    self.metric) != self.metric:
            return self.init_metric  # a best of another metric does not count
        return msgs.get(state.best_key(state.BEST_SCORE, self.suffix),
                        self.init_metric)

    def candidate(self, runner, record, ckpt_path):
        """The ``hook_msgs`` entries a new best would set, or None if
        ``record`` does not beat the best so far.

        An evaluation that returned no metrics at all (mmdet's ``{}`` when
        nothing was detected) is warned about and decides nothing.

        Raises:
            KeyError: the metric is missing while others are present (a
                configuration error), listing them.
        """
        if not record.metrics:
            runner.logger.warning(
                f'the evaluation at {record.unit} {record.step} returned no '
                f'metrics; no best decision on {self.metric!r} is made')
            return None
        score = record.score(self.metric)
        if not math.isfinite(score):
            runner.logger.warning(
                f'{self.metric} is {score} at {record.unit} {record.step}; '
                'a non-finite score is never best')
        if not is_better(score, self.best(runner), self.rule):
            return None
        best = {state.BEST_SCORE: score, state.BEST_CKPT: ckpt_path,
                state.BEST_METRIC: self.metric, state.BEST_UNIT: record.unit,
                state.BEST_STEP: record.step}
        return {state.best_key(k, self.suffix): v for k, v in best.items()}
