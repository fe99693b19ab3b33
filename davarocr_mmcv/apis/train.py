"""train_model: DavarOCR's training entry, for mmcv-full 1.7.1 / mmdet 2.28."""
import copy
import difflib
from typing import NamedTuple

from mmcv.runner import (HOOKS, RUNNERS, BaseRunner, DistEvalHook,
                         DistSamplerSeedHook, EpochBasedRunner,
                         build_optimizer, build_runner, get_dist_info)
from mmcv.utils import build_from_cfg, get_logger
from torch.utils.data import DataLoader

from ..core.preempt import Preempted
from ..core.progress import is_iter_based_type
from ..core.resume import resume_or_load
from ..core.state import notify
from ..hooks import (DavarCheckpointHook, DavarDistEvalHook, DavarEvalHook,
                     PreemptionHook)
from ..hooks.evaluation import check_evaluate_keys
from ..status import resume_command
from ..utils.checks import (POSITIVE_INT, argument_names, argument_table,
                            check_arguments)
from .data import build_eval_loader, build_train_loader, split_settings
from .dist import wrap_model
from .resolve import Resolver

#: The training loader's old name.
_loader = build_train_loader

#: evaluation.type -> (single-process hook, distributed hook)
EVAL_HOOKS = {
    None: (DavarEvalHook, DavarDistEvalHook),
    'DavarEvalHook': (DavarEvalHook, DavarDistEvalHook),
    'DavarDistEvalHook': (DavarEvalHook, DavarDistEvalHook),
}


#: evaluation settings that only the distributed hook takes; a run that is
#: not distributed, which builds DavarEvalHook, leaves them out
DIST_ONLY_KEYS = ('broadcast_bn_buffer', 'tmpdir', 'gpu_collect')


class EvalHookPlan(NamedTuple):
    """What :func:`build_eval_hook` builds from ``cfg.evaluation``."""
    cls: type  # None: a registered type, built by the registry
    type: object
    args: dict
    priority: object
    dropped: list  # DIST_ONLY_KEYS left out


def plan_eval_hook(eval_cfg, distributed=False,
                   runner_type='EpochBasedRunner'):
    """The eval hook of ``cfg.evaluation``, not built yet (see
    :func:`build_eval_hook`)."""
    cfg = copy.deepcopy(dict(eval_cfg or {}))
    priority = cfg.pop('priority', 'LOW')
    hook_type = cfg.pop('type', None)
    cfg.setdefault('by_epoch', not is_iter_based_type(runner_type))
    if hook_type not in EVAL_HOOKS:
        return EvalHookPlan(None, hook_type, cfg, priority, [])
    cls = EVAL_HOOKS[hook_type][int(bool(distributed))]
    dropped = [] if distributed else [k for k in DIST_ONLY_KEYS if k in cfg]
    for key in dropped:
        del cfg[key]
    return EvalHookPlan(cls, hook_type, cfg, priority, dropped)


def build_eval_hook(eval_cfg, dataloader, distributed=False,
                    runner_type='EpochBasedRunner', logger=None):
    """Build the eval hook of ``cfg.evaluation``.

    ``type`` DavarEvalHook / DavarDistEvalHook (or none) gives the variant
    matching ``distributed``; in a run that is not distributed the
    settings only the distributed hook takes (:data:`DIST_ONLY_KEYS`) are
    left out. Any other registered type is built as is. ``priority`` is a
    registration option, returned beside the hook.

    Returns:
        tuple: (hook, priority)
    """
    plan = plan_eval_hook(eval_cfg, distributed, runner_type)
    if plan.cls is None:
        hook = build_from_cfg(dict(plan.args, type=plan.type), HOOKS,
                              default_args=dict(dataloader=dataloader))
        return hook, plan.priority
    if logger and plan.type == 'DavarDistEvalHook' and not distributed:
        logger.info('evaluation.type DavarDistEvalHook falls back to '
                    'DavarEvalHook in a non-distributed run')
    if logger and plan.dropped:
        logger.info(f'evaluation: {", ".join(plan.dropped)} not used in a '
                    'run that is not distributed')
    return plan.cls(dataloader, **plan.args), plan.priority


