"""DavarOCR's data section, translated: datasets (``batch_ratios``,
``'|'``-joined paths, lists of ``ann_file``, wrappers), samplers, the
data settings (``imgs_per_gpu``, ``<split>_dataloader``) and the loaders
built from them. Classes are found by :mod:`.resolve`.

A nested dataset config is built before the config holding it only where
a dataset is expected: under ``dataset`` / ``datasets`` of a class whose
constructor takes datasets (not one that builds its configs itself, as
mmocr's ``UniformConcatDataset``), and in DavarOCR's multi-dataset; any
other value, even one naming a class with ``__getitem__`` and ``__len__``
(mmocr's ``loader=dict(type='AnnFileLoader')``), goes to the constructor
as written, as mmcv's and mmdet's builders pass it.
"""
import copy
import inspect
from functools import partial

from mmcv.runner import get_dist_info
from mmcv.utils import get_logger

from ..core.progress import is_iter_based_type
from .resolve import Resolver, build_resolved

#: keys of a dataset config that always hold dataset configs (wrappers)
WRAPPED_KEYS = ('dataset', 'datasets')
#: per-dataset keys of a dataset config whose ``ann_file`` is a list
#: (mmdet's, and DavarOCR's ``data_type``)
PER_ANN_FILE_KEYS = ('img_prefix', 'seg_prefix', 'proposal_file',
                     'data_type')
#: DavarOCR's multi-dataset: strings split on '|' into one entry per dataset
BAR_SPLIT_KEYS = ('ann_file', 'img_prefix')
#: loader settings of ``data``, its ``<split>_dataloader`` dicts and (for
#: ``val`` / ``test``, as DavarOCR reads them) its split's own config
LOADER_KEYS = ('samples_per_gpu', 'workers_per_gpu', 'persistent_workers',
               'pin_memory')
SPLIT_LOADER_KEYS = ('samples_per_gpu', 'workers_per_gpu')
DATA_KEYS = ('train', 'val', 'test', 'sampler', 'imgs_per_gpu',
             *LOADER_KEYS, 'train_dataloader', 'val_dataloader',
             'test_dataloader')


# --------------------------------------------------------------- datasets
def build_dataset(cfg, default_args=None, resolver=None):
    """Build the dataset of ``cfg`` (a config or a list of them).

    - a list of configs, or a config whose ``ann_file`` is a list: one
      dataset per entry (``img_prefix``, ``seg_prefix``, ``proposal_file``,
      ``data_type`` and a list of pipelines split alike), in the
      ``ConcatDataset`` the resolver finds (``separate_eval`` goes to it);
    - DavarOCR's multi-dataset, a config with ``batch_ratios`` and a
      ``dataset``: a ``dataset`` dict is split into one config per ratio
      (list values per dataset, ``'a|b'`` strings of ``ann_file`` /
      ``img_prefix`` split, other values shared), each built; the wrapper
      gets ``batch_ratios`` and the list of datasets, and its own
      ``test_mode`` is a default for those datasets, as in DavarOCR;
    - any other config: the dataset configs under its ``dataset`` /
      ``datasets`` are built first, unless its constructor builds them
      itself, and it is built as a wrapper, without ``default_args``; a
      config that holds none is built with them, its other values (a
      ``loader``, a ``parser``) as written (module doc).

    ``cfg`` is left as it was.

    Args:
        default_args (dict | None): defaults of the datasets that hold no
            other (``dict(test_mode=True)``).
        resolver (Resolver | None): ``Resolver.of(config)``.
    """
    return _build_dataset(copy.deepcopy(cfg), dict(default_args or {}),
                          resolver or Resolver())


