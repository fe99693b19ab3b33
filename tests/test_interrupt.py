"""Ctrl-C on a real training (tools/train.py in a subprocess): status.json
ends as 'interrupted', the resume command is printed, and running it
finishes the training."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from davarocr_mmcv.hooks.status import format_status
from test_tools_e2e import ENV, RECOGNITION, ROOT, cmd

# 19 iterations per epoch, status.json rewritten at every iteration
OPTIONS = ['--cfg-options', 'runner.max_epochs=6', 'data.train.times=1',
           'custom_hooks.0.interval=1']


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def test_ctrl_c_records_interrupted_and_prints_resume(tmp_path):
    work = tmp_path / 'work'
    status_path = work / 'status.json'
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', RECOGNITION, '--work-dir',
         str(work), '--validate', *OPTIONS], cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        # interrupt in epoch 2 or later, once a checkpoint is on disk
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            status = read_json(status_path)
            if status and status['iter'] >= 21 and \
                    (work / 'latest_model.pth').exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert 'KeyboardInterrupt: training interrupted' in out
    assert 'Traceback' not in out

    status = read_json(status_path)
    assert status['state'] == 'interrupted', status
    assert status['error'] == 'KeyboardInterrupt'
    assert 21 <= status['iter'] < 114 and status['eta_s'] is None
    resume = status['resume']
    assert resume == (f'python tools/train.py {work}/crnn_lightweight.py '
                      f'--work-dir {work} --auto-resume')
    assert f'continue it with:\n  {resume}' in out

    shown = cmd([sys.executable, 'tools/status.py', str(work)])
    assert 'state:    interrupted (KeyboardInterrupt)' in shown
    assert f'resume:   {resume}' in shown
    assert format_status(status) in shown

    # the printed command continues from the epoch-1 checkpoint and ends
    args = shlex.split(resume)
    out = cmd([sys.executable, *args[1:]], timeout=300)
    assert 'auto-resume from' in out and 'resumed' in out
    final = read_json(status_path)
    assert final['state'] == 'finished' and final['resume'] is None
    assert final['iter'] == final['max_iters'] == 114
