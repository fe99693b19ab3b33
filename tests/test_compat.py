"""Upward compatibility: DavarCheckpointHook with the eval hooks of mmcv,
mmdet and their subclasses, at every priority, in both runners; the best
file holds the parameters that were scored (recorded by a spy at the
evaluation itself); mmcv's EvalHook contract; the names users write."""
import json
import os
import subprocess
import sys

import mmdet.core
import numpy as np
import pytest
import torch
from mmcv.parallel import is_module_wrapper
from mmcv.runner import HOOKS, EvalHook
from mmcv.utils import build_from_cfg

from davarocr_mmcv import DavarCheckpointHook, DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from toy import ScriptedDataset, load, make_loader, make_runner, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the score of the weights after s training steps: best is s == 8
SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}
LIGHT = dict(type='DavarCheckpointHook', save_mode='lightweight',
             metric='accuracy')


def spying(cls):
    """``cls`` with an ``evaluate`` that records the model's parameters at
    the evaluation, by the step count the results report."""
    class Spy(cls):
        def evaluate(self, runner, results):
            model = runner.model.module if is_module_wrapper(runner.model) \
                else runner.model
            self.__dict__.setdefault('seen', {})[int(results[0])] = {
                k: v.detach().clone() for k, v in model.state_dict().items()}
            return super().evaluate(runner, results)
    Spy.__name__ = f'Spy{cls.__name__}'
    return Spy


EVAL_CLASSES = {
    'davar': lambda loader, **kw: spying(DavarEvalHook)(
        loader, eval_mode='lightweight', **kw),
    'mmcv': lambda loader, **kw: spying(EvalHook)(loader, **kw),
    'mmdet': lambda loader, **kw: spying(mmdet.core.EvalHook)(loader, **kw),
}


def runner_with(tmp_path, kind, checkpoint_config, log_interval=1,
                **kwargs):
    length = dict(max_epochs=6) if kind == 'epoch' else dict(max_iters=12)
    runner = make_runner(tmp_path / 'work', kind=kind,
                         checkpoint_config=checkpoint_config,
                         **length, **kwargs)
    if log_interval != 1:
        for hook in runner.hooks:
            if hasattr(hook, 'reset_flag'):
                hook.interval = log_interval
    return runner


def schedule(kind):
    """Checkpoint and evaluation every 2 steps by iteration, every epoch
    (2 steps) by epoch."""
    if kind == 'epoch':
        return dict(interval=1), dict(interval=1, by_epoch=True)
    return (dict(by_epoch=False, by_iter=True, iter_interval=2),
            dict(interval=2, by_epoch=False))


def same_tensors(state, expected):
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
@pytest.mark.parametrize('priority', ['HIGH', 'NORMAL', 'LOW'])
@pytest.mark.parametrize('source', sorted(EVAL_CLASSES))
def test_lightweight_best_holds_the_scored_weights(tmp_path, kind, priority,
                                                   source):
    ckpt, ev = schedule(kind)
    # mmcv's hooks by iteration flush the logger before evaluating; at HIGH
    # that record lacks its times and mmcv's TextLoggerHook fails on
    # 'data_time' at a logging boundary: log where no evaluation happens.
    runner = runner_with(tmp_path, kind, dict(LIGHT, **ckpt),
                         log_interval=7 if source != 'davar' else 1)
    loader = make_loader(ScriptedDataset(scores=SCORES))
    hook = EVAL_CLASSES[source](loader, **ev)
    runner.register_hook(hook, priority=priority)
    run(runner, loader)

    work = runner.work_dir
    assert sorted(hook.seen) == [2, 4, 6, 8, 10, 12]
    best = load(os.path.join(work, 'Best_checkpoint.pth'))
    same_tensors(best['state_dict'], hook.seen[8])
    assert 'optimizer' not in best
    msgs = best['meta']['hook_msgs']
    assert msgs['best_score'] == 0.9 and type(msgs['best_score']) is float
    assert msgs['best_step'] == (4 if kind == 'epoch' else 8)
    latest = load(os.path.join(work, 'latest_model.pth'))
    assert latest['meta']['iter'] == 12
    assert latest['meta']['hook_msgs']['best_score'] == 0.9
    model = runner.model
    same_tensors(latest['state_dict'], model.state_dict())
    # mmcv's and mmdet's find_latest_checkpoint find it through latest.pth
    from mmdet.utils import find_latest_checkpoint
    found = find_latest_checkpoint(work)
    assert os.path.realpath(found) == os.path.join(work, 'latest_model.pth')


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
@pytest.mark.parametrize('priority', ['HIGH', 'LOW'])
def test_general_mode_best_file_holds_scored_weights(tmp_path, kind,
                                                     priority):
    ckpt, ev = schedule(kind)
    runner = runner_with(tmp_path, kind, dict(type='DavarCheckpointHook',
                                              **ckpt))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    hook = spying(DavarEvalHook)(loader, save_best='accuracy', **ev)
    runner.register_hook(hook, priority=priority)
    run(runner, loader)
    unit, step = ('epoch', 4) if kind == 'epoch' else ('iter', 8)
    best = load(os.path.join(runner.work_dir,
                             f'best_accuracy_{unit}_{step}.pth'))
    same_tensors(best['state_dict'], hook.seen[8])


