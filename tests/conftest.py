import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from toy import (ScriptedDataset, make_loader, make_runner,  # noqa: E402
                 no_epoch_sleep)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'gpu: needs an NVIDIA GPU and mmcv-full with CUDA ops '
        '(tests/test_gpu.py; tools/gpu_check.sh runs them)')


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


@pytest.fixture(autouse=True)
def _no_epoch_sleep(monkeypatch):
    """In-process tests skip mmcv's 2 s pause at each epoch transition."""
    no_epoch_sleep(monkeypatch.setattr)
