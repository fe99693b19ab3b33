"""Distributed set-up that works on CPU (gloo) and on GPUs (NCCL)."""
import inspect
import os
import subprocess

import torch
import torch.distributed as dist
from mmcv.parallel import MMDataParallel, MMDistributedDataParallel
from mmcv.parallel.scatter_gather import scatter_kwargs

from ..core.elastic import attempt_store, check_timeout, default_timeout

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def default_backend():
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _slurm_master_addr(nodes):
    """The first host of ``SLURM_NODELIST``, through ``scontrol``."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodes],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(
            f'init_dist(slurm): cannot run scontrol to find the first host '
            f'of SLURM_NODELIST={nodes!r} ({exc}); set MASTER_ADDR') from None
    hosts = out.stdout.split()
    if out.returncode != 0 or not hosts:
        raise RuntimeError(
            f'init_dist(slurm): scontrol show hostnames {nodes} gave no host '
            f'({out.stderr.strip()}); set MASTER_ADDR')
    return hosts[0]


def _require(launcher, names):
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise RuntimeError(
            f'init_dist({launcher}): {", ".join(missing)} not set; the '
            f'{launcher} launcher sets {", ".join(names)} for each process')


def init_dist(launcher, backend=None, port=None, timeout=None, **kwargs):
    """Join the process group of ``launcher``.

    - ``pytorch``: ``torchrun`` (tools/dist_train.sh) sets RANK,
      WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Under
      ``--max-restarts``, the workers of each attempt join through their
      own part of the agent's store (:mod:`davarocr_mmcv.core.elastic`),
      so a restart never reads the addresses of the dead attempt.
    - ``slurm``: from SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master
      is the first host of SLURM_NODELIST (``scontrol``) unless MASTER_ADDR
      is set; its port is ``port``, else MASTER_PORT, else 29500.
    - ``mpi``: from OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK; MASTER_ADDR
      must be set when the job spans several machines.

    Unlike mmcv's ``init_dist``, works without a GPU (mmcv divides by
    ``torch.cuda.device_count()``). ``backend`` None picks NCCL when a GPU
    is present and gloo otherwise.

    Args:
        timeout (int | float | None): seconds that joining the group, and
            each collective of it, may wait for the other ranks before
            failing (``dist_params.timeout``). None: torch's default
            (30 minutes; 10 with NCCL).
        kwargs: passed to ``torch.distributed.init_process_group``.

    Returns:
        str: the backend.
    """
    if launcher not in LAUNCHERS[1:]:
        raise ValueError(f'launcher must be one of {LAUNCHERS[1:]}, '
                         f'got {launcher!r}')
    timeout = check_timeout(timeout)
    backend = backend or default_backend()
    env = os.environ
    if launcher == 'mpi':
        names = ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                 'OMPI_COMM_WORLD_LOCAL_RANK')
        _require(launcher, names)
        env['RANK'], env['WORLD_SIZE'], env['LOCAL_RANK'] = (
            env[n] for n in names)
        local_size = env.get('OMPI_COMM_WORLD_LOCAL_SIZE')
        if 'MASTER_ADDR' not in env and local_size is not None and \
                local_size != env['WORLD_SIZE']:
            raise RuntimeError(
                'init_dist(mpi): the job spans several machines; set '
                'MASTER_ADDR to the host of rank 0 (mpirun -x MASTER_ADDR)')
        if port is not None:
            env['MASTER_PORT'] = str(port)
    elif launcher == 'slurm':
        names = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID',
                 'SLURM_NODELIST')
        _require(launcher, names)
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = _slurm_master_addr(env['SLURM_NODELIST'])
        if port is not None:
            env['MASTER_PORT'] = str(port)
        env['RANK'] = env['SLURM_PROCID']
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['LOCAL_RANK'] = env['SLURM_LOCALID']
    env.setdefault('MASTER_ADDR', '127.0.0.1')
    env.setdefault('MASTER_PORT', str(port or 29500))
    if backend == 'nccl':
        torch.cuda.set_device(int(env.get('LOCAL_RANK', 0)) %
                              torch.cuda.device_count())
    if timeout is not None:
        kwargs['timeout'] = timeout
    store = None
    if launcher == 'pytorch' and not {'init_method', 'store'} & set(kwargs):
        store = attempt_store(timeout or default_timeout(backend))
    if store is not None:
        kwargs.update(store=store, rank=int(env['RANK']),
                      world_size=int(env['WORLD_SIZE']))
    dist.init_process_group(backend=backend, **kwargs)
    return backend


class DavarDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that works on today's torch, on CPU and GPU.

    mmcv unwraps DataContainers only when ``device_ids`` is set (so not on
    the CPU), and its test-time forward reads a DDP attribute that torch 2
    no longer has (``_use_replicated_tensor_module``). Inputs are scattered
    here to the model's device (``[-1]``: the CPU) before mmcv's steps.
    """

    def _scatter_one(self, inputs, kwargs):
        target = [self.device_ids[0]] if self.device_ids else [-1]
        inputs, kwargs = scatter_kwargs(inputs, kwargs, target, dim=self.dim)
        return inputs[0], kwargs[0]

    def train_step(self, *inputs, **kwargs):
        if not self.device_ids:
            inputs, kwargs = self._scatter_one(inputs, kwargs)
        return super().train_step(*inputs, **kwargs)

    def val_step(self, *inputs, **kwargs):
        if not self.device_ids:
            inputs, kwargs = self._scatter_one(inputs, kwargs)
        return super().val_step(*inputs, **kwargs)

    def _run_ddp_forward(self, *inputs, **kwargs):
        inputs, kwargs = self._scatter_one(inputs, kwargs)
        return self.module(*inputs, **kwargs)


def _no_buffer_sync():
    """The DDP keyword that turns off buffer broadcasts at each forward:
    ``forward_sync_buffers`` where torch has it (``broadcast_buffers`` is
    deprecated there), ``broadcast_buffers`` before."""
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel
                               .__init__).parameters
    if 'forward_sync_buffers' in params:
        return dict(forward_sync_buffers=False)
    return dict(broadcast_buffers=False)


def wrap_model(model, distributed, find_unused_parameters=False):
    """MMDataParallel, or a distributed wrapper on this rank's device."""
    if not distributed:
        if torch.cuda.is_available():  # the device of --gpu-id
            return MMDataParallel(model.cuda(), device_ids=[
                torch.cuda.current_device()])
        return MMDataParallel(model)
    if torch.cuda.is_available() and dist.get_backend() == 'nccl':
        device = torch.cuda.current_device()
        return DavarDistributedDataParallel(
            model.cuda(), device_ids=[device],
            find_unused_parameters=find_unused_parameters,
            **_no_buffer_sync())
    return DavarDistributedDataParallel(
        model, device_ids=None, find_unused_parameters=find_unused_parameters,
        **_no_buffer_sync())
