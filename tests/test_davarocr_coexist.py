"""DavarOCR's ``davarocr.mmcv`` and davarocr_mmcv in one process, in either
import order: no KeyError, DavarOCR's registry names build davarocr_mmcv's
classes, one warning says so. Every case runs in a fresh interpreter
(tests/coexist_probe.py), so the import order is the real one.

The fixture tests/fixtures/fake_davarocr_mmcv registers the same names as
DavarOCR's ``davarocr.mmcv``. The last tests use DavarOCR's real source
where it is present (``DAVAROCR_SRC``, default /tmp/davar_src).
"""
import json
import os
import os.path as osp
import re
import sys

import pytest

from procs import ROOT, run_bounded

HERE = osp.dirname(osp.abspath(__file__))
FAKE = osp.join(HERE, 'fixtures', 'fake_davarocr_mmcv')
PROBE = osp.join(HERE, 'coexist_probe.py')
COMPAT = 'davarocr_mmcv.compat.davarocr'
#: the modules the opt-in line stands in for
STAND_INS = ('torch', 'warpctc_pytorch', 'mmdet')
NAMES = ('DavarCheckpointHook', 'ReduceonplateauLrUpdaterHook',
         'DistillRunner')


def probe(*modules, path=FAKE, timeout=300):
    """The probe's result for ``modules`` imported in this order, with
    ``path`` importable; skips where DavarOCR's own requirements are not
    installed."""
    paths = [ROOT, path, os.environ.get('PYTHONPATH', '')]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    code, out = run_bounded([sys.executable, PROBE, *modules], env=env,
                            timeout=timeout)
    missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'",
                        out)
    if code and path != FAKE and missing and \
            missing.group(1).split('.')[0] not in STAND_INS:
        pytest.skip(f"DavarOCR's requirement {missing.group(1)!r} is not "
                    f"installed")
    assert code == 0, out
    [line] = [x for x in out.splitlines() if x.startswith('PROBE ')]
    return json.loads(line[len('PROBE '):])


def names_warnings(result):
    return [w for w in result['warnings']
            if w['category'] == 'DavarOCRNamesWarning'
            or any(name in w['message'] for name in NAMES)]


def assert_ours(result):
    for name in NAMES:
        assert result['built'][name].startswith('davarocr_mmcv.'), name
        assert result['registered'][name].startswith('davarocr_mmcv.'), name


@pytest.mark.parametrize('order, fate, where', [
    (('davarocr.mmcv', 'davarocr_mmcv'), 'replaced',
     'davarocr_mmcv/hooks/checkpoint.py'),
    (('davarocr_mmcv', 'davarocr.mmcv'), 'not registered',
     'davarocr/mmcv/__init__.py'),
], ids=['davarocr-first', 'davarocr_mmcv-first'])
def test_either_order_builds_ours_with_one_warning(order, fate, where):
    result = probe(*order)
    assert_ours(result)
    [warning] = names_warnings(result)
    assert warning['category'] == 'DavarOCRNamesWarning'
    message = warning['message']
    assert ("'DavarCheckpointHook', 'ReduceonplateauLrUpdaterHook' "
            "(mmcv's hook registry) and 'DistillRunner' (mmcv's runner "
            "registry) build davarocr_mmcv's classes, DavarOCR's rebuilt "
            "for mmcv-full 1.7.1, whichever package is imported first"
            in message)
    assert (f'(first: davarocr.mmcv.DavarCheckpointHook, {fate})'
            in message)
    # it points at the line that registered the name
    assert warning['filename'].endswith(where)


# ------------------------------------------- DavarOCR's own source
DAVAROCR_SRC = os.environ.get('DAVAROCR_SRC', '/tmp/davar_src')


needs_davarocr = pytest.mark.skipif(
    not osp.isfile(osp.join(DAVAROCR_SRC, 'davarocr', 'mmcv', '__init__.py')),
    reason=f'no DavarOCR source at {DAVAROCR_SRC} (set DAVAROCR_SRC)')
DAVAROCR = ('davarocr.davar_common', 'davarocr.davar_rcg', 'davarocr.mmcv')


@needs_davarocr
@pytest.mark.parametrize('order', [
    (COMPAT, *DAVAROCR, 'davarocr_mmcv'),
    (COMPAT, 'davarocr_mmcv', *DAVAROCR),
], ids=['davarocr_mmcv-last', 'davarocr_mmcv-second'])
def test_davarocr_source_beside_ours_with_the_opt_in_line(order):
    """The order a DavarOCR config's custom_imports gives. Importing the
    opt-in module imports davarocr_mmcv first, so DavarOCR's registrations
    are the ones skipped."""
    result = probe(*order, path=DAVAROCR_SRC, timeout=600)
    assert_ours(result)
    [warning] = names_warnings(result)
    assert '(first: davarocr.mmcv.runner.hooks.davar_checkpoint.' \
        'DavarCheckpointHook, not registered)' in warning['message']


@needs_davarocr
def test_davarocr_source_imported_before_ours():
    """DavarOCR registered first (the opt-in module run on its own, before
    davarocr_mmcv exists): davarocr_mmcv replaces DavarOCR's classes."""
    compat = osp.join(ROOT, 'davarocr_mmcv', 'compat', 'davarocr.py')
    result = probe(compat, *DAVAROCR, 'davarocr_mmcv', path=DAVAROCR_SRC,
                   timeout=600)
    assert_ours(result)
    [warning] = names_warnings(result)
    assert '(first: davarocr.mmcv.runner.hooks.davar_checkpoint.' \
        'DavarCheckpointHook, replaced)' in warning['message']
