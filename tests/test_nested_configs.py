"""Which nested configs of a dataset config are built ahead of time, with
tests/toolbox/loadertoolbox (mmocr 0.6's recognition data in shape, without
mmocr): only datasets where a dataset is expected. A ``loader`` config
naming a class with ``__getitem__`` and ``__len__`` reaches its dataset as
written, and a wrapper that builds its dataset configs itself gets them as
configs; in-process through davarocr_mmcv.apis, and end to end through
tools/train.py --validate and tools/test.py."""
import functools
import glob
import json
import os
import sys

import pytest
from mmdet.datasets import RepeatDataset

from davarocr_mmcv.apis import build_dataset
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import tool_env, tool_ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLBOX = os.path.join(ROOT, 'tests', 'toolbox')
if TOOLBOX not in sys.path:
    sys.path.insert(0, TOOLBOX)

import loadertoolbox  # noqa: E402

CONFIG = 'tests/toolbox/configs/loader_crnn.py'
VAL = os.path.join(ROOT, 'demo/recognition/data/val/labels.txt')
ok = functools.partial(tool_ok, tool_env(TOOLBOX))


def leaf(repeat=1, max_items=5):
    return dict(type='LoaderTextDataset', ann_file=VAL, loader=dict(
        type='LabelFileLoader', repeat=repeat, max_items=max_items))


# ------------------------------------------------------------- in-process
def test_list_like_helper_config_reaches_its_dataset_as_written():
    loader = loadertoolbox.LabelFileLoader
    assert callable(loader.__getitem__) and callable(loader.__len__)
    cfg = leaf(repeat=2)
    dataset = build_dataset(cfg, dict(test_mode=True))
    assert type(dataset) is loadertoolbox.LoaderTextDataset
    # the dataset built its loader with its own ann_file
    assert type(dataset.loader) is loader and len(dataset) == 2 * 5
    assert dataset.texts[:5] == dataset.texts[5:]
    assert dataset.test_mode  # no wrapper: default_args reach it
    assert cfg['loader'] == dict(type='LabelFileLoader', repeat=2,
                                 max_items=5)  # left as it was


def test_wrapper_building_its_configs_gets_configs():
    concat = build_dataset(dict(type='ConfigConcatDataset', datasets=[
        leaf(max_items=3), leaf(repeat=2, max_items=4)]),
        dict(test_mode=True))
    assert type(concat) is loadertoolbox.ConfigConcatDataset
    assert [len(d) for d in concat.datasets] == [3, 8]
    # the defaults went to the wrapper, which gave them to its datasets
    assert all(d.test_mode for d in concat.datasets)


def test_wrapper_taking_datasets_still_gets_them_built():
    repeated = build_dataset(dict(type='RepeatDataset', times=3,
                                  dataset=leaf(repeat=2)),
                             dict(test_mode=True))
    assert type(repeated) is RepeatDataset and len(repeated) == 3 * 10
    assert type(repeated.dataset) is loadertoolbox.LoaderTextDataset
    assert repeated.dataset.test_mode


# ------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def loader_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('loader') / 'work'
    ok('tools/train.py', CONFIG, '--work-dir', str(work), '--validate')
    return work


def test_train_py_trains_on_datasets_with_nested_loaders(loader_run):
    # 2 x 60 training images in batches of 32: 4 iterations an epoch
    latest = load_checkpoint_file(str(loader_run / 'latest_model.pth'))
    assert (latest['meta']['epoch'], latest['meta']['iter']) == (2, 8)
    log = glob.glob(str(loader_run / '*.log.json'))[0]
    scores = [r['accuracy'] for r in map(json.loads, open(log))
              if 'accuracy' in r]
    assert len(scores) == 2
    best = load_checkpoint_file(str(loader_run / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == pytest.approx(
        max(scores))


def test_best_checkpoint_retests_to_the_logged_best(loader_run):
    best = str(loader_run / 'Best_checkpoint.pth')
    out = ok('tools/test.py', CONFIG, best, '--eval', 'accuracy', 'NED')
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['accuracy'] == pytest.approx(expected)
