"""The installed stack, hook registration, and loading old checkpoints on
torch>=2.6 (weights_only=True by default)."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmcv.runner import HOOKS

from davarocr_mmcv.serialization import load_checkpoint_file
from toy import ToyModel, load, run


def test_hooks_registered_and_compiled_ops():
    import mmcv.ops  # noqa: F401
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10.]])
    dets, keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]
    for name in ('DavarCheckpointHook', 'DavarEvalHook', 'DavarDistEvalHook'):
        assert name in HOOKS.module_dict


def test_custom_imports_in_a_config(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['davarocr_mmcv'], "
                   "allow_failed_imports=False)\n"
                   "checkpoint_config = dict(type='DavarCheckpointHook', "
                   "save_mode='lightweight', metric='hmean')\n")
    code = ('from mmcv import Config\n'
            'from mmcv.runner import HOOKS\n'
            'from mmcv.utils import build_from_cfg\n'
            f'cfg = Config.fromfile({str(cfg)!r})\n'
            'hook = build_from_cfg(cfg.checkpoint_config, HOOKS)\n'
            'print(type(hook).__name__, hook.tracker.rule)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == 'DavarCheckpointHook greater'


def old_checkpoint(path, **hook_msgs):
    """A checkpoint as mmcv 1.x / mmdet 2.x evaluation left it: numpy
    scalars in hook_msgs."""
    model = ToyModel()
    torch.save(dict(
        meta=dict(epoch=2, iter=4, mmcv_version='1.3.8',
                  hook_msgs=dict(best_score=np.float64(0.75),
                                 best_ckpt='epoch_2.pth', **hook_msgs)),
        state_dict=model.state_dict(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1).state_dict()),
        path)


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
def test_resume_old_checkpoint_with_numpy_best_score(runner_factory,
                                                     toy_loader, tmp_path,
                                                     kind):
    from davarocr_mmcv.core.resume import resume_runner
    path = str(tmp_path / 'old.pth')
    old_checkpoint(path, arr=np.arange(3), count=np.int64(2))
    length = dict(max_epochs=3) if kind == 'epoch' else dict(max_iters=6)
    runner = runner_factory(kind, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight'), **length)
    if kind == 'epoch':
        runner.resume(path)  # mmcv's own resume, torch's default loader
    else:
        resume_runner(runner, path)
    assert runner.meta['hook_msgs']['best_score'] == 0.75
    assert (runner.epoch, runner.iter) == (2, 4)
    run(runner, toy_loader({}))
    saved = load(os.path.join(runner.work_dir, 'latest_model.pth'))
    assert saved['meta']['hook_msgs']['best_score'] == 0.75


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null', ))


def test_untrusted_pickle_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    with open(path, 'wb') as f:
        torch.save(dict(meta=dict(x=Evil()), state_dict={}), f,
                   pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(RuntimeError, match='Refused to load .*evil.pth'):
        load_checkpoint_file(path)


def test_hook_msgs_hold_plain_python_values(runner_factory, toy_loader):
    from davarocr_mmcv import DavarEvalHook
    runner = runner_factory(max_epochs=2, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight'))

    class NumpyDataset(type(toy_loader({}).dataset)):
        def evaluate(self, results, logger=None, **kwargs):
            return dict(accuracy=np.float64(0.5), n=np.int64(3))

    from toy import make_loader
    loader = make_loader(NumpyDataset())
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
    run(runner, loader)
    msgs = runner.meta['hook_msgs']
    assert type(msgs['best_score']) is float
    assert type(msgs['eval_history'][0]['metrics']['n']) is int
    # and the file loads with torch's strict default, no allow-list needed
    torch.serialization.clear_safe_globals()
    try:
        torch.load(os.path.join(runner.work_dir, 'latest_model.pth'))
    finally:
        from davarocr_mmcv.serialization import register_safe_globals
        register_safe_globals()
