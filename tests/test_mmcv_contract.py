"""mmcv 1.7.1's EvalHook contract, kept by the Davar hooks on real runners:
whatever the log buffer holds when an evaluation starts, the empty-result
UserWarning, the json ``val`` record of the evaluation before training, the
step of the best in ``hook_msgs``, and mmcv's own eval-hook tests run with
our classes in place of mmcv's."""
import glob
import hashlib
import json
import os
import re
import sys

import pytest
import torch
from mmcv.runner import EpochBasedRunner, Hook, IterBasedRunner
from mmcv.runner.hooks.evaluation import EvalHook as MmcvEvalHook

from davarocr_mmcv import DavarCheckpointHook, DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from davarocr_mmcv.hooks.evaluation import EMPTY_RESULT_WARNING
from procs import run_bounded
from toy import ToyModel, load, make_logger, run

TESTS = os.path.dirname(os.path.abspath(__file__))
# 2 batches per epoch: epoch N ends at step 2N
SCORES = {2: 0.2, 4: 0.9, 6: 0.4}


def bare_runner(work_dir, max_epochs=3):
    """A real EpochBasedRunner without any logger hook: nothing ever
    clears ``log_buffer.output``."""
    model = ToyModel()
    runner = EpochBasedRunner(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        work_dir=str(work_dir), logger=make_logger(str(work_dir)),
        max_epochs=max_epochs)
    runner.register_training_hooks(lr_config=dict(policy='fixed'),
                                   optimizer_config=dict(grad_clip=None))
    return runner


class NoteHook(Hook):
    """Writes into ``log_buffer.output`` before every evaluation."""

    def after_train_epoch(self, runner):
        runner.log_buffer.output['note'] = 'from another hook'


