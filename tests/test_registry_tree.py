"""Models and datasets of a toolbox's own registries (tests/toolbox), named
without a scope, resolved across the OpenMMLab registry tree: in-process
through davarocr_mmcv.apis, and end to end through tools/train.py and
tools/test.py with the toolbox in custom_imports (in the config or given
with --cfg-options)."""
import functools
import glob
import json
import os
import sys

import pytest
from mmdet.datasets import ConcatDataset, RepeatDataset
from mmdet.datasets.builder import DATASETS
from mmdet.models.builder import MODELS

from davarocr_mmcv.apis import build_dataset, build_model
from davarocr_mmcv.apis.builder import locate
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import run_tool, tool_env, tool_ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLBOX = os.path.join(ROOT, 'tests', 'toolbox')
sys.path.insert(0, TOOLBOX)

import mytoolbox  # noqa: E402
import othertoolbox  # noqa: E402

CONFIG = 'tests/toolbox/configs/toolbox_crnn.py'
NO_IMPORT = 'tests/toolbox/configs/toolbox_crnn_no_import.py'
VAL = os.path.join(ROOT, 'demo/recognition/data/val/labels.txt')
ENV = tool_env(TOOLBOX)
TOOLBOX_IMPORTS = 'custom_imports.imports=[davarocr_mmcv,mytoolbox]'


run = functools.partial(run_tool, ENV)
ok = functools.partial(tool_ok, ENV)


# ------------------------------------------------------------- in-process
def test_unscoped_model_of_a_registry_beside_mmdets():
    model = build_model(dict(type='ToolboxNet',
                             neck=dict(type='ToolboxNeck', channels=64)))
    assert type(model) is mytoolbox.ToolboxNet
    # its nested type is resolved by the toolbox's own registry
    assert type(model.neck) is mytoolbox.ToolboxNeck


def test_child_and_grandchild_registries_of_mmdet():
    assert type(build_model(dict(type='OtherNet'))) is othertoolbox.OtherNet
    assert type(build_model(dict(type='DeepNet'))) is othertoolbox.DeepNet
    assert type(build_model(dict(type='othersub.DeepNet'))) is \
        othertoolbox.DeepNet


def test_mmdet_first():
    assert locate('RetinaNet', MODELS) is MODELS
    assert locate('CustomDataset', DATASETS) is DATASETS
    # the toolbox's CustomDataset needs its scope ...
    dataset = build_dataset(dict(type='mytoolbox.CustomDataset',
                                 ann_file=VAL, max_items=3))
    assert type(dataset) is mytoolbox.ToolboxCustomDataset
    assert len(dataset) == 3
    # ... unscoped, the name is mmdet's, which rejects the toolbox's argument
    with pytest.raises(TypeError, match='CustomDataset.*max_items'):
        build_dataset(dict(type='CustomDataset', ann_file=VAL, max_items=3))


def test_name_in_two_registries_fails_naming_both_scopes():
    with pytest.raises(KeyError) as info:
        build_model(dict(type='SharedNet'))
    message = str(info.value)
    assert 'SharedNet' in message
    assert "'mytoolbox'" in message and "'othertoolbox'" in message
    assert type(build_model(dict(type='mytoolbox.SharedNet'))) is \
        mytoolbox.ToolboxNet
    assert type(build_model(dict(type='othertoolbox.SharedNet'))) is \
        othertoolbox.OtherNet


def test_unknown_name_says_where_it_looked():
    with pytest.raises(KeyError, match='custom_imports') as info:
        build_model(dict(type='NoSuchNet'))
    assert 'NoSuchNet' in str(info.value)
    assert 'mmcv.mytoolbox' in str(info.value)


def test_toolbox_datasets_inside_mmdets_wrappers():
    leaf = dict(type='ToolboxTextDataset', ann_file=VAL, max_items=7)
    repeated = build_dataset(dict(type='RepeatDataset', times=3,
                                  dataset=leaf), dict(test_mode=True))
    assert type(repeated) is RepeatDataset and len(repeated) == 21
    assert type(repeated.dataset) is mytoolbox.ToolboxTextDataset
    assert repeated.dataset.test_mode  # default_args reach the wrapped one
    mixed = [leaf, dict(type='ToyTextDataset', ann_file=VAL)]
    for cfg in (mixed, dict(type='ConcatDataset', datasets=mixed)):
        concat = build_dataset(cfg)
        assert type(concat) is ConcatDataset and len(concat) == 7 + 100
        assert type(concat.datasets[0]) is mytoolbox.ToolboxTextDataset
    # the caller's config is left as it was
    assert leaf['type'] == 'ToolboxTextDataset'


# ------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def toolbox_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('toolbox') / 'work'
    out = ok('tools/train.py', CONFIG, '--work-dir', str(work), '--validate')
    return work, out


def test_train_py_trains_the_toolbox_model_on_its_datasets(toolbox_run):
    work, _ = toolbox_run
    best = load_checkpoint_file(str(work / 'Best_checkpoint.pth'))
    assert 'neck.norm.weight' in best['state_dict']  # ToolboxNet's neck
    # 120 training images (max_items) in batches of 32: 4 iterations/epoch
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert (latest['epoch'], latest['iter']) == (2, 8)
    history = latest['hook_msgs']['eval_history']
    assert [(h['unit'], h['step']) for h in history] == [('epoch', 1),
                                                         ('epoch', 2)]
    log = glob.glob(str(work / '*.log.json'))[0]
    records = [json.loads(line) for line in open(log)][1:]
    assert len([r for r in records if 'accuracy' in r]) == 2


def test_custom_imports_from_cfg_options(toolbox_run, tmp_path):
    work, _ = toolbox_run
    best = str(work / 'Best_checkpoint.pth')
    code, out = run('tools/test.py', NO_IMPORT, best, '--eval', 'accuracy')
    assert code != 0 and 'is not in the' in out and 'custom_imports' in out
    out = ok('tools/test.py', NO_IMPORT, best, '--eval', 'accuracy',
             '--cfg-options', TOOLBOX_IMPORTS)
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['accuracy'] == pytest.approx(expected)
    other = tmp_path / 'work'
    ok('tools/train.py', NO_IMPORT, '--work-dir', str(other), '--validate',
       '--cfg-options', TOOLBOX_IMPORTS, 'runner.max_epochs=1')
    assert (other / 'Best_checkpoint.pth').exists()


def test_ambiguous_type_stops_train_py_naming_both_scopes(tmp_path):
    code, out = run('tools/train.py', CONFIG, '--work-dir',
                    str(tmp_path / 'work'), '--cfg-options',
                    'model.type=SharedNet', 'custom_imports.imports='
                    '[davarocr_mmcv,mytoolbox,othertoolbox]')
    assert code != 0
    assert 'SharedNet is in 2 registries' in out
    assert "'mytoolbox'" in out and "'othertoolbox'" in out
