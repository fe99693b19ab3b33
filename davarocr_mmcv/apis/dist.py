"""Distributed set-up that works on CPU (gloo) and on GPUs (NCCL)."""
import os
import subprocess

import torch
import torch.distributed as dist
from mmcv.parallel import MMDataParallel, MMDistributedDataParallel
from mmcv.parallel.scatter_gather import scatter_kwargs

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def default_backend():
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Join the process group of ``launcher``.

    Unlike mmcv's ``init_dist``, works without a GPU (mmcv divides by
    ``torch.cuda.device_count()``). ``backend`` None picks NCCL when a GPU
    is present and gloo otherwise.
    """
    if launcher not in LAUNCHERS[1:]:
        raise ValueError(f'launcher must be one of {LAUNCHERS[1:]}, '
                         f'got {launcher!r}')
    backend = backend or default_backend()
    if launcher == 'mpi':
        os.environ.setdefault('RANK', os.environ['OMPI_COMM_WORLD_RANK'])
        os.environ.setdefault('WORLD_SIZE',
                              os.environ['OMPI_COMM_WORLD_SIZE'])
        os.environ.setdefault('LOCAL_RANK',
                              os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
    elif launcher == 'slurm':
        nodes = os.environ['SLURM_NODELIST']
        addr = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1')
        os.environ.setdefault('MASTER_ADDR', addr)
        os.environ.setdefault('MASTER_PORT', str(port or 29500))
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ.setdefault('MASTER_PORT', str(port or 29500))
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) %
                              torch.cuda.device_count())
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


def wrap_model(model, distributed, find_unused_parameters=False):
    """MMDataParallel, or a distributed wrapper on this rank's device."""
    if not distributed:
        if torch.cuda.is_available():
            return MMDataParallel(model.cuda(), device_ids=[0])
        return MMDataParallel(model)
    if torch.cuda.is_available() and dist.get_backend() == 'nccl':
        device = torch.cuda.current_device()
        return DavarDistributedDataParallel(
            model.cuda(), device_ids=[device], broadcast_buffers=False,
            find_unused_parameters=find_unused_parameters)
    return DavarDistributedDataParallel(
        model, device_ids=None, broadcast_buffers=False,
        find_unused_parameters=find_unused_parameters)
