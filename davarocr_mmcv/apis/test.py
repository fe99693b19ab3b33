"""The test loops, where DavarOCR's ``apis`` had them; they live in
:mod:`davarocr_mmcv.core.testing`, below the hooks that run them."""
from ..core.testing import (MODEL_TYPES, collect_results,  # noqa: F401
                            collect_results_files, format_results,
                            inference_kwargs, interleave, multi_gpu_test,
                            single_gpu_test)

__all__ = ['single_gpu_test', 'multi_gpu_test']
