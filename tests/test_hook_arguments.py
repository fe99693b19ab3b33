"""Every argument of DavarCheckpointHook, DavarEvalHook and DavarDistEvalHook
is checked when the hook is built (issue 29): a property test draws right
and wrong values for each; the evaluation settings are checked against
``dataset.evaluate`` before the first epoch on a real runner; the runner
section is checked before anything is built."""
import inspect
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmcv.runner import EvalHook

from davarocr_mmcv import (DavarCheckpointHook, DavarDistEvalHook,
                           DavarEvalHook)
from davarocr_mmcv.apis.train import check_runner_config
from toy import ScriptedDataset, make_loader, make_runner, run

LOADER = make_loader(ScriptedDataset())
KNOWN_METRICS = ['accuracy', 'hmean', 'NED', 'loss', 'bbox_mAP']

# ------------------------------------------------- what each kind accepts
# (right values, [(wrong values, the error they raise)])
NOT_A_BOOL = st.one_of(st.text(), st.integers(), st.none(),
                       st.sampled_from(['yes', 'no', 'True', 'false']))
BOOL = (st.booleans(), [(NOT_A_BOOL, TypeError)])
NOT_AN_INT = st.one_of(st.text(), st.booleans(), st.floats(),
                       st.lists(st.integers(), max_size=2))
POSITIVE = (st.integers(1, 10 ** 6),
            [(st.one_of(NOT_AN_INT, st.none()), TypeError),
             (st.integers(-100, 0), ValueError)])
ANY_INT = (st.integers(-10 ** 6, 10 ** 6),
           [(st.one_of(NOT_AN_INT, st.none()), TypeError)])
NAMES = st.text(min_size=1, max_size=8)
NAMES_OR_LIST = (st.one_of(st.none(), NAMES, st.lists(NAMES, max_size=3)),
                 [(st.one_of(st.integers(), st.booleans(),
                             st.lists(st.integers(), min_size=1,
                                      max_size=2)), TypeError),
                  (st.just(['']), ValueError)])
PATHS = (st.one_of(st.none(), st.text(min_size=1, max_size=12)),
         [(st.one_of(st.integers(), st.booleans(), st.lists(st.text(),
                                                            max_size=1)),
           TypeError)])
DICTS = (st.one_of(st.none(), st.just(dict(backend='disk'))),
         [(st.one_of(st.text(), st.integers(), st.lists(st.text(),
                                                        max_size=1)),
           TypeError)])
NOT_A_STR = st.one_of(st.integers(), st.booleans(), st.floats(),
                      st.lists(st.text(), min_size=1, max_size=2))
TEMPLATE = st.from_regex(r'[a-z]{1,6}(/[a-z]{1,4})?_\{\}\.pth', fullmatch=True)
BAD_TEMPLATE = st.one_of(
    st.from_regex(r'[a-z]{1,6}\.pth', fullmatch=True),
    st.from_regex(r'[a-z]{1,4}_\{\}_\{\}\.pth', fullmatch=True),
    st.sampled_from(['../e{}.pth', '/tmp/e{}.pth', 'a/../../e{}.pth',
                     'e{0}.pth', 'e{x}{}.pth']))
FILE_NAME = st.from_regex(r'[A-Za-z_]{1,8}(/[a-z]{1,4})?\.pth',
                          fullmatch=True)
FRACTION = st.floats(0, 1)
OUTSIDE_01 = st.one_of(st.floats(max_value=-1e-9, allow_nan=False),
                       st.floats(min_value=1 + 1e-9, allow_nan=False),
                       st.just(float('nan')))
NOT_A_NUMBER = st.one_of(st.text(), st.booleans(), st.lists(st.floats(),
                                                            max_size=1))


def choice(values):
    return (st.sampled_from(values),
            [(st.text().filter(lambda v: v not in values), ValueError),
             (NOT_A_STR, TypeError)])


RULES = ['greater', 'less', 'lower']

