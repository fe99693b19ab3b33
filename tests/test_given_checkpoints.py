"""Checkpoints given by the user (``resume_from``, ``load_from``,
``--auto-resume``'s pick, tools/test.py's CHECKPOINT) all go through
``core/accept.py``: a file that does not load, has no weights of the
model, or cannot be resumed from is refused with one line naming it; a
partial match and an unreadable ``hook_msgs`` are warned about; tools/test.py
scores only weights it loaded; no file of the work_dir changes.

A hypothesis property test damages a real checkpoint (written by a real
mmcv run of the toy model) byte by byte and entry by entry; plain tests
pin the messages, and run the tools end to end."""
import hashlib
import io
import logging
import os
import struct
import sys
import tempfile
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmcv import Config

from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.core.accept import (CheckpointLoadError, load_accepted,
                                       load_weights_into)
from davarocr_mmcv.core.resume import resume_or_load, resume_runner
from davarocr_mmcv.serialization import load_checkpoint_file
from procs import run_bounded, tool_env
from toy import (ScriptedDataset, ToyModel, make_loader, make_runner,
                 no_epoch_sleep, run)

RECOGNITION = 'demo/recognition/crnn_lightweight.py'
#: the toy model's weights
WEIGHTS = ('steps', 'linear.weight', 'linear.bias')
#: how each use names the file in its messages
USES = ('resume_from', 'load_from', 'auto-resume', 'checkpoint')
#: the documented warnings about an accepted checkpoint
WARNED = ('parameters', 'meta.hook_msgs is ', 'meta is ')


# ---------------------------------------------------------------- a run
@pytest.fixture(scope='module')
def real(tmp_path_factory):
    """The bytes and contents of epoch_1.pth and epoch_2.pth of a real
    3-epoch run of the toy model with the Davar hooks."""
    work = tmp_path_factory.mktemp('real') / 'work'
    with pytest.MonkeyPatch.context() as patch:
        no_epoch_sleep(patch.setattr)
        runner = make_runner(work, max_epochs=3, checkpoint_config=dict(
            type='DavarCheckpointHook'))
        loader = make_loader(ScriptedDataset(scores={2: 0.2, 4: 0.9}))
        runner.register_hook(DavarEvalHook(loader, save_best='accuracy'),
                             priority='LOW')
        run(runner, loader)
    raw = {n: (work / f'{n}.pth').read_bytes()
           for n in ('epoch_1', 'epoch_2')}
    ckpt = load_checkpoint_file(str(work / 'epoch_2.pth'))
    assert set(ckpt['state_dict']) == set(WEIGHTS)
    assert ckpt['meta']['hook_msgs']['best_score'] == 0.9
    return Real(raw, ckpt)


class Real(tuple):
    """(bytes by name, epoch_2.pth loaded), shown short in reports."""

    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def __repr__(self):
        return '<the real run>'



def tree_digest(folder):
    """{relative path: sha256 (or link target)} of everything in
    ``folder``."""
    out = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = 'link:' + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, 'rb') as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = 'dir'
    return out


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def attempt(use, path, work, runner_dir):
    """Give ``path`` (in ``work``) as ``use``, in process, as the tools
    do. Returns (error message or None, warnings, runner or model)."""
    runner = make_runner(runner_dir, max_epochs=4, checkpoint_config=dict(
        type='DavarCheckpointHook'))
    captured = Captured()
    runner.logger.addHandler(captured)
    try:
        if use == 'checkpoint':  # what tools/test.py does
            model = ToyModel()
            load_weights_into(model, load_accepted(
                path, use, model, runner.logger), f'{use}: {path}',
                runner.logger, complete=True)
            return None, captured.lines, model
        cfg = {'work_dir': str(work)}
        cfg.update({'auto-resume': dict(auto_resume=True)}.get(
            use, {use: path}))
        resume_or_load(runner, Config(cfg), runner.logger)
        return None, captured.lines, runner
    except CheckpointLoadError as exc:
        return str(exc), captured.lines, runner
    finally:
        runner.logger.removeHandler(captured)


# ------------------------------------------------------------ the oracle
def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and \
        value >= 0


