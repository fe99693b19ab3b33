"""Tiny real models and datasets used by the demos (``custom_imports =
dict(imports=['davarocr_mmcv.toy'])``): ``ToyCRNN`` (also registered as
``ToyTextRecognizer``) in mmdet's ``DETECTORS`` and ``ToyTextDataset`` in
mmdet's ``DATASETS``."""
from .recognition import (CHARSET, METRICS, ToyCRNN, ToyTextDataset,
                          ToyTextRecognizer, edit_distance)

__all__ = ['CHARSET', 'METRICS', 'ToyCRNN', 'ToyTextRecognizer',
           'ToyTextDataset', 'edit_distance']