@pytest.mark.parametrize('priority', ['HIGH', 'LOW'])
def test_general_mode_checkpoint_records_the_best_of_its_step(tmp_path,
                                                              priority):
    """mmdet's EvalHook keeps its own best; each epoch_N.pth written by
    DavarCheckpointHook records the best decided at epoch N."""
    runner = runner_with(tmp_path, 'epoch',
                         dict(type='DavarCheckpointHook', interval=1))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(mmdet.core.EvalHook(loader, save_best='accuracy'),
                         priority=priority)
    run(runner, loader)
    bests = [load(os.path.join(runner.work_dir, f'epoch_{e}.pth'))
             ['meta']['hook_msgs']['best_score'] for e in range(1, 7)]
    assert bests == [0.2, 0.7, 0.7, 0.9, 0.9, 0.9]
    assert 'best_accuracy_epoch_4.pth' in os.listdir(runner.work_dir)


def test_evaluation_without_metrics_goes_on(tmp_path):
    """mmdet returns {} when a detector predicts nothing: warned, no best
    decision, the latest saved as usual."""
    runner = runner_with(tmp_path, 'epoch', dict(LIGHT, metric='bbox_mAP'))

    class NothingDetected(ScriptedDataset):
        def evaluate(self, results, logger=None, **kwargs):
            return {} if int(results[0]) < 8 else {'bbox_mAP': 0.3}
    loader = make_loader(NothingDetected())
    runner.register_hook(mmdet.core.EvalHook(loader), priority='LOW')
    run(runner, loader)
    log = open(os.path.join(runner.work_dir, 'run.log')).read()
    assert 'returned no metrics' in log
    latest = load(os.path.join(runner.work_dir, 'latest_model.pth'))
    assert latest['meta']['epoch'] == 6
    assert latest['meta']['hook_msgs']['best_score'] == 0.3
    assert latest['meta']['hook_msgs']['best_step'] == 4


def test_missing_metric_among_others_fails_fast(tmp_path):
    runner = runner_with(tmp_path, 'epoch', dict(LIGHT, metric='hmean'))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(EvalHook(loader), priority='LOW')
    with pytest.raises(KeyError, match=r"'hmean' is not among the evaluation"
                       r" results; available metrics: \['accuracy'\]"):
        run(runner, loader)
    assert runner.epoch == 0