def expected(ckpt, use):
    """What giving the checkpoint dict ``ckpt`` as ``use`` must do: 'error',
    or the set of warnings ('weights', 'hook_msgs', 'meta')."""
    weights = ckpt.get('state_dict', ckpt)
    if not isinstance(weights, dict):
        return 'error'
    weights = {k[len('module.'):] if k.startswith('module.') else k: v
               for k, v in weights.items()}
    model = ToyModel().state_dict()
    fit = [k for k in WEIGHTS if isinstance(weights.get(k), torch.Tensor)
           and (weights[k].shape == model[k].shape or (
               model[k].dim() == 0 and tuple(weights[k].shape) == (1, )))]
    if not fit:
        return 'error'
    warned = set()
    if len(fit) < len(WEIGHTS) or set(weights) - set(WEIGHTS):
        if use == 'checkpoint' and len(fit) < len(WEIGHTS):
            return 'error'
        warned.add('weights')
    meta = ckpt.get('meta')
    if use in ('resume_from', 'auto-resume'):
        if not isinstance(meta, dict) or not all(
                _count(meta.get(k)) for k in ('epoch', 'iter')):
            return 'error'
        position = meta.get('epoch_position')
        if position is not None and not (isinstance(position, dict) and
                                         _count(position.get(
                                             'batches_done'))):
            return 'error'
        if 'optimizer' in ckpt and not (
                isinstance(ckpt['optimizer'], dict) and
                'param_groups' in ckpt['optimizer']):
            return 'error'
        if not isinstance(meta.get('hook_msgs', {}), dict):
            warned.add('hook_msgs')
    elif meta is not None and not isinstance(meta, dict):
        warned.add('meta')
    return warned


# ------------------------------------------------------------- damages
ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                st.floats(allow_nan=True), st.text(max_size=5),
                st.lists(st.integers(0, 3), max_size=2),
                st.dictionaries(st.sampled_from(['a', 'batches_done']),
                                st.integers(-1, 2), max_size=2))


def _drop(key):
    return lambda c: {k: v for k, v in c.items() if k != key}


def _set(key, value):
    return lambda c: dict(c, **{key: value})


def _entry(key, change):
    """Change the dict ``key`` of a checkpoint; nothing if it is gone."""
    def apply(c):
        if not isinstance(c.get(key), dict):
            return c
        return dict(c, **{key: change(dict(c[key]))})
    return apply


def _weights(change):
    return _entry('state_dict', change)


def _meta(key, value):
    return _entry('meta', lambda m: dict(m, **{key: value}))


def _meta_drop(key):
    return _entry('meta', lambda m: {k: v for k, v in m.items()
                                     if k != key})


def _bare(c):
    weights = c.get('state_dict')
    return dict(weights) if isinstance(weights, dict) else c


def _prefix(text):
    return _weights(lambda w: {text + k: v for k, v in w.items()})


def _weight(key, value):
    return _weights(lambda w: dict(w, **{key: value}))


def _weight_drop(key):
    return _weights(lambda w: {k: v for k, v in w.items() if k != key})


CHANGES = st.one_of(
    st.sampled_from(['state_dict', 'meta', 'optimizer']).map(_drop),
    st.tuples(st.sampled_from(['state_dict', 'meta', 'optimizer']),
              ODD).map(lambda a: _set(*a)),
    st.just(_bare),
    st.sampled_from(['module.', 'backbone.', '']).map(_prefix),
    st.sampled_from(WEIGHTS).map(_weight_drop),
    st.tuples(st.sampled_from(WEIGHTS + ('head.extra', )), st.one_of(
        ODD, st.sampled_from([torch.zeros(3), torch.zeros(1, 2),
                              torch.zeros(()), torch.zeros(1)]))).map(
        lambda a: _weight(*a)),
    st.sampled_from(['epoch', 'iter', 'hook_msgs']).map(_meta_drop),
    st.tuples(st.sampled_from(['epoch', 'iter', 'hook_msgs',
                               'epoch_position']),
              ODD).map(lambda a: _meta(*a)),
)


def setup_work(real, base):
    """A work_dir holding the run's epoch_1.pth; the damaged file goes to
    its epoch_2.pth, which --auto-resume tries first."""
    raw, _ = real
    work = os.path.join(base, 'work')
    os.makedirs(work)
    with open(os.path.join(work, 'epoch_1.pth'), 'wb') as f:
        f.write(raw['epoch_1'])
    return work, os.path.join(work, 'epoch_2.pth')


#: the expectation of a damage that either is detected or left the
#: content as it was (a byte no check covers: zip padding, header fields)
INTACT_OR_ERROR = 'intact or error'


def model_of(use, result):
    return result if use == 'checkpoint' else result.model


