"""kill -9 a real training at random moments; every checkpoint on disk must
still load, and the next start must resume from it."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from davarocr_mmcv.constants import TMP_PREFIX
from davarocr_mmcv.core.resume import find_latest_checkpoint
from davarocr_mmcv.serialization import load_checkpoint_file

HERE = os.path.dirname(os.path.abspath(__file__))
TRIALS = 21  # 7 per mode


def start(work_dir, mode, max_iters=10000):
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, 'kill_target.py'), str(work_dir),
         mode, str(max_iters)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1'))


def wait_for(proc, word, timeout):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(word):
            return lines
    raise AssertionError(f'no {word!r} within {timeout}s:\n' +
                         ''.join(lines[-30:]))


def check_dir(work_dir):
    """Return (files checked, corrupt files)."""
    checked, corrupt = 0, []
    for name in sorted(os.listdir(work_dir)):
        path = os.path.join(work_dir, name)
        if not name.endswith('.pth') or name.startswith(TMP_PREFIX):
            continue
        checked += 1
        try:
            ckpt = load_checkpoint_file(path)
            assert 'state_dict' in ckpt and 'meta' in ckpt
        except Exception as exc:  # noqa: B902
            corrupt.append(f'{name}: {exc!r}')
    return checked, corrupt


@pytest.mark.parametrize('mode', ['general', 'lightweight', 'async'])
def test_kill9_never_corrupts(tmp_path, mode):
    rng = random.Random(1234)
    work = tmp_path / 'work'
    trials, checked, corrupt, resumed = 0, 0, [], []
    deadline = time.time() + 240
    while trials < TRIALS / 3 and time.time() < deadline:
        proc = start(work, mode)
        try:
            lines = wait_for(proc, 'started', 120)
            resumed += [int(l.split()[1]) for l in lines
                        if l.startswith('resumed')]
            time.sleep(rng.uniform(0.2, 2.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        trials += 1
        n, bad = check_dir(work)
        checked += n
        corrupt += bad
        assert find_latest_checkpoint(str(work)) or n == 0
    print(f'\n[kill -9 {mode}] trials: {trials}, checkpoint files checked: '
          f'{checked}, corrupt: {len(corrupt)}, resumes: {len(resumed)}')
    assert corrupt == []
    assert trials >= TRIALS / 3
    # every start after the first with a checkpoint resumed, and progressed
    assert resumed and resumed == sorted(resumed)


def test_resume_after_kill_ends_with_the_uninterrupted_best(tmp_path):
    """kill -9 a run three times, auto-resume it to the end, and compare the
    final best with a run that was never interrupted."""
    max_iters = 30
    full = start(tmp_path / 'full', 'lightweight', max_iters)
    wait_for(full, 'done', 240)
    full.wait(60)
    rng = random.Random(7)
    work = tmp_path / 'killed'
    kills = 0
    deadline = time.time() + 300
    while time.time() < deadline:
        proc = start(work, 'lightweight', max_iters)
        try:
            wait_for(proc, 'started', 120)
            if kills < 3:
                time.sleep(rng.uniform(0.3, 1.5))
                proc.send_signal(signal.SIGKILL)
                kills += 1
            else:
                wait_for(proc, 'done', 240)
                break
        finally:
            proc.kill()
            proc.wait(30)
    assert kills == 3
    best = [load_checkpoint_file(str(d / 'Best_checkpoint.pth'))
            for d in (tmp_path / 'full', work)]
    keys = ('best_score', 'best_unit', 'best_step')
    assert [{k: b['meta']['hook_msgs'][k] for k in keys} for b in best][0] \
        == [{k: b['meta']['hook_msgs'][k] for k in keys} for b in best][1]
    assert int(best[0]['state_dict']['steps']) == \
        int(best[1]['state_dict']['steps'])
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))
    assert latest['meta']['iter'] == max_iters
