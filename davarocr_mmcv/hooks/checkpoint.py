"""DavarCheckpointHook: DavarOCR's checkpoint hook for mmcv-full 1.7.1."""
import inspect
import os.path as osp

import torch.distributed as dist
from mmcv.runner import HOOKS, CheckpointHook, get_dist_info

from ..constants import (BEST_CKPT_NAME, EPOCH_TMPL, ITER_TMPL,
                         LATEST_LINK_NAME, LATEST_MODEL_NAME)
from ..core import state
from ..core.best import BestKeeper, Ledger
from ..core.metrics import RULE, BestTracker, infer_rule
from ..core.observe import evaluates_at, is_eval_hook, observe_evaluations
from ..core.progress import current_point, is_iter_based, max_steps
from ..core.writer import ON_ERROR, run_writer, save_step
from ..utils.checks import (BOOL, DICT, FILE_NAME, FILENAME_TMPL, INT,
                            NAME, NAME_LIST, NAMES, NUMBER, PATH, checked,
                            check_positive_int, fraction, one_of,
                            unknown_names)

SAVE_MODES = ('general', 'lightweight')
#: Arguments mmcv's CheckpointHook passes on to ``runner.save_checkpoint``.
SAVE_CHECKPOINT_ARGS = ('create_symlink', 'meta')

#: What each argument accepts (:mod:`davarocr_mmcv.utils.checks`), checked
#: when the hook is built. Ranges that depend on another argument (an
#: interval is positive when its schedule is on) are checked in __init__.
ARGUMENTS = dict(
    interval=INT, iter_interval=INT, by_epoch=BOOL, by_iter=BOOL,
    metric=NAME.or_none(), rule=RULE.or_none(), init_metric=NUMBER.or_none(),
    save_optimizer=BOOL, out_dir=PATH.or_none(), save_mode=one_of(SAVE_MODES),
    model_milestone=fraction(high_open=True), max_keep_ckpts=INT,
    save_last=BOOL, sync_buffer=BOOL, filename_tmpl=FILENAME_TMPL.or_none(),
    iter_filename_tmpl=FILENAME_TMPL, best_filename=FILE_NAME,
    latest_filename=FILE_NAME, on_save_error=one_of(ON_ERROR),
    async_save=BOOL, publish=BOOL, published_keys=NAME_LIST,
    greater_keys=NAMES.or_none(), less_keys=NAMES.or_none(),
    file_client_args=DICT.or_none(), create_symlink=BOOL,
    meta=DICT.or_none())


def _names(value):
    """A name or a list of names (or None) as a list."""
    return [value] if isinstance(value, str) else list(value or ())


def sync_buffers(model):
    """Average floating-point buffers over ranks and take rank 0's integer
    ones (mmcv's allreduce_params divides ``num_batches_tracked`` too, which
    fails on torch 2)."""
    _, world_size = get_dist_info()
    if world_size == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data)
            buf.data.div_(world_size)
        else:
            dist.broadcast(buf.data, 0)


