"""Two real processes on the gloo backend (CPU)."""
import json
import os

import pytest

from davarocr_mmcv.apis.test import interleave
from dist_workers import (collect_order, comm_round_trip, launch,
                          resume_on_ranks, train_with_dist_eval)
from toy import load, make_runner, run

SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}


@pytest.mark.parametrize('how,size,pad', [
    ('group', 5, True), ('group', 7, False), ('group', 8, True),
    ('files', 7, False), ('files', 5, True), ('gpu_collect', 7, False)])
def test_multi_gpu_test_returns_dataset_order(tmp_path, how, size, pad):
    launch(collect_order, 2, 120, str(tmp_path), size, how, pad)
    with open(tmp_path / 'rank0.json') as f:
        assert json.load(f) == list(range(size))
    with open(tmp_path / 'rank1.json') as f:
        assert json.load(f) is None
    # through the process group no folder is used; through files the
    # unique exchange folder, and the tmpdir made for it, are removed
    assert not (tmp_path / 'tmp').exists()


def test_packed_collection_and_broadcast_are_exact(tmp_path):
    launch(comm_round_trip, 2, 120, str(tmp_path))
    rank0 = json.load(open(tmp_path / 'comm_rank0.json'))
    assert rank0['lengths'] == [20, 20]
    assert rank0['equal'] == [True, True]
    assert rank0['many']
    assert rank0['contiguous']
    for r in range(2):
        report = json.load(open(tmp_path / f'comm_rank{r}.json'))
        assert report['broadcast'] and report['writable']


@pytest.fixture
def trained_home(tmp_path, toy_loader, monkeypatch):
    """home0/work, trained with that relative work_dir from home0: epoch_1..3
    .pth (lr 0.05 in the optimizer state), last_checkpoint naming
    work/epoch_3.pth."""
    home = tmp_path / 'home0'
    home.mkdir()
    monkeypatch.chdir(home)
    runner = make_runner('work', max_epochs=3, lr=0.05,
                         checkpoint_config=dict(type='DavarCheckpointHook'))
    run(runner, toy_loader())
    monkeypatch.chdir(tmp_path)
    return home


@pytest.mark.parametrize('shared', [False, True])
def test_auto_resume_when_only_rank0_reads_the_work_dir(tmp_path,
                                                        trained_home, shared):
    # rank 1 runs in an empty folder of its own unless ``shared``: the same
    # relative work_dir names no file there, as on a node of its own
    homes = [str(trained_home), str(trained_home if shared else
                                    tmp_path / 'home1')]
    launch(resume_on_ranks, 2, 120, str(tmp_path), homes,
           dict(auto_resume=True))
    reports = [json.load(open(tmp_path / f'resume_rank{r}.json'))
               for r in range(2)]
    for report in reports:
        assert 'error' not in report, report
        assert report['plan'] == dict(mode='resume',
                                      path='work/epoch_3.pth')
        assert (report['epoch'], report['iter'], report['steps']) == \
            (3, 6, 6)
        assert report['lr'] == 0.05  # optimizer state came through
    assert reports[0]['weight'] == reports[1]['weight']
    assert reports[0]['hook_msgs'] == reports[1]['hook_msgs']
    assert reports[1]['hook_msgs']['last_ckpt'].endswith('epoch_3.pth')
    log = (trained_home / 'work' / 'run.log').read_text()
    assert ('cannot read' in log) != shared
    assert 'all 2 ranks continue from work/epoch_3.pth at epoch 3' in log
    if not shared:  # rank 1 wrote nothing
        assert not [f for _, _, files in os.walk(tmp_path / 'home1')
                    for f in files]


def test_load_from_when_only_rank0_reads_it(tmp_path, trained_home):
    homes = [str(trained_home), str(tmp_path / 'home1')]
    launch(resume_on_ranks, 2, 120, str(tmp_path), homes,
           dict(load_from='work/epoch_2.pth'))
    for r in range(2):
        report = json.load(open(tmp_path / f'resume_rank{r}.json'))
        assert report['plan'] == dict(mode='load', path='work/epoch_2.pth')
        # the weights (steps buffer) of epoch 2, training from the start
        assert (report['steps'], report['epoch'], report['iter']) == \
            (4, 0, 0)
        assert report['lr'] == 0.01


def test_damaged_resume_from_fails_on_every_rank(tmp_path, trained_home):
    (trained_home / 'work' / 'epoch_2.pth').write_bytes(b'cut short')
    homes = [str(trained_home), str(tmp_path / 'home1')]
    launch(resume_on_ranks, 2, 120, str(tmp_path), homes,
           dict(resume_from='work/epoch_2.pth'))
    for r in range(2):
        report = json.load(open(tmp_path / f'resume_rank{r}.json'))
        assert report['error'].startswith('CheckpointLoadError: resume_from')
        assert 'epoch_2.pth does not load' in report['error']


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
    # status.json, the text log and the published release: rank 0 only
    rank0_files = [os.path.relpath(os.path.join(d, f), tmp_path / 'work_rank0')
                   for d, _, files in os.walk(tmp_path / 'work_rank0')
                   for f in files]
    assert {'status.json', 'run.log'} <= set(rank0_files)
    assert [f for f in rank0_files if f.startswith('publish')]
    assert json.load(open(tmp_path / 'work_rank0' / 'status.json'))[
        'state'] == 'finished'
    rank1_files = [f for _, _, files in os.walk(tmp_path / 'work_rank1')
                   for f in files]
    assert rank1_files == []
    best = load(tmp_path / 'work_rank0' / 'Best_checkpoint.pth')
    assert int(best['state_dict']['steps']) == 8


def test_dist_eval_shared_work_dir(tmp_path):
    launch(train_with_dist_eval, 2, 240, str(tmp_path),
           {str(k): v for k, v in SCORES.items()}, True)
    names = sorted(os.listdir(tmp_path / 'work'))
    assert [n for n in names if n.endswith('.pth')] == [
        'Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert not [n for n in names if n.startswith('.davar-tmp-')]


def test_a_rank_that_cannot_apply_the_state_stops_every_rank(tmp_path,
                                                             trained_home):
    homes = [str(trained_home), str(tmp_path / 'home1')]
    launch(resume_on_ranks, 2, 120, str(tmp_path), homes,
           dict(auto_resume=True, odd_optimizer_on_rank=1))
    for r in range(2):
        report = json.load(open(tmp_path / f'resume_rank{r}.json'))
        assert report['error'].startswith(
            'CheckpointLoadError: resume from work/epoch_3.pth failed on '
            'rank 1: ValueError'), report
