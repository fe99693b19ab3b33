"""Elastic restarts under ``torchrun --max-restarts`` and the
``dist_params.timeout`` of collectives, with real processes: a rank is
killed with SIGKILL (or stops answering) and the others must neither hang
nor lose the run. Every run is bounded in time; its process group is
killed afterwards."""
import datetime
import glob
import json
import logging
import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch.distributed as dist

from davarocr_mmcv.apis import init_dist
from davarocr_mmcv.constants import TMP_PREFIX
from davarocr_mmcv.core.elastic import attempt_store, restart_attempt
from davarocr_mmcv.serialization import load_checkpoint_file
from dist_workers import collect_order, launch
from procs import ROOT, run_bounded
from toy import free_port, make_runner, run

TORCHRUN = [sys.executable, '-m', 'torch.distributed.run']
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
           PYTHON=sys.executable,
           PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, 'tests'),
                                       os.environ.get('PYTHONPATH', '')]))
for _key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE',
             'LOCAL_RANK', 'TORCHELASTIC_RESTART_COUNT',
             'TORCH_DISABLE_SHARE_RDZV_TCP_STORE'):
    ENV.pop(_key, None)


# ------------------------------------------------------------ joining again
JOIN = r'''
import os, signal, time
import torch, torch.distributed as dist
from davarocr_mmcv.apis import init_dist
rank = int(os.environ['RANK'])
attempt = os.environ['TORCHELASTIC_RESTART_COUNT']
if attempt != '0' and rank == 0:
    time.sleep(3)  # rank 1 joins first and finds the dead attempt's keys
init_dist('pytorch', backend='gloo', timeout=60)
total = torch.tensor([rank + 1])
for _ in range(8):  # 8 more groups, 8 more meshes to connect
    group = dist.new_group([0, 1])
    dist.all_reduce(torch.ones(1), group=group)
dist.all_reduce(total)
print(f'attempt {attempt} rank {rank} sum {int(total)}', flush=True)
if attempt == '0' and rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
dist.barrier()
dist.destroy_process_group()
'''


@pytest.mark.parametrize('rdzv', ['static', 'c10d'])
def test_restarted_ranks_do_not_join_the_dead_attempt(tmp_path, rdzv):
    # Under torchrun the workers of every attempt meet in the agent's store
    # (the static rendezvous, and c10d by default). torch's env:// reads
    # the gloo addresses the dead attempt left there: whether a restarted
    # rank then connects to a dead port depends on the port numbers, so
    # one mesh fails about 2 times in 3 (a hang in init_process_group or
    # "connectFullMesh ... refused/timed out"); 9 meshes nearly always.
    script = tmp_path / 'join.py'
    script.write_text(JOIN)
    port = free_port()
    meet = [f'--master-port={port}'] if rdzv == 'static' else [
        '--rdzv-backend=c10d', f'--rdzv-endpoint=127.0.0.1:{port}',
        f'--rdzv-id=test-{port}']
    code, out = run_bounded(
        [*TORCHRUN, '--nproc-per-node=2', '--max-restarts=1', *meet,
         str(script)], ENV, 240)
    assert code == 0, out[-6000:]
    assert out.count('exitcode: -9') == 1
    for rank in (0, 1):
        assert f'attempt 1 rank {rank} sum 3' in out


def agent_env(port, **extra):
    """What torchrun gives a worker of attempt 2 of at most 3."""
    env = dict(TORCHELASTIC_RESTART_COUNT='2', TORCHELASTIC_MAX_RESTARTS='3',
               TORCHELASTIC_USE_AGENT_STORE='True', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(port), WORLD_SIZE='2', GROUP_WORLD_SIZE='1')
    env.update(extra)
    return env