def test_mmdet_train_detector_keeps_the_best(tmp_path):
    """mmdet's own train_detector: its EvalHook (LOW) feeds a lightweight
    DavarCheckpointHook from the config; checkpoint_config.meta is kept."""
    from mmcv import Config
    from mmdet.apis import train_detector
    from mmdet.datasets import DATASETS

    @DATASETS.register_module(name='CompatScriptedDataset', force=True)
    class CompatScriptedDataset(ScriptedDataset):
        def __init__(self, test_mode=False, **kwargs):
            super().__init__(scores=SCORES, **kwargs)
            self.flag = np.zeros(self.size, dtype=np.uint8)

    cfg = Config(dict(
        work_dir=str(tmp_path / 'work'), gpu_ids=[0], device='cpu', seed=0,
        log_level='INFO',
        data=dict(samples_per_gpu=2, workers_per_gpu=0,
                  val=dict(type='CompatScriptedDataset'),
                  test=dict(type='CompatScriptedDataset')),
        optimizer=dict(type='SGD', lr=0.01), optimizer_config=dict(),
        lr_config=dict(policy='fixed'),
        runner=dict(type='EpochBasedRunner', max_epochs=6),
        checkpoint_config=dict(LIGHT, interval=1, meta=dict(
            mmdet_version=mmdet.__version__, CLASSES=('text', ))),
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]),
        evaluation=dict(interval=1, metric='accuracy'),
        workflow=[('train', 1)], resume_from=None, load_from=None))
    from toy import ToyModel
    model = ToyModel()
    train_detector(model, [CompatScriptedDataset()], cfg, validate=True,
                   meta=dict(exp_name='compat'))
    work = cfg.work_dir
    best = load(os.path.join(work, 'Best_checkpoint.pth'))
    assert int(best['state_dict']['steps']) == 8
    assert best['meta']['hook_msgs']['best_score'] == 0.9
    for name in ('Best_checkpoint.pth', 'latest_model.pth'):
        meta = load(os.path.join(work, name))['meta']
        assert meta['mmdet_version'] == mmdet.__version__
        assert meta['CLASSES'] == ('text', )
        assert meta['exp_name'] == 'compat'


# ----------------------------------------------------- mmcv's contract
def test_subclass_evaluate_and_do_evaluate_are_called(tmp_path):
    calls = []

    class Mine(DavarEvalHook):
        def _do_evaluate(self, runner):
            calls.append(('do', runner.epoch))
            super()._do_evaluate(runner)

        def evaluate(self, runner, results):
            calls.append(('evaluate', int(results[0])))
            return super().evaluate(runner, results)

        def _should_evaluate(self, runner):
            return runner.epoch + 1 in (2, 5)

    runner = runner_with(tmp_path, 'epoch', dict(LIGHT, interval=1))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    runner.register_hook(Mine(loader, eval_mode='lightweight'))
    run(runner, loader)
    assert calls == [('do', 1), ('evaluate', 4), ('do', 4),
                     ('evaluate', 10)]
    assert runner.meta['hook_msgs']['best_score'] == 0.7


def test_replaced_evaluate_is_used_and_ranks(tmp_path):
    """A test that replaces ``evaluate`` on the instance (mmcv's tests do)
    and returns the key score without writing the log buffer. mmcv's hook
    keeps its own best under hook_msgs' plain keys; the lightweight best
    goes under keys of its own, so neither replaces nor deletes the other's
    file."""
    runner = runner_with(tmp_path, 'epoch', dict(LIGHT, interval=1))
    loader = make_loader(ScriptedDataset())
    hook = EvalHook(loader, save_best='accuracy')
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.0])
    hook.evaluate = lambda runner, results: next(scores)
    runner.register_hook(hook)
    run(runner, loader)
    msgs = runner.meta['hook_msgs']
    assert (msgs['best_score_accuracy'], msgs['best_step_accuracy']) == \
        (0.5, 2)
    work = runner.work_dir
    assert msgs['best_ckpt_accuracy'] == os.path.join(
        work, 'Best_checkpoint.pth')
    assert msgs['best_ckpt'] == os.path.join(work,
                                             'best_accuracy_epoch_2.pth')
    for name in ('Best_checkpoint.pth', 'best_accuracy_epoch_2.pth'):
        assert int(load(os.path.join(work, name))['state_dict']['steps']) \
            == 4


