"""DavarOCR's ``davarocr.mmcv`` and davarocr_mmcv in one process, in either
import order: no KeyError, DavarOCR's registry names build davarocr_mmcv's
classes, one warning says so. Every case runs in a fresh interpreter
(tests/coexist_probe.py), so the import order is the real one.

The fixture tests/fixtures/fake_davarocr_mmcv registers the same names as
DavarOCR's ``davarocr.mmcv``. The last tests use DavarOCR's real source
where it is present (``DAVAROCR_SRC``, default /tmp/davar_src).
"""
import importlib.util
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


# ----------------------------------------------------- the opt-in line
OPT_IN = r"""
import importlib.util, warnings
import numpy
import mmdet.models.builder
from mmcv.runner import HOOKS
from mmcv.utils import build_from_cfg
from mmdet.models.builder import LOSSES
before = dict(build=hasattr(mmdet.models.builder, 'build'),
              six=importlib.util.find_spec('torch._six') is not None,
              warpctc=importlib.util.find_spec('warpctc_pytorch') is not None,
              np_int=hasattr(numpy, 'int'))
assert not any(before.values()), before  # nothing changes without the line
import davarocr_mmcv.compat.davarocr

# 1. mmdet 2.11's build: one config, or a list into an nn.Sequential, from
# mmdet's registries and from a registry with no parent
from mmdet.models.builder import build
from mmcv.utils import Registry
from torch import nn
assert build(dict(type='L1Loss'), LOSSES, dict(loss_weight=2.)).loss_weight \
    == 2
seq = build([dict(type='L1Loss'), dict(type='SmoothL1Loss')], LOSSES)
assert type(seq).__name__ == 'Sequential' and len(seq) == 2
ALONE = Registry('recognizor', scope='fake')
ALONE.register_module(module=nn.Identity)
assert type(build(dict(type='Identity'), ALONE)) is nn.Identity
# 2. torch._six holds inf, and only inf
from torch._six import inf
assert inf == float('inf')
try:
    from torch._six import string_classes
except ImportError:
    pass
else:
    raise AssertionError('torch._six holds more than inf')
# 3. warpctc_pytorch imports, with a warning when its CTCLoss is built
# (its costs and gradients: tests/test_davarocr_optin.py)
import torch
import warpctc_pytorch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    warpctc_pytorch.CTCLoss(blank=0, size_average=True, length_average=True)
print('WARPCTC', caught[0].message)
# 4. a DavarOCR class takes a name mmdet holds, with a warning
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import davarocr.davar_det
loss = build_from_cfg(dict(type='DiceLoss'), LOSSES)
assert loss.davarocr_s, type(loss)
print('DICE', [str(w.message) for w in caught if 'DiceLoss' in str(w.message)])
# 5. numpy's removed aliases (all of them: tests/test_davarocr_optin.py)
assert numpy.int is int and numpy.float is float
# ... any other package still gets mmcv's KeyError
class DiceLoss:
    pass
try:
    LOSSES.register_module(module=DiceLoss)
except KeyError as e:
    print('KEYERROR', e)
"""


def test_opt_in_line_changes_exactly_what_it_documents():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, FAKE]))
    code, out = run_bounded([sys.executable, '-c', OPT_IN], env=env)
    assert code == 0, out
    lines = {line.split(' ', 1)[0]: line.split(' ', 1)[1]
             for line in out.splitlines()
             if line.split(' ', 1)[0] in ('WARPCTC', 'DICE', 'KEYERROR')}
    assert lines['WARPCTC'] == (
        "warpctc_pytorch is not installed: davarocr_mmcv's stand-in "
        "(davarocr_mmcv.compat.davarocr) computes WarpCTCLoss with torch's "
        "ctc_loss. Install warp-ctc's PyTorch bindings to use the original.")
    assert lines['DICE'] == str([
        "'DiceLoss' in mmdet's models registry builds DavarOCR's "
        "davarocr.davar_det.DiceLoss, not mmdet's "
        "mmdet.models.losses.dice_loss.DiceLoss "
        "(davarocr_mmcv.compat.davarocr): mmdet 2.11, which DavarOCR was "
        "written for, had no class of that name."])
    assert lines['KEYERROR'] == "'DiceLoss is already registered in models'"


# ------------------------------------------- DavarOCR's own source
DAVAROCR_SRC = os.environ.get('DAVAROCR_SRC', '/tmp/davar_src')


def davarocr_missing():
    """Why DavarOCR's real source cannot be imported here, or ''."""
    if not osp.isfile(osp.join(DAVAROCR_SRC, 'davarocr', 'mmcv',
                               '__init__.py')):
        return f'no DavarOCR source at {DAVAROCR_SRC} (set DAVAROCR_SRC)'
    # a few of DavarOCR's requirements that any `import davarocr` needs;
    # probe() skips on any other one missing
    missing = [name for name in ('lmdb', 'Levenshtein', 'Polygon', 'nltk',
                                 'transformers', 'seqeval', 'apted')
               if importlib.util.find_spec(name) is None]
    return (f"DavarOCR's requirements not installed: {', '.join(missing)}"
            if missing else '')


needs_davarocr = pytest.mark.skipif(bool(davarocr_missing()),
                                    reason=davarocr_missing() or '-')
DAVAROCR = ('davarocr.davar_common', 'davarocr.davar_rcg', 'davarocr.mmcv')


@needs_davarocr
@pytest.mark.parametrize('order', [
    (COMPAT, *DAVAROCR, 'davarocr_mmcv'),
    (COMPAT, 'davarocr_mmcv', *DAVAROCR),
], ids=['davarocr_mmcv-last', 'davarocr_mmcv-second'])
def test_davarocr_source_beside_ours_with_the_opt_in_line(order):
    """The orders a DavarOCR config's custom_imports may give. Importing
    the opt-in module imports davarocr_mmcv first, so DavarOCR's
    registrations are the ones skipped, in both."""
    result = probe(*order, path=DAVAROCR_SRC, timeout=600)
    assert_ours(result)
    [warning] = names_warnings(result)
    assert '(first: davarocr.mmcv.runner.hooks.davar_checkpoint.' \
        'DavarCheckpointHook, not registered)' in warning['message']

