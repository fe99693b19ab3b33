"""The latest pointer where symlinks are refused, remote backends (writes
through the backend's ``put``), and stale temporary files."""
import io
import os

import torch
from mmcv.fileio import FileClient
from mmcv.fileio.file_client import BaseStorageBackend

from davarocr_mmcv.constants import TMP_PREFIX
from davarocr_mmcv.core.resume import find_latest_checkpoint
from toy import load, make_loader, make_runner, run, ScriptedDataset


class MemoryBackend(BaseStorageBackend):
    """An object store: whole objects only, no symlinks."""
    store = {}

    def get(self, filepath):
        return self.store[filepath]

    def get_text(self, filepath, encoding='utf-8'):
        return self.store[filepath].decode(encoding)

    def put(self, obj, filepath):
        self.store[filepath] = bytes(obj)

    def put_text(self, obj, filepath, encoding='utf-8'):
        self.store[filepath] = obj.encode(encoding)

    def isfile(self, filepath):
        return filepath in self.store

    def remove(self, filepath):
        del self.store[filepath]

    def join_path(self, filepath, *filepaths):
        return '/'.join([filepath.rstrip('/'), *filepaths])


FileClient.register_backend('davar-memory', MemoryBackend, force=True,
                            prefixes='mem')


def test_remote_out_dir_writes_whole_objects(tmp_path):
    MemoryBackend.store.clear()
    runner = make_runner(tmp_path / 'job', max_epochs=3, meta={},
                         checkpoint_config=dict(
                             type='DavarCheckpointHook', interval=1,
                             max_keep_ckpts=2, out_dir='mem://bucket'))
    run(runner, make_loader(ScriptedDataset()))
    assert sorted(MemoryBackend.store) == [
        'mem://bucket/job/epoch_2.pth', 'mem://bucket/job/epoch_3.pth',
        'mem://bucket/job/last_checkpoint']
    ckpt = torch.load(io.BytesIO(
        MemoryBackend.store['mem://bucket/job/epoch_3.pth']))
    assert ckpt['meta']['epoch'] == 3
    assert MemoryBackend.store['mem://bucket/job/last_checkpoint'] == \
        b'mem://bucket/job/epoch_3.pth'
    assert not [n for n in os.listdir(tmp_path / 'job')
                if n.endswith('.pth')]


def test_latest_is_a_copy_where_symlinks_are_refused(tmp_path,
                                                     monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, 'Operation not permitted')
    monkeypatch.setattr(os, 'symlink', refuse)
    runner = make_runner(tmp_path / 'job', max_epochs=2,
                         checkpoint_config=dict(type='DavarCheckpointHook'))
    run(runner, make_loader(ScriptedDataset()))
    latest = tmp_path / 'job' / 'latest.pth'
    assert latest.is_file() and not latest.is_symlink()
    assert load(latest)['meta']['epoch'] == 2
    assert (tmp_path / 'job' / 'last_checkpoint').read_text() == str(
        tmp_path / 'job' / 'epoch_2.pth')
    assert find_latest_checkpoint(str(tmp_path / 'job')) == str(
        tmp_path / 'job' / 'epoch_2.pth')
    assert not [n for n in os.listdir(tmp_path / 'job')
                if n.startswith(TMP_PREFIX)]


def test_stale_temporary_files_are_removed_at_start(tmp_path):
    job = tmp_path / 'job'
    job.mkdir()
    dead = job / f'{TMP_PREFIX}999999999-epoch_3.pth'  # pid never alive
    dead.write_bytes(b'half a checkpoint')
    alive = job / f'{TMP_PREFIX}{os.getppid()}-other.pth'  # a live writer
    alive.write_bytes(b'in progress')
    runner = make_runner(job, max_epochs=1, checkpoint_config=dict(
        type='DavarCheckpointHook'))
    run(runner, make_loader(ScriptedDataset()))
    assert not dead.exists()
    assert alive.exists()
    assert 'removed stale temporary file' in (job / 'run.log').read_text()
