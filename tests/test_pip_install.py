"""The pip route of docs/installation.md: ``pip install -e .`` and a built
wheel, into a fresh virtual environment that already holds mmcv-full 1.7.1
and mmdet 2.28.

Offline and without a second mmcv-full build: the scratch environment sees
this environment's packages through a ``.pth`` file (read-only), pip runs
with ``PIP_NO_INDEX=1``, so a requirement it cannot find installed fails
instead of downloading and building. The package is installed from a copy
of the repository (setup.py, README.md, LICENSE, davarocr_mmcv/, tools/),
so the editable install of this environment, which points at another
clone, cannot answer for it: each check asserts where ``davarocr_mmcv``
was imported from.
"""
import email.parser
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from procs import package_folders

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SOURCES = ('setup.py', 'README.md', 'LICENSE', 'davarocr_mmcv', 'tools')


def scratch_venv(folder):
    """A virtual environment without pip of its own that sees this
    environment's packages (and its pip) after its own."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', folder],
                   check=True, timeout=120)
    python = osp.join(folder, 'bin', 'python')
    (own, ) = run(python, '-c', 'import site; '
                  'print(*site.getsitepackages())').split()
    with open(osp.join(own, 'parent.pth'), 'w') as f:
        f.write('\n'.join(package_folders()) + '\n')
    return python, own


def env():
    """No PYTHONPATH (it would name this clone), no package index."""
    out = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out.update(PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1',
               PYTHONNOUSERSITE='1')
    return out


def run(*args, cwd=None, stderr=True):
    """The output of ``args``, which must exit 0: stdout, then stderr
    unless ``stderr`` is False."""
    proc = subprocess.run(args, cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (
        f'{args} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n'
        f'{proc.stderr[-4000:]}')
    return proc.stdout + (proc.stderr if stderr else '')


def copy_sources(dest):
    os.makedirs(dest)
    for name in SOURCES:
        src = osp.join(ROOT, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(dest, name), ignore=shutil.
                            ignore_patterns('__pycache__', '*.egg-info'))
        else:
            shutil.copy(src, dest)
    return dest


def where(python, cwd):
    """(davarocr_mmcv's file, mmcv's file, version) seen by ``python``."""
    return run(python, '-c', 'import davarocr_mmcv, mmcv; '
               'print(davarocr_mmcv.__file__); print(mmcv.__file__); '
               'print(davarocr_mmcv.__version__)', cwd=cwd,
               stderr=False).split()


def check_tools(python, tools, version, cwd):
    """The tools of ``tools`` answer --help and --version."""
    assert 'usage: train.py' in run(python, osp.join(tools, 'train.py'),
                                    '--help', cwd=cwd)
    out = run(python, osp.join(tools, 'status.py'), '--version', cwd=cwd,
              stderr=False)
    assert out.strip().endswith(version)


def assert_no_mmcv_build(pip_output):
    assert 'Requirement already satisfied: mmcv-full==1.7.1' in pip_output
    assert 'Building wheel for mmcv' not in pip_output
    assert 'Collecting mmcv' not in pip_output


@pytest.fixture(scope='module')
def stack():
    """The mmcv-full and mmdet the scratch environments will see."""
    import mmcv
    import mmdet
    from davarocr_mmcv import __version__
    assert mmcv.__version__ == '1.7.1' and mmdet.__version__.startswith(
        '2.28')
    return osp.dirname(mmcv.__file__), __version__


def test_pip_install_editable_uses_the_installed_mmcv(tmp_path, stack):
    mmcv_dir, version = stack
    src = copy_sources(str(tmp_path / 'clone'))
    python, own = scratch_venv(str(tmp_path / 'venv'))
    out = run(python, '-m', 'pip', 'install', '--no-build-isolation',
              '--use-pep517', '-e', src, cwd=str(tmp_path))
    assert_no_mmcv_build(out)
    package, mmcv_file, got = where(python, str(tmp_path))
    assert package == osp.join(src, 'davarocr_mmcv', '__init__.py')
    assert osp.dirname(mmcv_file) == mmcv_dir and got == version
    check_tools(python, osp.join(src, 'tools'), version, str(tmp_path))


def test_pip_wheel_installs_into_an_existing_environment(tmp_path, stack):
    mmcv_dir, version = stack
    src = copy_sources(str(tmp_path / 'clone'))
    dist = str(tmp_path / 'dist')
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--use-pep517', '-w', dist, src,
        cwd=str(tmp_path))
    (wheel, ) = glob.glob(osp.join(dist, '*.whl'))
    assert osp.basename(wheel) == \
        f'davarocr_mmcv-{version}-py3-none-any.whl'
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(f'davarocr_mmcv-{version}.dist-info/METADATA').decode()
    assert all(n.startswith('davarocr_mmcv') for n in names), names
    meta = email.parser.Parser().parsestr(meta)
    # what the code needs (tests/test_python_versions.py)
    requires = SpecifierSet(meta['Requires-Python'])
    assert {'3.8.0', '3.11.7', '3.12.0'} <= set(requires.filter(
        ['3.7.9', '3.8.0', '3.11.7', '3.12.0']))
    assert '3.7.9' not in requires
    pinned = {(r.name, r.specifier) for r in map(
        Requirement, meta.get_all('Requires-Dist'))}
    assert {('mmcv-full', SpecifierSet('==1.7.1')),
            ('numpy', SpecifierSet('>=1.23,<2.6')),
            ('yapf', SpecifierSet('==0.40.1'))} <= pinned
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()  # the long description: the short README
    assert meta.get_payload().strip() == readme.strip()

    python, own = scratch_venv(str(tmp_path / 'venv'))
    out = run(python, '-m', 'pip', 'install', wheel, cwd=str(tmp_path))
    assert_no_mmcv_build(out)
    package, mmcv_file, got = where(python, str(tmp_path))
    assert package == osp.join(own, 'davarocr_mmcv', '__init__.py')
    assert osp.dirname(mmcv_file) == mmcv_dir and got == version
    # the tools alone, beside no package: they use the installed wheel
    tools = str(tmp_path / 'elsewhere' / 'tools')
    shutil.copytree(osp.join(src, 'tools'), tools)
    check_tools(python, tools, version, str(tmp_path))
