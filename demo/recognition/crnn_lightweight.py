# Text recognition demo: a small CRNN on synthetic word images
# (demo/recognition/make_data.py). Runtime sections mirror DavarOCR's
# res32_bilstm_attn config: DavarCheckpointHook in lightweight mode with a
# model milestone, evaluation by epoch and by iteration.
custom_imports = dict(imports=['davarocr_mmcv', 'davarocr_mmcv.toy'],
                      allow_failed_imports=False)

model = dict(type='ToyCRNN', channels=(16, 32, 64, 64), hidden=64)

data_root = 'demo/recognition/data/'
data = dict(
    samples_per_gpu=32,
    workers_per_gpu=0,
    val_dataloader=dict(samples_per_gpu=50),
    test_dataloader=dict(samples_per_gpu=50),
    # 600 images, repeated 5 times per epoch: fewer epoch transitions
    train=dict(type='RepeatDataset', times=5, dataset=dict(
        type='ToyTextDataset', ann_file=data_root + 'train/labels.txt')),
    val=dict(type='ToyTextDataset', ann_file=data_root + 'val/labels.txt'),
    test=dict(type='ToyTextDataset', ann_file=data_root + 'val/labels.txt'))

optimizer = dict(type='Adam', lr=6e-3)
optimizer_config = dict(grad_clip=dict(max_norm=5))
lr_config = dict(policy='step', step=[5])
# mmcv's EpochBasedRunner minus its 2 s sleep at each epoch transition
runner = dict(type='DavarEpochBasedRunner', max_epochs=6)

checkpoint_config = dict(
    type='DavarCheckpointHook',
    interval=1,
    iter_interval=40,
    by_epoch=True,
    by_iter=True,
    filename_tmpl='ckpt/crnn_e{}.pth',
    metric='accuracy',
    rule='greater',
    save_mode='lightweight',
    init_metric=-1,
    model_milestone=0.25)

evaluation = dict(
    type='DavarDistEvalHook',
    model_type='RECOGNIZOR',
    start=1,
    start_iter=0.25,
    interval=1,
    iter_interval=40,
    by_epoch=True,
    by_iter=True,
    eval_mode='lightweight',
    save_best='accuracy',
    rule='greater',
    metric=['accuracy', 'NED'])

log_config = dict(interval=10, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='TrainStatusHook', interval=10)]
dist_params = dict(backend=None)  # None: nccl with GPUs, gloo without
log_level = 'INFO'
seed = 0
load_from = None
resume_from = None
workflow = [('train', 1)]
work_dir = 'work_dirs/crnn_lightweight'