CHECKPOINT = dict(
    interval=POSITIVE,
    iter_interval=POSITIVE,  # with by_iter=True (see CHECKPOINT_BASE)
    by_epoch=BOOL, by_iter=BOOL, save_optimizer=BOOL, save_last=BOOL,
    sync_buffer=BOOL, async_save=BOOL, publish=BOOL, create_symlink=BOOL,
    metric=(st.sampled_from(KNOWN_METRICS),
            [(NOT_A_STR, TypeError), (st.just(''), ValueError)]),
    rule=(st.sampled_from(RULES + [None]),
          [(st.text().filter(lambda v: v not in RULES), ValueError),
           (st.one_of(st.integers(), st.booleans()), TypeError)]),
    init_metric=(st.one_of(st.none(), st.floats(), st.integers()),
                 [(NOT_A_NUMBER, TypeError)]),
    out_dir=PATHS,
    save_mode=choice(['general', 'lightweight']),
    model_milestone=(st.floats(0, 1, exclude_max=True),
                     [(st.one_of(OUTSIDE_01, st.just(1.0)), ValueError),
                      (NOT_A_NUMBER, TypeError)]),
    max_keep_ckpts=ANY_INT,
    filename_tmpl=(st.one_of(st.none(), TEMPLATE),
                   [(BAD_TEMPLATE, ValueError), (NOT_A_STR, TypeError)]),
    iter_filename_tmpl=(TEMPLATE, [(BAD_TEMPLATE, ValueError),
                                   (NOT_A_STR, TypeError)]),
    best_filename=(FILE_NAME, [
        (st.sampled_from(['', '../Best.pth', '/tmp/Best.pth']), ValueError),
        (NOT_A_STR, TypeError)]),
    latest_filename=(FILE_NAME, [
        (st.sampled_from(['', '../latest.pth', '/x.pth']), ValueError),
        (NOT_A_STR, TypeError)]),
    on_save_error=choice(['raise', 'continue']),
    published_keys=(st.lists(NAMES, max_size=3).map(tuple),
                    [(st.one_of(st.text(), st.integers(),
                                st.lists(st.integers(), min_size=1,
                                         max_size=2)), TypeError)]),
    greater_keys=NAMES_OR_LIST, less_keys=NAMES_OR_LIST,
    file_client_args=DICTS, meta=DICTS,
)
# what the drawn argument needs from the others to mean what it says
CHECKPOINT_BASE = dict(
    iter_interval=dict(by_iter=True),
    metric=dict(save_mode='lightweight'),
    rule=dict(save_mode='lightweight', metric='accuracy'),
    init_metric=dict(save_mode='lightweight'),
    filename_tmpl=dict(by_epoch=True, by_iter=False),
    by_iter=dict(iter_interval=3),
    by_epoch=dict(iter_interval=3),
)

EVAL = dict(
    model_type=choice(['DETECTOR', 'RECOGNIZOR', 'SPOTTER']),
    start=(st.one_of(st.none(), st.integers(0, 100)),
           [(st.integers(-100, -1), ValueError), (NOT_AN_INT, TypeError)]),
    start_iter=(st.one_of(st.none(), FRACTION),
                [(OUTSIDE_01, ValueError), (NOT_A_NUMBER, TypeError)]),
    interval=POSITIVE,
    iter_interval=POSITIVE,  # with by_iter=True
    eval_mode=choice(['general', 'lightweight']),
    by_epoch=BOOL, by_iter=BOOL, eval_before_train=BOOL,
    save_best=(st.one_of(st.none(), st.just('auto'),
                         st.sampled_from(KNOWN_METRICS),
                         st.lists(st.sampled_from(KNOWN_METRICS),
                                  min_size=1, max_size=3, unique=True)),
               [(st.just(''), ValueError),
                (st.one_of(st.booleans(), st.integers(), st.floats(),
                           st.dictionaries(st.text(), st.text(),
                                           max_size=1)), TypeError)]),
    rule=(st.one_of(st.sampled_from(RULES + [None]),
                    st.lists(st.sampled_from(RULES), min_size=1,
                             max_size=1)),
          [(st.text().filter(lambda v: v not in RULES), ValueError),
           (st.lists(st.sampled_from(['bigger', 'smaller']), min_size=1,
                     max_size=2), ValueError),
           (st.one_of(st.integers(), st.booleans()), TypeError)]),
    test_fn=(st.one_of(st.none(), st.just(lambda model, loader: [])),
             [(st.one_of(st.text(), st.integers()), TypeError)]),
    greater_keys=NAMES_OR_LIST, less_keys=NAMES_OR_LIST,
    out_dir=PATHS, file_client_args=DICTS,
    metric=(st.one_of(st.none(), NAMES,
                      st.lists(NAMES, min_size=1, max_size=3)),
            [(st.one_of(st.integers(), st.booleans(),
                        st.lists(st.integers(), min_size=1, max_size=2)),
              TypeError)]),
)
EVAL_BASE = dict(
    iter_interval=dict(by_iter=True),
    start_iter=dict(by_iter=True, iter_interval=2),
    by_iter=dict(iter_interval=3),
    by_epoch=dict(iter_interval=3),
    rule=dict(save_best='accuracy'),
)
DIST = dict(broadcast_bn_buffer=BOOL, gpu_collect=BOOL, tmpdir=PATHS)

