from .runners import (DavarEpochBasedRunner, DavarIterBasedRunner,
                      DavarIterLoader, DistillRunner)

__all__ = [
    'DavarEpochBasedRunner', 'DavarIterBasedRunner', 'DavarIterLoader',
    'DistillRunner'
]
