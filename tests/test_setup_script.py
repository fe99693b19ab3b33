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
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from procs import package_folders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = 120
#: the set-up's variables, which make exports to the suite: a scratch set-up
#: starts without them
SET_UP_VARIABLES = ('VENV', 'NUMPY', 'TORCH_VERSION', 'SYSTEM_TORCH',
                    'WHEELHOUSE', 'MMCV_SDIST', 'DAVAR_CACHE', 'CUDA_HOME',
                    'CUDA_PATH', 'TORCH_CUDA_ARCH_LIST', 'MAX_JOBS',
                    'CUDA_VISIBLE_DEVICES')


def this_stack():
    """NUMPY and TORCH_VERSION for this environment's numpy and torch: a
    scratch set-up offline finds them installed (numpy 2, torch 2.11...)."""
    import numpy
    import torch
    return dict(NUMPY='2' if int(numpy.__version__.split('.')[0]) >= 2
                else '1', TORCH_VERSION=torch.__version__.split('+')[0])


def clean_environ(**env):
    """This process's environment without the set-up's variables, with
    this stack's NUMPY and TORCH_VERSION and ``env``, offline (no package
    index, no pip configuration)."""
    base = {k: v for k, v in os.environ.items()
            if k not in SET_UP_VARIABLES}
    return dict(base, PIP_NO_INDEX='1', PIP_CONFIG_FILE=os.devnull,
                PIP_NO_CACHE_DIR='1', PIP_DISABLE_PIP_VERSION_CHECK='1',
                **dict(this_stack(), **env))

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


def fake_sdist(folder, setup=FAKE_SETUP, **files):
    """An mmcv-full-1.7.1.tar.gz in ``folder`` whose setup.py is ``setup``,
    with ``files`` (name: text) beside it."""
    path = os.path.join(folder, 'mmcv-full-1.7.1.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        for name, text in dict(files, **{'setup.py': setup}).items():
            data = text.encode()
            info = tarfile.TarInfo(f'mmcv-full-1.7.1/{name}')
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
        f.write('\n'.join(package_folders()) + '\n')
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
    poller = select.poll()  # select() refuses descriptors past 1023
    poller.register(master, select.POLLIN)
    try:
        while time.monotonic() < deadline:
            if not poller.poll(1000):
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
    env = clean_environ(VENV=venv, DAVAR_CACHE=str(cache),
                        MMCV_SDIST=fake_sdist(str(tmp_path)),
                        HOME=str(tmp_path))
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


def set_up(tmp_path, gpu_cuda=None, setup=RECORD_SETUP, stamp=None,
           files=None, **env):
    """Run tools/setup_env.sh offline in a scratch venv (a fake GPU with
    torch CUDA ``gpu_cuda`` if given, its ready-stamp ``stamp`` lines if
    given, its sdist's setup.py ``setup`` with ``files`` beside it); return
    (exit status, output, the recorded build environment or None, the
    cache folder)."""
    venv = scratch_venv(str(tmp_path))
    if stamp:
        with open(os.path.join(venv, '.davarocr-mmcv-ready'), 'w') as f:
            f.write('\n'.join(stamp) + '\n')
    if gpu_cuda:
        with open(os.path.join(site_packages(venv), 'sitecustomize.py'),
                  'w') as f:
            f.write(FAKE_GPU)
    (tmp_path / 'sdist').mkdir()
    path = fake_sdist(str(tmp_path / 'sdist'), setup, **(files or {}))
    cache = tmp_path / 'cache'
    record = tmp_path / 'record.json'
    full = clean_environ(VENV=venv, DAVAR_CACHE=str(cache), MMCV_SDIST=path,
                         HOME=str(tmp_path), DAVAR_TEST_RECORD=str(record),
                         FAKE_TORCH_CUDA=gpu_cuda or '')
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


def cache_name(ops='cpu'):
    """The wheel cache entry's name for this torch and Python."""
    import torch
    version = torch.__version__.split('+')[0]
    abi = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    return f'mmcv-full-1.7.1-torch{version}-{abi}' + (f'-{ops}' if ops else '')


def fake_wheel(folder, name='mmcv_full'):
    """A wheel of distribution ``name`` 1.7.1 that pip installs: a marker
    module and its .dist-info, no ``mmcv`` package (the real one is kept)."""
    import zipfile
    folder.mkdir(parents=True, exist_ok=True)
    abi = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    path = folder / f'{name}-1.7.1-{abi}-{abi}-linux_x86_64.whl'
    info = f'{name}-1.7.1.dist-info'
    files = {
        f'{name}_fake_marker.py': 'CACHED = True\n',
        f'{info}/METADATA': f'Metadata-Version: 2.1\nName: '
                            f'{name.replace("_", "-")}\nVersion: 1.7.1\n',
        f'{info}/WHEEL': f'Wheel-Version: 1.0\nGenerator: test\n'
                         f'Root-Is-Purelib: false\nTag: {abi}-{abi}-'
                         'linux_x86_64\n',
    }
    with zipfile.ZipFile(path, 'w') as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f'{info}/RECORD', ''.join(
            f'{m},,\n' for m in [*files, f'{info}/RECORD']))
    return path


