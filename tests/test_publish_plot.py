"""publish() / tools/publish.py and plot_metrics() / tools/plot_metrics.py
on the work_dirs of real short trainings."""
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import pytest

from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.plot import collect, plot_metrics
from davarocr_mmcv.publish import find_best_checkpoint, publish
from toy import load, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}
LIGHT = dict(type='DavarCheckpointHook', save_mode='lightweight',
             metric='accuracy')
CONFIG = ("checkpoint_config = dict(type='DavarCheckpointHook', "
          "save_mode='lightweight', model_milestone=0.5)\n"
          "runner = dict(type='EpochBasedRunner', max_epochs=6)\n")


def load_tool(name):
    path = os.path.join(ROOT, 'tools', name)
    spec = importlib.util.spec_from_file_location(name[:-3] + '_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(runner_factory, toy_loader, kind='epoch', checkpoint_config=LIGHT,
          meta=None, dump_config=False, **eval_args):
    length = dict(max_epochs=6) if kind == 'epoch' else dict(max_iters=12)
    runner = runner_factory(kind, checkpoint_config=checkpoint_config,
                            meta=meta, **length)
    if dump_config:  # as tools/train.py does
        with open(os.path.join(runner.work_dir, 'toy_cfg.py'), 'w') as f:
            f.write(CONFIG)
    loader = toy_loader(SCORES)
    eval_args.setdefault('eval_mode', 'lightweight')
    if kind == 'iter':
        eval_args.update(by_epoch=False, interval=2)
    runner.register_hook(DavarEvalHook(loader, **eval_args), priority='LOW')
    run(runner, loader)
    return runner


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- publish
def test_publish_lightweight(runner_factory, toy_loader, tmp_path):
    runner = train(runner_factory, toy_loader,
                   meta=dict(config=CONFIG, exp_name='toy_cfg.py'))
    out = tmp_path / 'out'
    archive = publish(runner.work_dir, str(out))

    pth = [n for n in os.listdir(out) if n.endswith('.pth')]
    assert len(pth) == 1
    digest = sha256(out / pth[0])
    stem = f'toy_cfg-{digest[:8]}'
    assert pth[0] == stem + '.pth'
    assert archive == str(out / (stem + '.tar.gz'))
    assert sorted(os.listdir(out)) == sorted(
        [stem + '.pth', stem + '.tar.gz', 'toy_cfg.py', 'metrics.json'])

    published = load(out / pth[0])  # torch's default (weights_only) load
    assert set(published) == {'meta', 'state_dict'}
    assert int(published['state_dict']['steps']) == 8  # epoch 4's weights
    assert (out / 'toy_cfg.py').read_text() == CONFIG

    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics == dict(
        best_score=0.9, best_metric='accuracy', best_step=4,
        best_unit='epoch', iters_done=8, metrics={'accuracy': 0.9},
        checkpoint=stem + '.pth', sha256=digest, config='toy_cfg.py',
        source_checkpoint=os.path.join(runner.work_dir,
                                       'Best_checkpoint.pth'))

    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    assert sorted(members) == sorted(
        f'{stem}/{n}' for n in (stem + '.pth', 'toy_cfg.py', 'metrics.json'))
    for name, content in members.items():
        assert content == (out / os.path.basename(name)).read_bytes()


def test_publish_general_mode_with_dumped_config(runner_factory, toy_loader,
                                                 tmp_path):
    runner = train(runner_factory, toy_loader, kind='iter', dump_config=True,
                   checkpoint_config=dict(type='DavarCheckpointHook',
                                          by_epoch=False, interval=4),
                   eval_mode='general', save_best='accuracy')
    assert find_best_checkpoint(runner.work_dir)[0] == os.path.join(
        runner.work_dir, 'best_accuracy_iter_8.pth')
    tool = load_tool('publish.py')
    out = str(tmp_path / 'out')
    assert tool.main([runner.work_dir, '--out', out, '--name', 'rec']) == 0
    pth = [n for n in os.listdir(out) if n.endswith('.pth')][0]
    assert pth == f'rec-{sha256(os.path.join(out, pth))[:8]}.pth'
    published = load(os.path.join(out, pth))
    assert 'optimizer' not in published
    assert int(published['state_dict']['steps']) == 8
    with open(os.path.join(out, 'rec.py')) as f:
        assert f.read() == CONFIG
    with open(os.path.join(out, 'metrics.json')) as f:
        metrics = json.load(f)
    # the best file predates its own history entry; the newest has it
    assert metrics['metrics'] == {'accuracy': 0.9}
    assert (metrics['best_unit'], metrics['best_step']) == ('iter', 8)


