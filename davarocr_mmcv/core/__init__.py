from .metrics import (GREATER_KEYS, LESS_KEYS, BestTracker, EvalRecord,
                      infer_rule, is_better, publish_evaluation)
from .progress import Point, current_point, is_iter_based
from .writer import CheckpointWriter

__all__ = [
    'GREATER_KEYS', 'LESS_KEYS', 'BestTracker', 'EvalRecord', 'infer_rule',
    'is_better', 'publish_evaluation', 'Point', 'current_point',
    'is_iter_based', 'CheckpointWriter'
]
