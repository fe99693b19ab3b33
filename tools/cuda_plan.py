"""Decide what tools/setup_env.sh builds mmcv-full's ops for.

    python tools/cuda_plan.py [--installed]

Prints shell assignments for ``eval``:

- ``PLAN_MODE``: ``cpu`` (torch sees no GPU: CPU ops, as always),
  ``cuda`` (a GPU and an nvcc whose major version is torch's CUDA: CUDA
  ops), ``install`` (a GPU, no such nvcc: install ``PLAN_PACKAGES`` from
  the package index, then ask again with ``--installed``) or ``nocc``
  (a GPU and still no compiler: CPU ops, built with the GPU hidden).
- ``PLAN_KEY``: the wheel cache's key, ``cpu`` or e.g. ``cu130-sm90``.
- ``PLAN_CUDA_HOME``, ``PLAN_ARCHS`` (``TORCH_CUDA_ARCH_LIST``: the
  capabilities of the GPUs present unless the environment sets it),
  ``PLAN_JOBS`` (compile jobs), ``PLAN_INCLUDES`` / ``PLAN_LIBCUDART``
  (what the toolkit may lack where torch's extension builder looks:
  the include folders of the CUDA packages installed from the index, to
  search after the toolkit's, and the versioned libcudart to link as
  ``-lcudart``), ``PLAN_GPUS`` and ``PLAN_WHY``.

The decision (:func:`plan`) takes torch's facts as an argument, so a test
drives it without a GPU; :func:`torch_facts` reads them from torch.
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

Capability = Tuple[int, int]
#: Where torch's extension builder looks for a toolkit when neither
#: CUDA_HOME nor PATH names one.
DEFAULT_CUDA_HOME = '/usr/local/cuda'
#: Memory one nvcc job of mmcv's kernels may take, in bytes.
JOB_MEMORY = 2 << 30


@dataclass
class TorchFacts:
    """What the installed torch says about CUDA.

    Args:
        cuda (str | None): ``torch.version.cuda`` ('13.0'), None for a
            CPU-only torch.
        capabilities (list[tuple]): compute capability of each visible GPU.
        names (list[str]): name of each visible GPU.
        supported (list[tuple]): the ``sm_XY`` torch was built for.
    """
    cuda: Optional[str] = None
    capabilities: List[Capability] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    supported: List[Capability] = field(default_factory=list)


def torch_facts():
    """:class:`TorchFacts` of the torch this interpreter imports."""
    import torch
    facts = TorchFacts(cuda=torch.version.cuda)
    if facts.cuda and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            facts.capabilities.append(
                tuple(torch.cuda.get_device_capability(i)))
            facts.names.append(torch.cuda.get_device_name(i))
        facts.supported = [
            (int(a[3:-1]), int(a[-1])) for a in torch.cuda.get_arch_list()
            if re.fullmatch(r'sm_\d+', a)]
    return facts


def arch_list(capabilities, supported=()):
    """``TORCH_CUDA_ARCH_LIST`` for the GPUs present: each capability once,
    sorted, clamped to the newest one torch was built for (as torch's
    extension builder does)."""
    top = max(supported) if supported else None
    archs = sorted({min(c, top) if top else tuple(c) for c in capabilities})
    return ';'.join(f'{major}.{minor}' for major, minor in archs)


def arch_key(archs):
    """The cache key's part for a ``TORCH_CUDA_ARCH_LIST``:
    '8.0;9.0+PTX' -> 'sm80-sm90ptx'; names ('Hopper') kept, lowercased."""
    parts = []
    for arch in re.split(r'[;\s]+', archs.strip()):
        match = re.fullmatch(r'(\d+)\.(\d+)(a?)((\+PTX)?)', arch,
                             re.IGNORECASE)
        if match:
            parts.append(f'sm{match[1]}{match[2]}{match[3]}' +
                         ('ptx' if match[4] else ''))
        elif arch:
            parts.append(re.sub(r'[^a-z0-9]', '', arch.lower()))
    return '-'.join(parts)


def cuda_key(cuda, archs):
    """'13.0', '9.0' -> 'cu130-sm90'."""
    return f"cu{cuda.replace('.', '')}-{arch_key(archs)}"


def index_packages(cuda):
    """The package index's CUDA compiler and the headers it needs, for
    torch's CUDA version ``cuda`` ('13.0'). From CUDA 13 the packages
    carry no suffix (nvidia-cuda-nvcc 13.x; the runtime, crt and nvvm come
    as its dependencies); before, one per major (nvidia-cuda-nvcc-cu12)."""
    major = cuda.split('.')[0]
    suffix = '' if int(major) >= 13 else f'-cu{major}'
    names = ['nvidia-cuda-nvcc', 'nvidia-cuda-cccl']
    if suffix:
        names.append('nvidia-cuda-runtime')
    return [f'{name}{suffix}=={cuda}.*' for name in names]


def nvcc_release(nvcc):
    """'13.0' for an nvcc that prints 'release 13.0', None if it does not
    run."""
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+)\.(\d+)', out)
    return f'{match[1]}.{match[2]}' if match else None


def nvcc_home(nvcc):
    """The toolkit folder of ``nvcc``: the parent of the folder nvcc says
    it runs from (``_HERE_``, which sees through wrapper scripts), else of
    the folder it is in."""
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, 'probe.cu')
        open(source, 'w').close()
        try:
            out = subprocess.run(
                [nvcc, '--dryrun', '-c', source, '-o', source + '.o'],
                capture_output=True, text=True, timeout=60)
            match = re.search(r'^#\$ _HERE_=(.+)$', out.stdout + out.stderr,
                              re.MULTILINE)
        except (OSError, subprocess.SubprocessError):
            match = None
    here = match[1].strip() if match else os.path.dirname(
        os.path.realpath(nvcc))
    return os.path.dirname(os.path.normpath(here))


def wheel_roots(search_path):
    """The ``nvidia`` folders of packages on ``search_path``."""
    roots = []
    for entry in search_path:
        root = os.path.join(entry or '.', 'nvidia')
        if os.path.isdir(root) and root not in roots:
            roots.append(root)
    return roots


def nvcc_candidates(env, search_path):
    """(nvcc, where it was found), in the order torch's extension builder
    looks (CUDA_HOME, PATH, /usr/local/cuda), then the ones installed from
    the package index into this environment."""
    found = []
    home = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if home:
        found.append((os.path.join(home, 'bin', 'nvcc'), 'CUDA_HOME'))
    for folder in env.get('PATH', '').split(os.pathsep):
        if folder:
            found.append((os.path.join(folder, 'nvcc'), 'PATH'))
    found.append((os.path.join(DEFAULT_CUDA_HOME, 'bin', 'nvcc'),
                  DEFAULT_CUDA_HOME))
    for root in wheel_roots(search_path):
        for nvcc in sorted(glob.glob(os.path.join(root, 'cu*', 'bin',
                                                  'nvcc')) +
                           glob.glob(os.path.join(root, 'cuda_nvcc', 'bin',
                                                  'nvcc'))):
            found.append((nvcc, 'the package index'))
    return [(path, where) for path, where in found
            if os.path.isfile(path) and os.access(path, os.X_OK)]


def toolkit_gaps(home, search_path):
    """(include folders, libcudart) that the build needs besides a toolkit
    at ``home``, whose ``include`` and ``lib64`` or ``lib`` torch's
    extension builder uses.

    The include folders are those of the CUDA packages installed from the
    index (``nvidia/*/include``: torch's own CUDA libraries, and the
    compiler's packages), searched after the toolkit's: they hold what a
    toolkit without the CUDA libraries lacks (``cusparse.h``,
    ``cublas_v2.h``, which ATen's CUDA headers include) and, before CUDA 13,
    the runtime's and CCCL's headers of a compiler installed from the
    index. libcudart is the versioned ``libcudart.so.N`` where no
    ``libcudart.so`` is there for ``-lcudart`` (the index's runtime)."""
    own = os.path.realpath(os.path.join(home, 'include'))
    includes, libs = [], [os.path.join(home, 'lib64'),
                          os.path.join(home, 'lib')]
    for root in wheel_roots(search_path):
        for folder in sorted(glob.glob(os.path.join(root, '*', 'include'))):
            if os.path.realpath(folder) != own:
                includes.append(folder)
        libs.append(os.path.join(root, 'cuda_runtime', 'lib'))
    if any(os.path.exists(os.path.join(p, 'libcudart.so')) for p in libs):
        return includes, ''
    versioned = [f for p in libs for f in sorted(
        glob.glob(os.path.join(p, 'libcudart.so.*')))]
    return includes, versioned[0] if versioned else ''


def default_jobs(cuda, cores=None, memory=None):
    """Compile jobs: one per core; for CUDA also at most one per
    :data:`JOB_MEMORY` of available memory."""
    cores = cores or len(os.sched_getaffinity(0))
    if not cuda:
        return cores
    if memory is None:
        memory = available_memory()
    return max(1, min(cores, memory // JOB_MEMORY)) if memory else cores


def available_memory():
    """MemAvailable of /proc/meminfo in bytes, 0 if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def plan(facts, env, installed=False, search_path=None, cores=None,
         memory=None):
    """What to build, as a dict of the ``PLAN_*`` values (see the module's
    docstring).

    Args:
        facts (TorchFacts): torch's view of CUDA.
        env (dict): the environment (CUDA_HOME, PATH,
            TORCH_CUDA_ARCH_LIST).
        installed (bool): the index's packages were asked for already:
            no compiler now means ``nocc``, not ``install``.
        search_path (list[str]): where installed packages are
            (default: sys.path).
        cores, memory: for :func:`default_jobs` (default: this machine).
    """
    search_path = sys.path if search_path is None else search_path
    gpus = ', '.join(
        f'{name} (sm{major}{minor})'
        for name, (major, minor) in zip(facts.names, facts.capabilities))
    result = dict(PLAN_MODE='cpu', PLAN_KEY='cpu', PLAN_CUDA='',
                  PLAN_CUDA_HOME='', PLAN_ARCHS='', PLAN_PACKAGES='',
                  PLAN_INCLUDES='', PLAN_LIBCUDART='', PLAN_GPUS=gpus,
                  PLAN_WHY='', PLAN_JOBS=str(default_jobs(False, cores)))
    if not facts.cuda or not facts.capabilities:
        result['PLAN_WHY'] = ('torch has no CUDA' if not facts.cuda else
                              'torch sees no GPU')
        return result
    result['PLAN_CUDA'] = facts.cuda
    major = facts.cuda.split('.')[0]
    skipped = []
    for nvcc, where in nvcc_candidates(env, search_path):
        release = nvcc_release(nvcc)
        if release and release.split('.')[0] == major:
            break
        skipped.append(f'{nvcc} (from {where}) is CUDA {release or "?"}')
    else:
        nvcc = None
    if nvcc is None:
        result['PLAN_PACKAGES'] = ' '.join(index_packages(facts.cuda))
        result['PLAN_MODE'] = 'nocc' if installed else 'install'
        result['PLAN_WHY'] = (
            f'no nvcc for CUDA {major}.x in CUDA_HOME, on PATH, in '
            f'{DEFAULT_CUDA_HOME} or installed from the package index' +
            (f'; {"; ".join(skipped)}' if skipped else ''))
        return result
    home = nvcc_home(nvcc)
    archs = env.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if not archs or archs == 'native':
        archs = arch_list(facts.capabilities, facts.supported)
    includes, libcudart = toolkit_gaps(home, search_path)
    result.update(
        PLAN_MODE='cuda', PLAN_KEY=cuda_key(facts.cuda, archs),
        PLAN_CUDA_HOME=home, PLAN_ARCHS=archs,
        PLAN_INCLUDES=os.pathsep.join(includes), PLAN_LIBCUDART=libcudart,
        PLAN_WHY=f'nvcc {release} from {where}: {nvcc}',
        PLAN_JOBS=str(default_jobs(True, cores, memory)))
    return result


def shell(values):
    """``values`` as lines of ``NAME=value`` for bash's ``eval``."""
    return ''.join(f'{name}={shlex.quote(str(value))}\n'
                   for name, value in values.items())


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0])
    parser.add_argument('--installed', action='store_true',
                        help="the index's compiler packages were installed "
                        'already: without a compiler now, plan CPU ops')
    args = parser.parse_args(argv)
    sys.stdout.write(shell(plan(torch_facts(), os.environ, args.installed)))


if __name__ == '__main__':
    main()