def check_outcome(use, path, error, warned, result, expect, original):
    """The invariants of every outcome, and ``expect``: 'error', the set of
    warnings (from :func:`expected`), or :data:`INTACT_OR_ERROR`."""
    if error is not None:
        assert use != 'auto-resume', error
        assert len(error.splitlines()) == 1 and path in error, error
        assert error.startswith(f'{use}: ') or ' from ' in error, error
        assert expect in ('error', INTACT_OR_ERROR), (error, expect)
        return
    if use == 'auto-resume' and any('skipped' in w for w in warned):
        # skipped, named; epoch_1.pth, the run's, is resumed from
        assert expect in ('error', INTACT_OR_ERROR), (warned, expect)
        assert len(warned) == 1 and warned[0].startswith(
            f'auto-resume: {path}') and warned[0].endswith(
            'skipped, trying an older checkpoint'), warned
        assert (result.epoch, result.iter) == (1, 2)
        assert int(result.model.steps) == 2
        return
    assert expect != 'error', (use, warned)
    for line in warned:
        assert line.startswith(f'{use}: {path}: ') and any(
            w in line for w in WARNED), line
    if use in ('resume_from', 'auto-resume'):
        assert isinstance(result.meta['hook_msgs'], dict)
        assert _count(result.epoch) and _count(result.iter)
    model = model_of(use, result)
    if expect == INTACT_OR_ERROR:  # the run's epoch_2.pth, unchanged
        assert warned == []
        for key, value in model.state_dict().items():
            assert torch.equal(value, original['state_dict'][key]), key
        if use in ('resume_from', 'auto-resume'):
            assert (result.epoch, result.iter) == (2, 4)
        return
    kinds = {'weights' if 'parameters' in w else
             'hook_msgs' if 'hook_msgs' in w else 'meta' for w in warned}
    assert kinds == expect, (warned, expect)
    if use == 'checkpoint':  # scores only weights it loaded
        ckpt = load_checkpoint_file(path)
        weights = ckpt.get('state_dict', ckpt)
        weights = {k[len('module.'):] if k.startswith('module.') else k: v
                   for k, v in weights.items()}
        for key, value in model.state_dict().items():
            assert torch.equal(value, weights[key].reshape(value.shape))


def give(real, use, damage, expect_of):
    """Damage epoch_2.pth of a work_dir with ``damage`` and give it as
    ``use``: nothing in the work_dir changes, and the outcome is what
    ``expect_of(what damage returned, use)`` says."""
    with tempfile.TemporaryDirectory() as base:
        work, path = setup_work(real, base)
        written = damage(path)
        before = tree_digest(work)
        error, warned, result = attempt(use, path, work,
                                        os.path.join(base, 'runner'))
        assert tree_digest(work) == before  # nothing changed, nothing added
        check_outcome(use, path, error, warned, result,
                      expect_of(written, use), real[1])


PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(use=st.sampled_from(USES), cut=st.floats(0, 1, exclude_max=True))
def test_a_truncated_checkpoint_is_refused_by_name(real, use, cut):
    raw = real[0]['epoch_2']

    def damage(path):
        with open(path, 'wb') as f:
            f.write(raw[:int(cut * len(raw))])
    give(real, use, damage, lambda _, use: 'error')


