"""DavarEvalHook / DavarDistEvalHook: evaluation by epoch and by iteration."""
import functools
import inspect
import warnings

import torch.distributed as dist
from mmcv.runner import HOOKS, DistEvalHook, EvalHook, get_dist_info
from mmcv.runner.hooks import IterTimerHook, LoggerHook
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from ..constants import MODEL_TYPES
from ..core import state
from ..core.best import BestKeeper, Ledger
from ..core.inference import multi_gpu_test, single_gpu_test
from ..core.metrics import (GREATER_KEYS, LESS_KEYS, RULE, BestTracker,
                            check_rule, infer_rule, metric_value)
from ..core.observe import evaluation_point, observe_evaluations
from ..core.progress import is_iter_based
from ..serialization import to_plain
from ..utils.checks import (BOOL, CALLABLE, DICT, INT, NAMES,
                            NONNEGATIVE_INT, PATH, POSITIVE_INT,
                            AssertedTypeError, Kind, argument_names,
                            check_positive_int, checked, fraction, near_miss,
                            one_of, one_or_list, unknown_names)

EVAL_MODES = ('general', 'lightweight')
#: mmcv 1.7.1's warning, word for word, for an evaluation that returns
#: nothing while ``save_best`` is set.
EMPTY_RESULT_WARNING = (
    'Since `eval_res` is an empty dict, the behavior to save the best '
    'checkpoint will be skipped in this evaluation.')


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _keys(names):
    """``greater_keys`` / ``less_keys`` as mmcv takes them: None, or a list
    (mmcv 1.7.1 fails on a single ``less_keys`` name)."""
    return None if names is None else _as_list(names)


#: A pytorch DataLoader, checked first, as mmcv does.
LOADER = Kind('a pytorch DataLoader', lambda v: isinstance(v, DataLoader))

#: What ``save_best`` accepts: a TypeError for another type that is also
#: the AssertionError mmcv raises.
SAVE_BEST = one_or_list(
    Kind('a metric name', lambda v: isinstance(v, str),
         lambda v: None if v else 'must not be an empty name',
         type_error=AssertedTypeError),
    'a metric name, a list of them, "auto"').or_none()

#: What each argument accepts (:mod:`davarocr_mmcv.utils.checks`), checked
#: when the hook is built; ``metric`` is ``dataset.evaluate``'s (mmdet's,
#: mmcls's, mmocr's and DavarOCR's datasets take a name or a list).
#: Ranges that depend on another argument are checked in __init__. Where
#: mmcv 1.7.1 asserts a type (``by_epoch``, ``save_best``, the keys), the
#: TypeError is also an AssertionError.
ARGUMENTS = dict(
    dataloader=LOADER, model_type=one_of(MODEL_TYPES),
    start=NONNEGATIVE_INT.or_none(), start_iter=fraction().or_none(),
    interval=POSITIVE_INT,
    iter_interval=INT, eval_mode=one_of(EVAL_MODES),
    by_epoch=BOOL.raising(AssertedTypeError), by_iter=BOOL,
    save_best=SAVE_BEST,
    rule=one_or_list(RULE, f'{RULE.text}, or a list of them').or_none(),
    eval_before_train=BOOL, test_fn=CALLABLE.or_none(),
    greater_keys=NAMES.raising(AssertedTypeError).or_none(),
    less_keys=NAMES.raising(AssertedTypeError).or_none(),
    out_dir=PATH.or_none(), file_client_args=DICT.or_none(),
    metric=NAMES.or_none())
#: DavarDistEvalHook's own arguments, as mmcv's DistEvalHook takes them
#: (DavarEvalHook's __init__ checks the others).
DIST_ARGUMENTS = dict(
    dataloader=LOADER, broadcast_bn_buffer=BOOL, tmpdir=PATH.or_none(),
    gpu_collect=BOOL, test_fn=ARGUMENTS['test_fn'],
    model_type=ARGUMENTS['model_type'])


