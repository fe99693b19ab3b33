from .checkpoint import DavarCheckpointHook
from .evaluation import DavarDistEvalHook, DavarEvalHook

__all__ = ['DavarCheckpointHook', 'DavarEvalHook', 'DavarDistEvalHook']
