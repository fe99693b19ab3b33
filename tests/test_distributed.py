"""Two real processes on the gloo backend (CPU)."""
import json
import os

import pytest

from davarocr_mmcv.apis.test import interleave
from dist_workers import collect_order, launch, train_with_dist_eval
from toy import load

SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}


@pytest.mark.parametrize('gpu_collect', [False, True])
@pytest.mark.parametrize('size,pad', [(5, True), (7, False), (8, True)])
def test_multi_gpu_test_returns_dataset_order(tmp_path, gpu_collect, size,
                                              pad):
    launch(collect_order, 2, 120, str(tmp_path), size, gpu_collect, pad)
    with open(tmp_path / 'rank0.json') as f:
        assert json.load(f) == list(range(size))
    with open(tmp_path / 'rank1.json') as f:
        assert json.load(f) is None
    # the exchange folder is unique per call and removed afterwards
    assert not os.listdir(tmp_path / 'tmp') if (tmp_path / 'tmp').exists() \
        else True


def test_interleave_handles_uneven_parts():
    assert interleave([[0, 2, 4], [1, 3]], 5) == [0, 1, 2, 3, 4]
    assert interleave([[0, 2, 4], [1, 3, 0]], 5) == [0, 1, 2, 3, 4]
    assert interleave([[], []], 0) == []


def test_dist_eval_ranks_agree_and_only_rank0_writes(tmp_path):
    launch(train_with_dist_eval, 2, 240, str(tmp_path),
           {str(k): v for k, v in SCORES.items()}, False)
    msgs = [json.load(open(tmp_path / f'msgs_rank{r}.json'))
            for r in range(2)]
    assert msgs[0]['best_score'] == msgs[1]['best_score'] == 0.9
    assert msgs[0]['best_step'] == msgs[1]['best_step'] == 4
    assert msgs[0]['history'] == msgs[1]['history']
    # rank 0 evaluated all 5 validation samples, once per epoch
    assert msgs[0]['n_results'] == [5] * 6
    assert msgs[1]['n_results'] == []
    rank0 = sorted(n for n in os.listdir(tmp_path / 'work_rank0')
                   if n.endswith('.pth'))
    assert rank0 == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert not [n for n in os.listdir(tmp_path / 'work_rank1')
                if n.endswith('.pth')]
    best = load(tmp_path / 'work_rank0' / 'Best_checkpoint.pth')
    assert int(best['state_dict']['steps']) == 8


def test_dist_eval_shared_work_dir(tmp_path):
    launch(train_with_dist_eval, 2, 240, str(tmp_path),
           {str(k): v for k, v in SCORES.items()}, True)
    names = sorted(os.listdir(tmp_path / 'work'))
    assert [n for n in names if n.endswith('.pth')] == [
        'Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert not [n for n in names if n.startswith('.davar-tmp-')]