def check_evaluate_keys(hook_cls, evaluate, eval_kwargs, dataset_name):
    """Check the settings ``eval_kwargs`` that an eval hook of class
    ``hook_cls`` passes to ``evaluate`` (a dataset's method, or the
    function of its class).

    Returns:
        list[str]: the settings that only ``evaluate``'s ``**kwargs`` takes,
        which nothing checks.

    Raises:
        TypeError: a setting ``evaluate`` does not take (where it takes no
            ``**kwargs``), naming the closest accepted name; a setting that
            is a slip of an argument of the eval hooks (``save_bets``: an
            edit distance of 1, or 2 for names of 6 characters or more), or
            an argument of the distributed hook only, whatever
            ``evaluate`` takes.
    """
    try:
        params = inspect.signature(evaluate).parameters
    except (TypeError, ValueError):
        return []
    named = [name for name, p in params.items()
             if name != 'self' and p.kind not in (p.VAR_KEYWORD,
                                                  p.VAR_POSITIONAL)]
    owner = hook_cls.__name__
    own_args = argument_names(hook_cls)
    hook_args = sorted(own_args | argument_names(DavarDistEvalHook))
    for key in eval_kwargs:
        if key in hook_args and key not in named:
            raise TypeError(
                f'{owner}: {key!r} is an argument of the distributed eval '
                f'hook (DavarDistEvalHook), not of {owner}; it would go to '
                f'{dataset_name}.evaluate')
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = unknown_names(eval_kwargs, named + hook_args, accepted=named)
        if bad:
            raise TypeError(
                f'{owner}: {bad} passed to {dataset_name}.evaluate, which '
                f'accepts {named}')
        return []
    unchecked = [key for key in eval_kwargs if key not in named]
    for key in unchecked:
        slip = near_miss(key, hook_args)
        if slip is not None:
            raise TypeError(
                f'{owner}: {key!r} (did you mean {slip!r}?) is not an '
                f'argument of the hook; it would go to {dataset_name}.'
                'evaluate through its **kwargs, unchecked. The hook takes '
                f'{sorted(own_args - {"dataloader"})}')
    return unchecked