CASES = [(DavarCheckpointHook, arg, spec, CHECKPOINT_BASE.get(arg, {}))
         for arg, spec in CHECKPOINT.items()] + \
    [(cls, arg, spec, EVAL_BASE.get(arg, {}))
     for cls in (DavarEvalHook, DavarDistEvalHook)
     for arg, spec in EVAL.items()] + \
    [(DavarDistEvalHook, arg, spec, {}) for arg, spec in DIST.items()]


def build(cls, **kwargs):
    if cls is DavarCheckpointHook:
        return cls(**kwargs)
    return cls(LOADER, **kwargs)


PROPERTY = settings(max_examples=12, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize('cls,arg,spec,base', CASES,
                         ids=[f'{c.__name__}-{a}' for c, a, _, _ in CASES])
@PROPERTY
@given(data=st.data())
def test_every_argument_is_checked_at_construction(cls, arg, spec, base,
                                                   data):
    right, wrongs = spec
    value = data.draw(right, label='right')
    build(cls, **dict(base, **{arg: value}))  # builds
    index = data.draw(st.integers(0, len(wrongs) - 1), label='which wrong')
    wrong, error = wrongs[index]
    value = data.draw(wrong, label='wrong')
    with pytest.raises(error) as info:
        build(cls, **dict(base, **{arg: value}))
    # one type per kind of mistake; the message names hook and argument
    other = ValueError if error is TypeError else TypeError
    assert not isinstance(info.value, other), info.value
    text = str(info.value)
    assert arg in text and cls.__name__ in text, text


def test_every_argument_has_a_case():
    """The cases above cover every argument the hooks name, so a new
    argument needs a case (and a check)."""
    for cls, table in ((DavarCheckpointHook, CHECKPOINT),
                       (DavarEvalHook, EVAL),
                       (DavarDistEvalHook, dict(EVAL, **DIST))):
        names = {n for n in inspect.signature(cls.__init__).parameters
                 if n not in ('self', 'dataloader', 'kwargs',
                              'eval_kwargs')}
        if cls is DavarDistEvalHook:
            names |= set(EVAL)
        assert names - {'metric'} <= set(table), names - set(table)


# --------------------------------------------------- the issue's examples
@pytest.mark.parametrize('build_it,error,message', [
    (lambda: DavarCheckpointHook(by_epoch='yes'), TypeError,
     r"DavarCheckpointHook: by_epoch must be True or False \(a bool\), "
     r"got 'yes' \(str\)"),
    (lambda: DavarEvalHook(LOADER, interval='a'), TypeError,
     r"DavarEvalHook: interval must be a positive int, got 'a' \(str\)"),
    (lambda: DavarEvalHook(LOADER, metric=3), TypeError,
     r"DavarEvalHook: metric must be a str or a list of str or None, got 3 "
     r"\(int\)"),
    (lambda: DavarEvalHook(LOADER, save_best=5), TypeError,
     r'DavarEvalHook: save_best must be a metric name, a list of them, '
     r'"auto" or None, got 5 \(int\)'),
    (lambda: DavarEvalHook(LOADER, save_best='accuracy', rule='bigger'),
     ValueError, r"DavarEvalHook: rule must be one of \('greater', "
     r"'less'\), None, or \('lower',\) \(DavarOCR's spelling of less\), "
     r"got 'bigger'"),
    (lambda: DavarDistEvalHook(LOADER, gpu_collect='no'), TypeError,
     r"DavarDistEvalHook: gpu_collect must be True or False"),
    (lambda: DavarDistEvalHook(LOADER, by_iter=1), TypeError,
     r"DavarDistEvalHook: by_iter must be True or False"),
])
def test_the_issues_values(build_it, error, message):
    with pytest.raises(error, match=message):
        build_it()


def test_mmcv_error_types_still_catch():
    """Where mmcv 1.7.1 raises another type, the error is both: code
    written against mmcv's EvalHook keeps catching it; the text of the
    KeyError is the message, not a quoted repr."""
    with pytest.raises(AssertionError):
        DavarEvalHook(LOADER, save_best=True)
    with pytest.raises(AssertionError):
        EvalHook(LOADER, save_best=True)  # mmcv's own
    with pytest.raises(KeyError) as info:
        DavarEvalHook(LOADER, save_best='accuracy', rule='bigger')
    assert str(info.value).startswith('DavarEvalHook: rule must be')
    with pytest.raises(KeyError):
        EvalHook(LOADER, save_best='accuracy', rule='bigger')


# ----------------------------------------------- the evaluation settings
class Strict(ScriptedDataset):
    def evaluate(self, results, metric='accuracy', logger=None):
        return super().evaluate(results, logger)


def train_with(tmp_path, dataset, **eval_kwargs):
    runner = make_runner(tmp_path / 'work', max_epochs=2)
    loader = make_loader(dataset)
    runner.register_hook(DavarEvalHook(loader, **eval_kwargs))
    run(runner, loader)
    return runner, loader


@pytest.mark.parametrize('key,slip', [('save_bets', 'save_best'),
                                      ('intreval', 'interval'),
                                      ('by_epochs', 'by_epoch'),
                                      ('rules', 'rule')])
def test_a_slip_of_a_hook_argument_fails_before_the_first_epoch(
        tmp_path, key, slip):
    """ScriptedDataset.evaluate takes **kwargs: the slip would reach it
    unnoticed; it is refused before training, with a did-you-mean."""
    dataset = ScriptedDataset()
    with pytest.raises(TypeError, match=rf"DavarEvalHook: '{key}' \(did "
                       rf"you mean '{slip}'\?\) is not an argument of the "
                       r'hook; it would go to ScriptedDataset.evaluate'):
        train_with(tmp_path, dataset, save_best='accuracy', **{key: 1})
    assert dataset.calls == []


def test_other_settings_for_kwargs_are_warned_about_once(tmp_path):
    runner, loader = train_with(tmp_path, ScriptedDataset(),
                                eval_func_params=dict(IOU=0.5), nproc=2)
    log = open(os.path.join(runner.work_dir, 'run.log')).read()
    for key in ('eval_func_params', 'nproc'):
        assert log.count(f"DavarEvalHook: '{key}' goes to ScriptedDataset."
                         'evaluate through its **kwargs') == 1
    calls = loader.dataset.calls
    assert len(calls) == 2 and calls[0]['kwargs'] == dict(
        eval_func_params=dict(IOU=0.5), nproc=2)  # still passed on


def test_a_name_evaluate_does_not_take_fails_before_the_first_epoch(
        tmp_path):
    dataset = Strict()
    with pytest.raises(TypeError, match=r"'metrc' \(did you mean 'metric'"
                       r"\?\) passed to Strict.evaluate"):
        train_with(tmp_path, dataset, metrc='accuracy')
    assert dataset.calls == []
    runner, _ = train_with(tmp_path, Strict(), metric='accuracy')
    assert "goes to" not in open(os.path.join(runner.work_dir,
                                              'run.log')).read()


def test_a_distributed_only_argument_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"DavarEvalHook: 'gpu_collect' is "
                       r'an argument of the distributed eval hook'):
        train_with(tmp_path, ScriptedDataset(), gpu_collect=True)


