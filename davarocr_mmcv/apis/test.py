"""The inference loops, where DavarOCR's ``apis`` had them; they live in
:mod:`davarocr_mmcv.core.inference`, below the hooks that run them."""
from ..core.filegather import collect_results_files  # noqa: F401
from ..core.inference import (MODEL_TYPES, collect_results,  # noqa: F401
                              format_results, inference_kwargs, interleave,
                              multi_gpu_test, single_gpu_test)

__all__ = ['single_gpu_test', 'multi_gpu_test']
