"""Deaths on cue for tests/test_elastic.py.

On the first attempt of a torchrun job (``TORCHELASTIC_RESTART_COUNT=0``),
global rank 1 kills itself with SIGKILL, in training or inside an
evaluation, after writing where to ``$DAVAR_PROBE_DIR/killed.json``. Later
attempts run undisturbed.
"""
import json
import os
import signal

from mmcv.runner import HOOKS, Hook, get_dist_info
from mmdet.datasets.builder import DATASETS

from davarocr_mmcv.toy.recognition import ToyTextDataset

#: The iteration after which the next evaluation kills (empty: none).
_ARMED = []


def _doomed():
    return os.environ.get('TORCHELASTIC_RESTART_COUNT') == '0' and \
        get_dist_info()[0] == 1


def die(where, **point):
    path = os.path.join(os.environ['DAVAR_PROBE_DIR'], 'killed.json')
    with open(path, 'w') as f:
        json.dump(dict(where=where, pid=os.getpid(), **point), f)
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillOnceHook(Hook):
    """Kill rank 1 of the first attempt at iteration ``iter`` (1-based):
    ``where='train'`` right after that iteration's step, ``'eval'`` inside
    the first evaluation after it (:class:`KillingTextDataset`)."""

    def __init__(self, where, iter):
        assert where in ('train', 'eval')
        self.where = where
        self.iter = iter

    def after_train_iter(self, runner):
        if runner.iter + 1 != self.iter or not _doomed():
            return
        if self.where == 'train':
            die('train', iter=runner.iter + 1)
        _ARMED.append(runner.iter + 1)


@DATASETS.register_module()
class KillingTextDataset(ToyTextDataset):
    """ToyTextDataset whose 10th sample read once armed kills rank 1."""

    def __getitem__(self, idx):
        if _ARMED and _doomed():
            _ARMED.append(idx)
            if len(_ARMED) > 10:
                die('eval', iter=_ARMED[0], sample=idx)
        return super().__getitem__(idx)
