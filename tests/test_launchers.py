"""init_dist with the environment the slurm and mpi launchers set: two real
processes join one gloo group. ``scontrol`` is a stub on PATH."""
import json
import os
import signal
import subprocess
import sys

import pytest

from davarocr_mmcv.apis import init_dist
from toy import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, os, sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
from davarocr_mmcv.apis import init_dist
backend = init_dist({launcher!r}, **json.loads({kwargs!r}))
total = torch.tensor([dist.get_rank() + 1])
dist.all_reduce(total)
print(json.dumps(dict(
    backend=backend, rank=dist.get_rank(), world=dist.get_world_size(),
    total=int(total), local_rank=os.environ['LOCAL_RANK'],
    master=os.environ['MASTER_ADDR'], port=os.environ['MASTER_PORT'])))
dist.destroy_process_group()
'''


def run_two(launcher, envs, kwargs=None, timeout=120):
    """Start one process per environment; return their json reports."""
    code = WORKER.format(root=ROOT, launcher=launcher,
                         kwargs=json.dumps(kwargs or {}))
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for env in envs]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return outs


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('SLURM_', 'OMPI_', 'MASTER_', 'RANK',
                                'WORLD_SIZE', 'LOCAL_RANK'))}
    env.update(OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='', **extra)
    return env


@pytest.fixture
def scontrol(tmp_path):
    """A stub ``scontrol`` that records its arguments and names two hosts,
    the first of which is this machine."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    calls = tmp_path / 'scontrol_calls.txt'
    stub = bin_dir / 'scontrol'
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    'printf "127.0.0.1\\nnode-b\\n"\n')
    stub.chmod(0o755)
    return bin_dir, calls


def test_slurm_launcher(scontrol):
    bin_dir, calls = scontrol
    port = free_port()
    envs = [clean_env(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                      SLURM_PROCID=str(r), SLURM_NTASKS='2',
                      SLURM_LOCALID=str(r), SLURM_NODELIST='node-[a-b]',
                      SLURM_JOB_ID='42') for r in range(2)]
    reports = run_two('slurm', envs, dict(port=port))
    assert sorted(r['rank'] for r in reports) == [0, 1]
    for r in reports:
        assert r['world'] == 2 and r['total'] == 3
        assert r['backend'] == 'gloo'
        assert r['master'] == '127.0.0.1' and r['port'] == str(port)
        assert r['local_rank'] == str(r['rank'])
    assert calls.read_text().split('\n')[0] == 'show hostnames node-[a-b]'


def test_mpi_launcher():
    port = free_port()
    envs = [clean_env(OMPI_COMM_WORLD_RANK=str(r), OMPI_COMM_WORLD_SIZE='2',
                      OMPI_COMM_WORLD_LOCAL_RANK=str(r),
                      OMPI_COMM_WORLD_LOCAL_SIZE='2', MASTER_PORT=str(port))
            for r in range(2)]
    reports = run_two('mpi', envs)
    assert sorted(r['rank'] for r in reports) == [0, 1]
    for r in reports:
        assert r['world'] == 2 and r['total'] == 3
        assert r['master'] == '127.0.0.1' and r['port'] == str(port)


def test_mpi_across_machines_needs_master_addr(monkeypatch):
    for key in ('MASTER_ADDR', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '1')
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_SIZE', '1')
    with pytest.raises(RuntimeError, match='set MASTER_ADDR'):
        init_dist('mpi', backend='gloo')


def test_slurm_without_scontrol_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol there
    for key, value in dict(SLURM_PROCID='0', SLURM_NTASKS='2',
                           SLURM_LOCALID='0',
                           SLURM_NODELIST='node-[a-b]').items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="SLURM_NODELIST='node-\\[a-b\\]'"
                                           ".*set MASTER_ADDR"):
        init_dist('slurm', backend='gloo')


def test_launcher_without_its_environment(monkeypatch):
    monkeypatch.delenv('SLURM_PROCID', raising=False)
    with pytest.raises(RuntimeError, match='SLURM_PROCID'):
        init_dist('slurm', backend='gloo')
