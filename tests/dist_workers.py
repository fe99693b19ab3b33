"""Worker functions for 2-process gloo tests (importable by spawn)."""
import json
import os
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from toy import ScriptedDataset, ToyModel, free_port, make_loader, \
    make_runner, run


def launch(fn, world_size=2, timeout=120, *args):
    """Run ``fn(rank, world_size, port, *args)`` in ``world_size`` spawned
    processes on the gloo backend; re-raise the first failure."""
    port = free_port()
    ctx = mp.get_context('spawn')
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_entry, args=(fn, r, world_size, port,
                                              errors, args))
             for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    if failures:
        raise AssertionError('\n'.join(failures))
    if alive:
        raise AssertionError(f'{len(alive)} worker(s) timed out')
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def _entry(fn, rank, world_size, port, errors, args):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        dist.init_process_group('gloo', rank=rank, world_size=world_size)
        fn(rank, world_size, *args)
        dist.barrier()
    except BaseException:  # noqa: B902  reported to the parent
        errors.put(f'rank {rank}:\n{traceback.format_exc()}')
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def dist_loader(dataset, batch_size=2, pad=True):
    """A loader over this rank's share: torch's DistributedSampler (padded
    to equal counts), or with ``pad=False`` samples rank, rank + n, ...
    (uneven counts)."""
    if pad:
        sampler = DistributedSampler(dataset, shuffle=False)
    else:
        sampler = list(range(dist.get_rank(), len(dataset),
                             dist.get_world_size()))
    return make_loader(dataset, batch_size=batch_size, sampler=sampler)


def collect_order(rank, world_size, out, size, gpu_collect, pad):
    """multi_gpu_test over ``size`` samples predicting their own index."""
    from davarocr_mmcv.apis import multi_gpu_test
    loader = dist_loader(ScriptedDataset(size=size), pad=pad)
    results = multi_gpu_test(ToyModel(predict='index'), loader,
                             tmpdir=os.path.join(out, 'tmp'),
                             gpu_collect=gpu_collect,
                             model_type='RECOGNIZOR')
    with open(os.path.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f)


def train_with_dist_eval(rank, world_size, root, scores, shared):
    """Each rank trains the toy model with DavarDistEvalHook and a
    lightweight DavarCheckpointHook. ``shared``: all ranks use one work_dir
    (as real jobs do); else each rank gets its own, to see who writes."""
    from davarocr_mmcv import DavarDistEvalHook
    scores = {int(k): v for k, v in scores.items()}
    work = os.path.join(root, 'work' if shared else f'work_rank{rank}')
    runner = make_runner(work, max_epochs=6, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight',
        metric='accuracy', sync_buffer=True))
    train_loader = dist_loader(ScriptedDataset(size=8, scores=scores))
    val_loader = dist_loader(ScriptedDataset(size=5, scores=scores))
    runner.register_hook(DavarDistEvalHook(
        val_loader, eval_mode='lightweight', save_best='accuracy',
        model_type='RECOGNIZOR'), priority='LOW')
    run(runner, train_loader)
    msgs = runner.meta['hook_msgs']
    with open(os.path.join(root, f'msgs_rank{rank}.json'), 'w') as f:
        json.dump(dict(best_score=msgs.get('best_score'),
                       best_step=msgs.get('best_step'),
                       history=msgs.get('eval_history'),
                       n_results=[c['n'] for c in
                                  val_loader.dataset.calls]), f)


__all__ = ['launch', 'collect_order', 'train_with_dist_eval', 'ToyModel']
