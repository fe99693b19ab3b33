"""train_model: DavarOCR's training entry, for mmcv-full 1.7.1 / mmdet 2.28."""
import copy

from mmcv.runner import (HOOKS, DistSamplerSeedHook, build_optimizer,
                         build_runner)
from mmcv.utils import build_from_cfg, get_logger

from ..core.metrics import notify
from ..core.progress import is_iter_based_type
from ..core.resume import resume_or_load
from ..hooks import DavarDistEvalHook, DavarEvalHook
from .builder import build_dataset, build_eval_dataloader
from .dist import wrap_model

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


def _loader(dataset, data_cfg, distributed, seed, runner_type):
    """The training loader: shuffled; endless for an iteration-based runner
    (IterBasedRunner or a subclass).

    mmdet's endless samplers agree on their seed through a CUDA tensor;
    without CUDA a distributed iteration-based runner gets the finite
    distributed sampler instead, which mmcv's IterLoader starts again at
    each pass (with a new epoch number, so a new shuffle).
    """
    import torch
    from mmdet.datasets import build_dataloader
    endless = is_iter_based_type(runner_type) and \
        (not distributed or torch.cuda.is_available())
    return build_dataloader(
        dataset,
        data_cfg.samples_per_gpu,
        data_cfg.workers_per_gpu,
        num_gpus=1,
        dist=distributed,
        shuffle=True,
        seed=seed,
        runner_type='IterBasedRunner' if endless else 'EpochBasedRunner',
        persistent_workers=data_cfg.get('persistent_workers', False))


def train_model(model, dataset, cfg, distributed=False, validate=False,
                timestamp=None, meta=None):
    """Train ``model`` on ``dataset`` as DavarOCR's ``train_model`` does.

    Builds the loaders, wraps the model (MMDataParallel, or a distributed
    wrapper that also works on CPU with gloo), builds the runner from
    ``cfg.runner``, registers ``lr_config``, ``optimizer_config``,
    ``checkpoint_config`` (default type DavarCheckpointHook), ``log_config``
    and ``custom_hooks``, the eval hook of ``cfg.evaluation`` with
    ``validate``, then resumes (``resume_from`` / ``auto_resume``) or loads
    (``load_from``) and runs ``cfg.workflow``.
    """
    logger = get_logger('davarocr_mmcv', log_level=cfg.get('log_level',
                                                            'INFO'))
    datasets = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    runner_cfg = copy.deepcopy(cfg.runner)
    runner_type = runner_cfg['type']
    loaders = [
        _loader(ds, cfg.data, distributed, cfg.get('seed'), runner_type)
        for ds in datasets
    ]
    model = wrap_model(model, distributed,
                       cfg.get('find_unused_parameters', False))
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
        val_samples = cfg.data.get('val_dataloader', {}).get(
            'samples_per_gpu', cfg.data.samples_per_gpu)
        val_dataset = build_dataset(cfg.data.val, dict(test_mode=True))
        # finite and in order, whatever the runner
        val_loader = build_eval_dataloader(
            val_dataset, val_samples, cfg.data.workers_per_gpu, distributed,
            persistent_workers=cfg.data.get('persistent_workers', False))
        hook, priority = build_eval_hook(cfg.get('evaluation'), val_loader,
                                         distributed, runner_type, logger)
        runner.register_hook(hook, priority=priority)

    # rank 0 decides and reads; the others get its state if they cannot
    resume_or_load(runner, cfg, logger, distributed)
    try:
        runner.run(loaders, cfg.workflow)
    except KeyboardInterrupt as exc:  # Ctrl-C: say how to continue
        from mmcv.runner import get_dist_info
        from ..hooks.status import resume_command
        rank, world_size = get_dist_info()
        command = resume_command(cfg.filename or 'CONFIG', cfg.work_dir,
                                 world_size, validate)
        notify(runner, 'on_train_interrupt', exc, command)
        if rank == 0:
            logger.warning(f'training interrupted at epoch '
                           f'{runner.epoch + 1}, iter {runner.iter}; '
                           f'continue it with:\n  {command}')
        raise
    except BaseException as exc:
        notify(runner, 'on_train_failure', exc)
        raise
    return runner