def _build_dataset(cfg, default_args, resolver, where='dataset'):
    if isinstance(cfg, (list, tuple)):
        return _concat([_build_dataset(c, default_args, resolver,
                                       f'{where}[{i}]')
                        for i, c in enumerate(cfg)], resolver)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{where}: a dataset config is a dict with a type '
                        f'(or a list of them), got {cfg!r}')
    cls, registry = resolver.find(cfg['type'], 'dataset')
    args = {k: v for k, v in cfg.items() if k != 'type'}
    if 'batch_ratios' in args and 'dataset' in args:
        parts_default = dict(default_args)
        if 'test_mode' in args:
            parts_default['test_mode'] = args.pop('test_mode')
        parts = args['dataset']
        if isinstance(parts, dict):
            parts = split_by_ratios(parts, args['batch_ratios'],
                                    f'{where}.dataset')
        args['dataset'] = [
            _build_dataset(p, parts_default, resolver, f'{where}.dataset[{i}]')
            for i, p in enumerate(parts)]
        return build_resolved(cls, registry, args)
    if isinstance(args.get('ann_file'), (list, tuple)):
        separate_eval = args.pop('separate_eval', True)
        return _concat([
            _build_dataset(part, default_args, resolver, f'{where}[{i}]')
            for i, part in enumerate(_split_ann_files(dict(args, type=cls)))
        ], resolver, separate_eval=separate_eval)
    wrapper = False
    for key, value in args.items():
        if key in WRAPPED_KEYS and not _builds_its_datasets(cls):
            if isinstance(value, (list, tuple)):  # a list stays a list
                args[key] = [_build_dataset(v, default_args, resolver,
                                            f'{where}.{key}[{i}]')
                             for i, v in enumerate(value)]
            else:
                args[key] = _build_dataset(value, default_args, resolver,
                                           f'{where}.{key}')
            wrapper = True
    return build_resolved(cls, registry, args,
                          None if wrapper else default_args)


def _builds_its_datasets(cls):
    """Whether the constructor of ``cls`` builds the dataset configs it is
    given: it calls a ``build_dataset`` (mmocr's ``UniformConcatDataset``,
    mmaction's ``ConcatDataset``)."""
    todo = [getattr(getattr(cls, '__init__', None), '__code__', None)]
    while todo:  # with its comprehensions' and inner functions' code
        code = todo.pop()
        if code is not None:
            if any('build_dataset' in name for name in code.co_names):
                return True
            todo.extend(c for c in code.co_consts if inspect.iscode(c))
    return False


def _concat(datasets, resolver, **kwargs):
    cls, registry = resolver.find('ConcatDataset', 'dataset')
    return build_resolved(cls, registry, dict(datasets=datasets, **kwargs))


def _split_ann_files(cfg):
    ann_files = cfg['ann_file']
    parts = []
    for i, ann_file in enumerate(ann_files):
        part = dict(cfg, ann_file=ann_file)
        for key in PER_ANN_FILE_KEYS:
            if isinstance(cfg.get(key), (list, tuple)):
                part[key] = cfg[key][i]
        pipeline = cfg.get('pipeline')
        if pipeline and isinstance(pipeline[0], (list, tuple)):
            part['pipeline'] = pipeline[i]
        parts.append(part)
    return parts


def _ratios(batch_ratios):
    if isinstance(batch_ratios, (list, tuple)):
        return list(batch_ratios)
    if isinstance(batch_ratios, str):
        return batch_ratios.split('|')
    return [batch_ratios]


def split_by_ratios(cfg, batch_ratios, where='dataset'):
    """One dataset config per ratio of ``batch_ratios`` (a number, a list,
    or ``'0.5|0.5'``) from DavarOCR's single ``dataset`` dict: a list (not
    of dicts) with one entry per ratio is split, ``ann_file`` /
    ``img_prefix`` strings are split on ``'|'``, any other value (a
    number, a string, a dict, a pipeline) is shared.

    Raises:
        ValueError: a list value whose length is not the number of ratios,
            named by its key.
    """
    count = len(_ratios(batch_ratios))
    cfg = dict(cfg)
    for key in BAR_SPLIT_KEYS:
        if isinstance(cfg.get(key), str) and '|' in cfg[key]:
            cfg[key] = cfg[key].split('|')
    per = {}
    for key, value in cfg.items():
        if not isinstance(value, (list, tuple)) or (
                value and isinstance(value[0], dict)):
            continue  # shared, as is a pipeline (a list of dicts)
        if len(value) != count and not (key in BAR_SPLIT_KEYS and
                                        len(value) == 1):
            raise ValueError(
                f'{where}.{key} has {len(value)} entries for {count} '
                f'batch_ratios; give one per dataset, or a single value '
                f'that they share')
        per[key] = value
    parts = []
    for i in range(count):
        part = dict(cfg)
        for key, value in per.items():
            part[key] = value[i] if len(value) == count else value[0]
        parts.append(part)
    return parts


