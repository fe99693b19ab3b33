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


def launch(fn, world_size=2, timeout=120, *args, backend='gloo'):
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned
    processes on ``backend`` (gloo; with 'nccl' rank r uses GPU r);
    re-raise the first failure."""
    port = free_port()
    ctx = mp.get_context('spawn')
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_entry, args=(fn, r, world_size, port,
                                              errors, args, backend))
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


def _entry(fn, rank, world_size, port, errors, args, backend='gloo'):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        if backend == 'nccl':
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size)
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


def collect_order(rank, world_size, out, size, how, pad):
    """multi_gpu_test over ``size`` samples predicting their own index;
    ``how``: 'group' (tmpdir=None), 'files' (a tmpdir) or 'gpu_collect'."""
    from davarocr_mmcv.apis import multi_gpu_test
    loader = dist_loader(ScriptedDataset(size=size), pad=pad)
    results = multi_gpu_test(
        ToyModel(predict='index'), loader,
        tmpdir=None if how == 'group' else os.path.join(out, 'tmp'),
        gpu_collect=how == 'gpu_collect', model_type='RECOGNIZOR')
    with open(os.path.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f)


def mixed_items(rank, count):
    """Results of every kind the packing must keep exactly."""
    import numpy as np
    items = []
    for i in range(rank, count, 2):
        grid = np.arange(24, dtype=np.float64).reshape(4, 6) + i
        items.append(dict(
            boxes=[np.full((i % 3, 5), i, dtype=np.float32),
                   np.zeros((0, 5), dtype=np.float32)],
            strided=grid[:, ::2],  # not contiguous
            scalar=np.int16(i), zero_d=np.array(i, dtype=np.uint8),
            flags=np.array([i % 2 == 0, True]),
            big_endian=np.arange(3, dtype='>i4') + i,
            objects=np.array([f'w{i}', None], dtype=object),
            tensor=torch.arange(4, dtype=torch.bfloat16) + i,
            text=f'word{i}', pair=(i, [i, str(i)])))
    return items


def comm_round_trip(rank, world_size, out):
    """gather_lists and broadcast_object with tiny chunks (many messages
    and buffers) give back exactly what was sent."""
    import numpy as np
    from davarocr_mmcv.core.comm import broadcast_object, gather_lists
    # tiny chunks: one array per buffer (more than a header holds)
    parts = gather_lists(mixed_items(rank, 40), chunk_bytes=64)
    # several messages per rank
    many = gather_lists([np.full(3, i) for i in range(rank, 9000, 2)],
                        chunk_bytes=4096)
    state = dict(weights=torch.randn(50, 7, generator=torch.Generator()
                                     .manual_seed(0)),
                 step=torch.tensor(12), meta=dict(epoch=3, name='x'))
    got = broadcast_object(state if rank == 0 else None, chunk_bytes=256)
    report = dict(
        broadcast=bool(torch.equal(got['weights'], state['weights']) and
                       int(got['step']) == 12 and got['meta'] == state[
                           'meta']),
        writable=bool(got['weights'].numpy().flags.writeable))
    if rank == 0:
        expected = [mixed_items(r, 40) for r in range(world_size)]
        report['lengths'] = [len(p) for p in parts]
        # types, dtypes (byte order included), shapes and bytes
        report['equal'] = [_plain(a) == _plain(b)
                           for a, b in zip(parts, expected)]
        report['many'] = [int(a[0]) for part in many for a in part] == \
            list(range(0, 9000, 2)) + list(range(1, 9000, 2))
        report['contiguous'] = bool(
            parts[1][0]['strided'].flags.c_contiguous)
    with open(os.path.join(out, f'comm_rank{rank}.json'), 'w') as f:
        json.dump(report, f)


def _plain(value):
    """Arrays and tensors as (type, dtype, shape, bytes), for comparing."""
    import numpy as np
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ('object', value.tolist())
        return ('ndarray', value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, torch.Tensor):
        return ('tensor', str(value.dtype), tuple(value.shape),
                value.view(torch.int16).tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def resume_on_ranks(rank, world_size, root, homes, cfg):
    """Each rank works in its own ``homes[rank]`` with the relative
    work_dir ``work`` (as nodes with local disks run one config), and
    resumes a fresh toy runner with ``cfg`` through train_model's
    resume_or_load; reports what it restored."""
    from mmcv import Config
    from davarocr_mmcv.core.resume import resume_or_load
    os.makedirs(homes[rank], exist_ok=True)
    os.chdir(homes[rank])
    work = 'work'
    runner = make_runner(work, max_epochs=5, checkpoint_config=dict(
        type='DavarCheckpointHook'))
    cfg = dict(cfg)
    if cfg.pop('odd_optimizer_on_rank', None) == rank:
        # two parameter groups: the saved optimizer state cannot apply
        linear = runner.model.linear
        runner.optimizer = torch.optim.SGD(
            [dict(params=[linear.weight]), dict(params=[linear.bias])],
            lr=0.01)
    report = dict(rank=rank)
    try:
        plan = resume_or_load(runner, Config(dict(cfg, work_dir=work)),
                              runner.logger, distributed=True)
        report.update(
            plan=plan, epoch=runner.epoch, iter=runner.iter,
            steps=int(runner.model.steps),
            weight=runner.model.linear.weight.tolist(),
            hook_msgs=(runner.meta or {}).get('hook_msgs'),
            lr=runner.optimizer.param_groups[0]['lr'])
    except Exception as exc:  # noqa: B902  reported to the test
        report['error'] = f'{type(exc).__name__}: {exc}'
    with open(os.path.join(root, f'resume_rank{rank}.json'), 'w') as f:
        json.dump(report, f, default=str)


def train_with_dist_eval(rank, world_size, root, scores, shared):
    """Each rank trains the toy model with DavarDistEvalHook and a
    lightweight DavarCheckpointHook. ``shared``: all ranks use one work_dir
    (as real jobs do); else each rank gets its own, to see who writes."""
    from davarocr_mmcv import DavarDistEvalHook, TrainStatusHook
    scores = {int(k): v for k, v in scores.items()}
    work = os.path.join(root, 'work' if shared else f'work_rank{rank}')
    runner = make_runner(work, max_epochs=6, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight',
        metric='accuracy', sync_buffer=True, publish=True))
    runner.register_hook(TrainStatusHook(interval=2), priority='VERY_LOW')
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


__all__ = ['launch', 'collect_order', 'train_with_dist_eval', 'ToyModel',
           'comm_round_trip', 'resume_on_ranks']


def comm_drawn_sample(rank, world_size, folder):
    """gather_lists of rank r's share ``items[r::2]`` of the items pickled
    in ``folder``, in messages of at most 64 bytes; rank 0 pickles them back
    in dataset order."""
    import pickle
    from davarocr_mmcv.core.comm import gather_lists, interleave
    with open(os.path.join(folder, 'items.pkl'), 'rb') as f:
        items = pickle.load(f)
    parts = gather_lists(items[rank::world_size], chunk_bytes=64)
    if rank == 0:
        with open(os.path.join(folder, 'gathered.pkl'), 'wb') as f:
            pickle.dump(interleave(parts, len(items)), f, protocol=5)
    else:
        with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
            json.dump(parts, f)


def comm_senders_in_turn(rank, world_size, out):
    """gather_lists from every rank, ranks holding different counts, in
    many small messages (dst takes one from each sender in turn); rank 0
    reports the order it got."""
    import numpy as np
    from davarocr_mmcv.core.comm import gather_lists
    items = [(i, np.full(i % 4, i, np.int32)) for i in range(
        rank, 30 + 7 * rank, world_size)]
    parts = gather_lists(items, chunk_bytes=64)
    if rank == 0:
        with open(os.path.join(out, 'turns.json'), 'w') as f:
            json.dump([[[i, a.tolist()] for i, a in p] for p in parts], f)
