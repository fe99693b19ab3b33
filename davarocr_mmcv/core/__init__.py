from .best import BestKeeper, Ledger, publish_evaluation
from .metrics import (GREATER_KEYS, LESS_KEYS, BestTracker, EvalRecord,
                      infer_rule, is_better)
from .progress import Point, current_point, is_iter_based
from .writer import CheckpointWriter

__all__ = [
    'GREATER_KEYS', 'LESS_KEYS', 'BestTracker', 'EvalRecord', 'infer_rule',
    'is_better', 'publish_evaluation', 'BestKeeper', 'Ledger', 'Point',
    'current_point', 'is_iter_based', 'CheckpointWriter'
]
