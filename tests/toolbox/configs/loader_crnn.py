# The recognition demo on datasets of tests/toolbox/loadertoolbox, which
# take a nested loader config (a class with __getitem__ and __len__ that the
# dataset builds itself, with its ann_file) inside a wrapper that builds its
# dataset configs itself; short: 2 x 60 training images, 50 validation
# images.
_base_ = '../../../demo/recognition/crnn_lightweight.py'
custom_imports = dict(imports=['davarocr_mmcv', 'loadertoolbox'],
                      allow_failed_imports=False)

data_root = 'demo/recognition/data/'
data = dict(
    train=dict(_delete_=True, type='ConfigConcatDataset', datasets=[dict(
        type='LoaderTextDataset', ann_file=data_root + 'train/labels.txt',
        loader=dict(type='LabelFileLoader', repeat=2, max_items=60))]),
    val=dict(type='LoaderTextDataset', loader=dict(type='LabelFileLoader',
                                                   max_items=50)),
    test=dict(type='LoaderTextDataset', loader=dict(type='LabelFileLoader',
                                                    max_items=50)))
runner = dict(max_epochs=2)
checkpoint_config = dict(model_milestone=0)
evaluation = dict(by_iter=False)