def json_records(work_dir):
    records = []
    for path in sorted(glob.glob(os.path.join(str(work_dir), '*.log.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'mode' in r]


# ------------------------------------------- the log buffer is not empty
@pytest.mark.parametrize('writer', ['no logger hook', 'a hook writes'])
@pytest.mark.parametrize('kind', ['mmcv', 'davar'])
def test_evaluation_starts_with_entries_in_the_log_buffer(
        tmp_path, toy_loader, kind, writer):
    runner = bare_runner(tmp_path / 'work')
    runner.register_hook(DavarCheckpointHook(save_mode='lightweight',
                                             metric='accuracy'))
    if writer == 'a hook writes':
        runner.register_hook(NoteHook(), priority='HIGHEST')
    loader = toy_loader(SCORES)
    if kind == 'mmcv':
        runner.register_hook(MmcvEvalHook(loader))
    else:
        runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight',
                                           save_best='accuracy'))
    run(runner, loader)
    msgs = runner.meta['hook_msgs']
    # what each evaluation wrote, and only that, is its record
    assert [h['metrics'] for h in msgs['eval_history']] == \
        [{'accuracy': 0.2}, {'accuracy': 0.9}, {'accuracy': 0.4}]
    best = load(os.path.join(runner.work_dir, 'Best_checkpoint.pth'))
    assert int(best['state_dict']['steps']) == 4
    assert (msgs['best_score'], msgs['best_unit'], msgs['best_step']) == \
        (0.9, 'epoch', 2)
    # the entries that were there are still there
    if writer == 'a hook writes':
        assert runner.log_buffer.output['note'] == 'from another hook'


# ------------------------------------------------- an empty evaluation
@pytest.mark.parametrize('save_best', ['auto', 'accuracy'])
def test_empty_evaluation_warns_as_mmcv(runner_factory, toy_loader,
                                        save_best):
    runner = runner_factory(max_epochs=2)
    loader = toy_loader(keys=())  # evaluate returns {}
    runner.register_hook(DavarEvalHook(loader, save_best=save_best))
    with pytest.warns(UserWarning) as caught:
        run(runner, loader)
    assert [str(w.message) for w in caught
            if str(w.message) == EMPTY_RESULT_WARNING] == \
        [EMPTY_RESULT_WARNING] * 2
    assert EMPTY_RESULT_WARNING == (
        'Since `eval_res` is an empty dict, the behavior to save the best '
        'checkpoint will be skipped in this evaluation.')
    with open(os.path.join(runner.work_dir, 'run.log')) as f:
        assert f.read().count(EMPTY_RESULT_WARNING) == 2
    assert 'best_ckpt' not in runner.meta['hook_msgs']
    assert not glob.glob(os.path.join(runner.work_dir, 'best_*.pth'))


# ------------------------------- the evaluation before training, resumed
@pytest.mark.parametrize('kind', ['epoch', 'iter'])
def test_evaluation_before_training_writes_its_val_record(
        runner_factory, toy_loader, kind):
    """Resumed at step 2 with ``start`` at or below it: the resumed
    weights are evaluated before training, and every evaluation of both
    runs has one json ``val`` record."""
    steps = dict(epoch='max_epochs', iter='max_iters')[kind]
    hook = dict(epoch=dict(start=1), iter=dict(by_epoch=False, start=1,
                                                interval=1))[kind]
    ckpt = dict(type='DavarCheckpointHook', by_epoch=kind == 'epoch')
    first = runner_factory(kind, name='r', checkpoint_config=ckpt,
                           **{steps: 2})
    loader = toy_loader(SCORES)
    first.register_hook(DavarEvalHook(loader, save_best='accuracy', **hook))
    run(first, loader)
    second = runner_factory(kind, name='r', checkpoint_config=ckpt,
                            **{steps: 4})
    second.register_hook(DavarEvalHook(loader, save_best='accuracy', **hook))
    resume_runner(second, os.path.join(second.work_dir, f'{kind}_2.pth'))
    run(second, loader)
    history = second.meta['hook_msgs']['eval_history']
    assert [h['step'] for h in history] == [1, 2, 2, 3, 4]
    val = [r for r in json_records(second.work_dir) if r['mode'] == 'val']
    assert len(val) == len(history)
    assert [r['accuracy'] for r in val] == \
        [h['metrics']['accuracy'] for h in history]


# ------------------------------------------------- the step of the best
@pytest.mark.parametrize('setup', ['general', 'lightweight', 'mmseg',
                                   'beside mmcv\'s'])
def test_best_step_is_always_recorded(runner_factory, toy_loader, setup):
    """General mode with save_best, lightweight mode with
    DavarCheckpointHook, as mmseg's train_segmentor registers its eval hook
    (IterBasedRunner, by_epoch=False, priority LOW), and beside mmcv's
    EvalHook keeping its own best (the plain keys are then its best's)."""
    loader = toy_loader(SCORES)
    if setup == 'beside mmcv\'s':
        runner = runner_factory(max_epochs=3, checkpoint_config=dict(
            type='DavarCheckpointHook', save_mode='lightweight',
            metric='accuracy'))
        runner.register_hook(MmcvEvalHook(loader, save_best='accuracy'))
        run(runner, loader)
        msgs = runner.meta['hook_msgs']
        assert msgs['best_ckpt'].endswith('best_accuracy_epoch_2.pth')
        assert (msgs['best_score'], msgs['best_unit'], msgs['best_step']) \
            == (0.9, 'epoch', 2)
        assert (msgs['best_score_accuracy'], msgs['best_unit_accuracy'],
                msgs['best_step_accuracy']) == (0.9, 'epoch', 2)
        return
    if setup == 'mmseg':
        runner = runner_factory('iter', max_iters=6, checkpoint_config=dict(
            type='DavarCheckpointHook', by_epoch=False, interval=2,
            save_mode='lightweight', metric='accuracy'))
        runner.register_hook(DavarEvalHook(loader, by_epoch=False,
                                           interval=2, save_best='accuracy',
                                           metric='accuracy'),
                             priority='LOW')
        unit, step = 'iter', 4
    else:
        ckpt = dict(type='DavarCheckpointHook', save_mode=setup,
                    metric='accuracy')
        runner = runner_factory(max_epochs=3, checkpoint_config=ckpt)
        runner.register_hook(DavarEvalHook(loader, eval_mode=setup,
                                           save_best='accuracy'))
        unit, step = 'epoch', 2
    run(runner, loader)
    msgs = runner.meta['hook_msgs']
    assert (msgs['best_score'], msgs['best_unit'], msgs['best_step']) == \
        (0.9, unit, step)
    assert load(msgs['best_ckpt'])['meta']['hook_msgs']['best_step'] == step


# ----------------------------------------- mmcv 1.7.1's own eval-hook tests
#: mmcv 1.7.1's tests/test_runner/test_eval_hook.py (the same in 1.7.0-1.7.2)
MMCV_EVAL_HOOK_TESTS_SHA256 = \
    '08d04b4cbbddab5eee266085d37af1a3f79c52057a592bc5307f4d9f7c497483'


def mmcv_eval_hook_tests():
    """Where mmcv's test file is: ``MMCV_EVAL_HOOK_TESTS``, or
    ``mmcv-1.7.1-tests/test_eval_hook.py`` in the set-up cache. The
    mmcv-full sdist does not ship mmcv's tests."""
    cache = os.environ.get('DAVAR_CACHE') or os.path.expanduser(
        '~/.cache/davarocr-mmcv')
    return os.environ.get('MMCV_EVAL_HOOK_TESTS') or os.path.join(
        cache, 'mmcv-1.7.1-tests', 'test_eval_hook.py')


def test_mmcv_own_eval_hook_tests_pass_with_davar_hooks(tmp_path):
    """mmcv's test module, unchanged, with DavarEvalHook / DavarDistEvalHook
    bound wherever it imports mmcv's EvalHook / DistEvalHook (the
    ``davar_as_mmcv`` plugin): all of its 8 tests pass."""
    path = mmcv_eval_hook_tests()
    if not os.path.isfile(path):
        pytest.skip(
            f"mmcv 1.7.1's tests/test_runner/test_eval_hook.py is not at "
            f"{path}; put it there (from a clone of mmcv: git show "
            f"v1.7.1:tests/test_runner/test_eval_hook.py) or name it with "
            f"MMCV_EVAL_HOOK_TESTS")
    with open(path, 'rb') as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == MMCV_EVAL_HOOK_TESTS_SHA256, \
        f'{path} is not mmcv 1.7.1\'s test_eval_hook.py'
    (tmp_path / 'test_eval_hook.py').write_bytes(data)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS, os.environ.get('PYTHONPATH', '')]), TMPDIR=str(tmp_path),
        OMP_NUM_THREADS='1')
    code, out = run_bounded(
        [sys.executable, '-m', 'pytest', '-p', 'davar_as_mmcv',
         '-p', 'no:cacheprovider', '-q', '-rfE', 'test_eval_hook.py'],
        env, timeout=600, cwd=str(tmp_path))
    assert 'davar_as_mmcv: BaseDistEvalHook is DavarDistEvalHook, ' \
        'BaseEvalHook is DavarEvalHook, DistEvalHook -> DavarDistEvalHook, ' \
        'EvalHook -> DavarEvalHook' in out, out[-4000:]
    assert code == 0 and re.search(r'\b8 passed\b', out), out[-8000:]
