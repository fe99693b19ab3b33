"""An mmocr 0.6.3 config (tests/fixtures/mmocr_tiny) through tools/train.py
--validate and tools/test.py: its OCRDatasets take a nested
``loader=dict(type='AnnFileLoader', ...)``, a class with ``__getitem__`` and
``__len__`` that the dataset builds itself with its ``ann_file``, inside a
UniformConcatDataset that builds its dataset configs itself.

mmocr and what importing ``mmocr.datasets`` and ``mmocr.models`` needs
beside the virtual environment are installed once, without dependencies,
into a folder cached outside the repository (``$DAVAR_CACHE``, default
``~/.cache/davarocr-mmcv``), which the tool runs get on PYTHONPATH; the
test is skipped only when the package index cannot be reached."""
import functools
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy
import pytest

from davarocr_mmcv.serialization import load_checkpoint_file
from procs import ROOT, run_bounded, tool_env, tool_ok

CONFIG = 'tests/fixtures/mmocr_tiny/mmocr_crnn.py'
#: the pins this environment was set up with (make venv writes them into
#: it: NUMPY=2 and TORCH_VERSION change some), else the project's
CONSTRAINTS = next(p for p in (
    os.path.join(sys.prefix, '.davarocr-constraints.txt'),
    os.path.join(ROOT, 'tools', 'constraints.txt')) if os.path.exists(p))
CACHE = os.environ.get('DAVAR_CACHE') or os.path.expanduser(
    '~/.cache/davarocr-mmcv')
#: mmocr, and what importing mmocr.datasets and mmocr.models needs that the
#: virtual environment lacks (its pipelines import imgaug, shapely,
#: pyclipper, lanms and lmdb at module level; its text detectors
#: scikit-image; its metrics rapidfuzz)
REQUIREMENTS = ('mmocr==0.6.3', 'imgaug', 'scikit-image', 'imageio',
                'tifffile', 'lazy_loader', 'shapely', 'pyclipper',
                'lanms-neo==1.0.2', 'lmdb', 'rapidfuzz')
#: pip's words for an index it could not reach
UNREACHABLE = ('No matching distribution found', 'Could not find a version',
               'Failed to establish a new connection', 'NewConnectionError',
               'Temporary failure in name resolution', 'ConnectTimeout',
               'Network is unreachable', 'ProxyError')
METRIC = '0_1-N.E.D'  # UniformConcatDataset's name for its dataset's metric


def mmocr_folder():
    """The cached folder holding ``REQUIREMENTS``, installed there first if
    missing, keyed by the Python ABI, the requirements and the project's
    constraints."""
    with open(CONSTRAINTS, 'rb') as f:
        digest = hashlib.sha256(
            '\n'.join(REQUIREMENTS).encode() + f.read()).hexdigest()[:10]
    abi = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    folder = os.path.join(CACHE, f'mmocr-0.6.3-{abi}-{digest}')
    if os.path.isdir(folder):
        return folder
    os.makedirs(CACHE, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=os.path.basename(folder) + '.',
                               suffix='.partial', dir=CACHE)
    try:
        code, out = run_bounded(
            [sys.executable, '-m', 'pip', 'install', '--no-deps',
             '--no-input', '--disable-pip-version-check', '--target',
             partial, '-c', CONSTRAINTS, *REQUIREMENTS], timeout=900)
        if code != 0 and any(words in out for words in UNREACHABLE):
            pytest.skip('mmocr 0.6.3 cannot be installed: the package index '
                        f'is not reachable:\n{out[-2000:]}')
        assert code == 0, f'installing {REQUIREMENTS} failed:\n{out[-6000:]}'
        try:  # a run beside this one may have installed it first
            os.rename(partial, folder)
        except OSError:
            if not os.path.isdir(folder):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


# mmocr 0.6.3's pipelines import imgaug 0.4.0 (its last release), which
# uses np.sctypes, removed in numpy 2: mmocr does not import there
pytestmark = pytest.mark.skipif(
    int(numpy.__version__.split('.')[0]) >= 2,
    reason=f'mmocr 0.6.3 does not import with numpy {numpy.__version__}: '
    'its dependency imgaug 0.4.0 uses np.sctypes, removed in numpy 2')


@pytest.fixture(scope='module')
def ok():
    return functools.partial(tool_ok, tool_env(mmocr_folder()),
                             timeout=600)


@pytest.fixture(scope='module')
def mmocr_run(ok, tmp_path_factory):
    work = tmp_path_factory.mktemp('mmocr') / 'work'
    ok('tools/train.py', CONFIG, '--work-dir', str(work), '--validate')
    return work


def test_mmocr_config_trains_through_train_py(mmocr_run):
    latest = load_checkpoint_file(str(mmocr_run / 'latest_model.pth'))
    # 30 training images (the loader's repeat=0.05 of 600) in batches of 16
    assert (latest['meta']['epoch'], latest['meta']['iter']) == (2, 4)
    log = glob.glob(str(mmocr_run / '*.log.json'))[0]
    scores = [r[METRIC] for r in map(json.loads, open(log)) if METRIC in r]
    assert len(scores) == 2
    best = load_checkpoint_file(str(mmocr_run / 'Best_checkpoint.pth'))
    assert best['meta']['hook_msgs']['best_score'] == pytest.approx(
        max(scores))
    assert 'backbone.cnn.conv0.weight' in best['state_dict']  # VeryDeepVgg


def test_best_checkpoint_retests_to_the_logged_best(ok, mmocr_run):
    best = str(mmocr_run / 'Best_checkpoint.pth')
    out = ok('tools/test.py', CONFIG, best, '--eval', 'acc')
    metrics = json.loads(out.strip().splitlines()[-1])
    expected = load_checkpoint_file(best)['meta']['hook_msgs']['best_score']
    assert metrics[METRIC] == pytest.approx(expected)