# --------------------------------------------------------------- samplers
def build_sampler(cfg, dataset, samples_per_gpu, resolver=None):
    """Build the training sampler ``data.sampler`` (DavarOCR's
    ``BatchBalancedSampler``, ``DistBatchBalancedSampler``, ...) for
    ``dataset``, with ``samples_per_gpu`` as DavarOCR gives them.

    Raises:
        ValueError: the config gives ``dataset`` or ``samples_per_gpu``,
            which come from the data section.
    """
    given = [k for k in ('dataset', 'samples_per_gpu') if k in cfg]
    if given:
        raise ValueError(f'data.sampler.{given[0]}: the sampler gets the '
                         'training dataset and data.samples_per_gpu; '
                         'remove it from data.sampler')
    cls, registry = (resolver or Resolver()).find(cfg.get('type'), 'sampler')
    args = {k: v for k, v in cfg.items() if k != 'type'}
    return build_resolved(cls, registry, args, dict(
        dataset=dataset, samples_per_gpu=samples_per_gpu))


# ------------------------------------------------------------ data section
def check_data(data):
    """Stop on a key of the data section that nothing here reads.

    Raises:
        KeyError: naming the key (``data.<key>`` or
            ``data.<split>_dataloader.<key>``) and the accepted keys.
    """
    for key in data:
        if key not in DATA_KEYS:
            raise KeyError(f'data.{key} is not a data setting; accepted: '
                           f'{", ".join(DATA_KEYS)}')
    for split in ('train', 'val', 'test'):
        for key in data.get(f'{split}_dataloader') or {}:
            if key not in LOADER_KEYS:
                raise KeyError(
                    f'data.{split}_dataloader.{key} is not a loader '
                    f'setting; accepted: {", ".join(LOADER_KEYS)}')


def split_settings(data, split):
    """The dataset config of ``data.<split>`` and its loader settings.

    Settings (``samples_per_gpu``, ``workers_per_gpu``,
    ``persistent_workers``, ``pin_memory``) come from, first to last:
    ``data.<split>`` itself for ``val`` / ``test`` (``samples_per_gpu`` and
    ``workers_per_gpu``, taken out of the dataset config as DavarOCR's
    ``train_model`` and ``tools/test.py`` do; for a list of test configs,
    the largest), ``data.<split>_dataloader``, then ``data`` (with its
    ``imgs_per_gpu``, DavarOCR's older name, over ``samples_per_gpu``).
    ``test`` batches default to 1 sample, not ``data.samples_per_gpu``.

    Returns:
        tuple: (dataset config, a copy; settings dict)

    Raises:
        KeyError: an unknown data key (:func:`check_data`).
        ValueError: a setting given in ``data.<split>`` and in
            ``data.<split>_dataloader`` with different values.
    """
    check_data(data)
    settings = dict(samples_per_gpu=1, workers_per_gpu=0,
                    persistent_workers=False, pin_memory=False)
    settings.update({k: data[k] for k in LOADER_KEYS if k in data})
    if 'imgs_per_gpu' in data:
        if data.get('samples_per_gpu', data['imgs_per_gpu']) != \
                data['imgs_per_gpu']:
            raise ValueError(
                f'data.imgs_per_gpu={data["imgs_per_gpu"]} and '
                f'data.samples_per_gpu={data["samples_per_gpu"]} disagree; '
                'give samples_per_gpu only')
        settings['samples_per_gpu'] = data['imgs_per_gpu']
    if split == 'test':
        settings['samples_per_gpu'] = 1
    loader = dict(data.get(f'{split}_dataloader') or {})
    settings.update(loader)
    dataset_cfg = copy.deepcopy(data.get(split))
    if split == 'train' or dataset_cfg is None:
        return dataset_cfg, settings
    configs = dataset_cfg if isinstance(dataset_cfg, (list, tuple)) \
        else [dataset_cfg]
    for key in SPLIT_LOADER_KEYS:
        own = [c.pop(key) for c in configs
               if isinstance(c, dict) and key in c]
        if not own:
            continue
        if key in loader and loader[key] != max(own):
            raise ValueError(
                f'data.{split}.{key}={max(own)} and data.{split}_dataloader'
                f'.{key}={loader[key]} disagree; give one of them')
        settings[key] = max(own)
    return dataset_cfg, settings


