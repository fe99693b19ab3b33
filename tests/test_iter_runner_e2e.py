"""IterBasedRunner training with evaluation through tools/train.py and
tools/dist_train.sh on both demos: it finishes, evaluates on finite loaders
that visit the validation set once and in order, and keeps the best; plus
the loaders and the progress bar on their own."""
import glob
import io
import json
import math
import os
import re
import sys

import pytest
import torch

from davarocr_mmcv.apis import build_eval_dataloader
from davarocr_mmcv.serialization import load_checkpoint_file
from davarocr_mmcv.utils import DavarProgressBar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_tools_e2e import DETECTION, RECOGNITION, cmd, msgs, pth  # noqa

ITER_RUNNER = ['runner.type=IterBasedRunner', 'runner.max_epochs=None']


def log_records(work):
    """The records of the json log (its first line holds the config)."""
    logs = glob.glob(os.path.join(str(work), '*.log.json'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        return [json.loads(line) for line in f][1:]


def bar_counts(out, total):
    """The sample counts of the progress-bar lines over ``total``."""
    return [int(n) for n in re.findall(rf'\[(\d+)/{total}\]', out)]


def test_recognition_iter_runner_with_validation_finishes(tmp_path):
    # the command of issue 11, which never left its first evaluation
    work = tmp_path / 'work'
    out = cmd([sys.executable, 'tools/train.py', RECOGNITION, '--work-dir',
               str(work), '--validate', '--cfg-options', *ITER_RUNNER,
               'runner.max_iters=80'], timeout=240)
    assert 'past the expected total' not in out
    counts = bar_counts(out, 100)  # 100 validation images
    assert counts and max(counts) == 100
    latest = msgs(work / 'latest_model.pth')
    # start_iter=0.25 and iter_interval=40 of 80 iterations; by_epoch has
    # nothing to act on in an IterBasedRunner
    assert [(h['unit'], h['step']) for h in latest['eval_history']] == [
        ('iter', 20), ('iter', 60)]
    best = msgs(work / 'Best_checkpoint.pth')
    assert best['best_metric'] == 'accuracy' and best['best_unit'] == 'iter'
    assert math.isfinite(best['best_score'])
    assert best['best_score'] in [h['metrics']['accuracy']
                                  for h in latest['eval_history']]
    assert load_checkpoint_file(str(work / 'latest_model.pth'))['meta'][
        'iter'] == 80
    val = [r for r in log_records(work) if r['mode'] == 'val']
    assert len(val) == 2 and all('accuracy' in r and 'NED' in r for r in val)


def test_detection_iter_runner_with_validation(tmp_path):
    work = tmp_path / 'work'
    cmd([sys.executable, 'tools/train.py', DETECTION, '--work-dir',
         str(work), '--validate', '--cfg-options', *ITER_RUNNER,
         'runner.max_iters=20', 'evaluation.interval=10',
         'checkpoint_config.by_epoch=False', 'checkpoint_config.interval=10'],
        timeout=240)
    names = pth(work)
    assert {'iter_10.pth', 'iter_20.pth', 'latest.pth'} <= set(names)
    best = [n for n in names if n.startswith('best_bbox_mAP_iter_')]
    assert len(best) == 1
    val = [r for r in log_records(work) if r['mode'] == 'val']
    assert len(val) == 2
    assert all(math.isfinite(r['bbox_mAP']) for r in val)
    score = msgs(work / best[0])['best_score']
    assert score == max(r['bbox_mAP'] for r in val)


def test_dist_train_iter_runner_two_gloo_processes(tmp_path):
    work = tmp_path / 'work'
    out = cmd(['bash', 'tools/dist_train.sh', RECOGNITION, '2', '--work-dir',
               str(work), '--validate', '--cfg-options', *ITER_RUNNER,
               'runner.max_iters=40', 'evaluation.iter_interval=10',
               'checkpoint_config.iter_interval=10'], timeout=300)
    assert 'Distributed training: True' in out
    assert 'past the expected total' not in out
    assert max(bar_counts(out, 100)) == 100
    latest = msgs(work / 'latest_model.pth')
    assert [h['step'] for h in latest['eval_history']] == [10, 20, 30, 40]
    assert math.isfinite(msgs(work / 'Best_checkpoint.pth')['best_score'])
    assert len(glob.glob(str(work / '*.log'))) == 1  # rank 0 writes


class Indexed(torch.utils.data.Dataset):
    """Sample i is i."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, idx):
        return torch.tensor(idx)


def test_eval_loader_is_finite_and_in_order():
    loader = build_eval_dataloader(Indexed(23), 4, 0)
    seen = [int(i) for batch in loader for i in batch]
    assert seen == list(range(23))
    assert [int(i) for batch in loader for i in batch] == seen  # again


def test_progress_bar_says_when_it_runs_past_its_total():
    stream = io.StringIO()
    bar = DavarProgressBar(100, min_time_interval=3600, stream=stream)
    with pytest.warns(RuntimeWarning, match='past the expected total of '
                      '100'):
        for _ in range(400):  # an endless loader, 50 samples a batch
            bar.update(50)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith('[100/100]')
    assert sum('past the expected total' in line for line in lines) == 1
    assert len(lines) == 2  # throttled: no line per batch past the total
    assert bar.done == 20000
