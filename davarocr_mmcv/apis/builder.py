"""Where the builders were: name resolution is :mod:`.resolve`, DavarOCR's
data section and the loaders :mod:`.data`. Kept so that old imports work."""
from .data import (BAR_SPLIT_KEYS, DATA_KEYS, LOADER_KEYS,  # noqa: F401
                   PER_ANN_FILE_KEYS, SPLIT_LOADER_KEYS, WRAPPED_KEYS,
                   _builds_its_datasets, build_dataset, build_eval_dataloader,
                   build_eval_loader, build_sampler, check_data,
                   split_by_ratios, split_settings)
from .resolve import (BASE_PACKAGES, DETECTOR, KINDS, PROTOCOLS,  # noqa: F401
                      Resolver, build_model, build_resolved, config_imports,
                      import_custom_modules, loaded_registries, locate,
                      registry_tree, scope_path)
