"""A full disk (ENOSPC) during training: what was on disk stays intact and
loadable, no new best is recorded unless written, and the behaviour follows
``on_save_error``.

Uses a real 1.5 MB tmpfs when it can be mounted here (root), else an ENOSPC
injected at the writer's fsync.
"""
import errno
import os
import subprocess

import pytest
import torch
from mmcv.runner import Hook


from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.serialization import load_checkpoint_file
from toy import ScriptedDataset, ToyModel, make_loader, make_runner, run

# best at epoch 2 (before the disk fills), a better one at epoch 3 (disk
# full: must not be recorded), and at epoch 5 (disk freed again)
SCORES = {4: 0.5, 6: 0.8, 8: 0.1, 10: 0.9, 12: 0.2}


class Ballast(ToyModel):
    def __init__(self):
        super().__init__()
        self.ballast = torch.nn.Parameter(torch.zeros(256, 256))  # 256 KB


class SmallDisk:
    """fill() makes every later write fail with ENOSPC; free() undoes it."""

    def __init__(self, root, monkeypatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.mounted = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=1536k', 'tmpfs', root],
            capture_output=True).returncode == 0
        self.filler = os.path.join(root, 'filler.bin')
        self.full = False

    def fill(self):
        self.full = True
        if not self.mounted:
            from davarocr_mmcv.core import writer
            real = os.fsync

            def fsync(fd):
                if self.full:
                    raise OSError(errno.ENOSPC, 'No space left on device')
                return real(fd)
            self.monkeypatch.setattr(writer.os, 'fsync', fsync)
            return
        with open(self.filler, 'wb') as f:
            try:
                while True:
                    f.write(b'\0' * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self):
        self.full = False
        if self.mounted and os.path.exists(self.filler):
            os.unlink(self.filler)

    def close(self):
        if self.mounted:
            subprocess.run(['umount', '-l', self.root])


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    root = tmp_path / 'disk'
    root.mkdir()
    disk = SmallDisk(str(root), monkeypatch)
    yield disk
    disk.close()


class DiskControl(Hook):
    """Fills the disk after epoch 2 and frees it after epoch 4."""

    def __init__(self, disk):
        self.disk = disk

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == 2:
            self.disk.fill()
        elif runner.epoch + 1 == 4:
            self.disk.free()


def train(work_dir, disk, on_save_error):
    """Logs go to work_dir; checkpoints to the small disk (out_dir)."""
    runner = make_runner(work_dir, max_epochs=6, model=Ballast(),
                         checkpoint_config=dict(
                             type='DavarCheckpointHook',
                             save_mode='lightweight', metric='accuracy',
                             out_dir=disk.root,
                             on_save_error=on_save_error))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='HIGH')
    runner.register_hook(DiskControl(disk), priority='LOWEST')
    run(runner, loader)
    return runner


def steps(path):
    return int(load_checkpoint_file(path)['state_dict']['steps'])


def test_continue_keeps_old_files_and_retries(small_disk, tmp_path):
    runner = train(str(tmp_path / 'work'), small_disk, 'continue')
    work = os.path.join(small_disk.root, 'work')
    log = open(tmp_path / 'work' / 'run.log').read()
    assert 'failed to write checkpoint' in log
    assert 'Files already written are intact' in log
    assert 'Training goes on' in log
    names = sorted(n for n in os.listdir(work) if n.endswith('.pth'))
    assert names == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert not [n for n in os.listdir(work) if n.startswith('.davar-tmp')]
    # epoch 3's 0.8 was never written, so never recorded; epoch 5's 0.9 was
    assert steps(os.path.join(work, 'Best_checkpoint.pth')) == 10
    scores = [h['metrics']['accuracy']
              for h in runner.meta['hook_msgs']['eval_history']]
    assert scores == [0.0, 0.5, 0.8, 0.1, 0.9, 0.2]
    assert runner.meta['hook_msgs']['best_score'] == 0.9
    assert steps(os.path.join(work, 'latest_model.pth')) == 12


def test_raise_stops_with_clear_error_and_intact_files(small_disk,
                                                       tmp_path):
    work = os.path.join(small_disk.root, 'work')
    with pytest.raises(RuntimeError, match=r'failed to write checkpoint .*'
                       r'Best_checkpoint.pth.*Files already written are '
                       r'intact: .*Best_checkpoint.pth'):
        train(str(tmp_path / 'work'), small_disk, 'raise')
    small_disk.free()
    names = sorted(n for n in os.listdir(work) if n.endswith('.pth'))
    assert names == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert steps(os.path.join(work, 'Best_checkpoint.pth')) == 4
    assert steps(os.path.join(work, 'latest_model.pth')) == 4
    best = load_checkpoint_file(os.path.join(work, 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == 0.5