def test_attempt_store_is_a_client_of_the_agents_store_per_attempt():
    timeout = datetime.timedelta(seconds=30)
    port = free_port()
    agent = dist.TCPStore('127.0.0.1', port, 1, True, timeout,
                          wait_for_workers=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # one machine: nothing to warn of
        store = attempt_store(timeout, agent_env(port))
    store.set('rank_0', 'here')
    assert agent.get('/worker/attempt_2/rank_0') == b'here'
    assert restart_attempt(agent_env(port)) == (2, 3)
    # no elastic agent, or c10d with a fresh store per attempt: env://
    assert attempt_store(timeout, {}) is None
    assert restart_attempt({}) is None
    assert attempt_store(timeout, agent_env(
        port, TORCHELASTIC_USE_AGENT_STORE='False')) is None
    # several machines sharing the agent's store across attempts
    with pytest.warns(UserWarning, match='TORCH_DISABLE_SHARE_RDZV_TCP'):
        attempt_store(timeout, agent_env(port, GROUP_WORLD_SIZE='2'))


def test_a_restart_continues_from_the_newest_checkpoint(tmp_path, toy_loader,
                                                       monkeypatch):
    # whatever the first attempt started from (here --resume-from)
    from mmcv import Config
    from davarocr_mmcv.core.resume import _decide
    work = tmp_path / 'work'
    run(make_runner(work, max_epochs=3,
                    checkpoint_config=dict(type='DavarCheckpointHook')),
        toy_loader())
    cfg = Config(dict(work_dir=str(work),
                      resume_from=str(work / 'epoch_1.pth')))
    logger = logging.getLogger('test_elastic')
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '0')
    assert _decide(cfg, logger)[0]['path'] == str(work / 'epoch_1.pth')
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    plan, ckpt = _decide(cfg, logger)
    assert (plan['mode'], ckpt['meta']['epoch']) == ('resume', 3)
    empty = Config(dict(work_dir=str(tmp_path / 'empty'),
                        resume_from=str(work / 'epoch_1.pth')))
    assert _decide(empty, logger)[0]['path'] == str(work / 'epoch_1.pth')


