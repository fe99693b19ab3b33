"""2-process gloo worker: mmcv's own DistEvalHook feeding a lightweight
DavarCheckpointHook (importable by spawn)."""
import json
import os

from mmcv.runner import DistEvalHook

from dist_workers import dist_loader
from toy import ScriptedDataset, make_runner, run


def train_with_mmcv_dist_eval(rank, world_size, root, scores):
    scores = {int(k): v for k, v in scores.items()}
    runner = make_runner(os.path.join(root, 'work'), max_epochs=4,
                         checkpoint_config=dict(
                             type='DavarCheckpointHook',
                             save_mode='lightweight', metric='accuracy',
                             sync_buffer=True))
    train_loader = dist_loader(ScriptedDataset(size=8, scores=scores))
    val_loader = dist_loader(ScriptedDataset(size=5, scores=scores))
    runner.register_hook(DistEvalHook(val_loader), priority='LOW')
    run(runner, train_loader)
    msgs = runner.meta['hook_msgs']
    with open(os.path.join(root, f'msgs_rank{rank}.json'), 'w') as f:
        json.dump(dict(best_score=msgs.get('best_score'),
                       best_step=msgs.get('best_step'),
                       history=msgs.get('eval_history')), f)
