"""An mmcls 0.25 config (tests/fixtures/mmcls_tiny) through tools/train.py
--validate and tools/test.py: with mmcls.datasets and mmcls.models in
custom_imports, CustomDataset is mmcls's (a registry with no parent), not
mmdet's, and ImageClassifier (in a child of mmcv's root registry) is
evaluated without mmdet's ``rescale``."""
import functools
import glob
import json
import os

import cv2
import numpy as np
import pytest

from davarocr_mmcv.serialization import load_checkpoint_file
from procs import tool_env, tool_ok

CONFIG = 'tests/fixtures/mmcls_tiny/mmcls_lenet.py'
CLASSES = 6
ENV = tool_env()
ok = functools.partial(tool_ok, ENV)


def make_images(root, per_class, seed):
    """32x32 grayscale images, a folder per class: class k has a bright
    horizontal bar at rows 5k..5k+4, on noise."""
    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        folder = root / f'bar{k}'
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (32, 32), dtype=np.uint8)
            img[5 * k:5 * k + 5] = 220
            cv2.imwrite(str(folder / f'{i}.png'), img)


@pytest.fixture(scope='module')
def mmcls_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('mmcls')
    make_images(root / 'train', 8, 0)
    make_images(root / 'val', 3, 1)
    options = ['--cfg-options', f'data.train.data_prefix={root}/train',
               f'data.val.data_prefix={root}/val',
               f'data.test.data_prefix={root}/val']
    work = root / 'work'
    ok('tools/train.py', CONFIG, '--work-dir', str(work), '--validate',
       *options)
    return work, options


def test_mmcls_config_trains_through_train_py(mmcls_run):
    work, _ = mmcls_run
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert (latest['epoch'], latest['iter']) == (3, 18)  # 48 images / 8
    assert latest['CLASSES'] == [f'bar{k}' for k in range(CLASSES)]
    log = glob.glob(str(work / '*.log.json'))[0]
    scores = [r['accuracy_top-1'] for r in map(json.loads, open(log))
              if 'accuracy_top-1' in r]
    assert len(scores) >= 3
    best = load_checkpoint_file(str(work / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == pytest.approx(
        max(scores))
    assert 'backbone.features.0.weight' in best['state_dict']  # LeNet5


def test_best_checkpoint_retests_to_the_logged_best(mmcls_run):
    work, options = mmcls_run
    best = str(work / 'Best_checkpoint.pth')
    out = ok('tools/test.py', CONFIG, best, '--eval', 'accuracy', *options)
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['accuracy_top-1'] == pytest.approx(expected)
