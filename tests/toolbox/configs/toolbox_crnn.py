# The recognition demo with a model and datasets of tests/toolbox/mytoolbox,
# named without a scope; short: 120 training images, 50 validation images.
_base_ = '../../../demo/recognition/crnn_lightweight.py'
custom_imports = dict(imports=['davarocr_mmcv', 'mytoolbox'],
                      allow_failed_imports=False)

model = dict(type='ToolboxNet', neck=dict(type='ToolboxNeck', channels=64))
data = dict(
    train=dict(times=1, dataset=dict(type='ToolboxTextDataset',
                                     max_items=120)),
    val=dict(type='ToolboxTextDataset', max_items=50),
    test=dict(type='ToolboxTextDataset', max_items=50))
runner = dict(max_epochs=2)
checkpoint_config = dict(model_milestone=0)
evaluation = dict(by_iter=False)
