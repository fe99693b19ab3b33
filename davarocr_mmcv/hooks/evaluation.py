"""DavarEvalHook / DavarDistEvalHook: evaluation by epoch and by iteration."""
import functools
import os.path as osp

import torch.distributed as dist
from mmcv.runner import HOOKS, DistEvalHook, EvalHook, get_dist_info
from mmcv.runner.hooks import LoggerHook
from torch.nn.modules.batchnorm import _BatchNorm

from ..apis.test import MODEL_TYPES, multi_gpu_test, single_gpu_test
from ..core.metrics import (BestTracker, EvalRecord, hook_msgs, infer_rule,
                            notify, publish_evaluation)
from ..core.progress import current_point
from ..core.writer import CheckpointWriter, save_step
from ..serialization import to_plain
from ..utils.checks import check_choice, check_positive_int

EVAL_MODES = ('general', 'lightweight')


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@HOOKS.register_module()
class DavarEvalHook(EvalHook):
    """Evaluate by epoch and/or by iteration, publish the metrics, and (in
    general mode) keep ``best_{metric}_{epoch|iter}_{N}.pth`` as mmcv does.

    Metrics go to ``runner.log_buffer`` (text and json logs), to
    ``runner.meta['hook_msgs']['eval_history']``, and to every hook with an
    ``after_evaluation(runner, record)`` method (DavarCheckpointHook), so the
    best checkpoint is always decided on the evaluation of the current
    weights, whatever the hook priorities.

    Args:
        dataloader (DataLoader): validation loader.
        model_type (str): 'DETECTOR', 'RECOGNIZOR' or 'SPOTTER'.
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
        rule (str | list[str] | None): 'greater'/'less' per metric, or None
            to infer it.
        test_fn, greater_keys, less_keys, out_dir, file_client_args: as in
            mmcv's EvalHook.
        **eval_kwargs: passed to ``dataset.evaluate`` (e.g. ``metric``).
    """

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
                 test_fn=None,
                 greater_keys=None,
                 less_keys=None,
                 out_dir=None,
                 file_client_args=None,
                 **eval_kwargs):
        check_choice(model_type, MODEL_TYPES, 'model_type')
        check_choice(eval_mode, EVAL_MODES, 'eval_mode')
        if not by_epoch and not by_iter:
            # mmcv's by_epoch=False: ``interval`` and ``start`` are iterations
            by_iter, iter_interval = True, interval
        if by_iter:
            check_positive_int(iter_interval, 'iter_interval',
                               'when by_iter=True')
        if start_iter is not None and not 0 <= start_iter <= 1:
            raise ValueError('start_iter must be a fraction of max_iters in '
                             f'[0, 1], got {start_iter!r}')
        if test_fn is None:
            test_fn = functools.partial(self.default_test_fn,
                                        model_type=model_type)
        super().__init__(dataloader, start=start, interval=interval,
                         by_epoch=bool(by_epoch), save_best=None, rule=None,
                         test_fn=test_fn, greater_keys=greater_keys,
                         less_keys=less_keys, out_dir=out_dir,
                         file_client_args=file_client_args, **eval_kwargs)
        self.model_type = model_type
        self.by_iter = by_iter
        self.iter_interval = iter_interval
        self.start_iter = start_iter
        self.iter_start = None if start_iter is not None or by_epoch \
            else start
        self.eval_mode = eval_mode
        self.save_best = save_best
        keys = _as_list(save_best)
        rules = _as_list(rule)
        if rules and len(rules) not in (1, len(keys)):
            raise ValueError(f'rule must be one value or one per save_best '
                             f'metric ({keys}), got {rule!r}')
        rules = rules * len(keys) if len(rules) == 1 else \
            (rules or [None] * len(keys))
        self._rules = list(zip(keys, rules))
        self.trackers = []
        if 'auto' not in keys:
            self._init_trackers(keys)

    def _init_trackers(self, keys):
        rules = dict(self._rules)
        several = len(keys) > 1
        self.trackers = [
            BestTracker(key, infer_rule(key, rules.get(key),
                                        self.greater_keys, self.less_keys),
                        suffix=f'_{key}' if several else '')
            for key in keys
        ]
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
        hook_msgs(runner)
        self.writer = CheckpointWriter(self.out_dir, self.file_client,
                                       runner.logger)
        keeper = [h for h in runner.hooks
                  if getattr(h, 'tracker', None) is not None]
        self.keeps_best = self.eval_mode == 'general' and not keeper
        if self.eval_mode == 'general' and keeper and self.save_best:
            runner.logger.warning(
                'DavarEvalHook: DavarCheckpointHook(save_mode="lightweight") '
                'keeps the best checkpoint; no best_*.pth is written here')
        elif self.eval_mode == 'lightweight' and self.save_best and \
                not keeper:
            runner.logger.warning(
                'DavarEvalHook: eval_mode="lightweight" leaves the best '
                'checkpoint to DavarCheckpointHook(save_mode="lightweight"), '
                'which is not registered: no best checkpoint is kept')

    def before_train_epoch(self, runner):
        pass  # mmcv's evaluation before training is not supported

    def before_train_iter(self, runner):
        pass

    # --------------------------------------------------------------- WHEN
    def will_evaluate(self, runner, unit):
        """Whether this hook evaluates in ``after_train_{unit}`` now."""
        if unit == 'epoch':
            return self.by_epoch and self._due(runner.epoch + 1, self.start,
                                               self.interval)
        if not self.by_iter:
            return False
        start = self.iter_start
        if self.start_iter is not None:
            start = int(self.start_iter * runner.max_iters)
        return self._due(runner.iter + 1, start, self.iter_interval)

    @staticmethod
    def _due(step, start, interval):
        if start is None:
            return step % interval == 0
        return step >= start and (step - start) % interval == 0

    def after_train_epoch(self, runner):
        if self.will_evaluate(runner, 'epoch'):
            self._evaluate(runner, current_point(runner, 'epoch'))

    def after_train_iter(self, runner):
        if self.will_evaluate(runner, 'iter'):
            self._evaluate(runner, current_point(runner, 'iter'))

    # ----------------------------------------------------------- evaluate
    def _run_test(self, runner):
        return self.test_fn(runner.model, self.dataloader)

    def _compute_metrics(self, runner, results):
        eval_res = self.dataloader.dataset.evaluate(
            results, logger=runner.logger, **self.eval_kwargs)
        return {str(k): to_plain(v) for k, v in dict(eval_res).items()}

    def _evaluate(self, runner, point):
        notify(runner, 'before_evaluation', point)
        results = self._run_test(runner)
        runner.model.train()
        metrics = self._share(self._compute_metrics(runner, results)
                              if runner.rank == 0 else None)
        record = EvalRecord(point.unit, point.step, point.iters_done,
                            metrics)
        self._check(record)
        self._log_metrics(runner, metrics)
        runner.logger.info(
            f'Evaluation at {point.unit} {point.step}: ' +
            ', '.join(f'{k}: {v}' for k, v in metrics.items()))
        if self.keeps_best:
            self._keep_best(runner, record)
        publish_evaluation(runner, record)

    def _log_metrics(self, runner, metrics):
        """Put ``metrics`` in the log buffer for the logger hooks. Logger
        hooks that already ran at this point (registered before this hook)
        write them now, so no evaluation is left out of the logs."""
        for name, value in metrics.items():
            runner.log_buffer.output[name] = value
        runner.log_buffer.ready = True
        done = self._loggers_before(runner)
        if done:
            for logger_hook in done:
                logger_hook.log(runner)
            runner.log_buffer.clear_output()

    def _loggers_before(self, runner):
        hooks = runner.hooks
        position = hooks.index(self) if self in hooks else 0
        return [h for h in hooks[:position] if isinstance(h, LoggerHook)]

    def _share(self, metrics):
        """Rank 0's metrics on every rank."""
        return metrics

    def _check(self, record):
        """Fail at the first evaluation on a missing or non-numeric ranked
        metric."""
        if self._rules and self._rules[0][0] == 'auto' and not self.trackers:
            if not record.metrics:
                raise KeyError('save_best="auto" needs at least one metric; '
                               'the evaluation returned none')
            self._init_trackers([next(iter(record.metrics))])
        for tracker in self.trackers:
            record.score(tracker.metric)

    # --------------------------------------------------- WHAT (general mode)
    def _keep_best(self, runner, record):
        for tracker in self.trackers:
            name = f'best_{tracker.metric}_{record.unit}_{record.step}.pth'
            best = tracker.candidate(runner, record, self.writer.path(name))
            if not best:
                continue
            previous = hook_msgs(runner).get('best_ckpt' + tracker.suffix)

            def commit(updates, tracker=tracker, name=name,
                       previous=previous):
                if not updates:
                    return  # not written: the previous best stays
                hook_msgs(runner).update(updates)
                self.best_ckpt_path = updates['best_ckpt' + tracker.suffix]
                if previous and previous != self.best_ckpt_path:
                    self.writer.remove(previous)
                runner.logger.info(
                    f'Now best checkpoint is saved as {name}. Best '
                    f'{tracker.metric} is '
                    f'{updates["best_score" + tracker.suffix]} at '
                    f'{record.step} {record.unit}.')
            self.writer.submit(
                [save_step(runner, record, name, best)],
                hook_msgs(runner), commit)


@HOOKS.register_module()
class DavarDistEvalHook(DavarEvalHook, DistEvalHook):
    """Distributed DavarEvalHook: every rank runs inference on its share,
    rank 0 computes the metrics and writes, and the metrics are broadcast so
    every rank's ``hook_msgs`` agree. Works with gloo on CPU and NCCL.

    Args:
        broadcast_bn_buffer (bool): broadcast BatchNorm buffers of rank 0
            before evaluating. Default: True.
        tmpdir (str | None): folder for collecting results; default
            ``work_dir/.eval_hook``, with a unique sub-folder per call.
        gpu_collect (bool): collect through the process group instead of
            files. Default: False.
        Other arguments: as DavarEvalHook.
    """

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
        tmpdir = self.tmpdir or osp.join(runner.work_dir, '.eval_hook')
        return self.test_fn(runner.model, self.dataloader, tmpdir=tmpdir,
                            gpu_collect=self.gpu_collect)

    def _share(self, metrics):
        if get_dist_info()[1] == 1:
            return metrics
        holder = [metrics]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]
