"""Names that davarocr_mmcv shares with other packages in mmcv's registries.

One place, two rules, both applied by ``import davarocr_mmcv``:

* **mmcv's names** ``EvalHook`` / ``DistEvalHook`` (mmcv 1.7.1 registers
  neither in ``HOOKS``) build ``DavarEvalHook`` / ``DavarDistEvalHook`` where
  nobody holds them. A package that registered one first keeps it, with a
  warning (:func:`register_mmcv_names`).
* **DavarOCR's names** ``DavarCheckpointHook``,
  ``ReduceonplateauLrUpdaterHook`` (``HOOKS``) and ``DistillRunner``
  (``RUNNERS``), which DavarOCR's ``davarocr.mmcv`` registers too, build
  davarocr_mmcv's classes whichever package is imported first
  (:func:`guard_davarocr_names`). Imported second, davarocr_mmcv replaces
  DavarOCR's classes; imported first, it keeps its own and DavarOCR's later
  registration of these names is skipped, where mmcv would raise
  ``KeyError: '... is already registered in hook'``. One
  :class:`DavarOCRNamesWarning` per process says so. Registrations of these
  names by any other package, or with ``force=True``, behave as in mmcv.

Clashes are settled by rules added to a registry with :func:`add_rule`; the
opt-in ``davarocr_mmcv.compat.davarocr`` adds its rule for DavarOCR's
classes over mmdet's the same way.
"""
import inspect
import warnings

from mmcv.runner import HOOKS, RUNNERS

#: mmcv's class names, taken where nobody holds them: name -> the name
#: davarocr_mmcv's class is registered under.
MMCV_NAMES = {'EvalHook': 'DavarEvalHook', 'DistEvalHook': 'DavarDistEvalHook'}

#: DavarOCR's names, built by davarocr_mmcv's classes: (registry, names).
DAVAROCR_NAMES = (
    (HOOKS, ('DavarCheckpointHook', 'ReduceonplateauLrUpdaterHook')),
    (RUNNERS, ('DistillRunner', )),
)

OURS, DAVAROCR = 'davarocr_mmcv', 'davarocr'


class DavarOCRNamesWarning(UserWarning):
    """DavarOCR's ``davarocr.mmcv`` and davarocr_mmcv registered the same
    name; davarocr_mmcv's class is the one that builds."""


def register_mmcv_names(registry=HOOKS):
    """Make ``type='EvalHook'`` / ``type='DistEvalHook'`` buildable from
    ``registry``: they build DavarEvalHook / DavarDistEvalHook (registered
    there already), subclasses of mmcv's classes taking their arguments.
    A name some other package registered first keeps its class, with a
    warning; a package registering it later needs ``force=True``.
    """
    for name, ours in MMCV_NAMES.items():
        cls = registry.get(ours)
        holder = registry.module_dict.get(name)
        if holder is None:
            registry.register_module(name=name, module=cls)
        elif holder is not cls:
            warnings.warn(
                f"HOOKS already holds {name!r} ({holder.__module__}."
                f"{holder.__qualname__}); type={name!r} builds that class. "
                f"Write type='{ours}' for davarocr_mmcv's.")


def guard_davarocr_names():
    """Apply the DavarOCR rule to every later registration in ``HOOKS`` and
    ``RUNNERS``. Call it before davarocr_mmcv's classes register; calling
    it again changes nothing."""
    for registry, names in DAVAROCR_NAMES:
        add_rule(registry, _davarocr_names)


def add_rule(registry, rule):
    """Let ``rule`` settle a clash in ``registry`` that mmcv would end with
    ``KeyError: '<name> is already registered'``.

    ``rule(registry, name, holder, new)`` is asked, in the order the rules
    were added, when class ``new`` registers ``name`` without ``force``
    while another class ``holder`` holds it. It returns ``'replace'``
    (``new`` takes the name), ``'keep'`` (``holder`` keeps it; the
    registration is skipped) or None (the next rule; mmcv's KeyError after
    the last). Registrations with ``force=True`` and of free names are
    mmcv's. The rules wrap ``_register_module`` (mmcv 1.7.1's one path for
    ``register_module``, as a decorator or with ``module=``) on the given
    registry object only. Adding the same rule twice changes nothing.
    """
    rules = vars(registry).get('_davarocr_mmcv_rules')
    if rules is None:
        rules = registry._davarocr_mmcv_rules = []
        registry._register_module = _guarded(registry, rules)
    if rule not in rules:
        rules.append(rule)


def _package(cls):
    return getattr(cls, '__module__', '').partition('.')[0]


def _guarded(registry, rules):
    register = registry._register_module  # mmcv's, bound to registry

    def register_module(module, module_name=None, force=False):
        if force or not inspect.isclass(module):
            return register(module, module_name, force)
        wanted = module.__name__ if module_name is None else module_name
        rest = []
        for name in [wanted] if isinstance(wanted, str) else wanted:
            holder = registry.module_dict.get(name)
            verdict = None
            for rule in rules if holder not in (None, module) else ():
                verdict = rule(registry, name, holder, module)
                if verdict:
                    break
            if verdict == 'replace':
                register(module, name, True)
            elif verdict != 'keep':
                rest.append(name)
        if rest:
            register(module, rest, force)

    return register_module


def _davarocr_names(registry, name, holder, new):
    names = dict(DAVAROCR_NAMES).get(registry, ())
    if name not in names or \
            {_package(holder), _package(new)} != {OURS, DAVAROCR}:
        return None
    _warn_once(name, new, holder)
    return 'replace' if _package(new) == OURS else 'keep'


_warned = []


def _warn_once(name, new, old):
    if _warned:
        return
    _warned.append(name)
    davar, replaced = (old, True) if _package(new) == OURS else (new, False)
    listed = ' and '.join(
        ', '.join(f"'{n}'" for n in names) + f" (mmcv's {reg.name} registry)"
        for reg, names in DAVAROCR_NAMES)
    warnings.warn(
        f"DavarOCR's davarocr.mmcv and davarocr_mmcv are both loaded: "
        f"{listed} build davarocr_mmcv's classes, DavarOCR's rebuilt for "
        f"mmcv-full 1.7.1, whichever package is imported first. DavarOCR's "
        f"classes of these names give way (first: "
        f"{davar.__module__}.{davar.__qualname__}, "
        f"{'replaced' if replaced else 'not registered'}) and stay "
        f"importable from davarocr.mmcv. Shown once per process.",
        DavarOCRNamesWarning, stacklevel=5)  # the line that registers