@HOOKS.register_module()
class DavarEvalHook(EvalHook, state.Evaluator):
    """Evaluate by epoch and/or by iteration, as mmcv's EvalHook does, and
    (in general mode) keep ``best_{metric}_{epoch|iter}_{N}.pth``.

    mmcv's extension points hold: each evaluation goes through
    ``_should_evaluate(runner)``, ``_do_evaluate(runner)`` and
    ``evaluate(runner, results)`` (which returns the key score), and, as in
    mmcv, the weights training starts from are evaluated before training when
    ``start`` is at or below the step reached (``eval_before_train``).
    Metrics go to ``runner.log_buffer`` (text and json logs, a ``val`` record
    for evaluations by iteration and before training), to
    ``hook_msgs['eval_history']``, and to every hook with an
    ``after_evaluation(runner, record)`` method (see
    :mod:`davarocr_mmcv.core.observe`); in general mode the run's
    :class:`~davarocr_mmcv.core.best.BestKeeper` keeps the best of them.
    An evaluation that returns nothing while ``save_best`` is set raises
    mmcv's UserWarning
    (:data:`EMPTY_RESULT_WARNING`) and decides no best.

    Args:
        dataloader (DataLoader): validation loader.
        model_type (str): 'DETECTOR', 'RECOGNIZOR' or 'SPOTTER'. Default:
            'DETECTOR'.
        start (int | None): first epoch to evaluate (mmcv's meaning).
        start_iter (float | None): fraction of max_iters from which to
            evaluate by iteration.
        interval (int): epochs between evaluations. Default: 1.
        iter_interval (int): iterations between evaluations when ``by_iter``.
        by_epoch, by_iter (bool): evaluate by epoch / by iteration; with both
            False, ``interval`` counts iterations, as in mmcv.
        eval_mode (str): 'general' keeps ``best_*.pth`` files here;
            'lightweight' leaves the best to
            ``DavarCheckpointHook(save_mode='lightweight')``.
        save_best (str | list[str] | None): metric(s) ranking checkpoints;
            'auto' takes the first metric returned.
        rule (str | list[str] | None): 'greater'/'less' ('lower') per metric,
            or None to infer it.
        eval_before_train (bool): mmcv's evaluation of the starting weights
            when ``start`` is at or below the resumed step; False is
            DavarOCR's behaviour. Default: True.
        greater_keys, less_keys (list[str] | None): names of metrics that
            are better greater / smaller, for rule inference; given, they
            replace the defaults (:data:`~davarocr_mmcv.core.GREATER_KEYS`,
            :data:`~davarocr_mmcv.core.LESS_KEYS`), as in mmcv.
        test_fn, out_dir, file_client_args: as in mmcv's EvalHook. The
            default ``test_fn`` is :func:`~davarocr_mmcv.single_gpu_test`
            (``multi_gpu_test`` for the distributed hook).
        **eval_kwargs: passed to ``dataset.evaluate`` (e.g. ``metric``);
            checked against its signature in ``before_run``
            (:func:`check_evaluate_keys`).

    Every argument is checked when the hook is built (:data:`ARGUMENTS`):
    a TypeError for a value of the wrong type ('yes' is not a bool), a
    ValueError for a value out of range; each names the hook, the argument,
    the value and what is accepted. Where mmcv 1.7.1 raises another type,
    the error is that type too: ``save_best=True`` is also an
    AssertionError, an unknown ``rule`` also a KeyError.
    """

    #: mmcv's class attributes, with DavarOCR's metrics added; explicit
    #: ``greater_keys`` / ``less_keys`` replace them, as in mmcv.
    _default_greater_keys = list(GREATER_KEYS)
    _default_less_keys = list(LESS_KEYS)

    @checked(ARGUMENTS)
    def __init__(self,
                 dataloader,
                 model_type='DETECTOR',
                 start=None,
                 start_iter=None,
                 interval=1,
                 iter_interval=-1,
                 eval_mode='general',
                 by_epoch=True,
                 by_iter=False,
                 save_best=None,
                 rule=None,
                 eval_before_train=True,
                 test_fn=None,
                 greater_keys=None,
                 less_keys=None,
                 out_dir=None,
                 file_client_args=None,
                 **eval_kwargs):
        owner = type(self).__name__
        keys = _as_list(save_best)
        if not by_epoch and not by_iter:
            # mmcv's by_epoch=False: ``interval`` and ``start`` are iterations
            by_iter, iter_interval = True, interval
        if by_iter:
            check_positive_int(iter_interval, f'{owner}: iter_interval',
                               'when by_iter=True')
        rules = [check_rule(r) for r in _as_list(rule)]
        if rules and len(rules) not in (1, len(keys)):
            raise ValueError(f'{owner}: rule must be one value or one per '
                             f'save_best metric ({keys}), got {rule!r}')
        if test_fn is None:
            test_fn = functools.partial(self.default_test_fn,
                                        model_type=model_type)
        super().__init__(dataloader, start=start, interval=interval,
                         by_epoch=bool(by_epoch), save_best=None, rule=None,
                         test_fn=test_fn,
                         greater_keys=_keys(greater_keys),
                         less_keys=_keys(less_keys), out_dir=out_dir,
                         file_client_args=file_client_args, **eval_kwargs)
        self.model_type = model_type
        self.by_iter = by_iter
        self.iter_interval = iter_interval
        self.start_iter = start_iter
        self.iter_start = None if start_iter is not None or by_epoch \
            else start
        self.eval_mode = eval_mode
        self.eval_before_train = bool(eval_before_train)
        self.save_best = save_best
        self.unit = 'epoch' if by_epoch else 'iter'
        rules = rules * len(keys) if len(rules) == 1 else \
            (rules or [None] * len(keys))
        self._rules = list(zip(keys, rules))
        self.trackers = []
        if 'auto' not in keys:
            self._init_trackers(keys)

    def _init_trackers(self, keys):
        rules = dict(self._rules)
        if 'auto' in rules:  # the rule given for 'auto' is the first key's
            rules[keys[0]] = rules.pop('auto')
        several = len(keys) > 1
        try:
            self.trackers = [
                BestTracker(key, infer_rule(key, rules.get(key),
                                            self.greater_keys,
                                            self.less_keys, defaults=False),
                            suffix=f'_{key}' if several else '')
                for key in keys
            ]
        except ValueError as exc:  # its type kept (mmcv's KeyError too)
            raise type(exc)(f'{type(self).__name__}: {exc}') from None
        if self.trackers:  # mmcv's attributes, for code that reads them
            self.key_indicator = self.trackers[0].metric
            self.rule = self.trackers[0].rule
            self.compare_func = self.rule_map[self.rule]

    @staticmethod
    def default_test_fn(model, data_loader, model_type='DETECTOR'):
        return single_gpu_test(model, data_loader, model_type=model_type)

    # ------------------------------------------------------------- set-up
    def before_run(self, runner):
        super().before_run(runner)
        state.hook_msgs(runner)
        self._check_eval_kwargs(runner)
        observe_evaluations(runner)
        if self.by_epoch and is_iter_based(runner):
            runner.logger.warning(
                f'{type(self).__name__}: by_epoch=True has no effect in an '
                'IterBasedRunner; use by_iter/iter_interval')
        owner = state.best_owner(runner)
        self.keeps_best = self.eval_mode == 'general' and owner is None
        keeper = BestKeeper.of(runner)
        keeper.drop(self)
        if self.keeps_best:
            keeper.keep(Ledger(self, self._trackers_for,
                               'best_{metric}_{unit}_{step}.pth',
                               self.out_dir, self.file_client,
                               on_written=self._best_written))
        elif self.eval_mode == 'general' and self.save_best:
            runner.logger.warning(
                'DavarEvalHook: DavarCheckpointHook(save_mode="lightweight") '
                'keeps the best checkpoint; no best_*.pth is written here')
        elif self.eval_mode == 'lightweight' and self.save_best and \
                owner is None:
            runner.logger.warning(
                'DavarEvalHook: eval_mode="lightweight" leaves the best '
                'checkpoint to DavarCheckpointHook(save_mode="lightweight"), '
                'which is not registered: no best checkpoint is kept')

    def _check_eval_kwargs(self, runner):
        """The settings for ``dataset.evaluate`` are checked before the
        first epoch (:func:`check_evaluate_keys`); one warning per setting
        that only its ``**kwargs`` takes."""
        dataset = self.dataloader.dataset
        unchecked = check_evaluate_keys(
            type(self), getattr(dataset, 'evaluate', None), self.eval_kwargs,
            type(dataset).__name__)
        for key in unchecked:
            runner.logger.warning(
                f'{type(self).__name__}: {key!r} goes to '
                f'{type(dataset).__name__}.evaluate through its **kwargs, '
                'which nothing checks: a misspelt name there is not caught')

    # --------------------------------------------------------------- WHEN
    def evaluates_at(self, runner, unit):
        """Whether this hook evaluates in ``after_train_{unit}`` now (a
        query: asked by DavarCheckpointHook; nothing changes)."""
        saved = self.unit
        try:
            return self._due_now(runner, unit)
        finally:
            self.unit = saved

    def _due_now(self, runner, unit):
        """Take ``unit`` as the schedule evaluated, and say whether an
        evaluation is due by mmcv's ``_should_evaluate``."""
        self.unit = unit
        scheduled = self.by_epoch if unit == 'epoch' else self.by_iter
        return scheduled and bool(self._should_evaluate(runner))

    def _should_evaluate(self, runner):
        """mmcv's predicate, for the schedule of ``self.unit``."""
        if self.unit == 'epoch':
            return self._due(runner.epoch + 1, self.start, self.interval)
        return self._due(runner.iter + 1, self._iter_start(runner),
                         self.iter_interval)

    def _iter_start(self, runner):
        if self.start_iter is not None:
            return int(self.start_iter * runner.max_iters)
        return self.iter_start

    @staticmethod
    def _due(step, start, interval):
        if start is None:
            return step % interval == 0
        return step >= start and (step - start) % interval == 0

    def before_train_epoch(self, runner):
        self._before_train(runner, 'epoch')

    def before_train_iter(self, runner):
        self._before_train(runner, 'iter')

    def _before_train(self, runner, unit):
        """mmcv's evaluation of the starting weights, once, when the start
        of the ``unit`` schedule is at or below the step reached."""
        on = self.by_epoch if unit == 'epoch' else self.by_iter
        if not (on and self.initial_flag):
            return
        start = self.start if unit == 'epoch' else self._iter_start(runner)
        reached = runner.epoch if unit == 'epoch' else runner.iter
        if self.eval_before_train and start is not None and reached >= start:
            self._evaluate_if_due(runner, unit)
        self.initial_flag = False

    def after_train_epoch(self, runner):
        self._evaluate_if_due(runner, 'epoch')

    def after_train_iter(self, runner):
        self._evaluate_if_due(runner, 'iter')

    def _evaluate_if_due(self, runner, unit):
        if not self._due_now(runner, unit):
            return
        if not self.initial_flag and self._train_record_first(runner, unit):
            for logger_hook in self._later(runner, LoggerHook):
                logger_hook.after_train_iter(runner)
            runner.log_buffer.clear()
        self._do_evaluate(runner)

    # ----------------------------------------------------------- evaluate
    def _run_test(self, runner):
        return self.test_fn(runner.model, self.dataloader)

    def _evaluates_here(self, runner):
        return True

    def _do_evaluate(self, runner):
        """Test the model, then (where the results are) ``evaluate``."""
        results = self._run_test(runner)
        runner.model.train()
        if not self._evaluates_here(runner):
            return
        runner.log_buffer.output['eval_iter_num'] = len(self.dataloader)
        self.evaluate(runner, results)

    def evaluate(self, runner, results):
        """Evaluate ``results`` on the dataset, put the metrics in the log
        buffer, and return the score of the first ``save_best`` metric (None
        without ``save_best`` or when the evaluation returned nothing).

        Raises:
            KeyError: a ``save_best`` metric is missing while others are
                present, listing them.
        """
        eval_res = self.dataloader.dataset.evaluate(
            results, logger=runner.logger, **self.eval_kwargs)
        metrics = {str(k): to_plain(v) for k, v in dict(eval_res).items()}
        for name, value in metrics.items():
            runner.log_buffer.output[name] = value
        runner.log_buffer.ready = True
        point = evaluation_point(self, runner)
        runner.logger.info(
            f'Evaluation at {point.unit} {point.step}: ' +
            ', '.join(f'{k}: {v}' for k, v in metrics.items()))
        self._log_now(runner, point.unit)
        if not self._rules:
            return None
        if not metrics:  # mmdet's {} when nothing was detected
            runner.logger.warning(
                f'{type(self).__name__}: the evaluation at {point.unit} '
                f'{point.step} returned no metrics. {EMPTY_RESULT_WARNING}')
            warnings.warn(EMPTY_RESULT_WARNING, UserWarning)
            return None
        self._resolve_auto(metrics)
        scores = [metric_value(metrics, t.metric) for t in self.trackers]
        return scores[0]

    def _resolve_auto(self, metrics):
        if self._rules[0][0] == 'auto' and not self.trackers:
            self._init_trackers([next(iter(metrics))])

    def _later(self, runner, kind):
        """Hooks of type ``kind`` that run after this one."""
        hooks = runner.hooks
        position = hooks.index(self) if self in hooks else len(hooks)
        return [h for h in hooks[position + 1:] if isinstance(h, kind)]

    def _train_record_first(self, runner, unit):
        """As mmcv, by iteration the loggers write the iteration's training
        record before the evaluation, so that the metrics make a record of
        their own (mode 'val'); not before the timer has run, as that record
        would lack its times."""
        return unit == 'iter' and not self._later(runner, IterTimerHook)

    def _log_now(self, runner, unit):
        """Logger hooks that will not write the metrics as a record of their
        own at this point write it now: those that already ran; all of them
        before training (the evaluation of the starting weights: loggers
        clear the buffer before the first epoch) and, by iteration, when the
        training record could not be written first."""
        every = self.initial_flag or (
            unit == 'iter' and not self._train_record_first(runner, unit))
        later = [] if every else self._later(runner, LoggerHook)
        loggers = [h for h in runner.hooks
                   if isinstance(h, LoggerHook) and h not in later]
        if loggers:
            for logger_hook in loggers:
                logger_hook.log(runner)
            runner.log_buffer.clear_output()

    # --------------------------------------------------- WHAT (general mode)
    def _trackers_for(self, runner, record):
        """The trackers deciding on ``record`` for the keeper: this hook's
        own evaluations with metrics (on every rank, with rank 0's)."""
        if record.source is not self or not self._rules or \
                not record.metrics:
            return []
        self._resolve_auto(record.metrics)
        return self.trackers

    def _best_written(self, path):
        self.best_ckpt_path = path


