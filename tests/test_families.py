"""DavarOCR's model families besides recognition, with
tests/fixtures/davar_families (DavarOCR's shapes, written here): each
trains through tools/train.py --validate and its best checkpoint re-tests
through tools/test.py to the logged best.

- a two-stage text detector (``MaskRCNNDet``) on ``TextDetDataset``, whose
  hmean ``evaluate`` needs the config's ``eval_func_params``;
- a spotter (``type = 'SPOTTER'``, ``Registry('spotter')``), results
  ``{'points', 'texts', 'confidence'}``, end-to-end hmean;
- named entity recognition (``type = 'NER'``, ``Registry('ner')``), whose
  ``evaluate`` returns per-entity dicts beside ``hmean``.
"""
import functools
import glob
import json
import os
import sys

import pytest
from mmcv import Config

from davarocr_mmcv.apis import build_dataset, build_model
from davarocr_mmcv.apis.builder import Resolver
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import ROOT, tool_env, tool_ok
from test_davarocr_coexist import DAVAROCR_SRC, davarocr_missing

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
if FIXTURES not in sys.path:
    sys.path.insert(0, FIXTURES)
CONFIGS = 'tests/fixtures/davar_families/configs/'
DET = CONFIGS + 'det_mask_rcnn_tiny.py'
SPOT = CONFIGS + 'spot_mask_rcnn_tiny.py'
NER = CONFIGS + 'ner_bilstm_tiny.py'
ENV = tool_env(FIXTURES)
#: the json log rounds metrics to 5 decimals
LOG_DECIMALS = 1e-5

ok = functools.partial(tool_ok, ENV)


def config(path):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the configs' data paths are relative to the repository
    try:
        return Config.fromfile(os.path.join(ROOT, path))
    finally:
        os.chdir(cwd)


def scores(work, metric):
    """The metric of each evaluation, from the json log."""
    [log] = glob.glob(str(work / '*.log.json'))
    with open(log) as f:
        records = [json.loads(line) for line in f][1:]
    return [r[metric] for r in records if metric in r]


def retest(path, checkpoint, *args):
    """The metrics tools/test.py prints as its last line."""
    out = ok('tools/test.py', path, str(checkpoint), *args)
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train a family's config once (lazily, by config)."""
    works = {}

    def train(path):
        if path not in works:
            work = tmp_path_factory.mktemp('family') / 'work'
            ok('tools/train.py', path, '--work-dir', str(work), '--validate',
               timeout=600)
            works[path] = work
        return works[path]
    return train


# -------------------------------------------------------- the fixtures
def test_family_types_resolve_in_their_registries():
    import davar_families as fam
    assert fam.SPOTTER.parent is None and fam.NERS.parent is None
    for path, cls in ((DET, fam.MaskRCNNDet), (SPOT, fam.MaskRCNNSpot),
                      (NER, fam.BaseNER)):
        cfg = config(path)
        model = build_model(cfg.model, cfg.get('train_cfg'),
                            cfg.get('test_cfg'), Resolver.of(cfg))
        assert type(model) is cls


def test_hmean_evaluate_needs_eval_func_params():
    """As DavarOCR's TextDetDataset: what tools/test.py must pass on."""
    cfg = config(DET)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dataset = build_dataset(cfg.data.test, dict(test_mode=True),
                                Resolver.of(cfg))
    finally:
        os.chdir(cwd)
    empty = [dict(points=[], confidence=[])] * len(dataset)
    with pytest.raises(KeyError, match='eval_func_params'):
        dataset.evaluate(empty, metric='hmean')
    truth = [dict(points=[p for p, c in zip(info['ann']['polygons'],
                                            info['ann']['cares']) if c],
                  confidence=[1.] * sum(info['ann']['cares']))
             for info in dataset.data_infos]
    # a cared instance lying mostly inside a not-cared one is dropped ...
    metrics = dataset.evaluate(truth, metric='hmean',
                               eval_func_params=dict(IOU_CONSTRAINT=0.5))
    assert metrics['precision'] == 1.0 and metrics['recall'] < 1.0
    # ... unless the settings say otherwise
    metrics = dataset.evaluate(truth, eval_func_params=dict(
        AREA_PRECISION_CONSTRAINT=1.0))
    assert metrics['hmean'] == metrics['recall'] == 1.0
    with pytest.raises(KeyError, match=r"unknown \['IOU'\]"):
        dataset.evaluate(truth, eval_func_params=dict(IOU=0.5))


