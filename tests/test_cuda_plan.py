"""tools/cuda_plan.py, the decision of tools/setup_env.sh between CPU and
CUDA ops, driven without a GPU: torch's facts are given, nvcc is a script
that prints a release, the toolkits are folders in tmp_path."""
import os
import stat
import subprocess
import sys

import pytest

from procs import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))

import cuda_plan  # noqa: E402
from cuda_plan import TorchFacts, arch_key, arch_list, plan  # noqa: E402

H100 = TorchFacts(cuda='13.0', capabilities=[(9, 0)], names=['NVIDIA H100'],
                  supported=[(8, 0), (9, 0), (10, 0)])
NO_GPU = TorchFacts(cuda='13.0')


@pytest.fixture(autouse=True)
def no_system_toolkit(monkeypatch, tmp_path):
    """This machine's /usr/local/cuda is not looked at."""
    monkeypatch.setattr(cuda_plan, 'DEFAULT_CUDA_HOME',
                        str(tmp_path / 'no-default-cuda'))


def fake_nvcc(home, release='13.0'):
    """``home``/bin/nvcc, a script that prints nvcc's version line."""
    nvcc = home / 'bin' / 'nvcc'
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release '
                    f'{release}, V{release}.88"\n')
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return nvcc


def decide(facts=H100, installed=False, search_path=(), **env):
    env.setdefault('PATH', '/usr/bin:/bin')
    return plan(facts, env, installed=installed,
                search_path=list(search_path), cores=16, memory=64 << 30)


def test_arch_list_is_the_gpus_present():
    assert arch_list([(9, 0)]) == '9.0'
    assert arch_list([(8, 6), (8, 0), (8, 6)]) == '8.0;8.6'
    # newer than torch was built for: torch's newest, as torch clamps it
    assert arch_list([(12, 1)], [(9, 0), (12, 0)]) == '12.0'


@pytest.mark.parametrize('archs, key', [
    ('9.0', 'sm90'), ('8.0;9.0+PTX', 'sm80-sm90ptx'),
    ('8.6 9.0a', 'sm86-sm90a'), ('Hopper', 'hopper')])
def test_arch_key(archs, key):
    assert arch_key(archs) == key


def test_cpu_machine_keeps_the_cpu_build():
    for facts in (NO_GPU, TorchFacts(cuda=None)):
        got = decide(facts)
        assert (got['PLAN_MODE'], got['PLAN_KEY']) == ('cpu', 'cpu')
        assert got['PLAN_CUDA_HOME'] == got['PLAN_ARCHS'] == ''
        assert got['PLAN_JOBS'] == '16'
    # a toolkit on the machine changes nothing without a GPU
    assert decide(NO_GPU, CUDA_HOME='/usr/local/cuda')['PLAN_MODE'] == 'cpu'


