"""tools/gpu_check.sh called wrong prints its usage and sets up nothing."""
import os
import subprocess

import pytest

from procs import ROOT


def gpu_check(*args, env=None):
    return subprocess.run(['bash', 'tools/gpu_check.sh', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize('args, message', [
    (['--bogus'], "unknown argument '--bogus'"),
    (['--wheelhouse'], '--wheelhouse needs a value'),
    (['--wheelhouse', '/no/such/folder'], 'is not a folder'),
    (['--sdist', '/no/such/mmcv-full-1.7.1.tar.gz'], 'is not a file'),
    (['--bundle', '/no/such/folder'], '--bundle /no/such/folder is not a '
     'folder'),
    (['--time-limit', '9m'], "--time-limit takes a positive number of "
     "seconds; got '9m'"),
    (['--time-limit'], '--time-limit needs a value'),
])
def test_wrong_arguments_print_the_usage(args, message):
    proc = gpu_check(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert 'Usage: bash tools/gpu_check.sh' in proc.stderr
    assert '[gpu-check]' not in proc.stdout  # nothing was started


def test_help():
    proc = gpu_check('--help')
    assert proc.returncode == 0
    assert proc.stdout.startswith('Usage: bash tools/gpu_check.sh')
    assert '--wheelhouse DIR' in proc.stdout and 'make gpu-check' in \
        proc.stdout


def test_the_time_limit_stops_the_set_up_and_says_so(tmp_path):
    # a set-up from nothing takes longer than 2 seconds
    # not the make of `make test` either (its MAKEFLAGS name its VENV)
    env = {k: v for k, v in os.environ.items()
           if k not in ('NUMPY', 'TORCH_VERSION', 'SYSTEM_TORCH', 'MAKEFLAGS',
                        'MFLAGS', 'MAKELEVEL')}
    env.update(VENV=str(tmp_path / 'venv'), DAVAR_CACHE=str(tmp_path / 'c'),
               PIP_NO_INDEX='1', PIP_CONFIG_FILE=os.devnull)
    proc = gpu_check('--time-limit', '2', '--out', str(tmp_path / 'out'),
                     env=env)
    assert proc.returncode == 1
    assert '[gpu-check] 1/3 make venv (time limit 2s in all)' in proc.stdout
    assert 'verdict: FAIL (the set-up did not finish: time limit reached ' \
        'during the set-up)' in proc.stdout
    assert not (tmp_path / 'c').exists() or not [
        p for p in (tmp_path / 'c').iterdir() if not p.name.endswith('.log')]


def gpu_bundle(*args):
    return subprocess.run(['bash', 'tools/gpu_bundle.sh', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('args, message', [
    (['--bogus'], "unknown argument '--bogus'"),
    (['--python', 'py3'], "--python takes X.Y, such as 3.12; got 'py3'"),
    (['--max-mib', '0'], "--max-mib takes a positive whole number; got '0'"),
    (['--out'], '--out needs a value'),
])
def test_gpu_bundle_wrong_arguments_print_the_usage(args, message):
    proc = gpu_bundle(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert 'Usage: bash tools/gpu_bundle.sh' in proc.stderr
    assert '[bundle]' not in proc.stdout