def installed_from_cache(venv):
    """Whether the scratch venv holds the cached (fake) mmcv-full build."""
    return os.path.exists(os.path.join(site_packages(venv),
                                       'mmcv_full_fake_marker.py'))


def test_a_cpu_wheel_cached_under_the_old_name_is_reused(tmp_path):
    old = tmp_path / 'cache' / cache_name(ops=None)
    fake_wheel(old)
    status, out, built, cache = set_up(tmp_path)
    assert f'4/6 reuse cached mmcv-full wheel from {old}' in out
    assert built is None  # nothing was built
    assert status == 0, out
    assert installed_from_cache(str(tmp_path / 'venv'))
    assert sorted(p.name for p in cache.iterdir()) == [old.name]


# ------------------------------------------- build -> cache -> install
#: an mmcv-full sdist whose build succeeds in seconds: a real wheel of the
#: distribution mmcv-full 1.7.1 holding a marker module (no ``mmcv``
#: package, so the real mmcv-full stays importable); it waits for a file
#: to appear first where DAVAR_TEST_WAIT names one
BUILDING_SETUP = '''
import os, sys, time
from setuptools import setup
# mmcv 1.7.1 hard-codes extra_compile_args -std=c++14, rewritten by the script
if os.environ.get('DAVAR_TEST_RECORD'):
    with open(os.environ['DAVAR_TEST_RECORD'] + '.pid', 'w') as f:
        f.write(str(os.getpid()))
print("[1/3] c++ -c mmcv/ops/csrc/fake.cpp", flush=True)
while os.environ.get('DAVAR_TEST_WAIT') and \\
        not os.path.exists(os.environ['DAVAR_TEST_WAIT']):
    time.sleep(0.2)
setup(name='mmcv-full', version='1.7.1', py_modules=['mmcv_full_fake_marker'])
'''
MARKER = {'mmcv_full_fake_marker.py': 'CACHED = True\n'}


def built_set_up(tmp_path, **env):
    """set_up() with the sdist whose build succeeds."""
    return set_up(tmp_path, setup=BUILDING_SETUP, files=MARKER, **env)


