"""The options of tools/train.py and tools/test.py that mmdet 2.28's and
DavarOCR's tools have, with their meaning: parsed in-process, then acting
in real runs of the tools on the detection demo (one short training, then
tests of its checkpoint)."""
import functools
import glob
import importlib.util
import json
import logging
import os
import pickle
import sys
import warnings

import pytest
import torch
from mmcv import Config
from mmcv.runner import HOOKS, Hook

from davarocr_mmcv import __version__
from davarocr_mmcv.apis.cli import (apply_mc_config, merge_options,
                                    start_run)
from davarocr_mmcv.apis.train import auto_scale_lr, evaluate_kwargs
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import run_tool, tool_env, tool_ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'cli_flags')
CONFIG = 'tests/fixtures/cli_flags/det_eval_kwargs.py'
MC_CONFIG = 'tests/fixtures/cli_flags/mc_disk.py'
DETECTION = 'demo/detection/tiny_detector.py'
RECOGNITION = 'demo/recognition/crnn_lightweight.py'
ENV = tool_env(FIXTURES)
if FIXTURES not in sys.path:  # the configs import cli_probe
    sys.path.insert(0, FIXTURES)
run = functools.partial(run_tool, ENV)
ok = functools.partial(tool_ok, ENV)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', os.path.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool = load_tool('train')
test_tool = load_tool('test')


def config(path):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the data paths are relative to the repository
    try:
        return Config.fromfile(os.path.join(ROOT, path))
    finally:
        os.chdir(cwd)


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------ the parsers
@pytest.mark.parametrize('tool', [train_tool, test_tool])
def test_every_option_has_help_and_the_usage_is_the_description(
        tool, capsys):
    parser = tool.build_parser()
    assert parser.description == tool.__doc__
    for action in parser._actions:
        assert action.help, f'{action.option_strings or action.dest} has ' \
            'no help text'
    with pytest.raises(SystemExit) as info:
        tool.parse_args(['--version'])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize('tool,alias', [(train_tool, 'cfg_options'),
                                        (test_tool, 'eval_options')])
def test_options_is_the_deprecated_alias(tool, alias, capsys):
    argv = ['cfg.py'] + (['ckpt.pth', '--eval', 'bbox'] if tool is test_tool
                         else [])
    with pytest.warns(UserWarning, match='--options is deprecated in favor '
                      f'of --{alias.replace("_", "-")}'):
        args = tool.parse_args(argv + ['--options', 'a.b=1'])
    assert getattr(args, alias) == {'a.b': 1}
    with pytest.raises(SystemExit) as info:
        tool.parse_args(argv + ['--options', 'a=1',
                                f'--{alias.replace("_", "-")}', 'b=2'])
    assert info.value.code == 2
    assert '--options and --' in capsys.readouterr().err


def test_dict_values_from_the_command_line(capsys):
    args = test_tool.parse_args([
        'cfg.py', 'ckpt.pth', '--eval', 'hmean', '--eval-options',
        "eval_func_params={'IOU_CONSTRAINT': 0.7, 'CONFIDENCES': True}",
        'bare="{IOU_CONSTRAINT:0.6}"', 'steps=[1,2]', 'x.y=3'])
    assert args.eval_options == {
        'eval_func_params': {'IOU_CONSTRAINT': 0.7, 'CONFIDENCES': True},
        'bare': {'IOU_CONSTRAINT': 0.6}, 'steps': [1, 2], 'x.y': 3}
    with pytest.raises(SystemExit):
        test_tool.parse_args(['cfg.py', 'ckpt.pth', '--eval', 'hmean',
                              '--eval-options', 'p={IOU:high}'])
    assert 'not a dict literal' in capsys.readouterr().err
    # a key replaces (mmdet's update); a dotted key sets one entry
    settings = dict(metric='hmean', eval_func_params=dict(
        IOU_CONSTRAINT=0.5, AREA_PRECISION_CONSTRAINT=0.5))
    assert merge_options(settings, {'eval_func_params.IOU_CONSTRAINT': 0.7}
                         )['eval_func_params'] == dict(
        IOU_CONSTRAINT=0.7, AREA_PRECISION_CONSTRAINT=0.5)
    assert merge_options(settings, {'eval_func_params': dict(
        IOU_CONSTRAINT=0.7)})['eval_func_params'] == dict(IOU_CONSTRAINT=0.7)
    assert settings['eval_func_params']['IOU_CONSTRAINT'] == 0.5