def build_eval_dataloader(dataset, samples_per_gpu, workers_per_gpu,
                          distributed=False, **kwargs):
    """A loader for validation and testing, whatever the runner: finite,
    each sample once, in dataset order (rank r of n takes samples r, r + n,
    ..., padded to equal shares, as ``multi_gpu_test`` expects).

    ``kwargs`` go to mmdet's ``build_dataloader`` (``persistent_workers``,
    ``pin_memory``).
    """
    from mmdet.datasets import build_dataloader
    return build_dataloader(dataset, samples_per_gpu, workers_per_gpu,
                            num_gpus=1, dist=distributed, shuffle=False,
                            runner_type='EpochBasedRunner', **kwargs)


# ----------------------------------------------------------------- loaders
def build_train_loader(dataset, settings, sampler_cfg, distributed, seed,
                       runner_type, resolver):
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


def build_eval_loader(cfg, split, distributed=False, resolver=None):
    """The dataset of ``cfg.data.<split>`` (``'val'`` or ``'test'``), in
    test mode, and its evaluation loader (:func:`build_eval_dataloader`,
    with the settings of :func:`split_settings`), as training's eval hook
    and tools/test.py use them.

    Args:
        resolver (Resolver | None): default ``Resolver.of(cfg)``.

    Returns:
        tuple: (dataset, loader)

    Raises:
        KeyError: the config has no ``data.<split>``.
        ValueError: ``data.<split>`` is DavarOCR's flat recognition test
            section (``batch_ratios`` and per-set keys, no ``dataset``).
    """
    dataset_cfg, settings = split_settings(cfg.data, split)
    if dataset_cfg is None:
        raise KeyError(f'data.{split}: the config has no {split} dataset; '
                       f'give data.{split}')
    if isinstance(dataset_cfg, dict) and 'batch_ratios' in dataset_cfg \
            and 'dataset' not in dataset_cfg:  # DavarOCR's multi-dataset
        per_set = sorted(set(dataset_cfg) - {'type', 'batch_ratios'})
        kind = dataset_cfg.get('type')
        retest = ('Re-test on the validation split with tools/test.py CONFIG '
                  'CHECKPOINT --split val, or nest' if split == 'test'
                  else 'Nest')
        raise ValueError(
            f"data.{split} is DavarOCR's flat recognition test section "
            f'({kind} with batch_ratios and the per-set keys '
            f'{", ".join(per_set)}, no dataset), which DavarOCR reads only '
            f'in davar_rcg/tools/rcg_test.py. {retest} the set as its '
            f"data.val does: data.{split}=dict(type='{kind}', "
            'batch_ratios=1, test_mode=True, dataset=dict(type=<the text '
            'dataset>, data_type=..., ann_file=..., ...))')
    dataset = build_dataset(dataset_cfg, dict(test_mode=True),
                            resolver or Resolver.of(cfg))
    loader = build_eval_dataloader(
        dataset, settings['samples_per_gpu'], settings['workers_per_gpu'],
        distributed, persistent_workers=settings['persistent_workers'],
        pin_memory=settings['pin_memory'])
    return dataset, loader
