"""TrainStatusHook on real runners (status.json under a concurrent reader,
failure, throttling), tools/status.py, and DavarProgressBar."""
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading

import pytest
from mmcv.runner import HOOKS, Hook
from mmcv.utils import build_from_cfg

import davarocr_mmcv.hooks.status as status_module
from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.core.metrics import notify
from davarocr_mmcv.hooks.status import TrainStatusHook, format_status
from davarocr_mmcv.utils import progressbar
from davarocr_mmcv.utils.progressbar import DavarProgressBar
from toy import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}
LIGHT = dict(type='DavarCheckpointHook', save_mode='lightweight',
             metric='accuracy')


def status_of(runner):
    with open(os.path.join(runner.work_dir, 'status.json')) as f:
        return json.load(f)


class Poller(threading.Thread):
    """Reads status.json as fast as it can until stopped; every read must
    parse."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.seen = []
        self.errors = []

    def run(self):
        while not self.stop.is_set() or not self.seen:
            try:
                with open(self.path) as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            try:
                self.seen.append(json.loads(text))
            except ValueError as exc:
                self.errors.append((exc, text))


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
def test_status_valid_under_concurrent_reader(runner_factory, toy_loader,
                                              kind):
    length = dict(max_epochs=6) if kind == 'epoch' else dict(max_iters=12)
    runner = runner_factory(kind, checkpoint_config=LIGHT, **length)
    loader = toy_loader(SCORES)
    ev = dict(by_epoch=False, interval=2) if kind == 'iter' else {}
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight', **ev),
                         priority='LOW')
    runner.register_hook(build_from_cfg(dict(type='TrainStatusHook',
                                             interval=1), HOOKS))
    poller = Poller(os.path.join(runner.work_dir, 'status.json'))
    poller.start()
    run(runner, loader)
    poller.stop.set()
    poller.join(10)
    assert not poller.errors
    assert len(poller.seen) >= 200
    states = [s['state'] for s in poller.seen]
    # states move training <-> evaluating, then finished (a reader may
    # miss a short-lived state, never see them out of order)
    assert states[0] == 'training'
    assert 'evaluating' in states
    transitions = {(a, b) for a, b in zip(states, states[1:]) if a != b}
    assert transitions <= {('training', 'evaluating'),
                           ('evaluating', 'training'),
                           ('training', 'finished'),
                           ('evaluating', 'finished')}
    iters = [s['iter'] for s in poller.seen]
    assert iters == sorted(iters)

    final = status_of(runner)
    assert final['state'] == 'finished' and final['error'] is None
    assert final['iter'] == final['max_iters'] == 12
    assert final['eta_s'] is None
    assert final['max_epochs'] == (6 if kind == 'epoch' else None)
    if kind == 'epoch':
        assert final['epoch'] == 6
    assert final['samples_done'] == final['samples_total'] == 4
    assert set(final['loss']) == {'loss'}
    assert final['last_eval']['metrics'] == {'accuracy': 0.5}
    per_step = 1 if kind == 'epoch' else 2  # iterations per evaluation step
    assert final['last_eval']['step'] == 6 * per_step
    best = final['best']['accuracy']
    assert best['score'] == 0.9 and best['step'] == 4 * per_step
    assert best['ckpt'] == os.path.join(runner.work_dir,
                                        'Best_checkpoint.pth')
    assert final['started_at'] <= final['updated_at']
    # a status written mid-epoch counts the samples of that epoch
    mid = [s for s in poller.seen if s['iter'] % 2 == 1 and
           s['state'] == 'training']
    assert mid and all(s['samples_done'] == 2 for s in mid)
    assert all(s['eta_s'] is not None for s in mid)


def test_best_set_by_a_later_hook_reaches_the_file(runner_factory,
                                                   toy_loader):
    # The status hook is notified before the checkpoint hook sets the best:
    # the next iteration rewrites the file with it.
    runner = runner_factory(max_epochs=2, checkpoint_config=LIGHT)
    loader = toy_loader(SCORES)
    runner.register_hook(TrainStatusHook(interval=1000), priority='HIGHEST')
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='LOW')

    class Probe(Hook):
        seen = []

        def before_train_epoch(self, runner):
            self.seen.append(status_of(runner)['best'])

        def after_train_iter(self, runner):
            self.seen.append(status_of(runner)['best'])

    runner.register_hook(Probe(), priority='LOWEST')
    run(runner, loader)
    # epoch 1 (2 iterations), epoch 2 begins, its first iteration
    assert Probe.seen[:3] == [{}, {}, {}]
    assert Probe.seen[4]['accuracy']['score'] == 0.2
    assert status_of(runner)['best']['accuracy']['score'] == 0.7


def test_writes_only_at_interval_and_state_changes(runner_factory,
                                                   toy_loader, monkeypatch):
    written = []
    real = status_module.atomic_write

    def counting(path, write):
        written.append(path)
        real(path, write)

    monkeypatch.setattr(status_module, 'atomic_write', counting)
    runner = runner_factory(max_epochs=6)
    loader = toy_loader(SCORES)
    runner.register_hook(DavarEvalHook(loader, interval=3))
    runner.register_hook(TrainStatusHook(interval=5))
    run(runner, loader)
    # start, iterations 5 and 10, two evaluations (before and after), end
    assert len(written) == 1 + 2 + 2 * 2 + 1


def test_failure_is_recorded_with_message(runner_factory, toy_loader):
    runner = runner_factory(max_epochs=4)
    loader = toy_loader(SCORES)

    class Boom(Hook):
        def after_train_iter(self, runner):
            if runner.iter + 1 == 3:
                raise RuntimeError('loss exploded')

    runner.register_hook(TrainStatusHook(interval=1))
    runner.register_hook(Boom(), priority='LOWEST')
    with pytest.raises(RuntimeError, match='loss exploded'):
        try:  # as davarocr_mmcv.apis.train_model does
            run(runner, loader)
        except BaseException as exc:
            notify(runner, 'on_train_failure', exc)
            raise
    status = status_of(runner)
    assert status['state'] == 'failed'
    assert status['error'] == 'RuntimeError: loss exploded'
    assert status['epoch'] == 2 and status['eta_s'] is None
    assert 'failed (RuntimeError: loss exploded)' in format_status(status)


def test_only_rank_zero_writes(runner_factory, toy_loader, monkeypatch):
    monkeypatch.setattr(status_module, 'get_dist_info', lambda: (1, 2))
    runner = runner_factory(max_epochs=1)
    runner.register_hook(TrainStatusHook(interval=1))
    run(runner, toy_loader())
    assert not os.path.exists(os.path.join(runner.work_dir, 'status.json'))


def test_failed_write_never_stops_training(runner_factory, toy_loader,
                                          caplog):
    runner = runner_factory(max_epochs=2)
    os.makedirs(os.path.join(runner.work_dir, 'status.json'))  # unwritable
    runner.register_hook(TrainStatusHook(interval=1))
    run(runner, toy_loader())
    assert runner.iter == 4
    warnings = [r for r in caplog.records
                if 'TrainStatusHook: could not write' in r.getMessage()]
    assert len(warnings) == 1
    assert not [n for n in os.listdir(runner.work_dir) if 'tmp' in n]


def test_non_finite_values_keep_strict_json(runner_factory, toy_loader):
    runner = runner_factory(max_epochs=1)
    loader = toy_loader({2: float('nan')})
    runner.register_hook(DavarEvalHook(loader))
    runner.register_hook(TrainStatusHook(interval=1))
    run(runner, loader)
    with open(os.path.join(runner.work_dir, 'status.json')) as f:
        status = json.loads(f.read(), parse_constant=pytest.fail)
    assert status['last_eval']['metrics'] == {'accuracy': 'nan'}


def test_tools_status_prints(runner_factory, toy_loader, capsys):
    runner = runner_factory(max_epochs=2, checkpoint_config=LIGHT)
    loader = toy_loader(SCORES)
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='LOW')
    runner.register_hook(TrainStatusHook(interval=1))
    run(runner, loader)
    tool = os.path.join(ROOT, 'tools', 'status.py')
    out = subprocess.run([sys.executable, tool, runner.work_dir],
                         capture_output=True, text=True, check=True).stdout
    assert 'state:    finished' in out
    assert 'epoch 2/2, iter 4/4, samples 4/4 in this epoch' in out
    assert 'metrics:  accuracy: 0.7000 (epoch 2)' in out
    assert 'best:     accuracy 0.7 at epoch 2: ' in out
    # the other options in-process (each subprocess imports torch again)
    spec = importlib.util.spec_from_file_location('status_tool', tool)
    status_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(status_tool)
    capsys.readouterr()
    assert status_tool.main([runner.work_dir, '--json']) == 0
    assert json.loads(capsys.readouterr().out) == status_of(runner)
    assert status_tool.main([runner.work_dir + '-none']) == 1
    assert 'TrainStatusHook' in capsys.readouterr().err


@pytest.mark.parametrize('kwargs,message', [
    (dict(interval=0), r'interval must be a positive int'),
    (dict(interval=True), r'interval must be a positive int'),
    (dict(filename='../status.json'), r'filename must be a plain file name'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainStatusHook(**kwargs)


class FakeClock:
    def __init__(self, step):
        self.now = 1000.0
        self.step = step

    def time(self):
        return self.now

    def tick(self):
        self.now += self.step


@pytest.mark.parametrize('tty', [False, True])
def test_progress_bar_throttled(monkeypatch, tty):
    clock = FakeClock(0.3)
    monkeypatch.setattr(progressbar, 'time', clock)
    stream = io.StringIO()
    stream.isatty = lambda: tty
    bar = DavarProgressBar(20, min_time_interval=1.0, stream=stream)
    for _ in range(20):
        clock.tick()
        bar.update()
    text = stream.getvalue()
    # 6 s in all: at most one line per second, plus the final line
    if tty:
        assert text.count('\r') <= 7 and text.endswith('\n')
        lines = text.strip('\n').split('\r')[1:]
    else:
        assert '\r' not in text
        lines = text.splitlines()
    assert len(lines) == 5  # at 1.2 s, 2.4 s, 3.6 s, 4.8 s and the end
    assert lines[-1].startswith('[20/20]')
    assert all(not line.startswith('[20/20]') for line in lines[:-1])


def test_progress_bar_quiet_between_intervals():
    stream = io.StringIO()
    bar = DavarProgressBar(1000, min_time_interval=3600, stream=stream)
    for _ in range(1000):
        bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith('[1000/1000]')
