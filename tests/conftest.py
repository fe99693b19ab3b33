import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from toy import ScriptedDataset, make_loader, make_runner  # noqa: E402


@pytest.fixture
def toy_loader():
    """Factory: a loader over a ScriptedDataset (2 batches of 2 by default)."""
    def factory(scores=(), **kwargs):
        return make_loader(ScriptedDataset(scores=scores, **kwargs))
    return factory


@pytest.fixture
def runner_factory(tmp_path):
    """Factory: a real Epoch/IterBasedRunner working in tmp_path/<name>."""
    def factory(kind='epoch', name='work', **kwargs):
        return make_runner(tmp_path / name, kind=kind, **kwargs)
    return factory


class _NoEpochSleep:
    """mmcv's EpochBasedRunner sleeps 2 s at every epoch start ("prevent
    possible deadlock during epoch transition"); in-process tests skip only
    that sleep. Subprocess tests keep it."""

    def __getattr__(self, name):
        import time
        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        pass


@pytest.fixture(autouse=True)
def _no_epoch_sleep(monkeypatch):
    from mmcv.runner import epoch_based_runner
    monkeypatch.setattr(epoch_based_runner, 'time', _NoEpochSleep())
