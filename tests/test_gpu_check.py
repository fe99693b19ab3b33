"""tools/gpu_check.sh called wrong prints its usage and sets up nothing."""
import subprocess

import pytest

from procs import ROOT


def gpu_check(*args):
    return subprocess.run(['bash', 'tools/gpu_check.sh', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('args, message', [
    (['--bogus'], "unknown argument '--bogus'"),
    (['--wheelhouse'], '--wheelhouse needs a value'),
    (['--wheelhouse', '/no/such/folder'], 'is not a folder'),
    (['--sdist', '/no/such/mmcv-full-1.7.1.tar.gz'], 'is not a file'),
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