@HOOKS.register_module()
class DavarCheckpointHook(CheckpointHook, state.ResumableSaver,
                          state.BestOwner):
    """Save checkpoints by epoch and/or by iteration, keeping only what is
    wanted.

    ``save_mode='general'`` behaves as mmcv's CheckpointHook (``epoch_N.pth``
    / ``iter_N.pth``, ``latest.pth``, ``max_keep_ckpts``) and saves nothing
    before ``model_milestone``. ``save_mode='lightweight'`` keeps two files:
    ``Best_checkpoint.pth`` (the weights of the best ``metric``, decided and
    written by the run's :class:`~davarocr_mmcv.core.best.BestKeeper`) and
    ``latest_model.pth`` (the newest state, refreshed at every save point).

    Args:
        interval (int): epochs between saves when ``by_epoch``. Default: 1.
        iter_interval (int): iterations between saves when ``by_iter``.
            Default: -1 (off).
        by_epoch (bool): save by epoch. Default: True.
        by_iter (bool): save by iteration; combinable with ``by_epoch``.
            With both False, ``interval`` counts iterations, as in mmcv.
            Default: False.
        metric (str | None): metric ranking checkpoints in lightweight mode.
            Default: 'accuracy'.
        rule (str | None): 'greater', 'less', or None to infer it from
            ``metric``. Default: None.
        init_metric (float | None): score a first result must beat. Default:
            None, meaning -inf for 'greater' and +inf for 'less'.
        save_optimizer (bool): store optimizer state (never in the best
            checkpoint). Default: True.
        out_dir (str | None): root folder; joined with the work_dir's name,
            as in mmcv. Default: None (work_dir).
        save_mode (str): 'general' or 'lightweight'. Default: 'general'.
        model_milestone (float): fraction of training, in [0, 1), before
            which nothing is saved. Default: 0.
        max_keep_ckpts (int): regular checkpoints kept in general mode; the
            best and the resumed-from file are never removed. Default: -1.
        save_last (bool): also save at the last epoch/iteration. Default: True.
        sync_buffer (bool): all-reduce buffers before saving. Default: False.
        filename_tmpl (str | None): name of regular checkpoints, may include a
            sub-folder. Default: 'epoch_{}.pth' or 'iter_{}.pth'.
        iter_filename_tmpl (str): name of iteration checkpoints while
            ``filename_tmpl`` names epoch ones. Default: 'iter_{}.pth'.
        best_filename (str): Default: 'Best_checkpoint.pth'.
        latest_filename (str): Default: 'latest_model.pth'.
        on_save_error (str): 'raise' stops training when a write fails;
            'continue' logs it and retries at the next save point. Default:
            'raise'.
        async_save (bool): copy the state to host memory and write in a
            background thread, atomically all the same; training waits only
            if the previous save is still running. Default: False.
        publish (bool): at the end of training, publish the best checkpoint
            (see ``tools/publish.py``) into ``out_dir/publish``. Default:
            False.
        published_keys (tuple[str]): checkpoint entries kept when
            publishing. Default: ('meta', 'state_dict').
        greater_keys, less_keys (list[str] | None): extra names for rule
            inference.
        **kwargs: mmcv CheckpointHook arguments (``create_symlink``,
            ``file_client_args``).

    Every argument is checked when the hook is built (:data:`ARGUMENTS`):
    a TypeError for a value of the wrong type ('yes' is not a bool), a
    ValueError for a value out of range; each names the hook, the argument,
    the value and what is accepted. An unknown argument is a TypeError
    that suggests the closest name.
    """

    @checked(ARGUMENTS)
    def __init__(self,
                 interval=1,
                 iter_interval=-1,
                 by_epoch=True,
                 by_iter=False,
                 metric='accuracy',
                 rule=None,
                 init_metric=None,
                 save_optimizer=True,
                 out_dir=None,
                 save_mode='general',
                 model_milestone=0,
                 max_keep_ckpts=-1,
                 save_last=True,
                 sync_buffer=False,
                 filename_tmpl=None,
                 iter_filename_tmpl=ITER_TMPL,
                 best_filename=BEST_CKPT_NAME,
                 latest_filename=LATEST_MODEL_NAME,
                 on_save_error='raise',
                 async_save=False,
                 publish=False,
                 published_keys=('meta', 'state_dict'),
                 greater_keys=None,
                 less_keys=None,
                 file_client_args=None,
                 **kwargs):
        self._check_unknown(kwargs)
        owner = type(self).__name__
        # Both flags off is mmcv's by_epoch=False: ``interval`` iterations.
        if not by_epoch and not by_iter:
            check_positive_int(interval, f'{owner}: interval',
                               'when by_epoch and by_iter are False (it '
                               'counts iterations, as in mmcv)')
            by_iter, iter_interval = True, interval
        self.intervals = dict(
            epoch=check_positive_int(interval, f'{owner}: interval',
                                     'when by_epoch=True')
            if by_epoch else None,
            iter=check_positive_int(iter_interval, f'{owner}: iter_interval',
                                    'when by_iter=True')
            if by_iter else None)
        epoch_tmpl = filename_tmpl or EPOCH_TMPL
        iter_tmpl = filename_tmpl if filename_tmpl and not by_epoch \
            else iter_filename_tmpl
        if by_epoch and by_iter and epoch_tmpl == iter_tmpl:
            raise ValueError(
                f'{owner}: filename_tmpl and iter_filename_tmpl must differ '
                'when saving by epoch and by iteration, both are '
                f'{epoch_tmpl!r}')
        self.filename_tmpls = dict(epoch=epoch_tmpl, iter=iter_tmpl)

        self.tracker = None
        if save_mode == 'lightweight':
            if metric is None:
                raise ValueError(f'{owner}: metric must name the evaluation '
                                 'metric that ranks checkpoints in '
                                 "save_mode='lightweight', got None")
            try:
                rule = infer_rule(metric, rule, _names(greater_keys),
                                  _names(less_keys))
            except ValueError as exc:  # its type kept
                raise type(exc)(f'{owner}: {exc}') from None
            self.tracker = BestTracker(metric, rule, init_metric)

        super().__init__(interval=interval, by_epoch=by_epoch,
                         save_optimizer=save_optimizer, out_dir=out_dir,
                         max_keep_ckpts=max_keep_ckpts, save_last=save_last,
                         sync_buffer=sync_buffer,
                         file_client_args=file_client_args, **kwargs)
        self.iter_interval = iter_interval
        self.by_iter = by_iter
        self.metric = metric
        self.save_mode = save_mode
        self.model_milestone = float(model_milestone)
        self.best_filename = best_filename
        self.latest_filename = latest_filename
        self.on_save_error = on_save_error
        self.async_save = bool(async_save)
        self.publish = bool(publish)
        self.published_keys = tuple(published_keys)
        self._pending = None  # (point, evaluations still to come)
        self._heard_eval = False
        self._warned_no_eval = False
        self._latest_stale = False  # a best newer than the latest file
        self._saved_key = None  # the point of the newest regular file

    @classmethod
    def _check_unknown(cls, kwargs):
        """mmcv keeps unknown arguments for ``save_checkpoint``, where they
        fail at the first save or not at all; here they fail now."""
        if 'save_best' in kwargs:
            raise TypeError(
                'DavarCheckpointHook: save_best is an argument of the eval '
                'hooks (evaluation=dict(save_best=...)); this hook ranks '
                "checkpoints with metric=... and save_mode='lightweight'")
        known = [*inspect.signature(cls.__init__).parameters,
                 *SAVE_CHECKPOINT_ARGS]
        bad = unknown_names(kwargs, known, accepted=SAVE_CHECKPOINT_ARGS)
        if bad:
            raise TypeError(
                f'DavarCheckpointHook got unknown argument(s) {bad}; it '
                f'accepts {sorted(set(known) - {"self", "kwargs"})}')

    # ------------------------------------------------------------- set-up
    def owns_best(self):
        return self.tracker is not None

    def before_run(self, runner):
        super().before_run(runner)  # out_dir, file_client, create_symlink
        self.writer = run_writer(runner, self.out_dir, self.file_client,
                                 runner.logger, self.on_save_error,
                                 self.async_save, replace=True)
        self.writer.prepare()
        # The file a run resumed from is never rotated away.
        self._protected = {state.last_ckpt(runner)}
        observe_evaluations(runner)
        self._share_best_keys(runner)
        keeper = BestKeeper.of(runner)
        keeper.drop(self)
        if self.tracker is not None:
            keeper.keep(Ledger(
                self, self._trackers_for, self.best_filename, self.out_dir,
                self.file_client, save_optimizer=False,
                extra_meta=self.args.get('meta'), on_best=self._new_best))
        position = runner.hooks.index(self) if self in runner.hooks else -1
        self._later_evaluators = [
            h for h in runner.hooks[position + 1:] if is_eval_hook(h)]
        if self.intervals['epoch'] and is_iter_based(runner):
            runner.logger.warning(
                'DavarCheckpointHook: by_epoch=True has no effect in an '
                'IterBasedRunner; use by_iter/iter_interval')

    def _share_best_keys(self, runner):
        """An mmcv-style eval hook that keeps its own best (``save_best``)
        owns hook_msgs' ``best_score``/``best_ckpt``; the lightweight best
        then goes under ``best_*_{metric}``, so that neither replaces, nor
        deletes, the other's file."""
        if self.tracker is None:
            return
        rivals = [h for h in runner.hooks if is_eval_hook(h) and
                  h.save_best and not isinstance(h, state.Evaluator)]
        self.tracker.suffix = f'_{self.tracker.metric}' if rivals else ''
        if rivals:
            runner.logger.info(
                f'DavarCheckpointHook: {type(rivals[0]).__name__} keeps its '
                f'own best checkpoint; {self.best_filename} is recorded as '
                f'{state.best_key(state.BEST_CKPT, self.tracker.suffix)} in '
                'hook_msgs')

    # --------------------------------------------------------------- WHEN
    def after_train_epoch(self, runner):
        self._at_point(runner, 'epoch')

    def after_train_iter(self, runner):
        self._at_point(runner, 'iter')

    def _at_point(self, runner, unit):
        if self._pending is not None:
            runner.logger.warning(
                f'DavarCheckpointHook: the evaluation expected at '
                f'{self._pending[0].unit} {self._pending[0].step} did not '
                'report; that save point is skipped')
            self._pending = None
        point = current_point(runner, unit)
        waiting = sum(evaluates_at(h, runner, unit)
                      for h in self._later_evaluators)
        if waiting:
            # Evaluations of these weights are still to come at this point:
            # act once their decisions are in (see after_evaluation).
            self._pending = (point, waiting)
            return
        self._act(runner, point)

    def after_evaluation(self, runner, record):
        """Every evaluation of the run (:mod:`davarocr_mmcv.core.observe`),
        once the keeper (:mod:`davarocr_mmcv.core.best`) has saved a new
        best with the weights that were scored: a save point waiting for
        this evaluation is carried out."""
        self._heard_eval = True
        if self._pending is None:
            return
        point, waiting = self._pending
        if point.key != (record.unit, record.iters_done):
            return
        self._pending = (point, waiting - 1) if waiting > 1 else None
        if self._pending is None:
            self._act(runner, point)

    def _due(self, runner, point):
        interval = self.intervals[point.unit]
        if interval is None:
            return False
        if point.step % interval == 0:
            return True
        if not self.save_last or point.step != max_steps(runner, point.unit):
            return False
        # The epoch save right after an epoch runner's last iteration is
        # the last save; no second copy by iteration.
        return point.unit == 'epoch' or is_iter_based(runner) or \
            self.intervals['epoch'] is None

    def save_resumable(self, runner, point):
        """Write the state at ``point`` so that training can continue from
        it (a pre-emption, :class:`PreemptionHook`), whatever the schedule
        and the milestone: ``latest_model.pth`` in lightweight mode, else
        the regular file of ``point``. Nothing new when the newest file
        already holds ``point``. Waits for the write; returns the path to
        resume from."""
        if self._pending is not None:  # its evaluation never reported
            pending, self._pending = self._pending[0], None
            self._act(runner, pending)
        if self._saved_key != point.key:
            self._save(runner, point)
        self.writer.wait()
        return state.last_ckpt(runner)

    def _past_milestone(self, runner, point):
        return point.step > int(max_steps(runner, point.unit) *
                                self.model_milestone)

    def _act(self, runner, point):
        due = self._due(runner, point)
        if not (due or self._latest_stale) or \
                not self._past_milestone(runner, point):
            return
        self._save(runner, point)

    # --------------------------------------------------------------- WHAT
    def _save(self, runner, point):
        """The file of this mode at ``point``: the regular checkpoint
        (general) or ``latest_model.pth`` (lightweight)."""
        if self.sync_buffer:
            sync_buffers(runner.model)
        if self.tracker is None:
            self._save_general(runner, point)
        else:
            self._save_latest(runner, point)

    def _save_general(self, runner, point):
        self._saved_key = point.key
        name = self.filename_tmpls[point.unit].format(point.step)
        runner.logger.info(f'Saving checkpoint at {point.step} {point.unit}s')
        self._submit(runner, [
            self._step(runner, point, name,
                       state.last_ckpt_entry(self.writer.path(name)),
                       self.save_optimizer, self._link())
        ], after=self._rotate)

    def _rotate(self, runner, updates):
        """Record a written regular checkpoint and drop the oldest beyond
        ``max_keep_ckpts``; never the best, the resumed-from file, the
        newest, or a file this hook did not write."""
        if state.LAST_CKPT not in updates:
            return
        history = state.record_checkpoint(runner, updates[state.LAST_CKPT])
        if self.max_keep_ckpts <= 0:
            return
        msgs = state.hook_msgs(runner)
        keep = self._protected | {msgs.get(state.BEST_CKPT),
                                  msgs[state.LAST_CKPT]}
        removable = [p for p in history if p not in keep]
        for path in removable[:max(0, len(history) - self.max_keep_ckpts)]:
            self.writer.remove(path)
            history.remove(path)

    # ------------------------------------------------- the best (the keeper)
    def _trackers_for(self, runner, record):
        """The keeper decides on every evaluation of the run, past the
        milestone."""
        return [self.tracker] if self._past_milestone(runner, record) \
            else []

    def _new_best(self, runner, record, path):
        self._latest_stale = True  # the latest must learn of this best

    def _save_latest(self, runner, point):
        if not self._heard_eval and not self._warned_no_eval:
            self._warned_no_eval = True
            runner.logger.warning(
                f'DavarCheckpointHook: no evaluation has reported '
                f'{self.tracker.metric!r} yet; only {self.latest_filename} is '
                f'saved. Register an eval hook (evaluation=dict(...), '
                f'--validate) to keep {self.best_filename}.')
        self._latest_stale = False
        self._saved_key = point.key
        self._submit(runner, [self._step(
            runner, point, self.latest_filename,
            state.last_ckpt_entry(self.writer.path(self.latest_filename)),
            self.save_optimizer, self._link())])

    def _link(self):
        """``latest.pth`` leads to the newest file, for mmcv's and mmdet's
        own ``find_latest_checkpoint`` ('' with ``create_symlink=False``:
        only ``last_checkpoint`` is written)."""
        return LATEST_LINK_NAME if self.args.get('create_symlink', True) \
            else ''

    def _step(self, runner, point, name, updates, save_optimizer=True,
              link=None):
        return save_step(runner, point, name, updates, save_optimizer, link,
                         extra_meta=self.args.get('meta'))

    # -------------------------------------------------------------- WRITE
    def _submit(self, runner, steps, after=None):
        """Hand ``steps`` to the writer; the ``hook_msgs`` entries of the
        files actually written reach the runner (then ``after``)."""
        def commit(updates):
            state.hook_msgs(runner).update(updates)
            if after is not None:
                after(runner, updates)
        self.writer.submit(steps, state.hook_msgs(runner), commit)

    def after_run(self, runner):
        if self._pending is not None:  # its evaluation never reported
            point, self._pending = self._pending[0], None
            self._act(runner, point)
        self.writer.wait()  # an asynchronous save still in flight
        if self.publish and self.writer.rank == 0:
            from ..publish import publish
            archive = publish(self.out_dir, keys=self.published_keys,
                              config=self._dumped_config(runner),
                              require_config=False)
            runner.logger.info(f'Published the best checkpoint: {archive}')

    def _dumped_config(self, runner):
        """The config tools/train.py dumped into the work_dir, if any."""
        name = (runner.meta or {}).get('exp_name')
        path = osp.join(runner.work_dir, name) if name else None
        return path if path and osp.isfile(path) else None