# ------------------------------------------------------ the runner section
@pytest.mark.parametrize('runner,error,message', [
    (dict(type='EpochBasedRunner', max_epochs='x'), TypeError,
     r"runner.max_epochs must be a positive int, got 'x' \(str\)"),
    (dict(type='EpochBasedRunner', max_epochs=0), ValueError,
     r'runner.max_epochs must be a positive int, got 0'),
    (dict(type='IterBasedRunner', max_iters=2.5), TypeError,
     r'runner.max_iters must be a positive int'),
    (dict(type='EpochRunner', max_epochs=2), ValueError,
     r"runner.type must be a registered runner type, one of \[.*"
     r"'DavarEpochBasedRunner'.*\]; got 'EpochRunner' \(did you mean "
     r"'EpochBasedRunner'\?\)"),
    (dict(type=3, max_epochs=2), TypeError, r'runner.type must be the name'),
    (dict(type='EpochBasedRunner', max_iters=20), ValueError,
     r'runner.max_epochs: EpochBasedRunner is an epoch-based runner, give '
     r'runner.max_epochs \(a positive int\); got runner.max_iters'),
    (dict(type='DavarIterBasedRunner'), ValueError,
     r'runner.max_iters: DavarIterBasedRunner is an iteration-based runner'),
    (dict(type='EpochBasedRunner', max_epochs=2, max_iters=3), ValueError,
     r'give one of runner.max_epochs and runner.max_iters, not both'),
    (None, KeyError, r'the config has no runner section'),
])
def test_runner_section(runner, error, message):
    with pytest.raises(error, match=message):
        check_runner_config(runner)


@pytest.mark.parametrize('runner', [
    dict(type='EpochBasedRunner', max_epochs=3),
    dict(type='DavarEpochBasedRunner', max_epochs=1),
    dict(type='DistillRunner', max_epochs=1),
    dict(type='IterBasedRunner', max_iters=10),
    dict(type='DavarIterBasedRunner', max_iters=1),
])
def test_runner_sections_that_build(runner):
    assert check_runner_config(runner) == runner['type']

