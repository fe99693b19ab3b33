"""Benchmarks of davarocr_mmcv against mmcv 1.7.1, measured in the same run.

    make bench                 # full run, writes bench/results.json
    python bench/run.py --smoke --out /tmp/r.json   # seconds; CI runs this
    python bench/run.py --only collect   # some steps; the others' figures
                                         # in --out are kept

Every figure is a ratio against a baseline timed in the same process:
1. dispatch: per-iteration cost of DavarCheckpointHook + DavarEvalHook on
   iterations where nothing is saved or evaluated, against mmcv's
   CheckpointHook + EvalHook, in a real IterBasedRunner (target <= 1.05);
2. save: the hook's atomic save (temporary file, fsync, rename) against the
   durable limit, torch.save into an open file + fsync, on the same disk
   (target <= 1.05 at 100 and 500 MB); a whole checkpoint save as the hook
   does it against mmcv's runner.save_checkpoint, same runner and model
   (target <= 0.5); the training stall of async_save (target <= 0.25);
3. collect: multi_gpu_test's collection over 2 gloo processes, on the
   result shapes toolboxes return (bench/shapes.py), against mmcv's
   collect_results_cpu, torch's gather_object and the floor (one send of the
   packed payload + rebuilding on rank 0), with rank 0's peak memory
   (bench/collect.py);
4. disk: bytes on disk after 20 epochs, lightweight vs general vs mmcv;
5. memory: peak RSS while saving, against torch.save and mmcv's save.
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tests'))
sys.path.insert(0, ROOT)

import mmcv  # noqa: E402
from mmcv.runner import (CheckpointHook, EpochBasedRunner,  # noqa: E402
                         EvalHook, IterBasedRunner)

import davarocr_mmcv  # noqa: E402
from davarocr_mmcv import DavarCheckpointHook, DavarEvalHook  # noqa: E402
from davarocr_mmcv.core.progress import Point  # noqa: E402
from davarocr_mmcv.core.writer import (CheckpointWriter,  # noqa: E402
                                      SaveStep, build_checkpoint, save_step)
from toy import (ScriptedDataset, ToyModel, make_loader,  # noqa: E402
                 make_logger, no_epoch_sleep)


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------- 1. dispatch
def _iter_runner(work_dir, hooks, iters):
    model = ToyModel()
    runner = IterBasedRunner(model=model, optimizer=torch.optim.SGD(
        model.parameters(), lr=0.01), work_dir=work_dir,
        logger=make_logger(work_dir, 'bench'), max_iters=iters)
    runner.register_training_hooks(lr_config=dict(policy='fixed'),
                                   optimizer_config=dict(grad_clip=None))
    for hook, priority in hooks:
        runner.register_hook(hook, priority=priority)
    return runner


def bench_dispatch(tmp, iters, repeat, order=('mmcv', 'davar')):
    loader = make_loader(ScriptedDataset(size=4 * iters))
    never = 10 ** 9

    def pairs(kind):
        if kind == 'mmcv':
            return [(CheckpointHook(interval=never, by_epoch=False,
                                    save_last=False), 'NORMAL'),
                    (EvalHook(loader, interval=never, by_epoch=False),
                     'LOW')]
        return [(DavarCheckpointHook(by_epoch=False, by_iter=True,
                                     iter_interval=never, save_last=False,
                                     save_mode='lightweight'), 'NORMAL'),
                (DavarEvalHook(loader, by_epoch=False, interval=never,
                               eval_mode='lightweight'), 'LOW')]

    out = {}

    def train(kind, n):
        work = tempfile.mkdtemp(dir=tmp)
        runner = _iter_runner(work, pairs(kind), n)
        start = time.perf_counter()
        runner.run([loader], [('train', 1)])
        return time.perf_counter() - start

    # per iteration: the slope between runs of iters and 2 * iters, so the
    # one-off set-up of each side (before_run) is left out; the two sides
    # alternate so that machine noise hits both alike
    runs = {k: [] for k in order}
    for _ in range(repeat):
        for kind in runs:
            runs[kind].append((train(kind, 2 * iters) - train(kind, iters))
                              / iters)
    for kind in runs:
        out[f'{kind}_s_per_iter'] = min(runs[kind])
        # the hooks alone, on a runner in the middle of training
        runner = _iter_runner(tempfile.mkdtemp(dir=tmp), pairs(kind), iters)
        runner._iter = 5
        for hook in runner.hooks:
            hook.before_run(runner)
        hooks = [h for h in runner.hooks
                 if type(h) in (CheckpointHook, EvalHook,
                                DavarCheckpointHook, DavarEvalHook)]
        calls = 20000

        def dispatch():
            for _ in range(calls):
                for h in hooks:
                    h.before_train_iter(runner)
                    h.after_train_iter(runner)
        out[f'{kind}_hook_us_per_iter'] = best_of(dispatch, 3) / calls * 1e6
    # whole runs differ by more than the hooks cost (noise of +-15% here),
    # so the ratio adds the measured extra hook cost to mmcv's iteration
    extra = (out['davar_hook_us_per_iter'] - out['mmcv_hook_us_per_iter'])
    out['ratio_per_iter'] = 1 + extra * 1e-6 / out['mmcv_s_per_iter']
    out['whole_run_ratio'] = out['davar_s_per_iter'] / out['mmcv_s_per_iter']
    out['target_ratio'] = 1.05
    return out


# ----------------------------------------------------------------- 2. save
class _Weights(ToyModel):
    """The toy model plus one tensor of ``mb`` MB."""

    def __init__(self, mb):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(int(mb * 2 ** 20 / 4)))


def _save_runner(work_dir, mb):
    model = _Weights(mb)
    return EpochBasedRunner(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        work_dir=work_dir, logger=make_logger(work_dir, 'bench-save'),
        meta=dict(hook_msgs=dict(best_score=0.5)), max_epochs=1)


def _durable_save(obj, path):
    """The durable limit: torch.save into an open file, then fsync."""
    with open(path, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def bench_save(tmp, sizes, repeat):
    """Per size, in the same run and on the same filesystem:

    - the writer's atomic save of a checkpoint dict (temporary file, fsync,
      rename, fsync of the folder) against the durable limit, torch.save of
      the same dict into an open file followed by fsync (target <= 1.05);
    - a whole checkpoint save as DavarCheckpointHook does it (state dict,
      atomic write, latest.pth and last_checkpoint) against mmcv 1.7.1's
      ``runner.save_checkpoint`` (state dict, BytesIO, write, latest.pth,
      no fsync), through the same runner and model (target <= 0.5);
    - async: how long training is stalled by ``submit`` (the copy to host
      memory), as a fraction of the synchronous save (target <= 0.25).

    torch.save to a path (no fsync) is kept for reference.
    """
    rows = []
    for mb in sizes:
        runner = _save_runner(osp.join(tmp, 'save_runner'), mb)
        point = Point('epoch', 1, 0)
        ckpt = build_checkpoint(runner, dict(runner.meta, epoch=1, iter=0))
        mmcv_dir, davar_dir = (osp.join(tmp, f'save_{k}')
                               for k in ('mmcv', 'davar'))
        os.makedirs(mmcv_dir, exist_ok=True)
        sync = CheckpointWriter(davar_dir)
        background = CheckpointWriter(davar_dir, async_save=True)
        plain, durable = (osp.join(davar_dir, f'{k}.pth')
                          for k in ('plain', 'durable'))
        sync.prepare()

        def atomic():
            sync.submit([SaveStep('atomic.pth', ckpt, {})], {},
                        lambda updates: None)

        def hook_save():
            sync.submit([save_step(runner, point, 'epoch_1.pth', {},
                                   link='latest.pth')], {},
                        lambda updates: None)

        def stall():
            start = time.perf_counter()
            background.submit([SaveStep('atomic.pth', ckpt, {})], {},
                              lambda updates: None)
            elapsed = time.perf_counter() - start
            background.wait()
            return elapsed

        timings = dict(torch_save_s=lambda: torch.save(ckpt, plain),
                       durable_s=lambda: _durable_save(ckpt, durable),
                       atomic_save_s=atomic,
                       mmcv_s=lambda: runner.save_checkpoint(mmcv_dir),
                       davar_s=hook_save)
        best = {}
        # the sides alternate, so that disk and machine noise hit all alike;
        # each starts with no dirty pages left by the one before (a save
        # without fsync would otherwise bill its writeback to the next)
        for _ in range(repeat):
            for name, fn in timings.items():
                os.sync()
                best[name] = min(best.get(name, math.inf),
                                 best_of(fn, 1))
        os.sync()
        best['async_stall_s'] = min(stall() for _ in range(repeat))
        rows.append(dict(
            size_mb=mb, **best,
            ratio_durable=best['atomic_save_s'] / best['durable_s'],
            ratio_mmcv=best['davar_s'] / best['mmcv_s'],
            async_stall_fraction=best['async_stall_s'] /
            best['atomic_save_s']))
        shutil.rmtree(mmcv_dir)
        shutil.rmtree(davar_dir)
        del runner, ckpt
    return dict(rows=rows, target_ratio_durable=1.05,
                target_ratio_durable_sizes_mb=[100, 500],
                target_ratio_mmcv=0.5, target_async_fraction=0.25,
                note='durable: torch.save into an open file + fsync; mmcv: '
                     'runner.save_checkpoint (BytesIO, write, symlink, no '
                     'fsync); ours include fsync of the file and folder')


# -------------------------------------------------------------- 3. collect
from collect import bench_collect, report_rows as collect_rows  # noqa: E402


# ----------------------------------------------------------------- 4. disk
class _Ballast(ToyModel):
    def __init__(self):
        super().__init__()
        self.ballast = torch.nn.Parameter(torch.zeros(512, 512))  # 1 MB


def _du(folder):
    return sum(osp.getsize(osp.join(r, n)) for r, _, names in
               os.walk(folder) for n in names
               if not osp.islink(osp.join(r, n)))


def bench_disk(tmp, epochs):
    from toy import make_runner, run
    configs = dict(
        mmcv=dict(interval=1),
        general=dict(type='DavarCheckpointHook', interval=1),
        lightweight=dict(type='DavarCheckpointHook', interval=1,
                         save_mode='lightweight'))
    out = {}
    for name, cfg in configs.items():
        work = osp.join(tmp, f'disk_{name}')
        runner = make_runner(work, max_epochs=epochs, model=_Ballast(),
                             checkpoint_config=cfg)
        loader = make_loader(ScriptedDataset(scores={
            2 * e: (e * 37 % 11) / 10 for e in range(epochs + 1)}))
        if name == 'lightweight':
            runner.register_hook(DavarEvalHook(loader,
                                               eval_mode='lightweight'))
        run(runner, loader)
        files = [n for n in os.listdir(work) if n.endswith('.pth')
                 and not osp.islink(osp.join(work, n))]
        out[name] = dict(bytes=_du(work), checkpoints=len(files))
    out['lightweight_vs_general'] = (out['lightweight']['bytes'] /
                                     out['general']['bytes'])
    out['lightweight_vs_mmcv'] = (out['lightweight']['bytes'] /
                                  out['mmcv']['bytes'])
    return out


# --------------------------------------------------------------- 5. memory
_MEM_CHILD = r'''
import os, sys, torch
sys.path.insert(0, {root!r})
from mmcv.runner import save_checkpoint
from davarocr_mmcv.core.writer import CheckpointWriter, SaveStep
n = int({mb} * 2 ** 20 / 4)
model = torch.nn.Linear(1, 1)
model.weight = torch.nn.Parameter(torch.randn(n))
ckpt = dict(meta=dict(), state_dict=model.state_dict())
def status(key):
    with open('/proc/self/status') as f:
        return int(f.read().split(key + ':')[1].split()[0])
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak (VmHWM) to the current RSS
base = status('VmRSS')
if {how!r} == 'torch':
    torch.save(ckpt, {path!r})
elif {how!r} == 'mmcv':
    save_checkpoint(model, {path!r})  # what runner.save_checkpoint calls
else:
    writer = CheckpointWriter(os.path.dirname({path!r}),
                              async_save={how!r} == 'async')
    writer.submit([SaveStep(os.path.basename({path!r}), ckpt, {{}})], {{}},
                  lambda updates: None)
    writer.wait()
print((status('VmHWM') - base) / 1024)
'''


def bench_memory(tmp, mb):
    out = {}
    for how in ('torch', 'atomic', 'async', 'mmcv'):
        code = _MEM_CHILD.format(root=ROOT, mb=mb, how=how,
                                 path=osp.join(tmp, f'mem_{how}.pth'))
        res = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True)
        out[f'{how}_extra_peak_mb'] = float(res.stdout.strip().split()[-1])
    out['state_mb'] = mb
    return out


# ------------------------------------------------------------------ main
def machine():
    return dict(python=platform.python_version(), machine=platform.machine(),
                cpus=os.cpu_count(), torch=torch.__version__,
                mmcv=mmcv.__version__, numpy=np.__version__,
                davarocr_mmcv=davarocr_mmcv.__version__,
                cuda=torch.cuda.is_available(),
                date=time.strftime('%Y-%m-%d %H:%M:%S'))


STEPS = ('dispatch', 'save', 'collect', 'disk', 'memory')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--smoke', action='store_true',
                        help='tiny sizes: checks that the scripts run')
    parser.add_argument('--out', default=osp.join(ROOT, 'bench',
                                                  'results.json'))
    parser.add_argument('--only', nargs='+', choices=STEPS, metavar='STEP',
                        help=f'run only these steps, of {", ".join(STEPS)}; '
                             f'the figures of the others in --out are kept')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # mmcv's runners pause 2 s at each epoch transition; figures here are
    # about the hooks, so that pause is skipped for both sides
    no_epoch_sleep()
    smoke = args.smoke
    tmp = tempfile.mkdtemp(prefix='davar-bench-', dir=osp.dirname(
        osp.abspath(args.out)) if not smoke else None)
    try:
        results = dict(machine=machine(), smoke=smoke)
        steps = [
            ('dispatch', lambda: bench_dispatch(tmp, 50 if smoke else 2000,
                                                1 if smoke else 5)),
            ('save', lambda: bench_save(tmp, [1] if smoke else
                                        [10, 100, 500], 1 if smoke else 3)),
            ('collect', lambda: bench_collect(tmp, smoke)),
            ('disk', lambda: bench_disk(tmp, 3 if smoke else 20)),
            ('memory', lambda: bench_memory(tmp, 5 if smoke else 100)),
        ]
        # when each step was measured (steps kept by --only keep theirs)
        results['measured'] = {}
        if args.only and osp.exists(args.out):
            with open(args.out) as f:
                kept = json.load(f)
            date = kept.get('machine', {}).get('date')
            results['measured'] = {k: kept.get('measured', {}).get(k, date)
                                   for k in STEPS if k in kept}
            results.update((k, v) for k, v in kept.items() if k in STEPS)
        for name, fn in steps:
            if args.only and name not in args.only:
                continue
            print(f'[bench] {name} ...', flush=True)
            results[name] = fn()
            results['measured'][name] = results['machine']['date']
        report(results)
        tmp_out = args.out + '.tmp'
        with open(tmp_out, 'w') as f:
            json.dump(results, f, indent=2)
        os.replace(tmp_out, args.out)
        print(f'[bench] wrote {args.out}')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r):
    if not all(step in r for step in STEPS):
        for line in collect_rows(r['collect']) if 'collect' in r else []:
            print(line)
        return
    d = r['dispatch']
    print('\n| benchmark | davarocr_mmcv | baseline | ratio | target |')
    print('|---|---|---|---|---|')
    print(f"| dispatch, per training iteration (hook cost added to an "
          f"iteration) | +{d['davar_hook_us_per_iter'] - d['mmcv_hook_us_per_iter']:.1f} µs | "
          f"{d['mmcv_s_per_iter'] * 1e6:.0f} µs (iteration with mmcv hooks) "
          f"| {d['ratio_per_iter']:.3f} | <= 1.05 |")
    print(f"| dispatch, whole runs (noisy) | "
          f"{d['davar_s_per_iter'] * 1e6:.0f} µs | "
          f"{d['mmcv_s_per_iter'] * 1e6:.0f} µs | "
          f"{d['whole_run_ratio']:.3f} | - |")
    print(f"| dispatch, the two hooks alone | "
          f"{d['davar_hook_us_per_iter']:.2f} µs | "
          f"{d['mmcv_hook_us_per_iter']:.2f} µs | "
          f"{d['davar_hook_us_per_iter'] / d['mmcv_hook_us_per_iter']:.2f}"
          f" | - |")
    for row in r['save']['rows']:
        target = '<= 1.05' if row['size_mb'] >= 100 else '-'
        print(f"| save {row['size_mb']} MB, atomic write (temp file, fsync,"
              f" rename, folder fsync) | {row['atomic_save_s']:.3f} s | "
              f"{row['durable_s']:.3f} s (durable limit: torch.save + fsync)"
              f" | {row['ratio_durable']:.2f} | "
              f"{target} |")
    for row in r['save']['rows']:
        print(f"| save {row['size_mb']} MB, whole checkpoint as the hook "
              f"saves it | {row['davar_s']:.3f} s | {row['mmcv_s']:.3f} s "
              f"(mmcv `runner.save_checkpoint`, no fsync) | "
              f"{row['ratio_mmcv']:.2f}"
              f" | <= 0.5 |")
    for row in r['save']['rows']:
        print(f"| async save {row['size_mb']} MB, training stall | "
              f"{row['async_stall_s']:.3f} s | {row['atomic_save_s']:.3f} s "
              f"(sync save) | {row['async_stall_fraction']:.2f} | <= 0.25 |")
    k = r['disk']
    print(f"| disk after {20 if not r['smoke'] else 3} epochs | "
          f"lightweight {k['lightweight']['bytes'] / 2**20:.1f} MB "
          f"({k['lightweight']['checkpoints']} files) | general "
          f"{k['general']['bytes'] / 2**20:.1f} MB, mmcv "
          f"{k['mmcv']['bytes'] / 2**20:.1f} MB | "
          f"{k['lightweight_vs_mmcv']:.2f} vs mmcv | 2 files |")
    m = r['memory']
    print(f"| peak RSS during a {m['state_mb']} MB save | "
          f"+{m['atomic_extra_peak_mb']:.0f} MB (sync), "
          f"+{m['async_extra_peak_mb']:.0f} MB (async) | "
          f"+{m['torch_extra_peak_mb']:.0f} MB (torch.save), "
          f"+{m['mmcv_extra_peak_mb']:.0f} MB (mmcv `save_checkpoint`) | - "
          f"| one extra "
          f"copy, async only |")
    for line in collect_rows(r['collect']):
        print(line)


if __name__ == '__main__':
    main()
