"""DavarEpochBasedRunner, DavarIterBasedRunner and DistillRunner on real
training: the same hook calls, checkpoints and logs as mmcv's runners, no
sleep at epoch transitions, and DistillRunner's runner-in-the-batch with the
Davar hooks, resume included."""
import glob
import importlib
import json
import os
import time

import pytest
import torch
from mmcv.parallel import MMDataParallel
from mmcv.runner import (RUNNERS, EpochBasedRunner, Hook, IterBasedRunner,
                         build_runner)

from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from davarocr_mmcv.runner import (DavarEpochBasedRunner,
                                  DavarIterBasedRunner, DistillRunner)
from toy import (RUNNER_MODULES, ScriptedDataset, ToyModel, load,
                 make_loader, make_logger)

SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}
GENERAL = dict(type='DavarCheckpointHook', interval=1, by_epoch=True)
LIGHT = dict(type='DavarCheckpointHook', save_mode='lightweight',
             metric='accuracy')
#: log fields that depend on the clock or the machine
CLOCK = {'time', 'data_time', 'memory', 'eta'}


class Recorder(Hook):
    """Records every hook call with the runner's counters at that moment,
    and whether gradients were enabled."""

    def __init__(self):
        self.calls = []

    def _record(self, name, runner):
        self.calls.append((name, runner.mode, runner.epoch, runner.iter,
                           runner.inner_iter, torch.is_grad_enabled()))

    def __getattribute__(self, name):
        if name.startswith(('before_', 'after_')) and \
                name not in ('before_evaluation', 'after_evaluation'):
            return lambda runner: self._record(name, runner)
        return super().__getattribute__(name)


def build(runner_type, work_dir, model=None, checkpoint_config=GENERAL,
          **length):
    """A runner built from a config dict as train_model does, with the
    training hooks of a config."""
    model = model or ToyModel()
    runner = build_runner(dict(type=runner_type, **length), default_args=dict(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        work_dir=str(work_dir), logger=make_logger(str(work_dir), 'runners'),
        meta=None))
    runner.register_training_hooks(
        lr_config=dict(policy='fixed'), optimizer_config=dict(grad_clip=None),
        checkpoint_config=checkpoint_config,
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]))
    return runner


