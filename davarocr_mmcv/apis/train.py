"""train_model: DavarOCR's training entry, for mmcv-full 1.7.1 / mmdet 2.28."""
import copy
import inspect

from mmcv.runner import (HOOKS, DistEvalHook, DistSamplerSeedHook,
                         build_optimizer, build_runner, get_dist_info)
from mmcv.utils import build_from_cfg, get_logger

from ..core.preempt import Preempted
from ..core.progress import is_iter_based_type
from ..core.resume import resume_or_load
from ..core.state import notify
from ..hooks import DavarDistEvalHook, DavarEvalHook, PreemptionHook
from ..status import resume_command
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


def build_eval_hook(eval_cfg, dataloader, distributed=False,
                    runner_type='EpochBasedRunner', logger=None):
    """Build the eval hook of ``cfg.evaluation``.

    ``type`` DavarEvalHook / DavarDistEvalHook (or none) gives the variant
    matching ``distributed``; any other registered type is built as is.
    ``priority`` is a registration option, returned beside the hook.

    Returns:
        tuple: (hook, priority)
    """
    cfg = copy.deepcopy(dict(eval_cfg or {}))
    priority = cfg.pop('priority', 'LOW')
    hook_type = cfg.pop('type', None)
    cfg.setdefault('by_epoch', not is_iter_based_type(runner_type))
    if hook_type not in EVAL_HOOKS:
        hook = build_from_cfg(dict(cfg, type=hook_type), HOOKS,
                              default_args=dict(dataloader=dataloader))
        return hook, priority
    cls = EVAL_HOOKS[hook_type][int(bool(distributed))]
    if hook_type == 'DavarDistEvalHook' and not distributed and logger:
        logger.info('evaluation.type DavarDistEvalHook falls back to '
                    'DavarEvalHook in a non-distributed run')
    return cls(dataloader, **cfg), priority


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
    own = set(EVAL_HOOK_KEYS)
    for cls in (*classes, DistEvalHook):
        for base in inspect.getmro(cls) if cls else ():
            init = vars(base).get('__init__')
            if inspect.isfunction(init):
                own.update(name for name, p in inspect.signature(
                    init).parameters.items() if p.kind in (
                        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return {k: v for k, v in cfg.items() if k not in own}


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
    runner_cfg = copy.deepcopy(cfg.runner)
    runner_type = runner_cfg['type']
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
