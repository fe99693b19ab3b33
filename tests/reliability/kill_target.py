"""A training that saves at every iteration, to be killed with SIGKILL.

    python kill_target.py WORK_DIR {general,lightweight,async} [MAX_ITERS]

'async' is lightweight mode with ``async_save=True``.

It auto-resumes from the newest checkpoint in WORK_DIR, so successive kills
exercise resume too. Prints 'resumed N' and 'iter N' lines.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from davarocr_mmcv import DavarEvalHook  # noqa: E402
from davarocr_mmcv.core.resume import (find_latest_checkpoint,  # noqa: E402
                                       resume_runner)
from toy import ScriptedDataset, ToyModel, make_loader, make_runner, run  # noqa


class BigToy(ToyModel):
    """ToyModel plus ~16 MB of weights, so that a save takes a while."""

    def __init__(self):
        super().__init__()
        self.ballast = torch.nn.Parameter(torch.randn(2048, 2048))


def main(work_dir, mode, max_iters='10000'):
    torch.set_num_threads(1)
    ckpt = dict(type='DavarCheckpointHook', by_epoch=False, interval=1)
    if mode == 'general':
        ckpt.update(max_keep_ckpts=3)
    else:
        ckpt.update(save_mode='lightweight', metric='accuracy',
                    by_iter=True, iter_interval=1,
                    async_save=mode == 'async')
    runner = make_runner(work_dir, kind='iter', max_iters=int(max_iters),
                         checkpoint_config=ckpt, model=BigToy())
    scores = {i: (i * 7919 % 101) / 100 for i in range(10001)}
    loader = make_loader(ScriptedDataset(scores=scores))
    if mode != 'general':
        runner.register_hook(DavarEvalHook(loader, by_epoch=False,
                                           interval=1,
                                           eval_mode='lightweight'))
    latest = find_latest_checkpoint(work_dir)
    if latest:
        resume_runner(runner, latest)
        print(f'resumed {runner.iter}', flush=True)
    print('started', flush=True)
    run(runner, loader)
    print('done', flush=True)


if __name__ == '__main__':
    main(*sys.argv[1:])
