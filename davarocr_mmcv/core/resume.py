"""Resume that works on CPU and GPU for both runner types, and finding the
checkpoint to auto-resume from."""
import glob
import os.path as osp
import re

import torch
from torch.optim import Optimizer

from ..constants import (LAST_CHECKPOINT_FILE, LATEST_LINK_NAME,
                         LATEST_MODEL_NAME)
from .progress import is_iter_based


def default_map_location():
    """The current GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        device = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device)
    return 'cpu'


def resume_runner(runner, checkpoint, resume_optimizer=True,
                  map_location='default'):
    """``runner.resume`` that also works without a GPU, and restores
    ``runner.meta`` (with ``hook_msgs``) for IterBasedRunner too, which
    mmcv 1.7.1 leaves out.

    Returns:
        dict: the loaded checkpoint.
    """
    if map_location == 'default':
        map_location = default_map_location()
    if not is_iter_based(runner):
        runner.resume(checkpoint, resume_optimizer, map_location)
        return runner.meta
    ckpt = runner.load_checkpoint(checkpoint, map_location=map_location)
    meta = ckpt['meta']
    runner._epoch = meta['epoch']
    runner._iter = runner._inner_iter = meta['iter']
    if resume_optimizer and 'optimizer' in ckpt:
        if isinstance(runner.optimizer, Optimizer):
            runner.optimizer.load_state_dict(ckpt['optimizer'])
        else:
            for name, optim in runner.optimizer.items():
                optim.load_state_dict(ckpt['optimizer'][name])
    runner.meta = dict(runner.meta or {}, **meta)
    runner.meta.setdefault('hook_msgs', {})
    runner.logger.info(f'resumed from epoch: {runner.epoch}, '
                       f'iter {runner.iter}')
    return runner.meta


_NUMBERED = re.compile(r'(?:epoch|iter)_(\d+)\.pth$')


def find_latest_checkpoint(work_dir):
    """The newest checkpoint in ``work_dir``, or None.

    Looked up in order: the ``last_checkpoint`` pointer file,
    ``latest_model.pth`` (lightweight mode), ``latest.pth``, and the
    highest-numbered ``epoch_N.pth`` / ``iter_N.pth``.
    """
    pointer = osp.join(work_dir, LAST_CHECKPOINT_FILE)
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if target and osp.isfile(target):
            return target
    for name in (LATEST_MODEL_NAME, LATEST_LINK_NAME):
        path = osp.join(work_dir, name)
        if osp.isfile(path):
            return path
    numbered = [(int(m.group(1)), p)
                for p in glob.glob(osp.join(work_dir, '*.pth'))
                for m in [_NUMBERED.search(osp.basename(p))] if m]
    return max(numbered)[1] if numbered else None
