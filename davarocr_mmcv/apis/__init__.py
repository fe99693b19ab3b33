from .data import build_dataset, build_eval_dataloader
from .resolve import build_model, import_custom_modules
from .dist import init_dist, wrap_model
from .test import multi_gpu_test, single_gpu_test
from .train import build_eval_hook, train_model

__all__ = [
    'single_gpu_test', 'multi_gpu_test', 'train_model', 'build_eval_hook',
    'init_dist', 'wrap_model', 'build_model', 'build_dataset',
    'build_eval_dataloader', 'import_custom_modules'
]
