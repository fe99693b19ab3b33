"""A second toolbox for tests/test_registry_tree.py: a models registry that
is a child of mmdet's, a grandchild of it, and a model name (``SharedNet``)
that ``mytoolbox`` registers too."""
from mmdet.models.builder import MODELS as MMDET_MODELS
from mmcv.utils import Registry

from davarocr_mmcv.toy import ToyCRNN

MODELS = Registry('model', parent=MMDET_MODELS, scope='othertoolbox')
SUB_MODELS = Registry('model', parent=MODELS, scope='othersub')


@MODELS.register_module(name=['OtherNet', 'SharedNet'])
class OtherNet(ToyCRNN):
    pass


@SUB_MODELS.register_module()
class DeepNet(ToyCRNN):
    pass