def test_test_py_refuses_what_mmdet_refuses(capsys):
    base = ['cfg.py', 'ckpt.pth']
    for argv, message in [
            ([], 'give at least one of --eval'),
            (['--eval', 'bbox', '--format-only'], '--eval and --format-only'),
            (['--out', 'r.json'], 'must be a .pkl'),
            (['--show-dir', 'd', '--launcher', 'pytorch'], 'without '
             '--launcher')]:
        with pytest.raises(SystemExit) as info:
            test_tool.parse_args(base + argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a recognizer paints nothing
        test_tool.main([RECOGNITION, 'ckpt.pth', '--show-dir', 'd'])
    assert 'model type is RECOGNIZOR' in str(info.value.code)


def test_gpu_flags_use_one_device_when_not_distributed(capsys):
    with pytest.raises(SystemExit):  # one of the three
        train_tool.parse_args(['cfg.py', '--gpus', '1', '--gpu-ids', '0'])
    assert 'not allowed with argument' in capsys.readouterr().err
    for argv, ids in [([], [0]), (['--gpu-id', '3'], [3]),
                      (['--gpus', '1'], [0]), (['--gpu-ids', '2'], [2])]:
        cfg = Config(dict(dist_params=dict()))
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # one device: no warning
            assert start_run(train_tool.parse_args(['c.py', *argv]), cfg,
                             'train') == (False, 0)
        assert cfg.gpu_ids == ids
    for argv, dist in [(['--gpu-ids', '0', '1'], 'dist_train.sh CONFIG 2'),
                       (['--gpus', '3'], 'dist_train.sh CONFIG 3')]:
        cfg = Config(dict())
        with pytest.warns(UserWarning, match='uses one device') as record:
            start_run(train_tool.parse_args(['c.py', *argv]), cfg, 'train')
        assert dist in str(record[0].message) and cfg.gpu_ids == [0]
    cfg = Config(dict())
    with pytest.warns(UserWarning, match='dist_test.sh CONFIG CHECKPOINT 2'):
        start_run(test_tool.parse_args(['c.py', 'k.pth', '--eval', 'x',
                                        '--gpu-ids', '1', '2']), cfg, 'test')
    assert cfg.gpu_ids == [1]


# ------------------------------------------------- evaluation settings
@HOOKS.register_module()
class CliProbeEvalHook(Hook):
    def __init__(self, dataloader, every=1, **eval_kwargs):
        self.every, self.eval_kwargs = every, eval_kwargs


def test_evaluate_gets_the_evaluation_settings_less_the_hooks_own():
    # DavarOCR's text-detection section: the hook's keys and its eval_func
    assert evaluate_kwargs(config(CONFIG).evaluation) == dict(
        metric='bbox', eval_func_params=dict(
            IOU_CONSTRAINT=0.5, AREA_PRECISION_CONSTRAINT=0.5,
            CONFIDENCES=False))
    # every key of DavarOCR's recognition section belongs to the hook
    assert evaluate_kwargs(config(RECOGNITION).evaluation) == dict(
        metric=['accuracy', 'NED'])
    # mmdet 2.28's and mmcv's hook keys
    mmdet = dict(interval=1, start=0, by_epoch=True, save_best='auto',
                 rule='greater', gpu_collect=True, tmpdir='t',
                 dynamic_intervals=[(2, 1)], less_keys=['loss'],
                 greater_keys=['acc'], broadcast_bn_buffer=False,
                 priority='LOW', metric='bbox', iou_thrs=[0.5])
    assert evaluate_kwargs(mmdet) == dict(metric='bbox', iou_thrs=[0.5])
    # another registered hook type: its own arguments stay with it
    assert evaluate_kwargs(dict(type='CliProbeEvalHook', every=2,
                                metric='x')) == dict(metric='x')
    assert evaluate_kwargs(None) == {}


def test_auto_scale_lr_is_mmdets_linear_rule():
    logger = logging.getLogger('cli-flags-test')
    cfg = Config(dict(optimizer=dict(lr=0.02), data=dict(samples_per_gpu=4),
                      auto_scale_lr=dict(enable=False, base_batch_size=16)))
    auto_scale_lr(cfg, False, logger)
    assert cfg.optimizer.lr == 0.02  # not enabled
    cfg.auto_scale_lr.enable = True
    auto_scale_lr(cfg, False, logger)
    assert cfg.optimizer.lr == pytest.approx(0.005)  # 1 x 4 of 16


def test_mc_config_reaches_every_training_pipeline():
    cfg = config(DETECTION)
    cfg.data.train = dict(type='RepeatDataset', times=2,
                          dataset=cfg.data.train)
    assert apply_mc_config(cfg, os.path.join(ROOT, MC_CONFIG)) == 1
    first = cfg.data.train['dataset']['pipeline'][0]
    assert first['type'] == 'LoadImageFromFile'
    assert first['file_client_args'] == dict(backend='disk')
    with pytest.raises(ValueError, match='--mc-config .* no pipeline'):
        apply_mc_config(config(RECOGNITION), os.path.join(ROOT, MC_CONFIG))
    with pytest.raises(KeyError, match='no mc_file_client_args'):
        apply_mc_config(config(DETECTION), os.path.join(ROOT, CONFIG))


# ------------------------------------------------------------ end to end
@pytest.fixture(scope='module')
def det_run(tmp_path_factory):
    """DavarOCR's and mmdet's training flags at once: --gpus, --options
    (with its warning), --diff-seed, --auto-scale-lr, --mc-config."""
    work = tmp_path_factory.mktemp('cli') / 'work'
    out = ok('tools/train.py', CONFIG, '--work-dir', str(work), '--gpus',
             '1', '--options', 'runner.max_epochs=1', '--diff-seed',
             '--auto-scale-lr', '--mc-config', MC_CONFIG, '--validate')
    return work, out


def test_train_flags_act(det_run):
    work, out = det_run
    assert '--options is deprecated in favor of --cfg-options' in out
    latest = load_checkpoint_file(str(work / 'latest.pth'))
    assert latest['meta']['epoch'] == 1  # --options runner.max_epochs=1
    # --auto-scale-lr: 1 process x 8 samples over a base of 16
    assert 'LR has been automatically scaled from 0.002 to 0.001' in out
    assert latest['optimizer']['param_groups'][0]['lr'] == \
        pytest.approx(0.001)
    # --mc-config: the saved config's training pipeline reads through it
    saved = Config.fromfile(str(work / 'det_eval_kwargs.py'))
    assert saved.data.train.pipeline[0].file_client_args == dict(
        backend='disk')
    assert 'Set random seed to 0' in out  # rank 0 + 0 with --diff-seed
    # training's evaluation got the config's eval_func_params
    assert 'IOU_CONSTRAINT: 0.5, AREA_PRECISION_CONSTRAINT: 0.5, ' \
        'eval_kwargs: eval_func_params' in out


def test_test_py_passes_the_evaluation_settings_and_writes_json(
        det_run, tmp_path):
    work, _ = det_run
    best = glob.glob(str(work / 'best_bbox_mAP_epoch_*.pth'))[0]
    out = ok('tools/test.py', CONFIG, best, '--eval', 'bbox', '--work-dir',
             str(tmp_path / 'eval'), '--fuse-conv-bn')
    metrics = last_json(out)
    assert metrics['IOU_CONSTRAINT'] == 0.5  # the config's evaluation
    assert metrics['AREA_PRECISION_CONSTRAINT'] == 0.5
    assert metrics['eval_kwargs'] == 'eval_func_params'  # no hook key
    # the logged best, with conv and batch norm fused
    logged = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics['bbox_mAP'] == pytest.approx(logged, abs=2e-3)
    written = glob.glob(str(tmp_path / 'eval' / 'eval_*.json'))
    assert len(written) == 1
    with open(written[0]) as f:
        record = json.load(f)
    assert record['config'] == CONFIG
    assert record['metric']['bbox_mAP'] == metrics['bbox_mAP']


def test_eval_options_override_the_config(det_run):
    work, _ = det_run
    latest = str(work / 'latest.pth')
    out = ok('tools/test.py', CONFIG, latest, '--eval', 'bbox',
             '--eval-options', "eval_func_params={'IOU_CONSTRAINT': 0.7}",
             '--cfg-options', 'fp16.loss_scale=512.0')
    metrics = last_json(out)  # the dict replaces the config's
    if not torch.cuda.is_available():
        assert "mmcv's fp16 inference needs CUDA: testing in fp32" in out
    assert (metrics['IOU_CONSTRAINT'],
            metrics['AREA_PRECISION_CONSTRAINT']) == (0.7, -1)
    out = ok('tools/test.py', CONFIG, latest, '--eval', 'bbox', '--split',
             'val', '--eval-options', 'eval_func_params.IOU_CONSTRAINT=0.6')
    metrics = last_json(out)  # a dotted key sets one entry
    assert (metrics['IOU_CONSTRAINT'],
            metrics['AREA_PRECISION_CONSTRAINT']) == (0.6, 0.5)


def test_format_only_show_dir_and_out(det_run, tmp_path):
    work, _ = det_run
    prefix = tmp_path / 'formatted' / 'results'
    os.makedirs(prefix.parent)
    ok('tools/test.py', CONFIG, str(work / 'latest.pth'), '--format-only',
       '--eval-options', f'jsonfile_prefix={prefix}', '--show-dir',
       str(tmp_path / 'painted'), '--show-score-thr', '0.05', '--out',
       str(tmp_path / 'results.pkl'))
    with open(f'{prefix}.bbox.json') as f:  # mmdet's COCO result file
        boxes = json.load(f)
    assert boxes and {'image_id', 'bbox', 'score', 'category_id'} <= set(
        boxes[0])
    painted = sorted(os.listdir(tmp_path / 'painted'))
    images = sorted(os.listdir(os.path.join(ROOT, 'demo/detection/data/val')))
    assert painted == images
    with open(tmp_path / 'results.pkl', 'rb') as f:
        assert len(pickle.load(f)) == len(images)


def test_options_with_cfg_options_stops_before_training(tmp_path):
    code, out = run('tools/train.py', DETECTION, '--work-dir',
                    str(tmp_path), '--options', 'runner.max_epochs=1',
                    '--cfg-options', 'runner.max_epochs=2', timeout=120)
    assert code == 2 and '--options and --cfg-options cannot be both' in out
    assert not os.listdir(tmp_path)


# issue 29: one wrong value at a time, as --cfg-options gives it
BAD_SETTINGS = [
    ('checkpoint_config.by_epoch=yes', 'TypeError: DavarCheckpointHook: '
     "by_epoch must be True or False (a bool), got 'yes' (str)"),
    ('evaluation.save_bets=accuracy', "TypeError: DavarEvalHook: "
     "'save_bets' (did you mean 'save_best'?) is not an argument of the "
     'hook; it would go to ToyTextDataset.evaluate'),
    ('evaluation.interval=a', 'TypeError: DavarEvalHook: interval must be '
     "a positive int, got 'a' (str)"),
    ('evaluation.metric=3', 'TypeError: DavarEvalHook: metric must be a str '
     'or a list of str or None, got 3 (int)'),
    ('runner.max_epochs=x', 'TypeError: runner.max_epochs must be a positive '
     "int, got 'x' (str)"),
    ('runner.type=EpochRunner', "ValueError: runner.type must be a "
     "registered runner type, one of ["),
]


def used_work_dir(tmp_path):
    """A work_dir a training left: a checkpoint, a log, the config."""
    work = tmp_path / 'work'
    work.mkdir()
    for name, text in (('latest_model.pth', 'weights'), ('a.log', 'log'),
                       ('crnn_lightweight.py', 'config')):
        (work / name).write_text(text)
    return work


def contents(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob('*')}


@pytest.mark.parametrize('option,message', BAD_SETTINGS,
                         ids=[o for o, _ in BAD_SETTINGS])
def test_a_wrong_setting_stops_train_py_before_anything(
        tmp_path, monkeypatch, option, message):
    """tools/train.py on the recognition demo, one wrong --cfg-options
    value: it stops before anything is built, with one line naming the
    setting, and leaves the work_dir as it was."""
    work = used_work_dir(tmp_path)
    before = contents(work)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        train_tool.main([RECOGNITION, '--work-dir', str(work),
                         '--cfg-options', option])
    assert str(info.value.code).startswith(f'error: {message}')
    assert contents(work) == before


def test_a_wrong_setting_from_the_command_line(tmp_path):
    work = used_work_dir(tmp_path)
    before = contents(work)
    code, out = run('tools/train.py', RECOGNITION, '--work-dir', str(work),
                    '--cfg-options', 'checkpoint_config.by_epoch=yes',
                    timeout=120)
    assert code == 1, out
    assert out.strip().splitlines()[-1] == f'error: {BAD_SETTINGS[0][1]}'
    assert 'Traceback' not in out and 'Epoch [' not in out
    assert contents(work) == before


def test_torch_distributed_launch_line_of_davarocr_and_mmdet(tmp_path):
    """DavarOCR's demo dist_train.sh and mmdet 2.x's tools/dist_train.sh:
    python -m torch.distributed.launch ... tools/train.py CONFIG
    --launcher pytorch, which passes --local-rank to each process."""
    from toy import free_port
    work = tmp_path / 'work'
    out = ok('-m', 'torch.distributed.launch', '--nproc_per_node', '2',
             '--master_port', str(free_port()), 'tools/train.py',
             RECOGNITION, '--launcher', 'pytorch', '--seed', '0',
             '--no-validate', '--work-dir', str(work), '--cfg-options',
             'runner.max_epochs=1', 'data.train.times=1')
    assert 'Distributed training: True' in out
    latest = load_checkpoint_file(str(work / 'latest.pth'))['meta']
    assert latest['epoch'] == 1