@HOOKS.register_module()
class DavarDistEvalHook(DavarEvalHook, DistEvalHook):
    """Distributed DavarEvalHook: every rank runs inference on its share,
    the results are gathered on rank 0, which computes the metrics and
    writes; the metrics reach every rank (:mod:`davarocr_mmcv.core.observe`)
    so that all of them take the same decisions. Works with gloo on CPU and
    NCCL.

    Args:
        broadcast_bn_buffer (bool): broadcast BatchNorm buffers of rank 0
            before evaluating. Default: True.
        tmpdir (str | None): None gathers the results through the process
            group (no shared folder needed); a folder exchanges them through
            files there, as mmcv does, in a unique sub-folder per call.
            Default: None.
        gpu_collect (bool): mmcv's argument; the process group is used
            whenever ``tmpdir`` is None. Default: False.
        Other arguments: as DavarEvalHook.

    These three are checked when the hook is built, as DavarEvalHook's
    arguments are (:data:`DIST_ARGUMENTS`).
    """

    @checked(DIST_ARGUMENTS)
    def __init__(self, dataloader, broadcast_bn_buffer=True, tmpdir=None,
                 gpu_collect=False, test_fn=None, model_type='DETECTOR',
                 **kwargs):
        if test_fn is None:
            test_fn = functools.partial(multi_gpu_test,
                                        model_type=model_type)
        DavarEvalHook.__init__(self, dataloader, model_type=model_type,
                               test_fn=test_fn, **kwargs)
        self.broadcast_bn_buffer = broadcast_bn_buffer
        self.tmpdir = tmpdir
        self.gpu_collect = gpu_collect

    def _run_test(self, runner):
        if self.broadcast_bn_buffer and get_dist_info()[1] > 1:
            for module in runner.model.modules():
                if isinstance(module, _BatchNorm) and \
                        module.track_running_stats:
                    dist.broadcast(module.running_var, 0)
                    dist.broadcast(module.running_mean, 0)
        return self.test_fn(runner.model, self.dataloader, tmpdir=self.tmpdir,
                            gpu_collect=self.gpu_collect)

    def _evaluates_here(self, runner):
        return get_dist_info()[0] == 0

