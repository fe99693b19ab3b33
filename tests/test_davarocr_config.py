"""DavarOCR's config shape, with tests/fixtures/fake_davarocr_rcg: a
top-level model ``type``, a recognizer of a registry with no parent, a
multi-dataset in ``batch_ratios`` with a sampler of the sampler registry,
``samples_per_gpu`` inside ``data.val`` / ``data.test``; how a type resolves
across every loaded registry (tests/fixtures/twin_toolbox.py); and the
errors for what nothing understands. End to end through tools/train.py and
tools/test.py, in-process for the rest."""
import functools
import glob
import json
import os
import sys

import pytest
from mmcv import Config
from mmdet.datasets.builder import DATASETS as MMDET_DATASETS
from mmdet.models.builder import MODELS as MMDET_MODELS

from davarocr_mmcv.apis import build_dataset, build_model
from davarocr_mmcv.apis.builder import (Resolver, build_sampler, check_data,
                                        split_by_ratios, split_settings)
from davarocr_mmcv.apis.train import _loader
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import run_tool, tool_env, tool_ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
TOOLBOX = os.path.join(ROOT, 'tests', 'toolbox')
for path in (FIXTURES, TOOLBOX):
    if path not in sys.path:
        sys.path.insert(0, path)

import fake_davarocr_rcg as rcg  # noqa: E402
import mytoolbox  # noqa: E402
import twin_toolbox  # noqa: E402

CONFIG = 'tests/fixtures/fake_davarocr_rcg/configs/rcg_tiny.py'
FLAT_TEST = 'tests/fixtures/fake_davarocr_rcg/configs/rcg_flat_test.py'
VAL_DIR = os.path.join(ROOT, 'demo/recognition/data/val')
ENV = tool_env(FIXTURES)


run = functools.partial(run_tool, ENV)
ok = functools.partial(tool_ok, ENV)


@pytest.fixture(scope='module')
def cfg():
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's data paths are relative to the repository
    yield Config.fromfile(os.path.join(ROOT, CONFIG))
    os.chdir(cwd)


# ----------------------------------------------------------- model type
def test_top_level_type_builds_from_a_registry_without_parent(cfg):
    assert rcg.RECOGNIZORS.parent is None
    resolver = Resolver.of(cfg)
    model = build_model(cfg.model, cfg.train_cfg, cfg.test_cfg, resolver)
    assert type(model) is rcg.GeneralRecognizor
    assert model.cnn[0].out_channels == 16  # the config's arguments
    # any model type of DavarOCR's is a registry's name
    assert Resolver(model_type='recognizor').model_type == 'recognizor'
    assert Resolver(model_type='DETECTOR').find('RetinaNet', 'model')[1] \
        is MMDET_MODELS


def test_unknown_top_level_type_or_model_key_is_named():
    with pytest.raises(ValueError) as info:
        Resolver(model_type='RECOGNISER')
    message = str(info.value)
    assert "type='RECOGNISER'" in message
    assert "'DETECTOR'" in message and "'RECOGNIZOR'" in message
    with pytest.raises(TypeError, match='GeneralRecognizor.*depth'):
        build_model(dict(type='GeneralRecognizor', depth=3))