def log_records(work_dir):
    (path, ) = glob.glob(os.path.join(str(work_dir), '*.log.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [{k: v for k, v in r.items() if k not in CLOCK}
            for r in records if 'mode' in r]


def checkpoints(work_dir):
    out = {}
    for path in sorted(glob.glob(os.path.join(str(work_dir), '*.pth'))):
        ckpt = load(path)
        msgs = json.loads(json.dumps(ckpt['meta'].get('hook_msgs', {}))
                          .replace(str(work_dir), 'WORK'))
        out[os.path.basename(path)] = dict(
            epoch=ckpt['meta']['epoch'], iter=ckpt['meta']['iter'],
            hook_msgs=msgs,
            state={k: v.tolist() for k, v in ckpt['state_dict'].items()})
    return out


def train_once(runner_type, work_dir, workflow, **length):
    torch.manual_seed(0)
    ckpt = GENERAL if 'max_epochs' in length else dict(
        type='DavarCheckpointHook', interval=2, by_epoch=False)
    runner = build(runner_type, work_dir, checkpoint_config=ckpt, **length)
    recorder = Recorder()
    runner.register_hook(recorder, priority='LOWEST')
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(DavarEvalHook(
        loader, eval_mode='lightweight', by_epoch='max_epochs' in length,
        interval=1 if 'max_epochs' in length else 2), priority='LOW')
    runner.run([loader] * len(workflow), workflow)
    return dict(calls=recorder.calls, logs=log_records(work_dir),
                checkpoints=checkpoints(work_dir),
                counters=(runner.epoch, runner.iter, runner.inner_iter,
                          int(runner.model.steps)),
                files=sorted(n for n in os.listdir(str(work_dir))
                             if '.log' not in n))


@pytest.mark.parametrize('mmcv_type,davar_type,workflow,length', [
    ('EpochBasedRunner', 'DavarEpochBasedRunner', [('train', 1)],
     dict(max_epochs=4)),
    ('EpochBasedRunner', 'DavarEpochBasedRunner',
     [('train', 2), ('val', 1)], dict(max_epochs=4)),
    ('IterBasedRunner', 'DavarIterBasedRunner', [('train', 1)],
     dict(max_iters=7)),
    ('IterBasedRunner', 'DavarIterBasedRunner', [('train', 3), ('val', 1)],
     dict(max_iters=7)),
], ids=['epoch', 'epoch-val', 'iter', 'iter-val'])
def test_same_training_as_mmcv(tmp_path, mmcv_type, davar_type, workflow,
                               length):
    mmcv_run = train_once(mmcv_type, tmp_path / 'mmcv', workflow, **length)
    davar_run = train_once(davar_type, tmp_path / 'davar', workflow,
                           **length)
    assert davar_run['calls'] == mmcv_run['calls']
    assert davar_run['counters'] == mmcv_run['counters']
    assert davar_run['logs'] == mmcv_run['logs']
    assert davar_run['checkpoints'] == mmcv_run['checkpoints']
    assert davar_run['files'] == mmcv_run['files']
    # the run crossed epoch transitions, trained and validated as asked
    modes = {call[1] for call in mmcv_run['calls']} - {None}
    assert modes == {mode for mode, _ in workflow}
    assert all(not grad for name, mode, *_, grad in davar_run['calls']
               if mode == 'val' and name.endswith('_iter'))
    assert len(mmcv_run['checkpoints']) >= 3


@pytest.fixture
def sleeps(monkeypatch):
    """Every ``time.sleep`` call of the run, in seconds, recorded instead
    of slept; mmcv's runner modules see the real ``time`` module again
    (conftest's in-process shortcut undone)."""
    for name in RUNNER_MODULES:
        monkeypatch.setattr(importlib.import_module(name), 'time', time)
    calls = []
    monkeypatch.setattr(time, 'sleep', calls.append)
    return calls


@pytest.mark.parametrize('kind,length,transitions', [
    ('EpochBasedRunner', dict(max_epochs=3), 3),
    ('IterBasedRunner', dict(max_iters=7), 3),
])
def test_davar_runners_skip_only_the_epoch_sleep(tmp_path, sleeps, kind,
                                                 length, transitions):
    loader = make_loader(ScriptedDataset())  # 2 iterations per epoch
    build(kind, tmp_path / 'mmcv', **length).run([loader], [('train', 1)])
    # mmcv: 2 s at each epoch transition, 1 s at the end of run
    assert sleeps == [2] * transitions + [1]
    sleeps.clear()
    build('Davar' + kind, tmp_path / 'davar', **length).run(
        [loader], [('train', 1)])
    assert sleeps == [1]


def test_epochs_take_no_extra_wall_time(tmp_path, monkeypatch):
    for name in RUNNER_MODULES:  # the real sleep, as in a user's run
        monkeypatch.setattr(importlib.import_module(name), 'time', time)
    runner = build('DavarEpochBasedRunner', tmp_path, max_epochs=5)
    start = time.perf_counter()
    runner.run([make_loader(ScriptedDataset())], [('train', 1)])
    elapsed = time.perf_counter() - start
    # mmcv's runner would take more than 11 s (5 x 2 s + 1 s)
    assert runner.epoch == 5 and elapsed < 5


def test_registered_under_their_names(tmp_path):
    for name, cls, base in (
            ('DavarEpochBasedRunner', DavarEpochBasedRunner,
             EpochBasedRunner),
            ('DavarIterBasedRunner', DavarIterBasedRunner, IterBasedRunner),
            ('DistillRunner', DistillRunner, EpochBasedRunner)):
        assert RUNNERS.get(name) is cls and issubclass(cls, base)
    runner = build('DistillRunner', tmp_path, max_epochs=1)
    assert type(runner) is DistillRunner


class DistillModel(ToyModel):
    """Reads the runner from the batch, as a distillation model does to
    schedule its losses."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def train_step(self, data_batch, optimizer=None, **kwargs):
        runner = data_batch.pop('runner')
        self.seen.append((runner.mode, runner.epoch, runner.iter,
                          type(runner).__name__))
        return super().train_step(data_batch, optimizer, **kwargs)


def distill_run(work_dir, max_epochs, resume_from=None, wrap=False,
                workflow=(('train', 1), )):
    model = DistillModel()
    runner = build('DistillRunner', work_dir,
                   model=MMDataParallel(model) if wrap else model,
                   checkpoint_config=LIGHT, max_epochs=max_epochs)
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='LOW')
    if resume_from:
        resume_runner(runner, resume_from)
    runner.run([loader] * len(workflow), list(workflow))
    return runner, model


@pytest.mark.parametrize('wrap', [False, True], ids=['bare', 'dataparallel'])
def test_distill_runner_hands_itself_to_the_model(tmp_path, wrap):
    runner, model = distill_run(tmp_path, 2, wrap=wrap,
                                workflow=(('train', 1), ('val', 1)))
    assert model.seen == [
        ('train', 0, 0, 'DistillRunner'), ('train', 0, 1, 'DistillRunner'),
        ('val', 1, 2, 'DistillRunner'), ('val', 1, 2, 'DistillRunner'),
        ('train', 1, 2, 'DistillRunner'), ('train', 1, 3, 'DistillRunner'),
        ('val', 2, 4, 'DistillRunner'), ('val', 2, 4, 'DistillRunner')]


def test_distill_runner_with_hooks_and_resume(tmp_path):
    full, _ = distill_run(tmp_path / 'full', 6)
    best = load(tmp_path / 'full' / 'Best_checkpoint.pth')
    assert best['meta']['hook_msgs']['best_score'] == 0.9
    assert int(best['state_dict']['steps']) == 8

    distill_run(tmp_path / 'part', 3)
    resumed, model = distill_run(tmp_path / 'part', 6, resume_from=str(
        tmp_path / 'part' / 'latest_model.pth'))
    # the model sees the resumed runner from its first batch on
    assert model.seen[0] == ('train', 3, 6, 'DistillRunner')
    assert len(model.seen) == 6
    assert resumed.meta['hook_msgs']['best_score'] == \
        full.meta['hook_msgs']['best_score'] == 0.9
    assert resumed.meta['hook_msgs']['best_step'] == \
        full.meta['hook_msgs']['best_step']
    assert int(load(tmp_path / 'part' / 'Best_checkpoint.pth')
               ['state_dict']['steps']) == 8
    # the same checkpoints and pointers; a resumed run that starts in a
    # new second writes a second timestamped log
    def written(folder):
        return sorted(n for n in os.listdir(folder)
                      if not n.endswith(('.log', '.log.json')))
    assert written(tmp_path / 'part') == written(tmp_path / 'full')
