"""Build models, datasets and evaluation loaders for the tools and
``train_model``, across the OpenMMLab registry tree.

mmdet's ``build_detector`` / ``build_dataset`` look an unscoped ``type`` up
in mmdet's own registry only, so a toolbox whose models or datasets live in
a registry of its own (a child of mmdet's registry, or of mmcv's root)
needed ``type='<scope>.<Name>'``. Here a type that mmdet has is mmdet's; a
type it lacks is taken from the one other registry of the tree that has it,
and is ambiguous (an error naming the scopes) when several have it.
"""
from mmcv.utils import import_modules_from_strings

#: keys under which mmdet's dataset wrappers hold the datasets they wrap
WRAPPED_KEYS = ('dataset', 'datasets')


def _mmdet_models():
    from mmdet.models.builder import MODELS
    return MODELS


def _mmdet_datasets():
    from mmdet.datasets.builder import DATASETS
    return DATASETS


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


def locate(obj_type, registry):
    """The registry of ``registry``'s tree that builds ``obj_type``.

    An unscoped name that ``registry`` (mmdet's) has is its own; one it
    lacks belongs to the single other registry of the tree that has it. A
    scoped name (``'<scope>.<Name>'``) belongs to the registry of that scope
    anywhere in the tree. Anything else (a class, an unknown scope) is left
    to ``registry``, which resolves it as mmcv does.

    Raises:
        KeyError: no registry of the tree has the name, or several do.
    """
    if not isinstance(obj_type, str):
        return registry
    scope, name = registry.split_scope_key(obj_type)
    tree = registry_tree(registry)
    if scope is not None:
        scoped = [r for r in tree if r.scope == scope]
        return scoped[0] if len(scoped) == 1 else registry
    if name in registry.module_dict:
        return registry
    holders = [r for r in tree if name in r.module_dict]
    if len(holders) == 1:
        return holders[0]
    if not holders:
        raise KeyError(
            f'{name} is not in the {registry.name} registry of '
            f'{registry.scope} nor in any registry of its tree '
            f'({", ".join(scope_path(r) for r in tree)}); is the package '
            f'that registers it in custom_imports?')
    scopes = ', '.join(f"'{r.scope}' ({scope_path(r)})" for r in holders)
    raise KeyError(
        f'{name} is in {len(holders)} registries of the {registry.name} '
        f'tree: {scopes}. '
        f"Write type='<scope>.{name}' to choose one, e.g. "
        f"type='{holders[0].scope}.{name}'")


def build_model(cfg, train_cfg=None, test_cfg=None):
    """Build a model of mmdet's registry tree.

    A type of mmdet's goes through mmdet's ``build_detector``; a type of
    another registry is built by that registry (so its own ``build_func``
    and its nested types apply), with ``train_cfg`` / ``test_cfg`` as
    default arguments when given.
    """
    registry = _mmdet_models()
    holder = locate(cfg.get('type'), registry)
    if holder is registry:
        from mmdet.models import build_detector
        return build_detector(cfg, train_cfg=train_cfg, test_cfg=test_cfg)
    defaults = {k: v for k, v in (('train_cfg', train_cfg),
                                  ('test_cfg', test_cfg)) if v is not None}
    return holder.build(cfg, default_args=defaults)


def build_dataset(cfg, default_args=None):
    """Build a dataset of mmdet's registry tree.

    A type of another registry is built by that registry. mmdet's types,
    its wrappers (``ConcatDataset``, ``RepeatDataset``, ...), lists of
    configs and lists of ``ann_file`` go through mmdet's ``build_dataset``;
    the datasets its wrappers hold are resolved the same way and handed to
    it as classes (mmcv builds a class given as ``type``).
    """
    registry = _mmdet_datasets()
    if isinstance(cfg, dict):
        holder = locate(cfg.get('type'), registry)
        if holder is not registry:
            return holder.build(cfg, default_args=default_args)
    from mmdet.datasets import build_dataset as mmdet_build_dataset
    return mmdet_build_dataset(_wrapped_as_classes(cfg, registry),
                               default_args)


def _wrapped_as_classes(cfg, registry):
    """A copy of dataset config ``cfg`` where the datasets held by mmdet's
    wrappers name their class when another registry of the tree has it."""
    if isinstance(cfg, (list, tuple)):
        return [_wrapped_as_classes(c, registry) for c in cfg]
    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    holder = locate(cfg.get('type'), registry)
    if holder is not registry:
        # a scoped name it lacks stays a name, for mmcv's usual error
        cfg['type'] = holder.get(cfg['type']) or cfg['type']
        return cfg  # what it holds is its own registry's business
    for key in WRAPPED_KEYS:
        if key in cfg:
            cfg[key] = _wrapped_as_classes(cfg[key], registry)
    return cfg


def build_eval_dataloader(dataset, samples_per_gpu, workers_per_gpu,
                          distributed=False, **kwargs):
    """A loader for validation and testing, whatever the runner: finite,
    each sample once, in dataset order (rank r of n takes samples r, r + n,
    ..., padded to equal shares, as ``multi_gpu_test`` expects).

    ``kwargs`` go to mmdet's ``build_dataloader`` (``persistent_workers``).
    """
    from mmdet.datasets import build_dataloader
    return build_dataloader(dataset, samples_per_gpu, workers_per_gpu,
                            num_gpus=1, dist=distributed, shuffle=False,
                            runner_type='EpochBasedRunner', **kwargs)


def import_custom_modules(cfg):
    """Import ``cfg.custom_imports`` (``imports``, ``allow_failed_imports``).

    ``Config.fromfile`` imports those of the file; call this after merging
    ``--cfg-options`` so that imports given there are imported too. Modules
    already imported are not imported again.
    """
    custom = cfg.get('custom_imports')
    if custom:
        import_modules_from_strings(**dict(custom))
