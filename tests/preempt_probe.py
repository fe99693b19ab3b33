"""A hook for tests/test_preempt.py, imported by the training under test
(``custom_imports``): it records every optimizer step and, from a chosen
iteration on, marks it and slows training down, so that a signal sent when
the mark appears lands in the middle of an epoch.

Environment:
    PROBE_LOG: file prefix; each rank appends one json line per training
        iteration to ``PROBE_LOG.rank<R>`` (iteration, epoch, batch in the
        epoch, a digest of the batch, loss).
    PROBE_MARK_AT: iteration at which ``PROBE_LOG.mark`` is written.
    PROBE_SLOW: seconds slept after each iteration from PROBE_MARK_AT on.
"""
import hashlib
import json
import os
import time

import torch
from mmcv.parallel import DataContainer
from mmcv.runner import HOOKS, Hook, get_dist_info


def digest(value, h=None):
    """A digest of a data batch: tensors by their bytes, text as is."""
    h = h or hashlib.sha1()
    if isinstance(value, DataContainer):
        digest(value.data, h)
    elif isinstance(value, torch.Tensor):
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value):
            h.update(str(key).encode())
            digest(value[key], h)
    elif isinstance(value, (list, tuple)):
        for item in value:
            digest(item, h)
    else:
        h.update(repr(value).encode())
    return h.hexdigest()[:16]


@HOOKS.register_module()
class PreemptProbe(Hook):
    """Records each optimizer step (registered after the optimizer hook)."""

    def __init__(self):
        self.log = os.environ.get('PROBE_LOG')
        self.mark_at = int(os.environ.get('PROBE_MARK_AT') or 0)
        self.slow = float(os.environ.get('PROBE_SLOW') or 0)

    def after_train_iter(self, runner):
        done = runner.iter + 1
        rank = get_dist_info()[0]
        if self.log:
            outputs = runner.outputs or {}
            line = dict(iter=done, epoch=runner.epoch, pid=os.getpid(),
                        inner=runner.inner_iter,
                        batch=digest(runner.data_batch),
                        loss=outputs.get('log_vars', {}).get('loss'))
            with open(f'{self.log}.rank{rank}', 'a') as f:
                f.write(json.dumps(line) + '\n')
        if self.mark_at and done >= self.mark_at:
            if done == self.mark_at and rank == 0:
                with open(f'{self.log}.mark', 'w') as f:
                    f.write(str(done))
            time.sleep(self.slow)
