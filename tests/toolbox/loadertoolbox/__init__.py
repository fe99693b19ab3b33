"""A toolbox whose dataset takes a nested list-like helper config, for
tests/test_nested_configs.py, in the shape of mmocr 0.6's recognition data:

- ``LabelFileLoader`` (a registry of its own, no parent, as mmocr's
  ``LOADERS``) has ``__getitem__`` and ``__len__`` but is no dataset;
- ``LoaderTextDataset(ann_file, loader=dict(type='LabelFileLoader', ...))``
  builds its loader itself, with its own ``ann_file``, as ``OCRDataset``
  builds ``AnnFileLoader``;
- ``ConfigConcatDataset(datasets=[...])`` builds the dataset configs it is
  given, as ``UniformConcatDataset`` does.
"""
import os.path as osp

import numpy as np
from mmcv.utils import Registry
from mmdet.datasets import ConcatDataset
from mmdet.datasets.builder import DATASETS as MMDET_DATASETS

from davarocr_mmcv.toy import ToyTextDataset

LOADERS = Registry('loader', scope='loadertoolbox')
DATASETS = Registry('dataset', parent=MMDET_DATASETS, scope='loadertoolbox')


def build_dataset(cfg, default_args=None):
    """A dataset of this toolbox's registry."""
    return DATASETS.build(cfg, default_args=default_args)


@LOADERS.register_module()
class LabelFileLoader:
    """The ``(image path, text)`` lines of a label file, ``repeat`` times
    over.

    Args:
        ann_file (str): the label file, given by the dataset that holds the
            loader's config.
        repeat (int): how many times the lines are listed. Default: 1.
        max_items (int | None): the lines kept, from the first. Default:
            all.
    """

    def __init__(self, ann_file, repeat=1, max_items=None):
        with open(ann_file, encoding='utf-8') as f:
            lines = [line.rstrip('\r\n').split('\t', 1) for line in f
                     if line.strip()]
        self.lines, self.repeat = lines[:max_items], repeat

    def __len__(self):
        return len(self.lines) * self.repeat

    def __getitem__(self, idx):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        path, text = self.lines[idx % len(self.lines)]
        return path, text


@DATASETS.register_module()
class LoaderTextDataset(ToyTextDataset):
    """ToyTextDataset of the images its loader lists.

    Args:
        loader (dict): the config of a loader of ``LOADERS``, built here
            with this dataset's ``ann_file``.
    """

    def __init__(self, ann_file, loader, img_prefix=None, **kwargs):
        super().__init__(ann_file, img_prefix=img_prefix, **kwargs)
        self.loader = LOADERS.build(dict(loader, ann_file=ann_file))
        root = osp.dirname(ann_file) if img_prefix is None else img_prefix
        self.items = [(osp.join(root, path), text)
                      for path, text in self.loader]
        self.texts = [text for _, text in self.items]
        self.flag = np.zeros(len(self), dtype=np.uint8)


@DATASETS.register_module()
class ConfigConcatDataset(ConcatDataset):
    """mmdet's ConcatDataset of the dataset configs ``datasets``, which it
    builds with its other arguments (``test_mode``) as their defaults."""

    def __init__(self, datasets, separate_eval=True, **kwargs):
        if not all(isinstance(cfg, dict) for cfg in datasets):
            raise TypeError('ConfigConcatDataset: datasets must be configs, '
                            f'got {[type(d).__name__ for d in datasets]}')
        super().__init__([build_dataset(cfg, kwargs) for cfg in datasets],
                         separate_eval)
