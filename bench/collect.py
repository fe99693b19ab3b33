"""Collection benchmark: multi_gpu_test's gathering of results on rank 0
(through the process group, ``tmpdir=None``) against mmcv 1.7.1's
``collect_results_cpu`` (files in a tmpdir), 2 gloo processes on this
machine.

Detector results are ``[float32 array (3, 5)]`` per sample (one class of
boxes), recognizer results one string per sample. Times are the best of
two runs of each, alternated; the peak RSS is rank 0's rise during its
first collection in a fresh process (``VmHWM`` after ``clear_refs``).
"""
import json
import os
import os.path as osp
import time

import numpy as np


def _status(key):
    with open('/proc/self/status') as f:
        return int(f.read().split(key + ':')[1].split()[0])


def _reset_peak():
    """Set VmHWM to the current RSS; False where the kernel refuses."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _results(kind, rank, n, world):
    rng = np.random.RandomState(rank)
    share = range(rank, n, world)
    if kind == 'detector':
        return [[rng.rand(3, 5).astype(np.float32)] for _ in share]
    return [f'word{i}' for i in share]


def _worker(rank, world, port, n, kind, tmp, order, out):
    import torch
    import torch.distributed as dist
    from mmcv.engine import collect_results_cpu
    from davarocr_mmcv.apis.test import collect_results
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    part = _results(kind, rank, n, world)
    timings, peak = {}, None
    for i, name in enumerate(order):
        measure = i == 0 and rank == 0 and _reset_peak()
        base = _status('VmRSS') if measure else 0
        dist.barrier()
        start = time.perf_counter()
        if name == 'mmcv':
            got = collect_results_cpu(part, n, osp.join(tmp, f'mmcv_{n}'))
        else:
            got = collect_results(part, n)
        dist.barrier()
        elapsed = time.perf_counter() - start
        if measure:
            peak = (_status('VmHWM') - base) / 1024
        if rank == 0:
            assert len(got) == n
        del got
        timings[name] = min(timings.get(name, elapsed), elapsed)
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(dict(timings=timings, first=order[0],
                           peak_mb=peak), f)
    dist.destroy_process_group()


#: ratio targets by (kind, results), from the issue: 1k results of either
#: kind no slower than mmcv, 100k detector results at most half its time
TARGETS = {'detector-1000': 1.0, 'recognizer-1000': 1.0,
           'detector-100000': 0.5}


def bench_collect(tmp, counts, kinds=('detector', 'recognizer')):
    """Rows of (kind, results, seconds and rank-0 peak RSS of both)."""
    import torch.multiprocessing as mp
    from toy import free_port
    rows = []
    for kind in kinds:
        for n in counts:
            best, peak = {}, {}
            for order in (('mmcv', 'davar') * 2, ('davar', 'mmcv') * 2):
                out = osp.join(tmp, f'collect_{kind}_{n}.json')
                mp.spawn(_worker, args=(2, free_port(), n, kind, tmp, order,
                                        out), nprocs=2, join=True)
                with open(out) as f:
                    got = json.load(f)
                for name, seconds in got['timings'].items():
                    best[name] = min(best.get(name, seconds), seconds)
                peak[got['first']] = got['peak_mb']
            rows.append(dict(
                kind=kind, results=n, mmcv_s=best['mmcv'],
                davar_s=best['davar'], ratio=best['davar'] / best['mmcv'],
                mmcv_peak_mb=peak['mmcv'], davar_peak_mb=peak['davar']))
    return dict(rows=rows, targets=TARGETS, aim_detector_100000=0.2,
                baseline='mmcv.engine.collect_results_cpu with a tmpdir',
                ours='multi_gpu_test collection, tmpdir=None (process '
                     'group, arrays packed)')


def report_rows(collect):
    """Markdown rows of the README's Benchmarks table."""
    lines = []
    for row in collect['rows']:
        target = collect['targets'].get(f"{row['kind']}-{row['results']}")
        target = f'<= {target}' if target else '-'
        lines.append(
            f"| collect {row['results']} {row['kind']} results, 2 gloo "
            f"procs | {row['davar_s']:.3f} s | {row['mmcv_s']:.3f} s "
            f"(collect_results_cpu) | {row['ratio']:.2f} | {target} |")
    for row in collect['rows']:
        if row['davar_peak_mb'] is None:
            continue
        lines.append(
            f"| rank 0 peak RSS, collecting {row['results']} {row['kind']} "
            f"results | +{row['davar_peak_mb']:.1f} MB | "
            f"+{row['mmcv_peak_mb']:.1f} MB (collect_results_cpu) | "
            f"{row['davar_peak_mb'] / max(row['mmcv_peak_mb'], 1e-9):.2f} "
            f"| - |")
    return lines
