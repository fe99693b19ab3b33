"""pytest plugin (``-p davar_as_mmcv``): mmcv's own test modules, run with
davarocr_mmcv's eval hooks in place of mmcv's.

Loaded before collection, so that a test module's
``from mmcv.runner import EvalHook`` (or ``DistEvalHook``), whatever name it
gives them, binds DavarEvalHook (DavarDistEvalHook). Nothing of the test
module is changed. mmcv's runners also skip their 2 s pause at epoch
transitions (``toy.no_epoch_sleep``), which no test asserts.
"""
import mmcv.runner

import davarocr_mmcv  # noqa: F401  imported (and bound to mmcv's) first
from davarocr_mmcv import DavarDistEvalHook, DavarEvalHook
from toy import no_epoch_sleep

IN_PLACE_OF_MMCV = {'EvalHook': DavarEvalHook,
                    'DistEvalHook': DavarDistEvalHook}

for _name, _cls in IN_PLACE_OF_MMCV.items():
    setattr(mmcv.runner, _name, _cls)
no_epoch_sleep()


def pytest_collection_finish(session):
    """Every eval-hook class a collected module holds is, or derives from,
    a Davar hook; the run stops otherwise."""
    from mmcv.runner.hooks.evaluation import EvalHook
    modules = {item.module for item in session.items
               if getattr(item, 'module', None) is not None}
    seen = []
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, EvalHook):
                if not issubclass(value, DavarEvalHook):
                    raise RuntimeError(
                        f'{module.__name__}.{name} is mmcv\'s {value!r}, '
                        'not a Davar hook')
                seen.append(f'{name} -> {value.__mro__[1].__name__}'
                            if value not in IN_PLACE_OF_MMCV.values()
                            else f'{name} is {value.__name__}')
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    if reporter is not None:
        reporter.write_line('davar_as_mmcv: ' + ', '.join(sorted(seen)))