def test_nvcc_on_path_gives_cuda_ops_for_the_gpus_present(tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda-13.0')
    got = decide(PATH=f'{nvcc.parent}:/usr/bin')
    assert got['PLAN_MODE'] == 'cuda'
    assert got['PLAN_CUDA_HOME'] == str(tmp_path / 'cuda-13.0')
    assert got['PLAN_ARCHS'] == '9.0'
    # the cache key names the CUDA version and the architectures
    assert got['PLAN_KEY'] == 'cu130-sm90'
    assert 'NVIDIA H100 (sm90)' in got['PLAN_GPUS']
    assert str(nvcc) in got['PLAN_WHY']
    # compile jobs: one per core, at most one per 2 GiB (64 GiB here)
    assert got['PLAN_JOBS'] == '16'
    assert plan(H100, dict(PATH=str(nvcc.parent)), cores=16,
                memory=8 << 30)['PLAN_JOBS'] == '4'


def test_the_users_arch_list_is_kept(tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda')
    got = decide(CUDA_HOME=str(tmp_path / 'cuda'),
                 TORCH_CUDA_ARCH_LIST='8.0;9.0+PTX')
    assert got['PLAN_ARCHS'] == '8.0;9.0+PTX'
    assert got['PLAN_KEY'] == 'cu130-sm80-sm90ptx'
    assert 'from CUDA_HOME' in got['PLAN_WHY'] and str(nvcc) in \
        got['PLAN_WHY']
    # 'native' is torch's word for the GPUs present
    assert decide(CUDA_HOME=str(tmp_path / 'cuda'),
                  TORCH_CUDA_ARCH_LIST='native')['PLAN_ARCHS'] == '9.0'


def test_cuda_home_comes_before_path_and_a_wrong_major_is_passed_over(
        tmp_path):
    old = fake_nvcc(tmp_path / 'cuda-12.4', '12.4')
    new = fake_nvcc(tmp_path / 'cuda-13.0', '13.0')
    got = decide(CUDA_HOME=str(tmp_path / 'cuda-13.0'),
                 PATH=f'{old.parent}:/usr/bin')
    assert got['PLAN_CUDA_HOME'] == str(tmp_path / 'cuda-13.0')
    # torch's CUDA 13 refuses an nvcc 12: the next one is taken
    got = decide(CUDA_HOME=str(tmp_path / 'cuda-12.4'),
                 PATH=f'{new.parent}:/usr/bin')
    assert got['PLAN_CUDA_HOME'] == str(tmp_path / 'cuda-13.0')
    assert got['PLAN_KEY'] == 'cu130-sm90'
    # only a wrong one: none, and the reason says which it was
    got = decide(CUDA_HOME=str(tmp_path / 'cuda-12.4'))
    assert got['PLAN_MODE'] == 'install'
    assert f'{old} (from CUDA_HOME) is CUDA 12.4' in got['PLAN_WHY']


def test_a_wrapper_script_on_path_names_its_toolkit(tmp_path):
    # /usr/local/bin/nvcc as 'exec /usr/local/cuda-13.0/bin/nvcc "$@"':
    # the toolkit is where nvcc says it runs from, not /usr/local
    real = fake_nvcc(tmp_path / 'cuda-13.0')
    real.write_text(real.read_text() + f'echo "#$ _HERE_={real.parent}"\n')
    wrapper = tmp_path / 'local' / 'bin' / 'nvcc'
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    got = decide(PATH=str(wrapper.parent))
    assert got['PLAN_CUDA_HOME'] == str(tmp_path / 'cuda-13.0')


@pytest.mark.parametrize('cuda, packages', [
    ('13.0', ['nvidia-cuda-nvcc==13.0.*', 'nvidia-cuda-cccl==13.0.*']),
    ('12.8', ['nvidia-cuda-nvcc-cu12==12.8.*', 'nvidia-cuda-cccl-cu12==12.8.*',
              'nvidia-cuda-runtime-cu12==12.8.*'])])
def test_no_compiler_asks_the_index_then_plans_cpu_ops(cuda, packages):
    facts = TorchFacts(cuda=cuda, capabilities=[(9, 0)], names=['GPU'])
    got = decide(facts)
    assert got['PLAN_MODE'] == 'install'
    assert got['PLAN_PACKAGES'].split() == packages
    assert 'no nvcc for CUDA' in got['PLAN_WHY']
    # still none after the install: CPU ops, under the CPU key
    got = decide(facts, installed=True)
    assert (got['PLAN_MODE'], got['PLAN_KEY']) == ('nocc', 'cpu')
    assert got['PLAN_CUDA_HOME'] == got['PLAN_ARCHS'] == ''
    assert got['PLAN_PACKAGES'].split() == packages  # for the fix command


def wheel_toolkit(site, cuda13=True):
    """The layout pip gives the index's CUDA packages under ``site``."""
    if cuda13:
        home = site / 'nvidia' / 'cu13'
        fake_nvcc(home)
        (home / 'include' / 'cccl').mkdir(parents=True)
        (home / 'lib').mkdir()
        (home / 'lib' / 'libcudart.so.13').write_bytes(b'')
        return home
    home = site / 'nvidia' / 'cuda_nvcc'
    fake_nvcc(home, '12.8')
    for package in ('cuda_runtime', 'cuda_cccl'):
        (site / 'nvidia' / package / 'include').mkdir(parents=True)
    (site / 'nvidia' / 'cuda_runtime' / 'lib').mkdir()
    (site / 'nvidia' / 'cuda_runtime' / 'lib' / 'libcudart.so.12').write_bytes(
        b'')
    return home


def test_an_nvcc_installed_from_the_index_is_found_with_what_it_lacks(
        tmp_path):
    site = tmp_path / 'site-packages'
    home = wheel_toolkit(site)
    got = decide(search_path=[str(site)], installed=True)
    assert got['PLAN_MODE'] == 'cuda'
    assert got['PLAN_CUDA_HOME'] == str(home)
    assert 'from the package index' in got['PLAN_WHY']
    # its headers in one folder (nvcc finds include/cccl itself) with
    # torch's CUDA libraries'; only the versioned libcudart, to link as
    # -lcudart
    assert got['PLAN_INCLUDES'] == ''
    assert got['PLAN_LIBCUDART'] == str(home / 'lib' / 'libcudart.so.13')


def test_a_toolkit_without_the_cuda_libraries_gets_torchs_headers(tmp_path):
    # a toolkit of nvcc and the runtime only: ATen's CUDA headers include
    # cusparse.h, which torch's packages bring, searched after its own
    home = tmp_path / 'cuda-13.0'
    fake_nvcc(home)
    (home / 'include').mkdir()
    site = tmp_path / 'site-packages'
    for package in ('cu13', 'nccl'):
        (site / 'nvidia' / package / 'include').mkdir(parents=True)
    got = decide(CUDA_HOME=str(home), search_path=[str(site)])
    assert got['PLAN_INCLUDES'].split(os.pathsep) == [
        str(site / 'nvidia' / p / 'include') for p in ('cu13', 'nccl')]


def test_cuda12_wheels_spread_over_packages(tmp_path):
    site = tmp_path / 'site-packages'
    home = wheel_toolkit(site, cuda13=False)
    facts = TorchFacts(cuda='12.8', capabilities=[(8, 0)], names=['A100'])
    got = decide(facts, search_path=[str(site)])
    assert got['PLAN_CUDA_HOME'] == str(home)
    assert got['PLAN_KEY'] == 'cu128-sm80'
    assert got['PLAN_INCLUDES'].split(os.pathsep) == [
        str(site / 'nvidia' / p / 'include')
        for p in ('cuda_cccl', 'cuda_runtime')]
    assert got['PLAN_LIBCUDART'].endswith('cuda_runtime/lib/libcudart.so.12')


def test_a_full_toolkit_needs_nothing_more(tmp_path):
    home = tmp_path / 'cuda-13.0'
    fake_nvcc(home)
    for sub in ('include/cccl', 'lib64'):
        (home / sub).mkdir(parents=True)
    (home / 'lib64' / 'libcudart.so').write_bytes(b'')
    got = decide(CUDA_HOME=str(home))
    assert got['PLAN_INCLUDES'] == got['PLAN_LIBCUDART'] == ''


def test_shell_assignments_survive_bash(tmp_path):
    values = dict(PLAN_GPUS="NVIDIA H100 80GB HBM3 (sm90), it's $HOME",
                  PLAN_KEY='cu130-sm90')
    script = cuda_plan.shell(values) + 'echo "$PLAN_GPUS|$PLAN_KEY"\n'
    out = subprocess.run(['bash', '-c', script], capture_output=True,
                         text=True, check=True).stdout
    assert out == "NVIDIA H100 80GB HBM3 (sm90), it's $HOME|cu130-sm90\n"


def test_the_script_on_this_machine():
    out = subprocess.run([sys.executable, 'tools/cuda_plan.py'], cwd=ROOT,
                         capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.startswith('PLAN_MODE=')
    import torch
    if not torch.cuda.is_available():
        assert 'PLAN_MODE=cpu\nPLAN_KEY=cpu\n' in out