# ------------------------------------------------------- detection
def test_text_detector_trains_and_keeps_the_best_hmean(trained):
    work = trained(DET)
    hmeans = scores(work, 'hmean')
    assert len(hmeans) == 5 and len(set(hmeans)) > 1, hmeans
    best = load_checkpoint_file(str(work / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == pytest.approx(
        max(hmeans), abs=LOG_DECIMALS)


def test_text_detector_best_retests_to_the_logged_hmean(trained):
    """The config's eval_func_params reach TextDetDataset.evaluate."""
    work = trained(DET)
    best = work / 'Best_checkpoint.pth'
    expected = load_checkpoint_file(str(best))['meta']['hook_msgs'][
        'best_score']
    assert retest(DET, best, '--eval', 'hmean')['hmean'] == \
        pytest.approx(expected)
    # --eval-options overrides the config's settings
    strict = retest(DET, best, '--eval', 'hmean', '--eval-options',
                    "eval_func_params={'IOU_CONSTRAINT': 0.99}")
    assert strict['hmean'] < expected


# -------------------------------------------------------- spotting
def test_spotter_trains_and_retests_to_the_logged_hmean(trained):
    work = trained(SPOT)
    hmeans = scores(work, 'hmean')
    assert len(hmeans) == 5, hmeans
    [best] = glob.glob(str(work / 'best_hmean_epoch_*.pth'))
    epoch = int(best.rsplit('_', 1)[1][:-len('.pth')])
    assert hmeans[epoch - 1] == max(hmeans)
    metrics = retest(SPOT, best, '--eval', 'hmean')
    assert metrics['hmean'] == pytest.approx(max(hmeans), abs=LOG_DECIMALS)
    assert set(metrics) == {'precision', 'recall', 'hmean'}


def test_spotter_results_hold_points_texts_confidence(trained, tmp_path):
    work = trained(SPOT)
    [best] = glob.glob(str(work / 'best_hmean_epoch_*.pth'))
    out = tmp_path / 'results.pkl'
    ok('tools/test.py', SPOT, best, '--out', str(out))
    import mmcv
    results = mmcv.load(str(out))
    assert len(results) == 24
    for result in results:
        assert set(result) == {'points', 'texts', 'confidence'}
        assert set(result['texts']) <= {'box', 'disk'}
        assert len(result['points']) == len(result['texts']) == \
            len(result['confidence'])


# ------------------------------------------------------------- NER
def test_ner_trains_and_retests_to_the_logged_hmean(trained):
    work = trained(NER)
    hmeans = scores(work, 'hmean')
    assert len(hmeans) == 4 and len(set(hmeans)) > 1, hmeans
    best = work / 'Best_checkpoint.pth'
    assert load_checkpoint_file(str(best))['meta']['hook_msgs'][
        'best_score'] == pytest.approx(max(hmeans), abs=LOG_DECIMALS)
    metrics = retest(NER, best, '--eval', 'f1-score')
    assert metrics['hmean'] == pytest.approx(max(hmeans), abs=LOG_DECIMALS)
    assert metrics['all']['f1-score'] == metrics['hmean']
    assert set(metrics) == {'PER', 'LOC', 'all', 'hmean'}


# ----------------------------------------------- DavarOCR's own source

#: DavarOCR's demo/text_detection/mask_rcnn_det/config/
#: mask_rcnn_r50_fpn_ic15.py, shrunk (a ResNet-18 of 8 channels, 128-pixel
#: images, 3 epochs), with the opt-in line and the best kept on hmean
DAVAROCR_DET = '''
_base_ = {base!r}
custom_imports = dict(
    imports=['davarocr_mmcv.compat.davarocr', 'davarocr.davar_common',
             'davarocr.davar_det'],
    allow_failed_imports=False)
model = dict(
    backbone=dict(depth=18, base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16, num_outs=5),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=16),
        mask_head=dict(num_convs=1, in_channels=16, conv_out_channels=16)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)),
                   rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    # rotated boxes: a contour of 2 points, which an untrained mask gives,
    # stops DavarOCR's hmean (Polygon3: 'Invalid polygon or contour')
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100),
                  rcnn=dict(score_thr=0.3, max_per_img=10),
                  postprocess=dict(use_rotated_box=True)))
img_norm_cfg = dict(mean=[60., 60., 60.], std=[60., 60., 60.], to_rgb=True)
train_pipeline = [
    dict(type='DavarLoadImageFromFile'),
    dict(type='DavarLoadAnnotations', with_bbox=True, with_poly_mask=True,
         with_label=True, with_care=True),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='DavarCollect', keys=['img', 'gt_bboxes', 'gt_labels',
                                    'gt_masks']),
]
test_pipeline = [
    dict(type='DavarLoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(128, 128), flip=False,
         transforms=[
             dict(type='DavarResize', keep_ratio=True),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='DavarDefaultFormatBundle'),
             dict(type='DavarCollect', keys=['img']),
         ])
]
data = dict(
    samples_per_gpu=8, workers_per_gpu=0,
    train=dict(ann_file={train!r}, img_prefix={images!r},
               pipeline=train_pipeline),
    val=dict(ann_file={val!r}, img_prefix={images!r},
             pipeline=test_pipeline),
    test=dict(ann_file={val!r}, img_prefix={images!r},
              pipeline=test_pipeline))
optimizer = dict(_delete_=True, type='Adam', lr=3e-3)
lr_config = dict(_delete_=True, policy='fixed')
runner = dict(type='DavarEpochBasedRunner', max_epochs=3)
checkpoint_config = dict(_delete_=True, type='DavarCheckpointHook',
                         interval=1, save_mode='lightweight',
                         metric='hmean')
evaluation = dict(eval_mode='lightweight', save_best='hmean',
                  rule='greater')
dist_params = dict(backend=None)
load_from = None
seed = 0
'''


def davarocr_datalist(split, out):
    """The fixture's datalist without its string labels (DavarOCR's loader
    wants a classes_config for those; one class needs none)."""
    with open(os.path.join(FIXTURES, 'davar_families', 'data',
                           f'det_{split}.json')) as f:
        datalist = json.load(f)
    for item in datalist.values():
        item['content_ann'].pop('labels')
    path = out / f'det_{split}.json'
    path.write_text(json.dumps(datalist))
    return str(path)


@pytest.mark.skipif(bool(davarocr_missing()),
                    reason=davarocr_missing() or '-')
def test_davarocr_mask_rcnn_det_source(tmp_path):
    """DavarOCR's MaskRCNNDet, PostMaskRCNN (np.int) and TextDetDataset
    (eval_func_params, Polygon3's hmean), shrunk, with the opt-in line."""
    cfg = tmp_path / 'mask_rcnn_r18_tiny_ic15.py'
    cfg.write_text(DAVAROCR_DET.format(
        base=os.path.join(DAVAROCR_SRC, 'demo', 'text_detection',
                          'mask_rcnn_det', 'config',
                          'mask_rcnn_r50_fpn_ic15.py'),
        train=davarocr_datalist('train', tmp_path),
        val=davarocr_datalist('val', tmp_path),
        images=os.path.join(ROOT, 'demo', 'detection', 'data') + '/'))
    env = tool_env(DAVAROCR_SRC)
    work = tmp_path / 'work'
    tool_ok(env, 'tools/train.py', str(cfg), '--work-dir', str(work),
            '--validate', timeout=900)
    hmeans = scores(work, 'hmean')
    assert len(hmeans) == 3 and max(hmeans) > 0, hmeans
    best = work / 'Best_checkpoint.pth'
    expected = load_checkpoint_file(str(best))['meta']['hook_msgs'][
        'best_score']
    assert expected == pytest.approx(max(hmeans), abs=LOG_DECIMALS)
    out = tool_ok(env, 'tools/test.py', str(cfg), str(best), '--eval',
                  'hmean', timeout=600)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics['hmean'] == pytest.approx(expected)
