"""Tiny real model, dataset and runner factories shared by the tests.

The model counts its training steps in a buffer (saved in checkpoints and
restored on resume) and predicts that count; the dataset's ``evaluate`` maps
the count to a scripted metric sequence. So the metric of every evaluation,
and therefore the expected best checkpoint, is known in advance, and a
resumed run sees exactly the metrics an uninterrupted one sees.
"""
import logging
import os
import os.path as osp
import socket

import torch
import torch.nn as nn
from mmcv.runner import EpochBasedRunner, IterBasedRunner
from mmcv.utils import get_logger
from torch.utils.data import DataLoader, Dataset

import davarocr_mmcv  # noqa: F401  registers the hooks


class ToyModel(nn.Module):
    """A linear layer plus a step counter; implements mmcv's train_step."""

    def __init__(self, predict='steps'):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.register_buffer('steps', torch.zeros((), dtype=torch.long))
        self.predict = predict
        self.modes_seen = []

    def forward(self, x, return_loss=True, **kwargs):
        if return_loss:
            self.modes_seen.append(self.training)
            return ((self.linear(x) - 1) ** 2).mean()
        if self.predict == 'index':  # the sample's index, to check order
            return [int(v) for v in x[:, 0]]
        return [int(self.steps)] * len(x)

    def train_step(self, data_batch, optimizer=None, **kwargs):
        loss = self(data_batch['x'])
        self.steps += 1
        return dict(loss=loss, log_vars=dict(loss=float(loss)),
                    num_samples=len(data_batch['x']))

    def val_step(self, data_batch, optimizer=None, **kwargs):
        return self.train_step(data_batch, optimizer)


class ScriptedDataset(Dataset):
    """``size`` samples; ``evaluate`` reports ``scores[steps]`` for each key.

    Args:
        scores (dict[int, float] | list[float]): metric per training step;
            steps not listed score ``default``.
        keys (tuple[str]): metric names reported (same value each, negated
            for names in ``negate``).
    """

    def __init__(self, size=4, scores=(), keys=('accuracy', ),
                 default=0.0, extra=None):
        self.size = size
        self.scores = dict(enumerate(scores)) if isinstance(
            scores, (list, tuple)) else dict(scores)
        self.keys = keys
        self.default = default
        self.extra = extra or {}
        self.calls = []

    def __len__(self):
        return self.size

    def __getitem__(self, idx):
        return dict(x=torch.tensor([float(idx), 1.0]))

    def evaluate(self, results, logger=None, **kwargs):
        step = int(results[0])
        self.calls.append(dict(step=step, n=len(results), kwargs=kwargs))
        value = self.scores.get(step, self.default)
        out = {key: value for key in self.keys}
        out.update(self.extra)
        return out


def make_loader(dataset, batch_size=2, sampler=None):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      shuffle=False, num_workers=0)


def make_logger(work_dir, name='toy'):
    os.makedirs(work_dir, exist_ok=True)
    logger = get_logger(f'{name}-{work_dir}', log_file=osp.join(
        work_dir, 'run.log'), log_level=logging.INFO)
    return logger


def make_runner(work_dir, kind='epoch', max_epochs=None, max_iters=None,
                checkpoint_config=None, model=None, meta=None, lr=0.01):
    """A real mmcv runner working in ``work_dir``, its training hooks
    registered through ``register_training_hooks`` as tools/train.py does.

    Args:
        kind (str): 'epoch' (EpochBasedRunner) or 'iter' (IterBasedRunner).
        checkpoint_config (dict | None): e.g.
            ``dict(type='DavarCheckpointHook', ...)``.
    """
    model = model or ToyModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    cls = dict(epoch=EpochBasedRunner, iter=IterBasedRunner)[kind]
    runner = cls(model=model, optimizer=optimizer, work_dir=str(work_dir),
                 logger=make_logger(str(work_dir)), meta=meta,
                 max_epochs=max_epochs, max_iters=max_iters)
    runner.register_training_hooks(
        lr_config=dict(policy='fixed'), optimizer_config=dict(grad_clip=None),
        checkpoint_config=dict(checkpoint_config or {}) or None,
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]))
    return runner


def run(runner, loader):
    """Run the whole training of ``runner`` on ``loader``."""
    runner.run([loader], [('train', 1)])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def load(path):
    """Load a checkpoint as a user would (torch's default weights_only)."""
    return torch.load(path, map_location='cpu')


class NoEpochSleep:
    """Stands in for the ``time`` module inside mmcv's runner modules:
    EpochBasedRunner and IterBasedRunner's IterLoader sleep 2 s at every
    epoch transition ("prevent possible deadlock"); in-process runs skip
    only that sleep. Subprocess tests keep it."""

    def __getattr__(self, name):
        import time
        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        pass


RUNNER_MODULES = ('mmcv.runner.epoch_based_runner',
                  'mmcv.runner.iter_based_runner')


def no_epoch_sleep(setattr_=setattr):
    import importlib
    for name in RUNNER_MODULES:
        setattr_(importlib.import_module(name), 'time', NoEpochSleep())
