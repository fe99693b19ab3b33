"""ReduceonplateauLrUpdaterHook: lower the learning rate when an evaluation
metric stops improving (``lr_config = dict(policy='Reduceonplateau', ...)``).
"""
import math
from numbers import Real

from mmcv.runner import HOOKS
from mmcv.runner.hooks import LrUpdaterHook

from ..core import state
from ..core.metrics import infer_rule
from ..core.observe import observe_evaluations

MODES = ('min', 'max')
THRESHOLD_MODES = ('rel', 'abs')
#: Key of the hook's state in ``runner.meta['hook_msgs']``.
STATE_KEY = state.LR_PLATEAU


def _number(value, arg, low, high=math.inf, low_open=False,
            high_open=False, integer=False):
    kind = 'an int' if integer else 'a number'
    ok = not isinstance(value, bool) and isinstance(
        value, int if integer else Real)
    if ok:
        ok = (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
    if not ok:
        bounds = ('(' if low_open else '[') + f'{low}, {high}' + \
            (')' if high_open else ']')
        raise ValueError(f'{arg} must be {kind} in {bounds}, got {value!r}')
    return value


@HOOKS.register_module()
@HOOKS.register_module(name='ReduceOnPlateauLrUpdaterHook')
class ReduceonplateauLrUpdaterHook(LrUpdaterHook):
    """Multiply the learning rate by ``factor`` when ``metric`` has not
    improved for more than ``patience`` evaluations, as torch's
    ReduceLROnPlateau, driven by the evaluations of DavarEvalHook
    (``after_evaluation``).

    The new rate applies at once (after warm-up). The state (best score, bad
    evaluations, cooldown, current scale of the base LR) lives in
    ``runner.meta['hook_msgs']['lr_plateau']``, so checkpoints carry it and
    a resume continues it.

    Args:
        metric (str): evaluation metric to watch. Default: 'accuracy'.
        mode (str | None): 'max' (greater is better) or 'min'; None infers
            it from ``metric``. Default: None.
        factor (float): multiplier of the LR at each reduction, in (0, 1).
            Default: 0.1.
        patience (int): evaluations without improvement tolerated; the LR
            drops at the next one. Default: 10.
        threshold (float): least improvement that counts. Default: 1e-4.
        threshold_mode (str): 'rel': an improvement must exceed
            ``|best| * threshold`` (torch's 'rel' mode for a positive best);
            'abs': exceed ``threshold``. Default: 'rel'.
        cooldown (int): evaluations after a reduction during which bad
            evaluations are not counted. Default: 0.
        min_lr (float): floor of every LR (a base LR already below it is
            left as is). Default: 0.
        **kwargs: LrUpdaterHook arguments (``by_epoch``, ``warmup``,
            ``warmup_iters``, ``warmup_ratio``, ``warmup_by_epoch``).
    """

    def __init__(self,
                 metric='accuracy',
                 mode=None,
                 factor=0.1,
                 patience=10,
                 threshold=1e-4,
                 threshold_mode='rel',
                 cooldown=0,
                 min_lr=0.,
                 **kwargs):
        if not isinstance(metric, str) or not metric:
            raise ValueError(f'metric must name an evaluation metric, '
                             f'got {metric!r}')
        if mode is None:
            try:
                rule = infer_rule(metric)
            except ValueError:
                raise ValueError(
                    f'cannot infer whether a greater or a smaller {metric!r} '
                    f'is better; set mode to one of {MODES}') from None
            mode = 'max' if rule == 'greater' else 'min'
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f'threshold_mode must be one of '
                             f'{THRESHOLD_MODES}, got {threshold_mode!r}')
        self.factor = float(_number(factor, 'factor', 0, 1, low_open=True,
                                    high_open=True))
        self.patience = _number(patience, 'patience', 0, integer=True)
        self.threshold = float(_number(threshold, 'threshold', 0))
        self.cooldown = _number(cooldown, 'cooldown', 0, integer=True)
        self.min_lr = float(_number(min_lr, 'min_lr', 0))
        self.metric = metric
        self.mode = mode
        self.threshold_mode = threshold_mode
        super().__init__(**kwargs)
        self.state = self.initial_state()

    def initial_state(self):
        return dict(metric=self.metric, mode=self.mode,
                    best=-math.inf if self.mode == 'max' else math.inf,
                    num_bad=0, cooldown_left=0, scale=1.0, reductions=0)

    # ------------------------------------------------------------- set-up
    def before_run(self, runner):
        super().before_run(runner)
        observe_evaluations(runner)
        saved = state.hook_msgs(runner).get(STATE_KEY)
        if saved and (saved.get('metric'), saved.get('mode')) == (
                self.metric, self.mode):
            self.state = dict(self.initial_state(), **saved)
            if self.state['reductions']:
                runner.logger.info(
                    f'ReduceonplateauLrUpdaterHook: resumed with the LR '
                    f'scaled by {self.state["scale"]:g} '
                    f'({self.state["reductions"]} reductions)')
        else:
            if saved:
                runner.logger.warning(
                    f'ReduceonplateauLrUpdaterHook: the saved plateau state '
                    f'watches {saved.get("metric")!r} ({saved.get("mode")}), '
                    f'not {self.metric!r} ({self.mode}); starting afresh')
            self.state = self.initial_state()
        self._store(runner)
        if not state.evaluators(runner):
            runner.logger.warning(
                'ReduceonplateauLrUpdaterHook: no DavarEvalHook is '
                'registered, so no evaluation reaches this hook and the LR '
                'never changes; enable evaluation (--validate)')

    def get_lr(self, runner, base_lr):
        return max(base_lr * self.state['scale'], min(self.min_lr, base_lr))

    # --------------------------------------------------------------- WHEN
    def after_evaluation(self, runner, record):
        """Called by the eval hooks with each fresh evaluation."""
        score = record.score(self.metric)
        state = self.state
        if self._improves(score, state['best']):
            state['best'] = score
            state['num_bad'] = 0
        else:
            state['num_bad'] += 1
        if state['cooldown_left'] > 0:
            state['cooldown_left'] -= 1
            state['num_bad'] = 0
        if state['num_bad'] > self.patience:
            self._reduce(runner, record)
            state['cooldown_left'] = self.cooldown
            state['num_bad'] = 0
        self._store(runner)

    def _improves(self, score, best):
        """Whether ``score`` beats ``best`` by more than the threshold; a
        non-finite score never does."""
        if not math.isfinite(score):
            return False
        if self.threshold_mode == 'rel':
            margin = abs(best) * self.threshold if math.isfinite(best) else 0
        else:
            margin = self.threshold
        if self.mode == 'max':
            return score > best + margin
        return score < best - margin

    # --------------------------------------------------------------- WHAT
    def _reduce(self, runner, record):
        if self._at_floor():
            return
        self.state['scale'] *= self.factor
        self.state['reductions'] += 1
        self.regular_lr = self.get_regular_lr(runner)
        in_warmup = self.warmup is not None and (
            self.warmup_iters is None or runner.iter < self.warmup_iters)
        if not in_warmup:
            self._set_lr(runner, self.regular_lr)
        runner.logger.info(
            f'{self.metric} has not improved on {self.state["best"]} for '
            f'{self.state["num_bad"]} evaluations (up to {record.unit} '
            f'{record.step}): learning rate reduced to '
            f'{self._flat(self.regular_lr)}')

    def _at_floor(self):
        """Whether every base LR is already at ``min_lr`` (or below it)."""
        return all(base * self.state['scale'] <= self.min_lr
                   for base in self._flat(self.base_lr))

    @staticmethod
    def _flat(lrs):
        if isinstance(lrs, dict):
            return [lr for group in lrs.values() for lr in group]
        return list(lrs)

    def _store(self, runner):
        state.hook_msgs(runner)[STATE_KEY] = dict(self.state)