@PROPERTY
@given(use=st.sampled_from(USES), flips=st.lists(st.tuples(
    st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    min_size=1, max_size=4))
def test_flipped_bytes_are_refused_by_name_or_load(real, use, flips):
    """A flip that torch or the CRC-32 of a record catches is refused
    naming the file; one in a byte nothing covers (zip padding, header
    fields) leaves the content as it was, and it loads as the original."""
    raw = bytearray(real[0]['epoch_2'])
    for where, mask in flips:
        raw[int(where * len(raw))] ^= mask

    def damage(path):
        with open(path, 'wb') as f:
            f.write(bytes(raw))
    give(real, use, damage, lambda *_: INTACT_OR_ERROR)


@PROPERTY
@given(use=st.sampled_from(USES),
       changes=st.lists(CHANGES, min_size=1, max_size=3))
def test_damaged_entries_are_refused_or_warned_as_documented(real, use,
                                                             changes):
    ckpt = real[1]
    for change in changes:
        ckpt = change(ckpt)

    def damage(path):
        torch.save(ckpt, path)
        return ckpt
    give(real, use, damage, expected)


# ------------------------------------------------------- the messages
def saved(real, tmp_path, change, name='given.pth'):
    path = tmp_path / name
    torch.save(change(real[1]), path)
    return str(path)


@pytest.mark.parametrize('use', USES)
def test_no_state_dict_is_refused_naming_its_keys(real, tmp_path, use):
    work = tmp_path / 'work'
    work.mkdir()
    path = saved(real, work, _drop('state_dict'), 'epoch_2.pth')
    error, warned, result = attempt(use, path, str(work), tmp_path / 'run')
    if use == 'auto-resume':  # skipped, named; nothing else to resume
        assert error is None and result.epoch == 0
        assert any(w.startswith(f'auto-resume: {path} has no state_dict')
                   for w in warned), warned
        return
    assert error == (
        f'{use}: {path} has no state_dict, and none of its top-level keys '
        f'(meta, optimizer) is a parameter of the model; check that the '
        f'config is the one the checkpoint was trained with')


def test_a_state_dict_for_another_model_is_refused(real, tmp_path):
    path = saved(real, tmp_path, _prefix('backbone.'))
    error, _, runner = attempt('load_from', path, str(tmp_path),
                               tmp_path / 'run')
    assert error.startswith(f"load_from: {path} loads none of the model's "
                            f'3 parameters (top-level keys: meta, '
                            f'optimizer, state_dict; state_dict: '
                            f'backbone.steps, backbone.linear.weight, ')
    assert "the model's: steps, linear.weight, linear.bias)" in error


def test_a_partial_match_is_reported_with_counts(real, tmp_path):
    path = saved(real, tmp_path, lambda c: _weight(
        'head.extra', torch.zeros(2))(_weight_drop('linear.bias')(c)))
    error, warned, runner = attempt('resume_from', path, str(tmp_path),
                                    tmp_path / 'run')
    assert error is None and runner.epoch == 2
    assert warned == [f'resume_from: {path}: loaded 2 of 3 parameters; '
                      f'missing: linear.bias; unexpected: head.extra']
    assert int(runner.model.steps) == 4
    # tools/test.py would score a random linear.bias: refused
    error, _, _ = attempt('checkpoint', path, str(tmp_path),
                          tmp_path / 'run')
    assert error == (f'checkpoint: {path}: loaded 2 of 3 parameters; '
                     f'missing: linear.bias; unexpected: head.extra; '
                     f'refused: the model would be scored with weights the '
                     f'checkpoint does not give')


def test_a_weight_of_another_shape_is_not_loaded(real, tmp_path):
    path = saved(real, tmp_path, _weight('linear.weight', torch.ones(3)))
    error, warned, runner = attempt('load_from', path, str(tmp_path),
                                    tmp_path / 'run')
    assert error is None
    assert warned == [f'load_from: {path}: loaded 2 of 3 parameters; not '
                      f'fitting: linear.weight (shape [3], model [1, 2])']
    assert not torch.equal(runner.model.linear.weight, torch.ones(1, 2))


@pytest.mark.parametrize('use', ['load_from', 'checkpoint'])
def test_a_bare_state_dict_is_accepted(real, tmp_path, use):
    path = saved(real, tmp_path, lambda c: {
        'module.' + k: v for k, v in c['state_dict'].items()})
    error, warned, result = attempt(use, path, str(tmp_path),
                                    tmp_path / 'run')
    assert error is None and warned == []
    model = result if use == 'checkpoint' else result.model
    assert int(model.steps) == 4
    assert torch.equal(model.linear.weight,
                       real[1]['state_dict']['linear.weight'])


def test_hook_msgs_not_a_dict_is_ignored_with_a_warning(real, tmp_path):
    path = saved(real, tmp_path, _meta('hook_msgs', 'best=0.9'))
    error, warned, runner = attempt('resume_from', path, str(tmp_path),
                                    tmp_path / 'run')
    assert error is None and runner.epoch == 2 and runner.iter == 4
    assert warned == [f"resume_from: {path}: meta.hook_msgs is 'best=0.9' "
                      f'(a str), not a dict: ignored (the best, the kept '
                      f'checkpoints and the evaluation history start empty)']
    assert runner.meta['hook_msgs'] == {}


def test_a_changed_byte_of_a_weight_is_refused_by_its_crc(real, tmp_path):
    """torch reads a changed byte of a tensor's data as a changed weight;
    the record's CRC-32 catches it."""
    raw = bytearray(real[0]['epoch_2'])
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        record = next(i for i in archive.infolist()
                      if i.filename.endswith('/data/1'))
    start = record.header_offset
    name_len, extra_len = struct.unpack('<HH', raw[start + 26:start + 30])
    raw[start + 30 + name_len + extra_len] ^= 0x40
    path = tmp_path / 'epoch_2.pth'
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # torch takes it
    error, _, _ = attempt('checkpoint', str(path), str(tmp_path),
                          tmp_path / 'run')
    assert error == (f'checkpoint: {path} does not load (its record '
                     f'{record.filename} fails its CRC-32 check: bytes of '
                     f'the file changed); the file was left as it is')


class RenamingHead(torch.nn.Module):
    """Renames an old checkpoint's ``old_cls`` to ``conv_cls`` while
    loading, as mmdet's AnchorFreeHead does for FCOS checkpoints."""

    def __init__(self):
        super().__init__()
        self.conv_cls = torch.nn.Linear(2, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        for key in [k for k in state_dict if k.startswith(prefix + 'old_')]:
            state_dict[key.replace('old_', 'conv_')] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)


def test_keys_a_module_renames_while_loading_count_as_loaded(tmp_path):
    old = {'0.weight': torch.ones(2, 2), '0.bias': torch.ones(2),
           '1.old_cls.weight': torch.full((1, 2), 3.),
           '1.old_cls.bias': torch.full((1, ), 3.)}
    torch.save(dict(state_dict=old), tmp_path / 'old.pth')
    path = str(tmp_path / 'old.pth')
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), RenamingHead())
    match = load_weights_into(fresh, load_accepted(path, 'checkpoint', fresh),
                              f'checkpoint: {path}', complete=True)
    assert (match.loaded, match.total, match.missing, match.unexpected) == \
        (4, 4, (), ())
    assert torch.equal(fresh[1].conv_cls.weight, torch.full((1, 2), 3.))


