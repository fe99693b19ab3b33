"""Tiny real models and datasets used by the demos (``custom_imports =
dict(imports=['davarocr_mmcv.toy'])``)."""
from .recognition import ToyCRNN, ToyTextDataset

__all__ = ['ToyCRNN', 'ToyTextDataset']
