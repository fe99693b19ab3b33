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
import json
import os
import pty
import select
import signal
import site
import subprocess
import sys
import tarfile
import time

import pytest

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


def fake_sdist(folder, setup=FAKE_SETUP):
    """An mmcv-full-1.7.1.tar.gz in ``folder`` whose setup.py is ``setup``."""
    path = os.path.join(folder, 'mmcv-full-1.7.1.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        data = setup.encode()
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

    (log, ) = cache.glob('mmcv-full-1.7.1-torch*-cpu.log')
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


# ------------------------------------------------ CPU ops or CUDA ops
# The same offline scratch set-up, its mmcv-full sdist a setup.py that
# records the environment of the build and stops it; torch sees a fake GPU
# where a test says so.
RECORD_SETUP = '''
import json, os, sys
# mmcv 1.7.1 hard-codes extra_compile_args -std=c++14, rewritten by the script
keys = ('MMCV_WITH_OPS', 'FORCE_CUDA', 'CUDA_VISIBLE_DEVICES', 'CUDA_HOME',
        'TORCH_CUDA_ARCH_LIST', 'MAX_JOBS')
with open(os.environ['DAVAR_TEST_RECORD'], 'w') as f:
    json.dump({k: os.environ.get(k) for k in keys}, f)
print("mmcv/ops/csrc/fake.cpp:1:1: error: recorded, stopped", file=sys.stderr)
sys.exit(1)
'''

FAKE_GPU = '''
"""torch sees one fake H100; torch.version.cuda is $FAKE_TORCH_CUDA."""
import importlib.abc, importlib.machinery, os, sys


class FakeGpu(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != 'torch':
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.version.cuda = os.environ['FAKE_TORCH_CUDA']
            cuda = module.cuda
            cuda.is_available = lambda: True
            cuda.device_count = lambda: 1
            cuda.get_device_capability = lambda device=None: (9, 0)
            cuda.get_device_name = lambda device=None: 'Fake H100'
            cuda.get_arch_list = lambda: ['sm_80', 'sm_90']

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, FakeGpu())
'''


def site_packages(venv):
    (packages, ) = subprocess.run(
        [os.path.join(venv, 'bin', 'python'), '-c',
         'import site; print(*site.getsitepackages())'],
        check=True, capture_output=True, text=True).stdout.split()
    return packages


def set_up(tmp_path, gpu_cuda=None, setup=RECORD_SETUP, stamp=None, **env):
    """Run tools/setup_env.sh offline in a scratch venv (a fake GPU with
    torch CUDA ``gpu_cuda`` if given, its ready-stamp ``stamp`` lines if
    given); return (exit status, output, the recorded build environment or
    None, the cache folder)."""
    venv = scratch_venv(str(tmp_path))
    if stamp:
        with open(os.path.join(venv, '.davarocr-mmcv-ready'), 'w') as f:
            f.write('\n'.join(stamp) + '\n')
    if gpu_cuda:
        with open(os.path.join(site_packages(venv), 'sitecustomize.py'),
                  'w') as f:
            f.write(FAKE_GPU)
    (tmp_path / 'sdist').mkdir()
    path = fake_sdist(str(tmp_path / 'sdist'), setup)
    cache = tmp_path / 'cache'
    record = tmp_path / 'record.json'
    base = {k: v for k, v in os.environ.items()
            if k not in ('CUDA_HOME', 'CUDA_PATH', 'TORCH_CUDA_ARCH_LIST',
                         'MAX_JOBS', 'CUDA_VISIBLE_DEVICES')}
    full = dict(base, VENV=venv, DAVAR_CACHE=str(cache), MMCV_SDIST=path,
                HOME=str(tmp_path), PIP_NO_INDEX='1',
                PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR='1',
                PIP_DISABLE_PIP_VERSION_CHECK='1',
                DAVAR_TEST_RECORD=str(record), FAKE_TORCH_CUDA=gpu_cuda or '')
    full.update(env)
    proc = subprocess.run(['bash', 'tools/setup_env.sh'], cwd=ROOT, env=full,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    built = json.loads(record.read_text()) if record.exists() else None
    return proc.returncode, out, built, cache


def fake_nvcc(folder, release='13.0'):
    nvcc = folder / 'bin' / 'nvcc'
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release '
                    f'{release}, V{release}.88"\n')
    nvcc.chmod(0o755)
    return nvcc


def test_cpu_machine_builds_cpu_ops_under_the_cpu_key(tmp_path):
    status, out, built, cache = set_up(tmp_path)
    assert status != 0 and built is not None, out
    assert (built['FORCE_CUDA'], built['MMCV_WITH_OPS']) == ('0', '1')
    assert built['CUDA_VISIBLE_DEVICES'] is None
    assert built['MAX_JOBS'] == str(len(os.sched_getaffinity(0)))
    assert 'build mmcv-full 1.7.1 with CPU ops against torch' in out
    assert 'No CUDA compiler' not in out
    (log, ) = cache.glob('mmcv-full-1.7.1-torch*.log')
    assert log.name.endswith('-cpu.log')


def test_a_cpu_wheel_cached_under_the_old_name_is_reused(tmp_path):
    import torch
    version = torch.__version__.split('+')[0]
    abi = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    old = tmp_path / 'cache' / f'mmcv-full-1.7.1-torch{version}-{abi}'
    old.mkdir(parents=True)
    (old / f'mmcv_full-1.7.1-{abi}-{abi}-linux_x86_64.whl').write_bytes(
        b'not a wheel: installing it fails at step 5')
    status, out, built, cache = set_up(tmp_path)
    assert f'4/6 reuse cached mmcv-full wheel from {old}' in out
    assert built is None  # nothing was built
    assert 'FAILED at step: 5/6' in out
    assert sorted(p.name for p in cache.iterdir()) == [old.name]


def test_gpu_without_compiler_says_so_then_builds_cpu_ops_gpu_hidden(
        tmp_path):
    # torch's CUDA 12.8 and no nvcc 12 (this machine's CUDA 13 toolkit, if
    # any, does not do), nor any package index to install one from
    status, out, built, cache = set_up(tmp_path, gpu_cuda='12.8')
    assert 'installing the CUDA 12.8 compiler: nvidia-cuda-nvcc-cu12==12.8.*' \
        in out
    paragraph = out[out.index('[setup] No CUDA compiler'):]
    assert 'torch sees Fake H100 (sm90)' in paragraph
    assert "mmcv's CUDA ops" in paragraph and 'detectors' in paragraph
    assert '.venv/bin/pip install "nvidia-cuda-nvcc-cu12==12.8.*"' in \
        paragraph.replace(os.path.join(str(tmp_path), 'venv'), '.venv')
    assert '&& make venv' in paragraph
    # then CPU ops, with the GPU hidden from mmcv's setup.py
    assert built is not None, out
    assert built['FORCE_CUDA'] == '0' and built['CUDA_VISIBLE_DEVICES'] == ''
    assert 'build mmcv-full 1.7.1 with CPU ops against torch' in out
    (log, ) = cache.glob('mmcv-full-1.7.1-torch*.log')
    assert log.name.endswith('-cpu.log')


@pytest.mark.parametrize('archs, key', [(None, 'cu130-sm90'),
                                        ('8.0;9.0', 'cu130-sm80-sm90')])
def test_gpu_with_nvcc_builds_cuda_ops_for_its_architectures(tmp_path, archs,
                                                             key):
    nvcc = fake_nvcc(tmp_path / 'cuda-13.0')
    env = dict(PATH=f'{nvcc.parent}:{os.environ["PATH"]}', MAX_JOBS='3')
    if archs:
        env['TORCH_CUDA_ARCH_LIST'] = archs
    status, out, built, cache = set_up(tmp_path, gpu_cuda='13.0', **env)
    assert built is not None, out
    assert built['FORCE_CUDA'] == '1'
    assert built['CUDA_HOME'] == str(tmp_path / 'cuda-13.0')
    assert built['TORCH_CUDA_ARCH_LIST'] == (archs or '9.0')
    assert built['CUDA_VISIBLE_DEVICES'] is None
    assert built['MAX_JOBS'] == '3'  # the user's
    assert f'with CUDA 13.0 ops for {archs or "9.0"} against torch' in out
    assert 'No CUDA compiler' not in out
    # the progress line and the log of the CPU build
    assert '[setup] building mmcv-full: output in' in out
    (log, ) = cache.glob('mmcv-full-1.7.1-torch*.log')
    assert log.name.endswith(f'-{key}.log')
    assert 'FAILED at step: 4/6 build mmcv-full' in out


def fingerprint():
    """What tools/setup_env.sh's stamp records: the hash of its inputs."""
    import hashlib
    digest = hashlib.sha256()
    for name in ('tools/constraints.txt', 'setup.py', 'tools/setup_env.sh',
                 'tools/cuda_plan.py'):
        with open(os.path.join(ROOT, name), 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def test_a_gpu_machine_with_cpu_ops_looks_for_a_compiler_again(tmp_path):
    stamp = [fingerprint(), 'cpu ops only: no CUDA compiler']
    # still none: up to date, and it says with what
    status, out, built, _ = set_up(tmp_path / 'none', gpu_cuda='12.8',
                                   stamp=stamp)
    assert status == 0, out
    assert 'is up to date, with CPU ops only' in out
    assert built is None and '1/6' not in out
    # a compiler now: the set-up runs again and builds CUDA ops
    nvcc = fake_nvcc(tmp_path / 'cuda-13.0')
    status, out, built, _ = set_up(
        tmp_path / 'now', gpu_cuda='13.0', stamp=stamp,
        PATH=f'{nvcc.parent}:{os.environ["PATH"]}')
    assert 'a CUDA compiler is here now' in out
    assert built is not None and built['FORCE_CUDA'] == '1', out
    # a CPU machine's stamp (one line) is simply up to date
    status, out, built, _ = set_up(tmp_path / 'cpu', stamp=stamp[:1])
    assert status == 0 and out.strip() == \
        f'[setup] {tmp_path / "cpu" / "venv"} is up to date'


def test_offline_from_a_wheelhouse_with_the_images_torch(tmp_path):
    # WHEELHOUSE: pip asks no index, the sdist lying there is the one
    # built; SYSTEM_TORCH=1: the torch found is used, its pins dropped
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    fake_sdist(str(wheels), RECORD_SETUP)
    status, out, built, _ = set_up(tmp_path, WHEELHOUSE=str(wheels),
                                   MMCV_SDIST='', SYSTEM_TORCH='1')
    assert '2/6 use the torch and torchvision installed for' in out
    assert built is not None, out  # the wheelhouse's sdist was built
    (log, ) = (tmp_path / 'cache').glob('*.log')
    links = log.read_text().split('Looking in links: ')[1].splitlines()[0]
    assert str(wheels) in links.split(', ')
    pins = (tmp_path / 'venv' / '.davarocr-constraints.txt').read_text()
    assert 'mmdet==2.28.2' in pins and 'torch==' not in pins
