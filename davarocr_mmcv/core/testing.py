"""Where the inference loops were: they live in
:mod:`davarocr_mmcv.core.inference` (the file gather in
:mod:`davarocr_mmcv.core.filegather`). Kept so that old imports work."""
from ..constants import MODEL_TYPES  # noqa: F401
from .filegather import (COLLECT_PREFIX,  # noqa: F401
                         collect_results_files, remove_dead_collections)
from .inference import (OPTIONAL_TEST_KWARGS, TEST_PATH,  # noqa: F401
                        collect_results, format_results, inference_kwargs,
                        interleave, multi_gpu_test, single_gpu_test)