@pytest.mark.parametrize('eval_before_train', [True, False])
def test_evaluation_before_training_on_resume(tmp_path, eval_before_train):
    """As mmcv: the resumed weights are evaluated before training when
    ``start`` is at or below the resumed epoch (unless switched off)."""
    first = runner_with(tmp_path, 'epoch', dict(LIGHT, interval=1))
    first._max_epochs = 3
    loader = make_loader(ScriptedDataset(scores=SCORES))
    first.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
    run(first, loader)

    second = runner_with(tmp_path, 'epoch', dict(LIGHT, interval=1))
    loader = make_loader(ScriptedDataset(scores=SCORES))
    second.register_hook(DavarEvalHook(
        loader, start=2, eval_mode='lightweight',
        eval_before_train=eval_before_train))
    resume_runner(second, os.path.join(second.work_dir, 'latest_model.pth'))
    run(second, loader)
    steps = [c['step'] for c in loader.dataset.calls]
    assert steps == ([6] if eval_before_train else []) + [8, 10, 12]
    history = second.meta['hook_msgs']['eval_history']
    if eval_before_train:  # recorded as the resumed epoch, not the next
        assert (history[3]['unit'], history[3]['step']) == ('epoch', 3)
    assert second.meta['hook_msgs']['best_score'] == 0.9


BAD = [
    (dict(save_best=True), AssertionError, r'save_best must be a metric '
     r'name, a list of them, "auto" or None, got True'),
    (dict(interval=-1), ValueError, r'interval must be a positive int'),
    (dict(start=-2), ValueError, r'start must be an int >= 0, got -2'),
    (dict(save_best='accuracy', rule='bigger'), KeyError,
     r"rule must be one of \('greater', 'less'\), None, or \('lower',\) "
     r"\(DavarOCR's spelling of less\), got 'bigger'"),
]


@pytest.mark.parametrize('kwargs,error,message', BAD)
@pytest.mark.parametrize('cls', [DavarEvalHook, EvalHook])
def test_bad_input_raises_mmcv_exception_types(kwargs, error, message, cls):
    loader = make_loader(ScriptedDataset())
    with pytest.raises(error) as info:
        cls(loader, **kwargs)
    if cls is DavarEvalHook:  # mmcv's own messages differ
        assert info.match(message)


@pytest.mark.parametrize('cls', [DavarEvalHook, EvalHook])
def test_dataloader_must_be_a_dataloader(cls):
    with pytest.raises(TypeError, match='dataloader must be a pytorch '
                       'DataLoader'):
        cls([1, 2, 3])


def test_rule_lower_is_less_in_both_modes(tmp_path):
    hook = DavarEvalHook(make_loader(ScriptedDataset()), save_best='hmean',
                         rule='lower')
    assert hook.trackers[0].rule == 'less' and hook.rule == 'less'
    ckpt = DavarCheckpointHook(save_mode='lightweight', metric='hmean',
                               rule='lower')
    assert ckpt.tracker.rule == 'less'


def val_records(work_dir):
    name = [n for n in os.listdir(work_dir) if n.endswith('.log.json')][0]
    with open(os.path.join(work_dir, name)) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [(r['mode'], r['epoch'], r['iter'], r.get('accuracy'))
            for r in records if 'mode' in r]


def test_json_log_val_record_by_iteration_matches_mmcv(tmp_path):
    """By iteration inside an EpochBasedRunner at LOW: the same json
    records as mmcv's EvalHook, a 'val' one per evaluation."""
    logs = {}
    for name, cls in (('mmcv', EvalHook), ('davar', DavarEvalHook)):
        runner = make_runner(tmp_path / name, max_epochs=3)
        loader = make_loader(ScriptedDataset(scores=SCORES))
        runner.register_hook(cls(loader, by_epoch=False, interval=3),
                             priority='LOW')
        run(runner, loader)
        logs[name] = val_records(runner.work_dir)
    assert logs['davar'] == logs['mmcv']
    assert [r for r in logs['davar'] if r[0] == 'val'] == [
        ('val', 2, 2, 0.0), ('val', 3, 2, 0.4)]