# --------------------------------------------------------- data section
def test_data_section_as_davarocr_train_model_takes_it(cfg):
    resolver = Resolver.of(cfg)
    train_cfg, train = split_settings(cfg.data, 'train')
    dataset = build_dataset(train_cfg, resolver=resolver)
    assert type(dataset) is rcg.DavarMultiDataset
    assert [type(d) for d in dataset.datasets] == [rcg.RCGTextDataset] * 2
    assert [len(d) for d in dataset.datasets] == [600, 100]
    assert dataset.flag == dict(batch_ratios=[0.75, 0.25],
                                group_samples=[600, 100])
    assert train['samples_per_gpu'] == 16
    sampler = build_sampler(cfg.data.sampler, dataset, 16, resolver)
    assert type(sampler) is rcg.DistBatchBalancedSampler
    assert len(sampler) == 25 * 16  # 12 + 4 a batch: 100 // 4 batches

    # samples_per_gpu inside data.val: the loader's, not the dataset's
    val_cfg, val = split_settings(cfg.data, 'val')
    assert val['samples_per_gpu'] == 25 and 'samples_per_gpu' not in val_cfg
    val_set = build_dataset(val_cfg, dict(test_mode=True), resolver)
    # the wrapper's test_mode is its datasets' (DavarOCR's multi-dataset
    # needs its flag to evaluate)
    assert all(d.test_mode for d in val_set.datasets)
    assert not val_set.test_mode and len(val_set) == 50
    assert set(val_set.evaluate([''] * 50, metric=['NED'])) == {
        'NED', 'NED_set0'}
    assert cfg.data.val.samples_per_gpu == 25  # the config is left as it was


def test_multi_dataset_without_a_sampler_says_what_to_give(cfg):
    dataset = build_dataset(cfg.data.train, resolver=Resolver.of(cfg))
    _, settings = split_settings(cfg.data, 'train')
    with pytest.raises(ValueError, match=r'give data\.sampler'):
        _loader(dataset, settings, None, False, 0, 'EpochBasedRunner',
                Resolver.of(cfg))
    loader = _loader(dataset, settings, cfg.data.sampler, False, 0,
                     'EpochBasedRunner', Resolver.of(cfg))
    assert len(loader) == 25
    first = list(loader.sampler)[:16]  # 12 of the first dataset, 4 of the
    assert sum(i < 600 for i in first) == 12  # second


def test_split_by_ratios():
    parts = split_by_ratios(dict(type='X', ann_file='a|b', data_type='File',
                                 used_ratio=[0.5, 1], pipeline=[dict(k=1)],
                                 extra=None), '0.3|0.7')
    assert [(p['ann_file'], p['used_ratio']) for p in parts] == [
        ('a', 0.5), ('b', 1)]
    assert all(p['data_type'] == 'File' and p['pipeline'] == [dict(k=1)]
               and p['extra'] is None for p in parts)
    with pytest.raises(ValueError, match=r'dataset\.used_ratio has 3 '):
        split_by_ratios(dict(ann_file='a|b', used_ratio=[1, 1, 1]), [1, 1])


def test_unknown_data_keys_are_named(cfg):
    data = cfg.data.copy()
    data['shuffle_mode'] = 1
    with pytest.raises(KeyError, match=r'data\.shuffle_mode'):
        check_data(data)
    with pytest.raises(KeyError, match=r'data\.val_dataloader\.batch'):
        check_data(dict(val_dataloader=dict(batch=2)))
    with pytest.raises(ValueError, match=r'data\.val\.samples_per_gpu=25 '
                       r'and data\.val_dataloader'):
        split_settings(dict(cfg.data, val_dataloader=dict(
            samples_per_gpu=5)), 'val')
    with pytest.raises(ValueError, match=r'data\.sampler\.samples_per_gpu'):
        build_sampler(dict(type='BatchBalancedSampler', samples_per_gpu=3),
                      None, 16)


# ---------------------------------------------------- registry resolution
def test_ambiguous_name_lists_candidates_and_scoped_spellings():
    both = Resolver(imports=['fake_davarocr_rcg', 'twin_toolbox'])
    with pytest.raises(KeyError) as info:
        both.find('TwinNet', 'model')
    message = str(info.value)
    assert 'TwinNet is in 2 registries' in message
    assert "'fake_davarocr_rcg.TwinNet'" in message
    assert "'twin_toolbox.TwinNet'" in message
    assert both.find('fake_davarocr_rcg.TwinNet', 'model')[0] is rcg.TwinNet
    assert type(build_model(dict(type='twin_toolbox.TwinNet'),
                            resolver=both)) is twin_toolbox.TwinNet
    # the top-level type decides first, then the imported toolboxes
    named = Resolver(['fake_davarocr_rcg', 'twin_toolbox'], 'RECOGNIZOR')
    assert named.find('TwinNet', 'model')[0] is rcg.TwinNet
    assert Resolver(['twin_toolbox']).find('TwinNet', 'model')[0] is \
        twin_toolbox.TwinNet