def test_publish_falls_back_to_best_file(runner_factory, toy_loader):
    runner = train(runner_factory, toy_loader,
                   meta=dict(config=CONFIG, exp_name='toy_cfg.py'))
    os.remove(os.path.join(runner.work_dir, 'latest_model.pth'))
    archive = publish(runner.work_dir)
    folder = os.path.join(runner.work_dir, 'publish')
    assert os.path.dirname(archive) == folder
    with open(os.path.join(folder, 'metrics.json')) as f:
        metrics = json.load(f)
    assert metrics['best_score'] == 0.9 and metrics['best_step'] == 4
    assert metrics['metrics'] == {'accuracy': 0.9}


def test_publish_errors(runner_factory, toy_loader, tmp_path):
    with pytest.raises(FileNotFoundError, match='no best checkpoint'):
        publish(str(tmp_path))
    runner = train(runner_factory, toy_loader)  # no config anywhere
    with pytest.raises(FileNotFoundError, match='no config'):
        publish(runner.work_dir)
    tool = load_tool('publish.py')
    assert tool.main([str(tmp_path)]) == 1


def test_publish_cli(runner_factory, toy_loader, tmp_path):
    runner = train(runner_factory, toy_loader, dump_config=True)
    out = str(tmp_path / 'cli')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'publish.py'),
         runner.work_dir, '--out', out], capture_output=True, text=True,
        check=True)
    archive = [n for n in os.listdir(out) if n.endswith('.tar.gz')][0]
    assert f'published {os.path.join(out, archive)}' in result.stdout


# ------------------------------------------------------------------- plot
def test_plot_from_checkpoint_history(runner_factory, toy_loader):
    runner = train(runner_factory, toy_loader, dump_config=True)
    data = collect(runner.work_dir)
    assert data.losses['loss'][0] == list(range(1, 13))
    assert data.unit == 'epoch'
    assert data.metrics['accuracy'] == ([1, 2, 3, 4, 5, 6],
                                        [0.2, 0.7, 0.4, 0.9, 0.1, 0.5])
    assert data.best == {'accuracy': (4, 0.9)}
    assert data.milestone == {'epoch': 3, 'iter': 6}

    tool = load_tool('plot_metrics.py')
    assert tool.main([runner.work_dir]) == 0
    png = os.path.join(runner.work_dir, 'metrics.png')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    from matplotlib.image import imread
    assert imread(png).shape[:2] == (560, 800)  # loss + one metric


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
def test_plot_from_logs_only(runner_factory, toy_loader, tmp_path, kind):
    runner = train(runner_factory, toy_loader, kind=kind,
                   checkpoint_config=None, eval_mode='general')
    assert not [n for n in os.listdir(runner.work_dir) if n.endswith('pth')]
    data = collect(runner.work_dir)
    assert data.losses['loss'][0] == list(range(1, 13))
    assert data.unit == 'iter' and data.milestone == {}
    assert data.metrics['accuracy'] == ([2, 4, 6, 8, 10, 12],
                                        [0.2, 0.7, 0.4, 0.9, 0.1, 0.5])
    assert data.best == {'accuracy': (8, 0.9)}
    out = str(tmp_path / 'plots' / 'm.png')
    assert plot_metrics(runner.work_dir, out) == out
    assert os.path.getsize(out) > 1000


def test_plot_nothing_to_plot(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing to plot'):
        plot_metrics(str(tmp_path))
    assert load_tool('plot_metrics.py').main([str(tmp_path)]) == 1
