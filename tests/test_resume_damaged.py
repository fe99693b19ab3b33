"""Damaged checkpoints: --auto-resume skips them (never deletes them) and
continues from the newest file that loads; --resume-from / load_from of a
damaged file stops with a short message naming it."""
import logging
import os
import signal
import subprocess
import sys

import pytest
from mmcv import Config

from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.core.resume import CheckpointLoadError, resume_or_load
from toy import ScriptedDataset, make_loader, make_runner, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECOGNITION = 'demo/recognition/crnn_lightweight.py'
# weights after epoch e have steps == 2e; best is epoch 2 (steps 4)
SCORES = {2: 0.2, 4: 0.9, 6: 0.4}


def damage(path):
    """Keep the first bytes, as a write cut short would; return them."""
    with open(path, 'rb') as f:
        head = f.read(100)
    if os.path.islink(path):  # latest.pth: damage a file of its own
        os.remove(path)
    with open(path, 'wb') as f:
        f.write(head)
    return head


def trained(work, **ckpt):
    runner = make_runner(work, max_epochs=3, checkpoint_config=dict(
        type='DavarCheckpointHook', **ckpt))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='LOW')
    run(runner, loader)
    return work


class Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def fresh_runner(work):
    runner = make_runner(work, max_epochs=4, checkpoint_config=dict(
        type='DavarCheckpointHook'))
    captured = Captured()
    runner.logger.addHandler(captured)
    return runner, captured


def test_auto_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    work = trained(tmp_path / 'work')
    head = damage(work / 'epoch_3.pth')
    runner, log = fresh_runner(work)
    plan = resume_or_load(runner, Config(dict(work_dir=str(work),
                                              auto_resume=True)),
                          runner.logger)
    assert plan == dict(mode='resume', path=str(work / 'epoch_2.pth'))
    assert runner.epoch == 2 and runner.iter == 4
    assert int(runner.model.steps) == 4
    skipped = [line for line in log.lines if 'skipped' in line]
    assert len(skipped) == 1, log.lines  # latest.pth is the same file
    assert 'epoch_3.pth does not load' in skipped[0]
    assert 'zip' in skipped[0]  # torch's reason, in one line
    # never deleted, never changed
    assert (work / 'epoch_3.pth').read_bytes() == head


def test_lightweight_resumes_from_best_when_only_it_loads(tmp_path):
    work = trained(tmp_path / 'work', save_mode='lightweight',
                   metric='accuracy')
    for name in ('latest_model.pth', 'latest.pth'):
        if (work / name).exists():
            damage(work / name)
    runner, log = fresh_runner(work)
    plan = resume_or_load(runner, Config(dict(work_dir=str(work),
                                              auto_resume=True)),
                          runner.logger)
    assert plan['path'] == str(work / 'Best_checkpoint.pth')
    # the best weights (epoch 2) and their step
    assert int(runner.model.steps) == 4 and runner.epoch == 2
    assert runner.meta['hook_msgs']['best_score'] == 0.9
    warning = [line for line in log.lines if 'optimizer' in line]
    assert warning and 'starts fresh' in warning[0]
    assert 'Best_checkpoint.pth' in warning[0]


def test_auto_resume_with_nothing_loadable_starts_from_scratch(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'not a checkpoint')
    runner, log = fresh_runner(work)
    assert resume_or_load(runner, Config(dict(
        work_dir=str(work), auto_resume=True)), runner.logger) is None
    assert runner.epoch == 0
    assert any('epoch_1.pth does not load' in line for line in log.lines)
    assert (work / 'epoch_1.pth').read_bytes() == b'not a checkpoint'


@pytest.mark.parametrize('key', ['resume_from', 'load_from'])
def test_damaged_resume_from_or_load_from_names_the_file(tmp_path, key):
    work = trained(tmp_path / 'work')
    damage(work / 'epoch_2.pth')
    runner, _ = fresh_runner(work)
    cfg = Config({'work_dir': str(work), key: str(work / 'epoch_2.pth')})
    with pytest.raises(CheckpointLoadError) as info:
        resume_or_load(runner, cfg, runner.logger)
    message = str(info.value)
    assert message.startswith(f'{key}: {work / "epoch_2.pth"} does not load')
    assert len(message.splitlines()) == 1
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert runner.epoch == 0


def test_missing_resume_from_is_named(tmp_path):
    runner, _ = fresh_runner(tmp_path / 'work')
    with pytest.raises(CheckpointLoadError, match='resume_from: .*nope.pth '
                                                  'does not exist'):
        resume_or_load(runner, Config(dict(
            work_dir=str(tmp_path), resume_from=str(tmp_path / 'nope.pth'))),
            runner.logger)


def test_train_py_resume_from_damaged_file_ends_with_the_message(tmp_path):
    bad = tmp_path / 'epoch_9.pth'
    bad.write_bytes(b'PK\x03\x04 cut short')
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', RECOGNITION, '--work-dir',
         str(tmp_path / 'work'), '--resume-from', str(bad)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS='1'), start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and str(bad) in last
    assert 'does not load' in last
    # no traceback at all: the message is the last word
    assert 'Traceback' not in stderr
    assert 'torch/serialization.py' not in stderr
    assert 'During handling' not in stderr
    assert bad.read_bytes() == b'PK\x03\x04 cut short'
