"""Hostile inputs: every bad hook argument and every bad evaluation result
gets a clear error (or a documented safe behaviour), and nothing on disk is
lost. Prints the table of inputs and what each one gives."""
import math
import os

import pytest

from davarocr_mmcv import (DavarCheckpointHook, DavarDistEvalHook,
                           DavarEvalHook)
from toy import ScriptedDataset, load, make_loader, make_runner, run

LOADER = make_loader(ScriptedDataset())
CASES = [
    # (input, build, exception, message pattern)
    ("save_mode='fast'", lambda: DavarCheckpointHook(save_mode='fast'),
     ValueError, r"save_mode must be one of \('general', 'lightweight'\)"),
    ("rule='bigger'", lambda: DavarCheckpointHook(save_mode='lightweight',
                                                  rule='bigger'),
     ValueError, r"rule must be one of \('greater', 'less'\), None, or "
     r"\('lower',\)"),
    ("metric='wibble', no rule", lambda: DavarCheckpointHook(
        save_mode='lightweight', metric='wibble'), ValueError,
     r"cannot infer .* set rule= to one of"),
    ("filename_tmpl='epoch.pth'", lambda: DavarCheckpointHook(
        filename_tmpl='epoch.pth'), ValueError, r'exactly one "\{\}"'),
    ("filename_tmpl='../../x{}.pth'", lambda: DavarCheckpointHook(
        filename_tmpl='../../x{}.pth'), ValueError,
     r'must stay inside out_dir'),
    ("filename_tmpl='/etc/x{}.pth'", lambda: DavarCheckpointHook(
        filename_tmpl='/etc/x{}.pth'), ValueError,
     r'must stay inside out_dir'),
    ("best_filename='../Best.pth'", lambda: DavarCheckpointHook(
        best_filename='../Best.pth'), ValueError,
     r'best_filename must stay inside out_dir'),
    ('model_milestone=1.0', lambda: DavarCheckpointHook(model_milestone=1.0),
     ValueError, r'model_milestone must be a fraction .* \[0, 1\)'),
    ("model_milestone='half'", lambda: DavarCheckpointHook(
        model_milestone='half'), TypeError, r'model_milestone'),
    ('interval=0', lambda: DavarCheckpointHook(interval=0), ValueError,
     r'interval must be a positive int'),
    ('by_iter=True, iter_interval=-1', lambda: DavarCheckpointHook(
        by_iter=True), ValueError, r'iter_interval must be a positive int'),
    ('max_keep_ckpts=2.5', lambda: DavarCheckpointHook(max_keep_ckpts=2.5),
     TypeError, r'max_keep_ckpts must be an int'),
    ("init_metric='0'", lambda: DavarCheckpointHook(init_metric='0'),
     TypeError, r'init_metric must be a number'),
    ("by_epoch='yes'", lambda: DavarCheckpointHook(by_epoch='yes'),
     TypeError, r"by_epoch must be True or False \(a bool\), got 'yes'"),
    ("published_keys='meta'", lambda: DavarCheckpointHook(
        published_keys='meta'), TypeError,
     r'published_keys must be a list or tuple of str'),
    ("on_save_error='ignore'", lambda: DavarCheckpointHook(
        on_save_error='ignore'), ValueError,
     r"on_save_error must be one of \('raise', 'continue'\)"),
    ("eval: model_type='OCR'", lambda: DavarEvalHook(LOADER,
                                                      model_type='OCR'),
     ValueError, r"model_type must be one of \('DETECTOR', 'RECOGNIZOR', "
     r"'SPOTTER'\)"),
    ("eval: eval_mode='fast'", lambda: DavarEvalHook(LOADER,
                                                      eval_mode='fast'),
     ValueError, r"eval_mode must be one of"),
    ("eval: interval=0", lambda: DavarEvalHook(LOADER, interval=0),
     ValueError, r'interval must be a positive int'),
    ("eval: interval='a'", lambda: DavarEvalHook(LOADER, interval='a'),
     TypeError, r"DavarEvalHook: interval must be a positive int, got 'a'"),
    ("eval: metric=3", lambda: DavarEvalHook(LOADER, metric=3), TypeError,
     r'DavarEvalHook: metric must be a str or a list of str'),
    ("eval: save_best=5", lambda: DavarEvalHook(LOADER, save_best=5),
     TypeError, r'save_best must be a metric name, a list of them'),
    ("eval: rule='bigger'", lambda: DavarEvalHook(
        LOADER, save_best='accuracy', rule='bigger'), ValueError,
     r"rule must be one of \('greater', 'less'\)"),
    ("dist eval: tmpdir=1", lambda: DavarDistEvalHook(LOADER, tmpdir=1),
     TypeError, r'DavarDistEvalHook: tmpdir must be a path'),
    ("eval: start_iter=2", lambda: DavarEvalHook(
        LOADER, by_iter=True, iter_interval=1, start_iter=2), ValueError,
     r'start_iter must be a fraction'),
]


def test_bad_arguments_table():
    rows = []
    for text, build, exc, pattern in CASES:
        with pytest.raises(exc, match=pattern) as info:
            build()
        # one type per kind of mistake (issue 29)
        assert not isinstance(info.value, ValueError if exc is TypeError
                              else TypeError)
        rows.append(f'| `{text}` | {exc.__name__}: {info.value} |')
    print('\n| input | error |\n|---|---|\n' + '\n'.join(rows))


def train(work, scores=None, dataset=None, metric='accuracy'):
    runner = make_runner(work, max_epochs=3, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight', metric=metric))
    loader = make_loader(dataset or ScriptedDataset(scores=scores or {}))
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
    run(runner, loader)
    return runner


class Returns(ScriptedDataset):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def evaluate(self, results, logger=None, **kwargs):
        return dict(accuracy=self.value)


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_non_finite_metric_is_never_best(tmp_path, value):
    runner = train(tmp_path / 'w', {2: 0.3, 4: value, 6: 0.1})
    assert runner.meta['hook_msgs']['best_score'] == 0.3
    assert int(load(tmp_path / 'w' / 'Best_checkpoint.pth')
               ['state_dict']['steps']) == 2
    assert 'a non-finite score is never best' in (
        tmp_path / 'w' / 'run.log').read_text()


@pytest.mark.parametrize('value', ['0.9', None, [0.9], True])
def test_non_numeric_metric_fails_at_first_evaluation(tmp_path, value):
    with pytest.raises(TypeError, match=r"metric 'accuracy' must be a real "
                       r"number"):
        train(tmp_path / 'w', dataset=Returns(value))
    assert not [n for n in os.listdir(tmp_path / 'w') if n.endswith('.pth')]


def test_missing_metric_fails_and_lists_available(tmp_path):
    with pytest.raises(KeyError, match=r"'hmean' is not among the "
                       r"evaluation results; available metrics: "
                       r"\['accuracy'\]"):
        train(tmp_path / 'w', metric='hmean')
