"""A toolbox with registries of its own, for tests/test_registry_tree.py.

Its models live in a registry under mmcv's root (a sibling of mmdet's), its
datasets in a child of mmdet's: configs name them without a scope and
``custom_imports = dict(imports=['mytoolbox'])`` (with ``tests/toolbox`` on
``PYTHONPATH``).
"""
import torch.nn as nn
from mmcv.cnn import MODELS as MMCV_MODELS
from mmcv.utils import Registry
from mmdet.datasets.builder import DATASETS as MMDET_DATASETS

from davarocr_mmcv.toy import ToyCRNN, ToyTextDataset

MODELS = Registry('model', parent=MMCV_MODELS, scope='mytoolbox')
DATASETS = Registry('dataset', parent=MMDET_DATASETS, scope='mytoolbox')


@MODELS.register_module()
class ToolboxNeck(nn.Module):
    """LayerNorm over the sequence features."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x)


@MODELS.register_module(name=['ToolboxNet', 'SharedNet'])
class ToolboxNet(ToyCRNN):
    """ToyCRNN with a neck built from this toolbox's registry (an unscoped
    ``neck=dict(type='ToolboxNeck', ...)``)."""

    def __init__(self, neck=None, **kwargs):
        super().__init__(**kwargs)
        self.neck = MODELS.build(neck) if neck else nn.Identity()

    def extract_feat(self, img):
        return self.neck(super().extract_feat(img))


@DATASETS.register_module()
class ToolboxTextDataset(ToyTextDataset):
    """ToyTextDataset keeping its first ``max_items`` images, an argument
    mmdet's datasets do not take."""

    def __init__(self, ann_file, max_items, **kwargs):
        super().__init__(ann_file, **kwargs)
        self.items = self.items[:max_items]
        self.texts = self.texts[:max_items]
        self.flag = self.flag[:max_items]


@DATASETS.register_module(name='CustomDataset')
class ToolboxCustomDataset(ToolboxTextDataset):
    """A name mmdet has too: unscoped, mmdet's class wins."""
