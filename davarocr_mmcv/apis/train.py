"""train_model: DavarOCR's training entry, for mmcv-full 1.7.1 / mmdet 2.28."""
import copy

from mmcv.runner import (HOOKS, DistSamplerSeedHook, build_optimizer,
                         build_runner, get_dist_info)
from mmcv.utils import build_from_cfg, get_logger

from ..core.preempt import Preempted
from ..core.progress import is_iter_based_type
from ..core.resume import resume_or_load
from ..core.state import notify
from ..hooks import DavarDistEvalHook, DavarEvalHook, PreemptionHook
from ..status import resume_command
from .builder import (Resolver, build_dataset, build_eval_dataloader,
                      build_sampler, split_settings)
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


def _loader(dataset, settings, sampler_cfg, distributed, seed, runner_type,
            resolver):
    """The training loader: shuffled; endless for an iteration-based runner
    (IterBasedRunner or a subclass). ``settings``: ``split_settings``'s.

    With ``data.sampler`` (``sampler_cfg``, DavarOCR's), that sampler
    picks the samples: built from the sampler registries with the dataset
    and ``samples_per_gpu``, finite (mmcv's IterLoader starts it again at
    each pass). A dataset without a group ``flag`` (mmcls's, mmseg's) is
    shuffled without groups. Otherwise mmdet's group samplers pick; mmdet's
    endless samplers agree on their seed through a CUDA tensor, so without
    CUDA a distributed iteration-based runner gets the finite distributed
    sampler instead, which IterLoader starts again at each pass (with a new
    epoch number, so a new shuffle).
    """
    import torch
    from mmdet.datasets import build_dataloader
    samples, workers = settings['samples_per_gpu'], settings['workers_per_gpu']
    if sampler_cfg is not None:
        return _sampled_loader(dataset, settings, sampler_cfg, distributed,
                               seed, resolver)
    endless = is_iter_based_type(runner_type) and \
        (not distributed or torch.cuda.is_available())
    flag = getattr(dataset, 'flag', None)
    if flag is None:  # mmcls's and mmseg's datasets: no groups
        return _ungrouped_loader(dataset, settings, distributed, seed,
                                 endless)
    if not hasattr(flag, 'astype'):
        raise ValueError(
            f'{type(dataset).__name__} groups its samples in a '
            f'{type(flag).__name__} flag, which mmdet\'s group samplers '
            'cannot read: give data.sampler (for DavarOCR\'s multi-dataset, '
            "dict(type='BatchBalancedSampler', mode=0), or "
            "'DistBatchBalancedSampler' when distributed)")
    return build_dataloader(
        dataset, samples, workers,
        num_gpus=1,
        dist=distributed,
        shuffle=True,
        seed=seed,
        runner_type='IterBasedRunner' if endless else 'EpochBasedRunner',
        persistent_workers=settings['persistent_workers'],
        pin_memory=settings['pin_memory'])


def _sampled_loader(dataset, settings, sampler_cfg, distributed, seed,
                    resolver):
    """A loader whose sampler is ``data.sampler``, as DavarOCR's
    ``davar_build_dataloader`` builds it."""
    from torch.utils.data import DistributedSampler
    sampler = build_sampler(sampler_cfg, dataset,
                            settings['samples_per_gpu'], resolver)
    rank, world_size = get_dist_info()
    if distributed and world_size > 1 and rank == 0 and \
            not isinstance(sampler, DistributedSampler):
        get_logger('davarocr_mmcv').warning(
            f'data.sampler {type(sampler).__name__} is not a distributed '
            f'sampler: each of the {world_size} processes draws from the '
            'whole dataset')
    return _data_loader(dataset, settings, seed, sampler=sampler)


def _ungrouped_loader(dataset, settings, distributed, seed, endless):
    """A shuffled loader for a dataset without mmdet's group ``flag``
    (mmcls's, mmseg's), as those toolboxes shuffle: mmdet's endless
    sampler, its seeded distributed sampler, or torch's random sampler."""
    from mmdet.datasets.samplers import (DistributedSampler,
                                         InfiniteBatchSampler)
    from torch.utils.data import RandomSampler
    rank, world_size = get_dist_info()
    if endless:
        return _data_loader(dataset, settings, seed, batch_sampler=(
            InfiniteBatchSampler(dataset, settings['samples_per_gpu'],
                                 world_size, rank, seed=seed, shuffle=True)))
    sampler = DistributedSampler(dataset, world_size, rank, shuffle=True,
                                 seed=seed) if distributed \
        else RandomSampler(dataset)
    return _data_loader(dataset, settings, seed, sampler=sampler)


def _data_loader(dataset, settings, seed, sampler=None, batch_sampler=None):
    """mmcv's collate, mmdet's worker seeding, ``settings`` (one process's
    batch of ``samples_per_gpu``); the ``sampler`` or ``batch_sampler``
    given."""
    from functools import partial

    from mmcv.parallel import collate
    from mmdet.datasets.builder import worker_init_fn
    from torch.utils.data import DataLoader
    samples, workers = settings['samples_per_gpu'], settings['workers_per_gpu']
    init_fn = None if seed is None else partial(
        worker_init_fn, num_workers=workers, rank=get_dist_info()[0],
        seed=seed)
    return DataLoader(
        dataset, batch_size=1 if batch_sampler else samples, sampler=sampler,
        batch_sampler=batch_sampler, num_workers=workers,
        collate_fn=partial(collate, samples_per_gpu=samples),
        pin_memory=settings['pin_memory'], worker_init_fn=init_fn,
        persistent_workers=settings['persistent_workers'])


def _resume_command(cfg, validate):
    return resume_command(cfg.filename or 'CONFIG', cfg.work_dir,
                          get_dist_info()[1], validate)


def train_model(model, dataset, cfg, distributed=False, validate=False,
                timestamp=None, meta=None):
    """Train ``model`` on ``dataset`` as DavarOCR's ``train_model`` does.

    Builds the loaders, wraps the model (MMDataParallel, or a distributed
    wrapper that also works on CPU with gloo), builds the runner from
    ``cfg.runner``, registers ``lr_config``, ``optimizer_config``,
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
        _loader(ds, settings, cfg.data.get('sampler'), distributed,
                cfg.get('seed'), runner_type, resolver)
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
        val_cfg, val = split_settings(cfg.data, 'val')
        val_dataset = build_dataset(val_cfg, dict(test_mode=True), resolver)
        # finite and in order, whatever the runner
        val_loader = build_eval_dataloader(
            val_dataset, val['samples_per_gpu'], val['workers_per_gpu'],
            distributed, persistent_workers=val['persistent_workers'],
            pin_memory=val['pin_memory'])
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
