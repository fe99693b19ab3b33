# Detection demo: a real mmdet 2.28 RetinaNet with a tiny ResNet-18
# (base_channels=8) on a generated COCO-format dataset of boxes and disks
# (demo/detection/make_data.py), evaluated with COCO bbox mAP. General mode:
# epoch_N.pth, latest.pth and best_bbox_mAP_epoch_N.pth.
custom_imports = dict(imports=['davarocr_mmcv'], allow_failed_imports=False)

model = dict(
    type='RetinaNet',
    backbone=dict(type='ResNet', depth=18, base_channels=8, num_stages=4,
                  out_indices=(1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=32,
              start_level=0, add_extra_convs='on_input', num_outs=3),
    bbox_head=dict(
        type='RetinaHead', num_classes=2, in_channels=32, stacked_convs=1,
        feat_channels=32,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                              scales_per_octave=2, ratios=[0.5, 1.0, 2.0],
                              strides=[8, 16, 32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                        target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                      neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
        allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=200, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=20))

classes = ('box', 'disk')
data_root = 'demo/detection/data/'
img_norm_cfg = dict(mean=[60., 60., 60.], std=[60., 60., 60.], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(128, 128), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ]),
]
data = dict(
    samples_per_gpu=8,
    workers_per_gpu=0,
    train=dict(type='CocoDataset', classes=classes,
               ann_file=data_root + 'train.json',
               img_prefix=data_root + 'train/', pipeline=train_pipeline),
    val=dict(type='CocoDataset', classes=classes,
             ann_file=data_root + 'val.json',
             img_prefix=data_root + 'val/', pipeline=test_pipeline),
    test=dict(type='CocoDataset', classes=classes,
              ann_file=data_root + 'val.json',
              img_prefix=data_root + 'val/', pipeline=test_pipeline))

optimizer = dict(type='Adam', lr=2e-3)
optimizer_config = dict(grad_clip=dict(max_norm=10))
lr_config = dict(policy='step', step=[10])
# mmcv's EpochBasedRunner minus its 2 s sleep at each epoch transition
runner = dict(type='DavarEpochBasedRunner', max_epochs=12)

checkpoint_config = dict(type='DavarCheckpointHook', interval=1,
                         max_keep_ckpts=2)
evaluation = dict(interval=1, metric='bbox', save_best='bbox_mAP')

log_config = dict(interval=10, hooks=[dict(type='TextLoggerHook')])
dist_params = dict(backend=None)
log_level = 'INFO'
seed = 0
load_from = None
resume_from = None
workflow = [('train', 1)]
work_dir = 'work_dirs/tiny_detector'