def test_a_best_the_latest_file_missed_stands_after_a_resume(
        runner_factory, toy_loader):
    # killed after writing a new Best_checkpoint.pth, before the latest
    # file learned of it: the latest on disk is an older one
    from davarocr_mmcv.core.resume import resume_or_load
    from davarocr_mmcv.hooks import DavarEvalHook
    from mmcv import Config
    scores = {2: 0.3, 4: 0.8, 6: 0.5}
    light = dict(type='DavarCheckpointHook', save_mode='lightweight',
                 metric='accuracy')

    def attempt(epochs, cfg=None):
        runner = runner_factory(name='work', max_epochs=epochs,
                                checkpoint_config=light)
        loader = toy_loader(scores)
        runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                             priority='LOW')
        if cfg is not None:
            resume_or_load(runner, cfg, runner.logger)
        return runner, loader

    runner, loader = attempt(1)
    run(runner, loader)
    work = runner.work_dir
    older = open(os.path.join(work, 'latest_model.pth'), 'rb').read()
    cfg = Config(dict(work_dir=work, auto_resume=True))
    runner, loader = attempt(2, cfg)
    run(runner, loader)  # epoch 2 scores 0.8: the new best
    with open(os.path.join(work, 'latest_model.pth'), 'wb') as f:
        f.write(older)  # the latest of epoch 1, best 0.3
    runner, loader = attempt(3, cfg)
    msgs = runner.meta['hook_msgs']
    assert runner.epoch == 1
    assert (msgs['best_score'], msgs['best_step']) == (0.8, 2)
    run(runner, loader)
    best = load_checkpoint_file(os.path.join(work, 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == 0.8


# ---------------------------------------------------------- no silent hang
HANG = r'''
import os, time
import torch, torch.distributed as dist
from davarocr_mmcv.apis import init_dist
init_dist('pytorch', backend='gloo', timeout=3)
if dist.get_rank() == 1:
    time.sleep(600)  # alive, its sockets open, never in the collective
started = time.monotonic()
try:
    dist.all_reduce(torch.ones(1))
except RuntimeError as exc:
    print(f'rank 0 gave up after {time.monotonic() - started:.1f}s: {exc}',
          flush=True)
    raise
'''


def test_a_rank_that_stops_answering_ends_the_run_after_the_timeout(
        tmp_path):
    script = tmp_path / 'hang.py'
    script.write_text(HANG)
    args = [*TORCHRUN, '--nproc-per-node=2', f'--master-port={free_port()}',
            str(script)]
    code, out = run_bounded(args, ENV, 240)
    assert code != 0
    waited = float(out.split('rank 0 gave up after ')[1].split('s:')[0])
    assert 2.5 < waited < 30, out[-3000:]


@pytest.mark.parametrize('timeout', [0, -1, '600', True, float('inf'),
                                     float('nan'), [60]])
def test_bad_timeout_is_refused_before_joining(timeout):
    with pytest.raises(ValueError, match=r'dist_params\.timeout must be a '
                       r'positive number of seconds.*or None'):
        init_dist('pytorch', backend='gloo', timeout=timeout)


# ------------------------------------------------- training, kill -9, restart
def write_config(tmp_path, where):
    path = tmp_path / f'elastic_{where}.py'
    path.write_text(f'''
_base_ = {os.path.join(ROOT, 'demo/recognition/crnn_lightweight.py')!r}
custom_imports = dict(imports=['davarocr_mmcv', 'davarocr_mmcv.toy',
                               'elastic_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainStatusHook', interval=5),
                dict(type='KillOnceHook', where={where!r}, iter=15)]
runner = dict(max_epochs=2)
data = dict(train=dict(times=1), val=dict(type='KillingTextDataset'))
log_config = dict(interval=5)
checkpoint_config = dict(model_milestone=0, by_iter=False)
evaluation = dict(by_iter=False)
dist_params = dict(backend='gloo', timeout=120)
''')
    return str(path)


def records(work):
    """Every record of every attempt's json log (first lines: configs)."""
    found = []
    for path in sorted(glob.glob(str(work / '*.log.json'))):
        with open(path) as f:
            found += [json.loads(line) for line in f][1:]
    return found


@pytest.mark.parametrize('kind', ['static', 'c10d'])
@pytest.mark.parametrize('where', ['train', 'eval'])
def test_kill9_of_a_rank_restarts_and_ends_with_the_best(tmp_path, kind,
                                                         where):
    probe = tmp_path / 'probe'
    probe.mkdir()
    work = tmp_path / 'work'
    env = dict(ENV, MAX_RESTARTS='1', RDZV=kind, DAVAR_PROBE_DIR=str(probe))
    # no --auto-resume: a restart continues from the newest checkpoint
    code, out = run_bounded(
        ['bash', 'tools/dist_train.sh', write_config(tmp_path, where), '2',
         '--work-dir', str(work)], env, 420)
    assert code == 0, out[-8000:]

    # rank 1 died where it was told, by SIGKILL, once
    killed = json.loads((probe / 'killed.json').read_text())
    assert killed['where'] == where and killed['iter'] == 15
    assert out.count('exitcode: -9') == 1
    assert 'torchrun restart 1 of at most 1: auto-resume from' in out

    # the restart ran to the last epoch and kept the best of all attempts
    logged = records(work)
    assert max(r['epoch'] for r in logged if r.get('mode') == 'train') == 2
    scores = [r['accuracy'] for r in logged
              if r.get('mode') == 'val' and 'accuracy' in r]
    assert scores
    best = load_checkpoint_file(str(work / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == max(scores)
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert latest['epoch'] == 2
    assert latest['hook_msgs']['best_score'] == max(scores)

    # nothing of the dead attempt is left behind
    assert json.loads((work / 'status.json').read_text())['state'] == \
        'finished'
    left = [p for p in glob.glob(str(work / '**'), recursive=True)
            if os.path.basename(p).startswith(TMP_PREFIX)]
    assert not left


def test_collection_folders_of_a_dead_attempt_are_removed(tmp_path):
    # multi_gpu_test(tmpdir=...) exchanges results through a folder that
    # rank 0 removes afterwards; a rank 0 killed before that leaves it
    tmpdir = tmp_path / 'tmp'
    ended = subprocess.Popen(['true'])
    ended.wait()  # its pid names no live process
    host = socket.gethostname()
    stale = tmpdir / f'collect-{host}-{ended.pid}-dead'
    live = tmpdir / f'collect-{host}-{os.getpid()}-live'
    elsewhere = tmpdir / f'collect-other-host-{ended.pid}-away'
    for folder in (stale, live, elsewhere):
        folder.mkdir(parents=True)
        (folder / 'part_0.pkl').write_bytes(b'cut short')
    launch(collect_order, 2, 120, str(tmp_path), 7, 'files', False)
    assert json.loads((tmp_path / 'rank0.json').read_text()) == \
        list(range(7))
    assert sorted(os.listdir(tmpdir)) == sorted([live.name, elsewhere.name])


# ------------------------------------------------------------ dist_train.sh
@pytest.mark.parametrize('settings, extra, message', [
    (dict(MAX_RESTARTS='two'), [], 'MAX_RESTARTS must be a whole number'),
    (dict(RDZV='etcd'), [], 'RDZV must be static or c10d'),
])
def test_dist_train_sh_refuses_bad_settings(settings, extra, message):
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', 'config.py', '2', *extra],
        cwd=ROOT, env=dict(ENV, **settings), capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
