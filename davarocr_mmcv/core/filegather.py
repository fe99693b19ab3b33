"""Gathering per-rank results through files in a folder every rank sees
(mmcv's ``tmpdir`` way), beside :mod:`.comm`'s gather through the process
group."""
import os
import os.path as osp
import pickle
import shutil
import socket
import tempfile

import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info

from ..utils.process import pid_alive
from .comm import comm_device


def _all_ok(ok):
    """True on every rank when ``ok`` is True on every rank."""
    flag = torch.tensor([0 if ok else 1], device=comm_device())
    dist.all_reduce(flag)
    return int(flag[0]) == 0


#: Exchange folders are named ``collect-<host>-<pid of rank 0>-<random>``.
COLLECT_PREFIX = 'collect-'


def remove_dead_collections(tmpdir):
    """Remove the exchange folders in ``tmpdir`` that a process of this
    machine made and died before removing (a killed attempt of an elastic
    run); those of live processes and of other machines stay.

    Returns:
        list[str]: the folders removed.
    """
    host = socket.gethostname()
    removed = []
    for name in os.listdir(tmpdir):
        owner, _, pid = name[len(COLLECT_PREFIX):].rpartition('-')[0] \
            .rpartition('-')
        if not name.startswith(COLLECT_PREFIX) or owner != host or \
                not pid.isdigit() or pid_alive(int(pid)):
            continue
        shutil.rmtree(osp.join(tmpdir, name), ignore_errors=True)
        removed.append(osp.join(tmpdir, name))
    return removed


def _shared_tmpdir(tmpdir):
    """A fresh folder made by rank 0 inside ``tmpdir``, checked to be
    visible on every rank (all ranks raise together otherwise). Folders
    left by dead collections of this machine are removed first.

    Returns:
        tuple: (folder, whether ``tmpdir`` itself was made here)
    """
    rank, _ = get_dist_info()
    holder = [None, False]
    if rank == 0:
        made = not osp.isdir(tmpdir)
        os.makedirs(tmpdir, exist_ok=True)
        remove_dead_collections(tmpdir)
        prefix = f'{COLLECT_PREFIX}{socket.gethostname()}-{os.getpid()}-'
        holder = [tempfile.mkdtemp(prefix=prefix, dir=tmpdir), made]
    dist.broadcast_object_list(holder, src=0)
    if not _all_ok(osp.isdir(holder[0])):
        if rank == 0:
            shutil.rmtree(holder[0], ignore_errors=True)
        raise FileNotFoundError(
            f'multi_gpu_test: tmpdir={tmpdir!r} is not shared: rank 0 made '
            f'{holder[0]} but not every rank can see it. Give a folder on a '
            f'file system every machine mounts, or tmpdir=None to collect '
            f'the results through the process group.')
    return holder[0], holder[1]


def collect_results_files(results, tmpdir):
    """Gather ``results`` through files in a unique sub-folder of
    ``tmpdir`` (mmcv's way). Returns the per-rank lists on rank 0, None
    elsewhere. Rank 0 removes the sub-folder afterwards, and ``tmpdir`` too
    when it made it and it is empty."""
    rank, world_size = get_dist_info()
    folder, made = _shared_tmpdir(tmpdir)
    with open(osp.join(folder, f'part_{rank}.pkl'), 'wb') as f:
        pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
    dist.barrier()
    parts = None
    if rank == 0:
        parts = []
        for r in range(world_size):
            with open(osp.join(folder, f'part_{r}.pkl'), 'rb') as f:
                parts.append(pickle.load(f))
        shutil.rmtree(folder, ignore_errors=True)
        if made:
            try:
                os.rmdir(tmpdir)
            except OSError:  # in use by another call, or not empty
                pass
    return parts
