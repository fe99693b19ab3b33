"""Two "machines" on one: two torchrun agents (--nnodes=2, node ranks 0 and
1, one gloo process each) through tools/dist_train.sh. Node 1 runs in a
private mount namespace with a tmpfs over the work root, so it shares no
folder with node 0, as nodes with only local disks."""
import glob
import json
import os
import signal
import subprocess
import sys

import pytest

from davarocr_mmcv.serialization import load_checkpoint_file
from toy import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420


def private_mounts_work():
    """None when ``unshare -rm`` with a tmpfs works here, else why not."""
    try:
        proc = subprocess.run(
            ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs tmpfs /mnt'],
            capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f'unshare unavailable: {exc}'
    if proc.returncode:
        return f'no private mount namespace here: {proc.stderr.strip()}'
    return None


def write_config(tmp_path, epochs):
    path = tmp_path / f'multinode_{epochs}.py'
    path.write_text(f'''
_base_ = {os.path.join(ROOT, 'demo/recognition/crnn_lightweight.py')!r}
custom_imports = dict(imports=['davarocr_mmcv', 'davarocr_mmcv.toy',
                               'multinode_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainStatusHook', interval=5),
                dict(type='StepProbeHook')]
runner = dict(max_epochs={epochs})
data = dict(train=dict(times=1))
checkpoint_config = dict(model_milestone=0, publish=True)
evaluation = dict(start=1, start_iter=0)
''')
    return str(path)


def two_nodes(tmp_path, config, work_root, *extra):
    """Run node 0 here and node 1 in a private mount namespace; return
    (output of node 0, output of node 1, files node 1 saw under the work
    root)."""
    probe = tmp_path / 'probe'
    probe.mkdir(exist_ok=True)
    listing = tmp_path / 'node1_files.txt'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PYTHONUNBUFFERED='1', NNODES='2', MASTER_ADDR='127.0.0.1',
               PORT=str(free_port()), DAVAR_PROBE_DIR=str(probe),
               PYTHONPATH=os.pathsep.join(
                   [os.path.join(ROOT, 'tests'),
                    os.environ.get('PYTHONPATH', '')]))
    args = ['bash', 'tools/dist_train.sh', config, '1', '--work-dir',
            str(work_root / 'job'), *extra]
    node1 = ('mount -t tmpfs tmpfs "$WORK_ROOT" && "$@"; rc=$?; '
             'find "$WORK_ROOT" -type f > "$LISTING"; exit $rc')
    procs = [
        subprocess.Popen(args, cwd=ROOT, env=dict(env, NODE_RANK='0'),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True),
        subprocess.Popen(['unshare', '-rm', 'sh', '-c', node1, 'node1',
                          *args], cwd=ROOT,
                         env=dict(env, NODE_RANK='1',
                                  WORK_ROOT=str(work_root),
                                  LISTING=str(listing)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)]
    outs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=TIMEOUT)
            outs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for node, (proc, out) in enumerate(zip(procs, outs)):
        assert proc.returncode == 0, f'node {node}:\n{out[-6000:]}'
    seen = listing.read_text().split() if listing.exists() else None
    probes = {int(os.path.basename(p)[4:-5]): json.load(open(p))
              for p in glob.glob(str(probe / 'rank*.json'))}
    for p in glob.glob(str(probe / 'rank*.json')):
        os.remove(p)
    return outs, seen, probes


@pytest.fixture(scope='module')
def unshare_ok():
    reason = private_mounts_work()
    if reason:
        pytest.skip(reason)


def test_two_nodes_without_shared_disk_train_and_auto_resume(tmp_path,
                                                             unshare_ok):
    work_root = tmp_path / 'work'
    work_root.mkdir()
    job = work_root / 'job'

    # 1. training with evaluation completes; results reach rank 0 through
    #    the process group, so node 1 needs no shared folder
    outs, seen, probes = two_nodes(tmp_path, write_config(tmp_path, 2),
                                   work_root, '--validate')
    assert 'Distributed training: True' in outs[0]
    assert sorted(probes) == [0, 1]
    assert all(p['world_size'] == 2 for p in probes.values())
    assert probes[0]['end'] == probes[1]['end']
    first_end = probes[0]['end']
    assert first_end['epoch'] == 2
    # only node 0 holds checkpoints, logs and status.json
    names = sorted(os.listdir(job))
    assert {'Best_checkpoint.pth', 'latest_model.pth',
            'status.json'} <= set(names)
    assert [n for n in names if n.endswith('.log')]
    assert not [n for n in names if n.startswith(('.eval_hook', '.davar'))]
    assert glob.glob(str(job / 'publish' / '*.pth'))  # publish=True
    assert seen == [], f'node 1 wrote {seen}'
    assert 'broadcast_buffers' not in outs[0] + outs[1]  # no FutureWarning
    latest = load_checkpoint_file(str(job / 'latest_model.pth'))['meta']
    assert latest['epoch'] == 2
    assert json.load(open(job / 'status.json'))['state'] == 'finished'

    # 2. --auto-resume on both nodes: rank 0 finds node 0's checkpoint, node
    #    1 (which has none) gets its state through the process group; both
    #    ranks continue from the same step to the same final step
    outs, seen, probes = two_nodes(tmp_path, write_config(tmp_path, 3),
                                   work_root, '--validate', '--auto-resume')
    assert 'auto-resume from' in outs[0]
    assert 'cannot read' in outs[0]  # rank 1 got the state from rank 0
    assert 'all 2 ranks continue from' in outs[0]
    assert probes[0]['start'] == probes[1]['start'] == first_end
    assert probes[0]['end'] == probes[1]['end']
    assert probes[0]['end']['epoch'] == 3
    assert probes[0]['end']['iter'] > first_end['iter']
    assert probes[0]['weights'] == probes[1]['weights']
    assert seen == [], f'node 1 wrote {seen}'
    final = load_checkpoint_file(str(job / 'latest_model.pth'))['meta']
    assert (final['epoch'], final['iter']) == (3, probes[0]['end']['iter'])