def test_resume_runner_goes_through_the_same_check(real, tmp_path):
    path = saved(real, tmp_path, _meta('epoch', '2'))
    runner = make_runner(tmp_path / 'run', max_epochs=4)
    with pytest.raises(CheckpointLoadError, match=(
            f"resume_from: {path}: meta.epoch is '2' \\(a str\\), not a "
            f'count of epochs')):
        resume_runner(runner, path)


# ---------------------------------------------------------- the tools
def cut_short(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def tool(args):
    return run_bounded(args, tool_env(), 300)


@pytest.fixture(scope='module')
def given_files(tmp_path_factory):
    """A work_dir with an earlier run's files, and two damaged
    checkpoints of the recognition demo's model in it."""
    work = tmp_path_factory.mktemp('tools') / 'work'
    work.mkdir()
    (work / '20261201_000000.log').write_text('an earlier run\n')
    torch.save(dict(meta=dict(epoch=1, iter=5, hook_msgs={}),
                    optimizer=dict(state={}, param_groups=[])),
               work / 'no_state_dict.pth')
    torch.save(dict(state_dict={f'w{i}': torch.zeros(64) for i in range(64)},
                    meta=dict(epoch=1, iter=5)), work / 'cut_short.pth')
    cut_short(work / 'cut_short.pth')
    return work


EXPECTED = {'no_state_dict': 'has no state_dict, and none of its top-level '
                             'keys (meta, optimizer) is a parameter',
            'cut_short': 'does not load ('}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_test_py_refuses_a_damaged_checkpoint(given_files, name):
    path = str(given_files / f'{name}.pth')
    before = tree_digest(given_files)
    code, out = tool([sys.executable, 'tools/test.py', RECOGNITION, path,
                      '--eval', 'accuracy'])
    assert code == 1, out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f'error: checkpoint: {path}') and \
        EXPECTED[name] in last, out[-3000:]
    assert 'Traceback' not in out and '"accuracy"' not in out
    assert tree_digest(given_files) == before


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_train_py_resume_from_a_damaged_checkpoint(given_files, name):
    path = str(given_files / f'{name}.pth')
    before = tree_digest(given_files)
    code, out = tool([sys.executable, 'tools/train.py', RECOGNITION,
                      '--work-dir', str(given_files), '--resume-from',
                      path])
    assert code == 1, out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f'error: resume_from: {path}') and \
        EXPECTED[name] in last, out[-3000:]
    assert 'Traceback' not in out
    after = tree_digest(given_files)
    # the files there are as they were; the failed start adds only its
    # log (the config's copy is written once the checkpoint is accepted)
    assert {k: v for k, v in after.items() if k in before} == before
    added = set(after) - set(before)
    assert all(n.endswith('.log') for n in added), added
    for new in added:  # for the next test
        os.remove(given_files / new)
