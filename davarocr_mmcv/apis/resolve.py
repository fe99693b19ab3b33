"""Name resolution: which loaded registry builds the class a config's
``type`` names, and the models built from it.

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
   ``Registry('ner')``; ``'DETECTOR'`` is the base toolbox's models
   registry;
2. registries of the packages the config imports (``custom_imports``),
   mmcv and the base toolbox aside;
3. the base toolbox's registries;
4. any other.

The base toolbox is mmdet 2.x: its place in the lookup (tiers 1 and 3, the
models it builds with its own ``build_detector``, the registry that builds
a class given as type) is :data:`BASE_TOOLBOX`, and nowhere else.

Two holders in the tier that decides raise a ``KeyError`` that lists them
and the ``'<scope>.<Name>'`` spelling that picks each.
"""
import inspect
import sys

import torch.nn as nn
from mmcv.utils import Registry, build_from_cfg, import_modules_from_strings
from torch.utils.data import Dataset, Sampler

from ..constants import DETECTOR

#: kind of object -> the base class of what a registry must hold for it
KINDS = {'model': nn.Module, 'dataset': Dataset, 'sampler': Sampler}
#: kind -> the methods a class of that kind without its base must have
PROTOCOLS = {'dataset': ('__getitem__', '__len__'),
             'sampler': ('__iter__', '__len__')}


class BaseToolbox:
    """mmdet, the toolbox this package stands on: its one place in the
    lookup.

    Attributes:
        scope (str): its registries' scope (tier 3).
        model_type (str): the top-level ``type`` that names its models
            registry (tier 1; DavarOCR's detector configs).
    """
    scope = 'mmdet'
    model_type = DETECTOR

    @staticmethod
    def load():
        """Import its models and datasets (always loaded)."""
        import mmdet.datasets  # noqa: F401
        import mmdet.models  # noqa: F401

    @staticmethod
    def models():
        from mmdet.models.builder import MODELS
        return MODELS

    @staticmethod
    def build_model(cfg, train_cfg=None, test_cfg=None):
        from mmdet.models import build_detector
        return build_detector(cfg, train_cfg=train_cfg, test_cfg=test_cfg)


BASE_TOOLBOX = BaseToolbox()
#: packages whose registries never count as a toolbox the config imports
BASE_PACKAGES = ('mmcv', BASE_TOOLBOX.scope)


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
    BASE_TOOLBOX.load()
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
            return registry is BASE_TOOLBOX.models()
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
        return 2 if registry.scope == BASE_TOOLBOX.scope else 3

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

    The base toolbox's models (mmdet's) go through its ``build_detector``;
    another
    registry's are built by that registry (its ``build_func`` and its own
    nested types apply), with ``train_cfg`` / ``test_cfg`` as default
    arguments when given, as DavarOCR's ``build_recognizor`` does.

    Args:
        resolver (Resolver | None): ``Resolver.of(config)``; None: a
            resolver without preferences.
    """
    cls, registry = (resolver or Resolver()).find(cfg.get('type'), 'model')
    cfg = dict(cfg, type=cls)
    if registry is None or registry is BASE_TOOLBOX.models():
        return BASE_TOOLBOX.build_model(cfg, train_cfg, test_cfg)
    defaults = {k: v for k, v in (('train_cfg', train_cfg),
                                  ('test_cfg', test_cfg)) if v is not None}
    return registry.build(cfg, default_args=defaults)

def build_resolved(cls, registry, args, default_args=None):
    """mmcv's ``build_from_cfg`` of class ``cls`` (its errors name the
    class) found by :meth:`Resolver.find`; any registry serves for a class
    given as type (the base toolbox's models)."""
    return build_from_cfg(dict(args, type=cls),
                          registry or BASE_TOOLBOX.models(), default_args)


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
