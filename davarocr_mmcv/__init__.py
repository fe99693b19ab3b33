"""DavarOCR's checkpoint and evaluation hooks for mmcv-full 1.7.1.

Importing the package registers ``DavarCheckpointHook``, ``DavarEvalHook``
and ``DavarDistEvalHook`` in mmcv's ``HOOKS`` and lets ``torch.load`` read
the numpy values that mmcv 1.x / DavarOCR checkpoints carry. Names shared
with mmcv and with DavarOCR's ``davarocr.mmcv`` follow the rules of
``compat/registry.py``.
"""
from .compat.registry import guard_davarocr_names, register_mmcv_names
from .serialization import register_safe_globals
from .version import __version__

register_safe_globals()
guard_davarocr_names()  # before the hooks and runners below register

from .apis import multi_gpu_test, single_gpu_test  # noqa: E402
from .hooks import (DavarCheckpointHook, DavarDistEvalHook,  # noqa: E402
                    DavarEvalHook, ReduceonplateauLrUpdaterHook,
                    TrainStatusHook)
from .utils import DavarProgressBar  # noqa: E402
from . import runner  # noqa: E402,F401  registers the Davar runners

register_mmcv_names()

__all__ = [
    '__version__', 'DavarCheckpointHook', 'DavarEvalHook',
    'DavarDistEvalHook', 'ReduceonplateauLrUpdaterHook', 'TrainStatusHook',
    'DavarProgressBar', 'single_gpu_test', 'multi_gpu_test'
]