# ------------------------------------------------------ names users write
def test_mmcv_names_build_mmcv_compatible_hooks(tmp_path):
    loader = make_loader(ScriptedDataset(scores=SCORES))
    hook = build_from_cfg(dict(type='EvalHook', interval=2,
                               save_best='accuracy'), HOOKS,
                          default_args=dict(dataloader=loader))
    assert isinstance(hook, EvalHook) and isinstance(hook, DavarEvalHook)
    runner = runner_with(tmp_path, 'epoch', None)
    runner.register_custom_hooks([dict(type='DistEvalHook', interval=3,
                                       dataloader=loader)])
    dist_hook = [h for h in runner.hooks if isinstance(h, EvalHook)][0]
    from mmcv.runner import DistEvalHook
    assert isinstance(dist_hook, DistEvalHook)
    run(runner, loader)  # one process: evaluates on its own
    assert [c['step'] for c in loader.dataset.calls] == [6, 12]
    # mmdet's classes are untouched
    assert mmdet.core.EvalHook is not HOOKS.get('EvalHook')


def test_a_name_taken_first_is_kept_with_a_warning():
    code = (
        'import warnings\n'
        'from mmcv.runner import HOOKS, EvalHook\n'
        '@HOOKS.register_module(name="EvalHook")\n'
        'class ToolboxEvalHook(EvalHook):\n'
        '    pass\n'
        'with warnings.catch_warnings(record=True) as caught:\n'
        '    warnings.simplefilter("always")\n'
        '    import davarocr_mmcv\n'
        'print(HOOKS.get("EvalHook").__name__)\n'
        'print([str(w.message) for w in caught if "HOOKS already" in '
        'str(w.message)][0])\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == 'ToolboxEvalHook'
    assert "HOOKS already holds 'EvalHook' (__main__.ToolboxEvalHook); " \
        "type='EvalHook' builds that class. Write type='DavarEvalHook'" in out


# ------------------------------------- what mmcv and mmdet hand over
def test_checkpoints_hold_plain_values_whoever_wrote_hook_msgs(tmp_path):
    """mmcv's EvalHook stores best_score as numpy.float64; the files the
    hooks write still load with a plain torch.load (weights_only)."""
    runner = runner_with(tmp_path, 'epoch',
                         dict(type='DavarCheckpointHook', interval=2))

    class NumpyScores(ScriptedDataset):
        def evaluate(self, results, logger=None, **kwargs):
            return {k: np.float64(v) for k, v in
                    super().evaluate(results, logger, **kwargs).items()}
    loader = make_loader(NumpyScores(scores=SCORES))
    runner.register_hook(EvalHook(loader, save_best='accuracy'),
                         priority='LOW')
    run(runner, loader)
    assert isinstance(runner.meta['hook_msgs']['best_score'], np.float64)
    path = os.path.join(runner.work_dir, 'epoch_6.pth')
    code = ('import sys, torch; m = torch.load(sys.argv[1])["meta"]; '
            'print(type(m["hook_msgs"]["best_score"]).__name__)')
    out = subprocess.run([sys.executable, '-c', code, path],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == 'float'


def test_checkpoint_config_meta_is_kept_in_both_modes(tmp_path):
    meta = dict(mmdet_version='2.28.2', CLASSES=('a', 'b'))
    for mode, names in (('general', ['epoch_2.pth']),
                        ('lightweight', ['Best_checkpoint.pth',
                                         'latest_model.pth'])):
        runner = make_runner(tmp_path / mode, max_epochs=2, checkpoint_config=dict(
            type='DavarCheckpointHook', interval=2, save_mode=mode,
            meta=meta))
        loader = make_loader(ScriptedDataset(scores=SCORES))
        runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
        run(runner, loader)
        for name in names:
            saved = load(os.path.join(runner.work_dir, name))['meta']
            assert saved['mmdet_version'] == '2.28.2'
            assert saved['CLASSES'] == ('a', 'b')
            assert saved['epoch'] == 2


UNKNOWN = [
    (dict(intreval=5), r"unknown argument\(s\) 'intreval' \(did you mean "
     r"'interval'\?\)"),
    (dict(save_best='accuracy'), r'save_best is an argument of the eval '
     r'hooks'),
    (dict(max_keep_ckpt=3), r"'max_keep_ckpt' \(did you mean "
     r"'max_keep_ckpts'\?\)"),
]


@pytest.mark.parametrize('kwargs,message', UNKNOWN)
def test_unknown_checkpoint_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(TypeError, match=message):
        DavarCheckpointHook(**kwargs)


def test_save_checkpoint_arguments_still_accepted():
    hook = DavarCheckpointHook(create_symlink=False, meta=dict(a=1))
    assert hook.args == dict(create_symlink=False, meta=dict(a=1))


def test_eval_kwargs_checked_against_evaluate_before_training(tmp_path):
    class Strict(ScriptedDataset):
        def evaluate(self, results, metric='accuracy', logger=None):
            return super().evaluate(results, logger)

    runner = runner_with(tmp_path, 'epoch', None)
    loader = make_loader(Strict())
    runner.register_hook(DavarEvalHook(loader, metrc='accuracy'))
    with pytest.raises(TypeError, match=r"'metrc' \(did you mean 'metric'"
                       r"\?\) passed to Strict.evaluate, which accepts "
                       r"\['results', 'metric', 'logger'\]"):
        run(runner, loader)
    assert loader.dataset.calls == [] and runner.iter == 0


def test_mmcv_dist_eval_hook_feeds_every_rank(tmp_path):
    """mmcv's DistEvalHook evaluates on rank 0 only; every rank hears its
    metrics, so all agree on the best and the job does not hang on the
    checkpoint hook's collective (sync_buffer); only rank 0 writes."""
    from compat_workers import train_with_mmcv_dist_eval
    from dist_workers import launch
    launch(train_with_mmcv_dist_eval, 2, 240, str(tmp_path),
           {str(k): v for k, v in SCORES.items()})
    msgs = [json.load(open(tmp_path / f'msgs_rank{r}.json'))
            for r in range(2)]
    assert msgs[0] == msgs[1]
    assert (msgs[0]['best_score'], msgs[0]['best_step']) == (0.9, 4)
    assert [h['metrics']['accuracy'] for h in msgs[0]['history']] == \
        [0.2, 0.7, 0.4, 0.9]
    best = load(tmp_path / 'work' / 'Best_checkpoint.pth')
    assert int(best['state_dict']['steps']) == 8


def test_mmcv_best_and_lightweight_best_survive_a_resume(tmp_path):
    """mmcv's EvalHook deletes the file its hook_msgs' best_ckpt names when
    it finds a better one; after a resume that must never be
    Best_checkpoint.pth."""
    def train(epochs, resume=False):
        runner = runner_with(tmp_path, 'epoch', dict(LIGHT, interval=1))
        runner._max_epochs = epochs
        loader = make_loader(ScriptedDataset(scores=SCORES))
        runner.register_hook(EvalHook(loader, save_best='accuracy'),
                             priority='LOW')
        if resume:
            resume_runner(runner, os.path.join(runner.work_dir,
                                               'latest_model.pth'))
        run(runner, loader)
        return runner

    train(2)
    runner = train(6, resume=True)
    work = runner.work_dir
    names = sorted(n for n in os.listdir(work) if n.endswith('.pth'))
    assert names == ['Best_checkpoint.pth', 'best_accuracy_epoch_4.pth',
                     'latest.pth', 'latest_model.pth']
    best = load(os.path.join(work, 'Best_checkpoint.pth'))
    assert int(best['state_dict']['steps']) == 8
    assert best['meta']['hook_msgs']['best_score_accuracy'] == 0.9