#: settings of ``cfg.evaluation`` for the hook that no hook's
#: ``__init__`` names: registration options and mmdet 2.28's own argument
EVAL_HOOK_KEYS = ('type', 'priority', 'dynamic_intervals')


def evaluate_kwargs(eval_cfg):
    """The settings of ``cfg.evaluation`` that reach ``dataset.evaluate``
    (``metric``, DavarOCR's ``eval_func_params``, ...), as mmdet 2.28's and
    DavarOCR's tools/test.py pass them: all but the hook's own, which are
    the arguments that the ``__init__`` of the hook class
    :func:`build_eval_hook` picks, of its distributed variant, of their
    bases and of mmcv's ``DistEvalHook`` name, and
    :data:`EVAL_HOOK_KEYS`."""
    cfg = dict(eval_cfg or {})
    hook_type = cfg.get('type')
    classes = EVAL_HOOKS.get(hook_type) or (HOOKS.get(hook_type),)
    own = set(EVAL_HOOK_KEYS).union(
        argument_names(*(c for c in classes if c), DistEvalHook))
    return {k: v for k, v in cfg.items() if k not in own}


# ------------------------------------------------- before anything is built
def check_runner_config(runner):
    """The runner section, as mmcv's ``build_runner`` and the runner take it:
    ``type`` a runner that ``RUNNERS`` holds (or a runner class), and the
    length its kind counts: ``max_epochs`` for an epoch-based runner,
    ``max_iters`` for an iteration-based one, a positive int (one of the
    two for another runner, as mmcv).

    Returns:
        The runner type.

    Raises:
        KeyError: no runner section.
        TypeError: a value of the wrong type, naming ``runner.<key>``.
        ValueError: an unregistered type (listing those registered), a
            length that is not positive, missing, or not the one the runner
            counts.
    """
    if runner is None:
        raise KeyError("runner: the config has no runner section; give "
                       "runner = dict(type='EpochBasedRunner', max_epochs=N)"
                       " or dict(type='IterBasedRunner', max_iters=N)")
    if not isinstance(runner, dict):
        raise TypeError(f'runner must be a dict with a type, got {runner!r} '
                        f'({type(runner).__name__})')
    runner_type = runner.get('type')
    names = sorted(RUNNERS.module_dict)
    if isinstance(runner_type, str):
        cls = RUNNERS.get(runner_type)
        if cls is None:
            close = difflib.get_close_matches(runner_type, names, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise ValueError(f'runner.type must be a registered runner type, '
                             f'one of {names}; got {runner_type!r}{hint}')
    elif isinstance(runner_type, type) and issubclass(runner_type,
                                                      BaseRunner):
        cls = runner_type
    else:
        raise TypeError(f'runner.type must be the name of a registered '
                        f'runner type, one of {names}; got {runner_type!r} '
                        f'({type(runner_type).__name__})')
    # None is no length, as mmcv's runners take it (a config switched to
    # IterBasedRunner by --cfg-options runner.max_epochs=None)
    lengths = [k for k in ('max_epochs', 'max_iters')
               if runner.get(k) is not None]
    for key in lengths:
        POSITIVE_INT.check(None, f'runner.{key}', runner[key])
    if len(lengths) > 1:
        raise ValueError('give one of runner.max_epochs and runner.max_iters,'
                         ' not both (as mmcv)')
    counts = 'max_iters' if is_iter_based_type(cls) else \
        'max_epochs' if issubclass(cls, EpochBasedRunner) else None
    if counts and lengths != [counts]:
        kind = 'an iteration' if counts == 'max_iters' else 'an epoch'
        given = f'runner.{lengths[0]}' if lengths else 'neither'
        raise ValueError(f'runner.{counts}: {cls.__name__} is {kind}-based '
                         f'runner, give runner.{counts} (a positive int); '
                         f'got {given}')
    return runner_type


def _val_dataset_class(cfg):
    """The class of ``cfg.data.val`` where its config names one, without
    building it; None where it does not (a list, split annotation files) or
    cannot be found (building it says why)."""
    try:
        dataset_cfg, _ = split_settings(cfg.data, 'val')
        if not isinstance(dataset_cfg, dict) or isinstance(
                dataset_cfg.get('ann_file'), (list, tuple)):
            return None
        return Resolver.of(cfg).find(dataset_cfg['type'], 'dataset')[0]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _check_hook(cls, args, *positional):
    """This package's hooks are built (their constructors check and store
    nothing else); a subclass of them has its argument tables checked;
    any other hook is left to the build."""
    if cls in (DavarCheckpointHook, DavarEvalHook, DavarDistEvalHook):
        cls(*positional, **args)
    elif isinstance(cls, type) and argument_table(cls):
        check_arguments(cls.__name__, argument_table(cls), args)


def check_training_config(cfg, validate=True, distributed=False):
    """Refuse a config whose settings would fail once training is under
    way, before anything is built or written: the runner section
    (:func:`check_runner_config`), the arguments of the checkpoint hook
    and, with ``validate``, of the eval hook (as their constructors check
    them), and the evaluation settings that the validation dataset's
    ``evaluate`` cannot take
    (:func:`~davarocr_mmcv.hooks.evaluation.check_evaluate_keys`).

    Raises:
        TypeError, ValueError, KeyError: as the checks raise them, each
            naming the setting.
    """
    runner_type = check_runner_config(cfg.get('runner'))
    checkpoint_config = cfg.get('checkpoint_config')
    if checkpoint_config is not None:
        args = dict(checkpoint_config)
        hook_type = args.pop('type', 'DavarCheckpointHook')
        _check_hook(HOOKS.get(hook_type) if isinstance(hook_type, str)
                    else hook_type, args)
    if not validate:
        return
    plan = plan_eval_hook(cfg.get('evaluation'), distributed, runner_type)
    cls = plan.cls or (HOOKS.get(plan.type) if isinstance(plan.type, str)
                       else plan.type)
    _check_hook(cls, plan.args, DataLoader([]))
    dataset_cls = _val_dataset_class(cfg)
    if dataset_cls is not None and isinstance(cls, type) and \
            issubclass(cls, DavarEvalHook):
        own = argument_names(cls)
        check_evaluate_keys(cls, getattr(dataset_cls, 'evaluate', None),
                            {k: v for k, v in plan.args.items()
                             if k not in own}, dataset_cls.__name__)


def auto_scale_lr(cfg, distributed, logger):
    """mmdet 2.28's linear scaling rule: with ``cfg.auto_scale_lr.enable``
    (tools/train.py ``--auto-scale-lr``), ``cfg.optimizer.lr`` is scaled
    by the total batch (processes times ``samples_per_gpu``; one process
    when not distributed) over ``cfg.auto_scale_lr.base_batch_size``."""
    scale = cfg.get('auto_scale_lr') or {}
    base = scale.get('base_batch_size')
    if not scale.get('enable', False) or base is None:
        return
    gpus = get_dist_info()[1] if distributed else 1
    samples = split_settings(cfg.data, 'train')[1]['samples_per_gpu']
    batch = gpus * samples
    logger.info(f'Training with {gpus} GPU(s) with {samples} samples per '
                f'GPU. The total batch size is {batch}.')
    if batch != base:
        lr = batch / base * cfg.optimizer.lr
        logger.info(f'LR has been automatically scaled from '
                    f'{cfg.optimizer.lr} to {lr}')
        cfg.optimizer.lr = lr
    else:
        logger.info(f'The batch size matches the base batch size {base}: '
                    f'LR not scaled ({cfg.optimizer.lr}).')


def _resume_command(cfg, validate):
    return resume_command(cfg.filename or 'CONFIG', cfg.work_dir,
                          get_dist_info()[1], validate)


def train_model(model, dataset, cfg, distributed=False, validate=False,
                timestamp=None, meta=None):
    """Train ``model`` on ``dataset`` as DavarOCR's ``train_model`` does.

    Builds the loaders, wraps the model (MMDataParallel, or a distributed
    wrapper that also works on CPU with gloo), scales ``optimizer.lr``
    when ``cfg.auto_scale_lr.enable`` (:func:`auto_scale_lr`), builds the
    runner from ``cfg.runner``, registers ``lr_config``, ``optimizer_config``,
    ``checkpoint_config`` (default type DavarCheckpointHook), ``log_config``
    and ``custom_hooks``, the eval hook of ``cfg.evaluation`` with
    ``validate``, :class:`PreemptionHook` (``cfg.preemption``, a dict of
    its arguments; None turns it off), then resumes (``resume_from`` /
    ``auto_resume``) or loads (``load_from``) and runs ``cfg.workflow``.
    """
    logger = get_logger('davarocr_mmcv', log_level=cfg.get('log_level',
                                                            'INFO'))
    datasets = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    runner_type = check_runner_config(cfg.get('runner'))
    runner_cfg = copy.deepcopy(cfg.runner)
    resolver = Resolver.of(cfg)
    _, settings = split_settings(cfg.data, 'train')
    loaders = [
        build_train_loader(ds, settings, cfg.data.get('sampler'),
                           distributed, cfg.get('seed'), runner_type,
                           resolver)
        for ds in datasets
    ]
    model = wrap_model(model, distributed,
                       cfg.get('find_unused_parameters', False))
    auto_scale_lr(cfg, distributed, logger)
    runner = build_runner(runner_cfg, default_args=dict(
        model=model, optimizer=build_optimizer(model, cfg.optimizer),
        work_dir=cfg.work_dir, logger=logger, meta=meta))
    runner.timestamp = timestamp

    checkpoint_config = copy.deepcopy(cfg.get('checkpoint_config'))
    if checkpoint_config is not None:
        checkpoint_config.setdefault('type', 'DavarCheckpointHook')
    runner.register_training_hooks(
        cfg.lr_config, cfg.get('optimizer_config'), checkpoint_config,
        cfg.log_config, cfg.get('momentum_config'),
        custom_hooks_config=cfg.get('custom_hooks'))
    if distributed and not is_iter_based_type(runner_type):
        runner.register_hook(DistSamplerSeedHook())

    if validate:
        # finite and in order, whatever the runner
        _, val_loader = build_eval_loader(cfg, 'val', distributed, resolver)
        hook, priority = build_eval_hook(cfg.get('evaluation'), val_loader,
                                         distributed, runner_type, logger)
        runner.register_hook(hook, priority=priority)

    preemption = cfg.get('preemption', {})
    if preemption is not None and not any(
            isinstance(h, PreemptionHook) for h in runner.hooks):
        # SIGTERM / SIGUSR1: save, stop every rank, exit 75
        runner.register_hook(PreemptionHook(**preemption), priority='LOWEST')

    # rank 0 decides and reads; the others get its state if they cannot
    resume_or_load(runner, cfg, logger, distributed)
    try:
        runner.run(loaders, cfg.workflow)
    except KeyboardInterrupt as exc:  # Ctrl-C: say how to continue
        command = _resume_command(cfg, validate)
        notify(runner, 'on_train_interrupt', exc, command)
        if get_dist_info()[0] == 0:
            logger.warning(f'training interrupted at epoch '
                           f'{runner.epoch + 1}, iter {runner.iter}; '
                           f'continue it with:\n  {command}')
        raise
    except Preempted as exc:  # the checkpoint is written: say how to go on
        command = _resume_command(cfg, validate)
        notify(runner, 'on_train_preempted', exc, command)
        if get_dist_info()[0] == 0:
            logger.warning(f'{exc}; exit status {exc.code}; continue it '
                           f'with:\n  {command}')
        raise
    except BaseException as exc:
        notify(runner, 'on_train_failure', exc)
        raise
    return runner