def test_imported_toolbox_wins_over_mmdet():
    mmdet_custom = MMDET_DATASETS.get('CustomDataset')
    assert Resolver().find('CustomDataset', 'dataset')[0] is mmdet_custom
    # a registry with no parent (as mmcls's and mmseg's datasets) ...
    twin = Resolver(['twin_toolbox'])
    assert twin.find('CustomDataset', 'dataset')[0] is \
        twin_toolbox.CustomDataset
    dataset = build_dataset(dict(type='CustomDataset', data_prefix=VAL_DIR),
                            resolver=twin)
    assert type(dataset) is twin_toolbox.CustomDataset and len(dataset) == 100
    # ... and a child of mmdet's
    assert Resolver(['mytoolbox']).find('CustomDataset', 'dataset')[0] is \
        mytoolbox.ToolboxCustomDataset
    # the scoped name still picks mmdet's; mmdet itself is never a toolbox
    assert twin.find('mmdet.CustomDataset', 'dataset')[0] is mmdet_custom
    assert Resolver(['mmdet.models']).find('CustomDataset', 'dataset')[0] \
        is mmdet_custom
    # a wrapper's dataset resolves by the same rule
    repeated = build_dataset(dict(type='RepeatDataset', times=2, dataset=dict(
        type='CustomDataset', data_prefix=VAL_DIR)), resolver=twin)
    assert type(repeated.dataset) is twin_toolbox.CustomDataset


# ------------------------------------------------------------ end to end
@pytest.fixture(scope='module')
def rcg_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('rcg') / 'work'
    ok('tools/train.py', CONFIG, '--work-dir', str(work), '--validate')
    return work


def test_davarocr_config_trains_through_train_py(rcg_run):
    latest = load_checkpoint_file(str(rcg_run / 'latest_model.pth'))['meta']
    # the balanced sampler's 25 batches an epoch (mmdet's: 700 / 16 = 44)
    assert (latest['epoch'], latest['iter']) == (4, 100)
    log = glob.glob(str(rcg_run / '*.log.json'))[0]
    records = [json.loads(line) for line in open(log)][1:]
    scores = [r['NED'] for r in records if 'NED' in r]
    assert len(scores) >= 4 and all('NED_set0' in r for r in records
                                    if 'NED' in r)
    assert len(set(scores)) > 1  # the re-test below tells weights apart
    best = load_checkpoint_file(str(rcg_run / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == pytest.approx(
        min(scores))
    assert 'rnn.weight_ih_l0' in best['state_dict']


def test_best_checkpoint_retests_to_the_logged_best(rcg_run):
    best = str(rcg_run / 'Best_checkpoint.pth')
    out = ok('tools/test.py', CONFIG, best, '--eval', 'accuracy', 'NED')
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['NED'] == pytest.approx(expected)


def test_flat_test_section_names_the_way_out_and_val_retests(rcg_run):
    best = str(rcg_run / 'Best_checkpoint.pth')
    code, out = run('tools/test.py', FLAT_TEST, best, '--eval', 'NED')
    assert code != 0 and 'TypeError' not in out
    assert "data.test is DavarOCR's flat recognition test section" in out
    assert 'tools/test.py CONFIG CHECKPOINT --split val' in out
    # the validation split, where the logged best was measured
    out = ok('tools/test.py', FLAT_TEST, best, '--split', 'val', '--eval',
             'accuracy', 'NED')
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['NED'] == pytest.approx(expected)


def test_unknown_data_key_stops_train_py_before_training(tmp_path):
    code, out = run('tools/train.py', CONFIG, '--work-dir',
                    str(tmp_path / 'work'), '--cfg-options',
                    'data.shuffle_mode=1')
    assert code != 0 and 'data.shuffle_mode is not a data setting' in out
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))
