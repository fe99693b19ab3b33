from .checkpoint import DavarCheckpointHook
from .evaluation import DavarDistEvalHook, DavarEvalHook
from .lr_plateau import ReduceonplateauLrUpdaterHook
from .preempt import PreemptionHook
from .status import TrainStatusHook

__all__ = [
    'DavarCheckpointHook', 'DavarEvalHook', 'DavarDistEvalHook',
    'ReduceonplateauLrUpdaterHook', 'TrainStatusHook', 'PreemptionHook'
]
