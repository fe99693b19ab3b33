"""Build models, datasets, samplers and evaluation loaders from old-style
configs, whichever loaded registry holds their ``type``.

Finding a class by name is one rule (:class:`Resolver`). Every mmcv
``Registry`` that a loaded module holds, with the registry trees those
belong to, is searched for a class of the kind being built (``model``: an
``nn.Module``, ``dataset``: a ``Dataset`` or a class with ``__getitem__``
and ``__len__``, ``sampler``: a ``Sampler`` or a class with ``__iter__``
and ``__len__``),
whether the registry has a parent (mmdet's, mmcls's and mmseg's models
under mmcv's root) or not (DavarOCR's ``Registry('recognizor')``).
``'<scope>.<Name>'`` takes the registry of that scope. An unscoped name
that several registries hold goes to the first of these tiers that holds it:

1. the registry that the config's top-level ``type`` names (models only):
   DavarOCR's ``'RECOGNIZOR'`` is ``Registry('recognizor')``, ``'NER'``
   ``Registry('ner')``; ``'DETECTOR'`` is mmdet's models registry;
2. registries of the packages the config imports (``custom_imports``),
   mmcv and mmdet aside;
3. mmdet's registries;
4. any other.

Two holders in the tier that decides raise a ``KeyError`` that lists them
and the ``'<scope>.<Name>'`` spelling that picks each.

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
import sys

import torch.nn as nn
from mmcv.utils import Registry, build_from_cfg, import_modules_from_strings
from torch.utils.data import Dataset, Sampler

#: kind of object -> the base class of what a registry must hold for it
KINDS = {'model': nn.Module, 'dataset': Dataset, 'sampler': Sampler}
#: kind -> the methods a class of that kind without its base must have
PROTOCOLS = {'dataset': ('__getitem__', '__len__'),
             'sampler': ('__iter__', '__len__')}
#: packages whose registries never count as a toolbox the config imports
BASE_PACKAGES = ('mmcv', 'mmdet')
#: the top-level ``type`` of DavarOCR's detector configs (its default)
DETECTOR = 'DETECTOR'
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


def _mmdet_models():
    from mmdet.models.builder import MODELS
    return MODELS


# ------------------------------------------------------------ registries
def registry_tree(registry):
    """Every registry of the tree ``registry`` belongs to, root first."""
    root = registry
    while root.parent is not None:
        root = root.parent
    found, todo = [], [root]
    while todo:
        node = todo.pop(0)
        found.append(node)
        todo.extend(node.children.values())
    return found


def scope_path(registry):
    """``'mmcv.mmdet.mytoolbox'``: the scopes from the root down to
    ``registry``."""
    scopes = []
    while registry is not None:
        scopes.append(registry.scope)
        registry = registry.parent
    return '.'.join(reversed(scopes))


_LOADED = {'modules': -1, 'registries': ()}


def loaded_registries():
    """Every ``Registry`` a loaded module holds, with the trees they belong
    to; each once, ordered by scope path and name. mmdet's models and
    datasets (the base toolbox) are always loaded. Recomputed when modules
    were loaded since the last call."""
    import mmdet.datasets  # noqa: F401
    import mmdet.models  # noqa: F401
    if _LOADED['modules'] != len(sys.modules):
        found = {}
        for module in list(sys.modules.values()):
            try:
                values = list(vars(module).values())
            except TypeError:  # not a module
                continue
            for value in values:
                # type(), not isinstance: no __class__ lookup, which warns
                # on deprecated module attributes (torch.distributed's)
                if issubclass(type(value), Registry) and \
                        id(value) not in found:
                    for registry in registry_tree(value):
                        found.setdefault(id(registry), registry)
        _LOADED['registries'] = tuple(sorted(
            found.values(), key=lambda r: (scope_path(r), r.name)))
        _LOADED['modules'] = len(sys.modules)
    return _LOADED['registries']


def _lookup(registry, name):
    """What ``registry`` holds as ``name``; ``'<child scope>.<Name>'``
    looks in that child."""
    scope, name = Registry.split_scope_key(name)
    if scope is None:
        return registry.module_dict.get(name)
    child = registry.children.get(scope)
    return None if child is None else _lookup(child, name)


def _of_kind(obj, kind):
    """Whether ``obj`` is a class of ``kind``: a subclass of its base in
    ``KINDS``, or (datasets, samplers) a class with its protocol: mmdet's
    ``RepeatDataset`` and ``ClassBalancedDataset`` subclass nothing."""
    if not inspect.isclass(obj):
        return False
    if issubclass(obj, KINDS[kind]):
        return True
    protocol = PROTOCOLS.get(kind, ())
    return bool(protocol) and not issubclass(obj, nn.Module) and all(
        callable(getattr(obj, m, None)) for m in protocol)


def _describe(registry):
    return (f"'{registry.scope}' ({scope_path(registry)}, registry "
            f"'{registry.name}')")


def config_imports(cfg):
    """The modules ``cfg.custom_imports`` names: ``dict(imports=...)``, a
    list or a string."""
    custom = cfg.get('custom_imports') or ()
    if isinstance(custom, dict):
        custom = custom.get('imports') or ()
    return [custom] if isinstance(custom, str) else list(custom)


class Resolver:
    """Finds the class that a ``type`` names, by the rule of this module.

    Args:
        imports (Iterable[str]): modules the config imports
            (``custom_imports``); the registries of their top-level
            packages, mmcv and mmdet aside, are tier 2. Default: none.
        model_type (str | None): the config's top-level ``type``
            (``'DETECTOR'``, DavarOCR's ``'RECOGNIZOR'``, ``'SPOTTER'``,
            ``'NER'``, ...): a registry's name, case aside, or
            ``'DETECTOR'`` for mmdet's models. Default: None (no tier 1).

    Raises:
        ValueError: ``model_type`` names no loaded registry.
    """

    def __init__(self, imports=(), model_type=None):
        if isinstance(imports, str):
            imports = [imports]
        packages = (name.split('.')[0] for name in imports)
        self.packages = tuple(dict.fromkeys(
            p for p in packages if p not in BASE_PACKAGES))
        if model_type is not None:
            self._check_model_type(model_type)
        self.model_type = model_type

    @classmethod
    def of(cls, cfg):
        """The resolver of a whole config: its ``custom_imports`` and its
        top-level ``type``."""
        return cls(config_imports(cfg), cfg.get('type'))

    # ---------------------------------------------------------- tiers
    def _names_registry(self, registry, model_type=None):
        model_type = model_type or self.model_type
        if model_type is None:
            return False
        if model_type.upper() == DETECTOR:
            return registry is _mmdet_models()
        return registry.name.lower() == model_type.lower()

    def _check_model_type(self, model_type):
        if not isinstance(model_type, str) or not any(
                self._names_registry(r, model_type)
                for r in loaded_registries()):
            names = sorted({
                r.name.upper() for r in loaded_registries()
                if r.parent is None and r.scope not in BASE_PACKAGES
                and any(_of_kind(c, 'model') for c in r.module_dict.values())
            })
            accepted = ', '.join(repr(n) for n in [DETECTOR, *names])
            raise ValueError(
                f"type={model_type!r} (the config's top-level model type) "
                f'names no loaded registry; accepted: {accepted} (the '
                'name of a loaded registry of models, case aside); is the '
                'package that defines it in custom_imports?')

    def tier(self, registry, kind):
        """0 to 3: the tier of ``registry`` for a ``kind`` (module doc)."""
        if kind == 'model' and self._names_registry(registry):
            return 0
        node = registry
        while node is not None:
            if node.scope in self.packages:
                return 1
            node = node.parent
        return 2 if registry.scope == 'mmdet' else 3

    # ---------------------------------------------------------- lookup
    def holders(self, obj_type, kind):
        """The loaded registries that hold ``obj_type`` (a name, scoped or
        not) as a class of ``kind``, best tier first; only those of the
        best tier."""
        scope, name = Registry.split_scope_key(obj_type)
        held = [r for r in loaded_registries()
                if scope in (None, r.scope) and _of_kind(_lookup(r, name),
                                                         kind)]
        if not held:
            return []
        best = min(self.tier(r, kind) for r in held)
        return [r for r in held if self.tier(r, kind) == best]

    def find(self, obj_type, kind):
        """``(class, registry)`` of ``obj_type``; a class is its own
        (registry None).

        Raises:
            KeyError: no loaded registry holds the name, or several of the
                tier that decides do.
        """
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {sorted(KINDS)}, got '
                             f'{kind!r}')
        if inspect.isclass(obj_type):
            return obj_type, None
        if not isinstance(obj_type, str):
            raise TypeError(f'a {kind} type must be a str or a class, got '
                            f'{obj_type!r}')
        held = self.holders(obj_type, kind)
        name = Registry.split_scope_key(obj_type)[1]
        if len(held) == 1:
            return _lookup(held[0], name), held[0]
        if not held:
            paths = ', '.join(dict.fromkeys(
                scope_path(r) for r in loaded_registries()
                if any(_of_kind(c, kind) for c in r.module_dict.values())))
            raise KeyError(
                f'{obj_type} is not in the {kind} registries of the loaded '
                f'packages (scopes: {paths}); is the package that registers '
                f'it in custom_imports?')
        scopes = list(dict.fromkeys(r.scope for r in held))
        hint = ('Write type=\'<scope>.{0}\' to choose one: {1}'.format(
            name, ', '.join(f"'{s}.{name}'" for s in scopes)))
        if len(scopes) < len(held):
            hint += ('; registries of one scope are told apart by the '
                     "config's top-level type (models only): " + ', '.join(
                         f"type='{r.name.upper()}'" for r in held))
        raise KeyError(f'{name} is in {len(held)} registries of {kind}s: '
                       f'{", ".join(_describe(r) for r in held)}. {hint}')


def locate(obj_type, registry, resolver=None):
    """The registry that builds ``obj_type`` among the loaded registries
    holding classes of ``registry``'s kind (see :class:`Resolver`); an
    object that is not a name stays with ``registry``."""
    if not isinstance(obj_type, str):
        return registry
    kind = next((k for k in KINDS if any(
        _of_kind(c, k) for c in registry.module_dict.values())), 'model')
    return (resolver or Resolver()).find(obj_type, kind)[1]


# ----------------------------------------------------------------- models
def build_model(cfg, train_cfg=None, test_cfg=None, resolver=None):
    """Build the model of ``cfg`` from the registry that holds its type.

    mmdet's models go through mmdet's ``build_detector``; another
    registry's are built by that registry (its ``build_func`` and its own
    nested types apply), with ``train_cfg`` / ``test_cfg`` as default
    arguments when given, as DavarOCR's ``build_recognizor`` does.

    Args:
        resolver (Resolver | None): ``Resolver.of(config)``; None: a
            resolver without preferences.
    """
    cls, registry = (resolver or Resolver()).find(cfg.get('type'), 'model')
    cfg = dict(cfg, type=cls)
    if registry is None or registry is _mmdet_models():
        from mmdet.models import build_detector
        return build_detector(cfg, train_cfg=train_cfg, test_cfg=test_cfg)
    defaults = {k: v for k, v in (('train_cfg', train_cfg),
                                  ('test_cfg', test_cfg)) if v is not None}
    return registry.build(cfg, default_args=defaults)


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
        return _build(cls, registry, args)
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
    return _build(cls, registry, args, None if wrapper else default_args)


def _build(cls, registry, args, default_args=None):
    """mmcv's ``build_from_cfg`` of class ``cls`` (its errors name the
    class); any registry serves for a class given as type."""
    return build_from_cfg(dict(args, type=cls), registry or _mmdet_models(),
                          default_args)


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
    return _build(cls, registry, dict(datasets=datasets, **kwargs))


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
    return _build(cls, registry, args, dict(dataset=dataset,
                                            samples_per_gpu=samples_per_gpu))


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


def import_custom_modules(cfg):
    """Import ``cfg.custom_imports`` (``imports``, ``allow_failed_imports``;
    or a list of modules).

    ``Config.fromfile`` imports those of the file; call this after merging
    ``--cfg-options`` so that imports given there are imported too. Modules
    already imported are not imported again.
    """
    custom = cfg.get('custom_imports')
    if isinstance(custom, dict):
        import_modules_from_strings(**dict(custom))
    elif custom:
        import_modules_from_strings(config_imports(cfg))


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
