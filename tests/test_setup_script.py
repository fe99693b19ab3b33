"""tools/setup_env.sh when the mmcv-full build fails: the build's output
stays in a log file, the terminal shows a progress line, then the log's
tail, its path and the command to retry.

Runs in seconds and offline: a scratch virtual environment sees this
environment's packages through a .pth file (so steps 1-3 find everything
installed and pip never reaches an index), the wheel cache is an empty
temporary folder, and MMCV_SDIST is a fake sdist whose setup.py prints
setuptools-style noise and fails. Neither ~/.cache/davarocr-mmcv nor .venv
is touched.
"""
import io
import os
import pty
import select
import signal
import site
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = 120

FAKE_SETUP = f'''
import sys, time
# mmcv 1.7.1 hard-codes extra_compile_args -std=c++14, rewritten by the script
for i in range({NOISE}):
    print(f"BuildBackendWarning: noise line {{i}}", file=sys.stderr)
print("[1/3] c++ -c mmcv/ops/csrc/fake.cpp", flush=True)
time.sleep(3)
print("mmcv/ops/csrc/fake.cpp:1:1: error: the fake compiler failed here",
      file=sys.stderr)
sys.exit(1)
'''


def fake_sdist(folder):
    path = os.path.join(folder, 'mmcv-full-1.7.1.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        data = FAKE_SETUP.encode()
        info = tarfile.TarInfo('mmcv-full-1.7.1/setup.py')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def scratch_venv(folder):
    """A virtual environment that sees this one's packages (read-only)."""
    venv = os.path.join(folder, 'venv')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv],
                   check=True, timeout=60)
    (packages, ) = subprocess.run(
        [os.path.join(venv, 'bin', 'python'), '-c',
         'import site; print(*site.getsitepackages())'],
        check=True, capture_output=True, text=True).stdout.split()
    with open(os.path.join(packages, 'parent.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages()) + '\n')
    return venv


def run_on_terminal(args, env, timeout):
    """Run ``args`` with a pseudo-terminal as stdout and stderr (as from
    ``make`` in a shell); return (exit status, everything it printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return proc.returncode, b''.join(chunks).decode(errors='replace')


def test_failed_build_shows_log_tail_path_and_retry(tmp_path):
    cache = tmp_path / 'cache'
    venv = scratch_venv(str(tmp_path))
    env = dict(os.environ, VENV=venv, DAVAR_CACHE=str(cache),
               MMCV_SDIST=fake_sdist(str(tmp_path)), HOME=str(tmp_path),
               PIP_NO_INDEX='1', PIP_CONFIG_FILE=os.devnull,
               PIP_NO_CACHE_DIR='1', PIP_DISABLE_PIP_VERSION_CHECK='1')
    start = time.monotonic()
    status, out = run_on_terminal(['bash', 'tools/setup_env.sh'], env, 180)
    took = time.monotonic() - start
    assert status != 0, out
    assert took < 120

    (log, ) = cache.glob('mmcv-full-1.7.1-torch*.log')
    text = log.read_text()
    # the whole output is in the log, only its tail on the terminal
    assert text.count('BuildBackendWarning') == NOISE
    assert 0 < out.count('BuildBackendWarning') <= 40
    assert 'error: the fake compiler failed here' in out
    assert f'[setup] output in {log}' in out.replace(
        'building mmcv-full: ', '')
    assert f'[setup] full log: {log}' in out
    # the progress line, redrawn with the elapsed time while it builds
    assert '\r[setup] building mmcv-full: 0m0' in out
    assert 's, 1/3 compiled' in out  # ninja's count of compile steps
    assert 'FAILED at step: 4/6 build mmcv-full' in out
    assert 'retry with: make venv' in out
    # nothing half-built is left behind, and the venv is not marked ready
    assert sorted(p.name for p in cache.iterdir()) == [log.name]
    assert not os.path.exists(os.path.join(venv, '.davarocr-mmcv-ready'))