def entries(cache):
    """The cache's entries and files, hidden staging folders included."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_build_goes_through_cache_install_and_import(tmp_path):
    status, out, _, cache = built_set_up(tmp_path)
    assert status == 0, out
    name = cache_name()
    assert entries(cache) == [name, f'{name}.log']
    (wheel, ) = (cache / name).iterdir()
    assert wheel.name.startswith('mmcv_full-1.7.1-') and \
        wheel.suffix == '.whl'
    assert f'[setup] cached {wheel}' in out
    # installed from the cache, then the stack imports and the venv is ready
    venv = str(tmp_path / 'venv')
    assert installed_from_cache(venv)
    assert '[setup] ok: torch' in out
    assert os.path.exists(os.path.join(venv, '.davarocr-mmcv-ready'))
    # set up again from nothing: the cached wheel, nothing built
    shutil.rmtree(venv)
    (tmp_path / 'record.json.pid').unlink()
    status, out, _, _ = built_set_up(tmp_path / 'again',
                                     DAVAR_CACHE=str(cache))
    assert status == 0, out
    assert f'4/6 reuse cached mmcv-full wheel from {cache / name}' in out
    assert not (tmp_path / 'again' / 'record.json.pid').exists()


@pytest.mark.parametrize('damage', ['file', 'empty', 'two', 'truncated'])
def test_a_cache_entry_that_is_not_a_wheel_folder_is_rebuilt_once(
        tmp_path, damage):
    entry = tmp_path / 'cache' / cache_name()
    if damage == 'file':  # what pip's copy to a missing folder leaves
        entry.parent.mkdir()
        entry.write_bytes(fake_wheel(tmp_path / 'w').read_bytes())
    elif damage == 'empty':
        entry.mkdir(parents=True)
    elif damage == 'two':
        fake_wheel(entry)
        fake_wheel(tmp_path / 'w').rename(
            entry / 'mmcv_full-1.7.0-py3-none-any.whl')
    else:
        wheel = fake_wheel(entry)
        wheel.write_bytes(wheel.read_bytes()[:-40])
    status, out, _, cache = built_set_up(tmp_path)
    said = {'file': 'it is a file, not a folder',
            'empty': 'it holds 0 mmcv_full-*.whl files, not one',
            'two': 'it holds 2 mmcv_full-*.whl files, not one',
            'truncated': 'is unreadable: it is not a whole zip archive'}
    assert f'the cache entry {entry} is not usable: ' in out
    assert said[damage] in out
    assert out.count('] 4/6 build mmcv-full') == 1
    assert status == 0, out
    assert entry.is_dir() and len(list(entry.iterdir())) == 1
    assert installed_from_cache(str(tmp_path / 'venv'))


def test_a_build_that_gives_no_usable_wheel_fails_without_an_entry(tmp_path):
    # a build that "succeeds" with the wrong distribution: checked, refused
    setup = BUILDING_SETUP.replace("name='mmcv-full'", "name='not-mmcv'")
    status, out, _, cache = set_up(tmp_path, setup=setup, files=MARKER)
    assert status != 0
    assert 'holds 0 mmcv_full-*.whl files, not one' in out
    assert 'FAILED at step: 4/6 build mmcv-full' in out
    assert out.count('] 4/6 build mmcv-full') == 1
    assert entries(cache) == [f'{cache_name()}.log']


def test_a_set_up_killed_during_the_build_leaves_no_entry(tmp_path):
    release = tmp_path / 'release'
    venv = scratch_venv(str(tmp_path))
    (tmp_path / 'sdist').mkdir()
    cache = tmp_path / 'cache'
    record = tmp_path / 'record.json'
    env = clean_environ(VENV=venv, DAVAR_CACHE=str(cache), HOME=str(tmp_path),
                        MMCV_SDIST=fake_sdist(str(tmp_path / 'sdist'),
                                              BUILDING_SETUP, **MARKER),
                        DAVAR_TEST_RECORD=str(record),
                        DAVAR_TEST_WAIT=str(release))
    proc = subprocess.Popen(['bash', 'tools/setup_env.sh'], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    pid_file = tmp_path / 'record.json.pid'
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), 'the build never started'
    os.killpg(proc.pid, signal.SIGKILL)  # the set-up, as by a lost machine
    proc.communicate(timeout=30)
    release.touch()  # the orphaned build (its own session) ends
    build = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(build, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    assert entries(cache) == [f'{cache_name()}.log']


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


def fingerprint(**env):
    """What tools/setup_env.sh's stamp records with the variables ``env``:
    the hash of its inputs."""
    return subprocess.run(
        ['bash', 'tools/setup_env.sh', '--fingerprint'], cwd=ROOT,
        env=clean_environ(**env), check=True, capture_output=True,
        text=True).stdout.strip()


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


def test_two_set_ups_sharing_the_cache_build_at_once_and_both_finish(
        tmp_path):
    # the old script's fixed "<entry>.partial" folder: the first set-up to
    # finish moved it into place, the second's pip then copied its wheel to
    # a FILE of that name, and the second moved that file over the entry
    cache, release = tmp_path / 'cache', tmp_path / 'release'
    procs = []
    for name in ('a', 'b'):
        folder = tmp_path / name
        folder.mkdir()
        venv = scratch_venv(str(folder))
        env = clean_environ(
            VENV=venv, DAVAR_CACHE=str(cache), HOME=str(folder),
            MMCV_SDIST=fake_sdist(str(folder), BUILDING_SETUP, **MARKER),
            DAVAR_TEST_RECORD=str(folder / 'record.json'),
            DAVAR_TEST_WAIT=str(release))
        procs.append(subprocess.Popen(
            ['bash', 'tools/setup_env.sh'], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            (tmp_path / n / 'record.json.pid').exists() for n in 'ab'):
        time.sleep(0.2)
    release.touch()  # both builds end together
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    entry = cache / cache_name()
    assert entry.is_dir() and len(list(entry.iterdir())) == 1
    assert entries(cache) == [entry.name, f'{entry.name}.log']
    for name in 'ab':
        assert installed_from_cache(str(tmp_path / name / 'venv'))


# ------------------------------------------------ NUMPY and TORCH_VERSION
def test_numpy_2_and_a_torch_version_replace_their_pins(tmp_path):
    status, out, built, _ = set_up(tmp_path, NUMPY='2',
                                   TORCH_VERSION='2.9.1')
    # offline, torch 2.9.1 cannot be installed: the pins are what counts
    assert 'FAILED at step: 2/6 install torch' in out, out
    pins = (tmp_path / 'venv' / '.davarocr-constraints.txt').read_text()
    pins = pins.splitlines()
    for pin in ('torch==2.9.1', 'torchvision==0.24.*', 'numpy>=2.3,<2.6',
                'opencv-python>=4.11,<5', 'opencv-python-headless>=4.11,<5',
                'mmdet==2.28.2', 'yapf==0.40.1'):
        assert pin in pins
    assert not [p for p in pins if p.startswith(
        ('torch==2.14', 'torchvision==0.29', 'numpy>=1.23', 'opencv-python<',
         'opencv-python-headless<'))]
    # each variable is part of the stamp's fingerprint
    plain = dict(NUMPY='1', TORCH_VERSION='')
    assert len({fingerprint(**plain), fingerprint(**dict(plain, NUMPY='2')),
                fingerprint(**dict(plain, TORCH_VERSION='2.11.0')),
                fingerprint(**dict(plain, SYSTEM_TORCH='1'))}) == 4


@pytest.mark.parametrize('variable, value, said', [
    ('NUMPY', '3', "NUMPY must be 1 (numpy<2, the default) or 2, got '3'"),
    ('TORCH_VERSION', 'latest', 'TORCH_VERSION must be a torch 2 release '
     "such as 2.11.0, got 'latest'")])
def test_a_wrong_variable_is_refused_before_anything_is_done(
        tmp_path, variable, value, said):
    status, out, built, cache = set_up(tmp_path, **{variable: value})
    assert status == 2 and said in out, out
    assert '1/6' not in out and not cache.exists()
