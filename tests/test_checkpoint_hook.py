"""DavarCheckpointHook on real mmcv runners with scripted metrics.

The toy model counts training steps; with 2 iterations per epoch the weights
after epoch ``e`` have ``steps == 2 * e``, and ``ScriptedDataset`` maps a
step count to the metric, so the best checkpoint is known in advance.
"""
import json
import math
import os
import re

import pytest
import torch
from mmcv.runner import CheckpointHook, Hook

from davarocr_mmcv import DavarCheckpointHook, DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from toy import load, run

# score of the weights after epoch e (steps 2e): best is epoch 4 (0.9)
EPOCH_SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}
LIGHT = dict(type='DavarCheckpointHook', save_mode='lightweight',
             metric='accuracy')
# lightweight mode: the two checkpoints, and the pointers mmcv's and mmdet's
# find_latest_checkpoint read (latest.pth) and ours (last_checkpoint)
LIGHT_FILES = ['Best_checkpoint.pth', 'last_checkpoint', 'latest.pth',
               'latest_model.pth']


def files(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder) for name in names
        if name.endswith('.pth') or name == 'last_checkpoint')


def steps(path):
    return int(load(path)['state_dict']['steps'])


def train(runner_factory, toy_loader, scores, kind='epoch', eval_cfg=None,
          eval_priority='LOW', name='work', resume_from=None, **ckpt):
    """Train with DavarCheckpointHook (+ DavarEvalHook unless eval_cfg is
    False); return the runner."""
    length = dict(max_epochs=6) if kind == 'epoch' else dict(max_iters=12)
    runner = runner_factory(kind, name=name, checkpoint_config=ckpt,
                            **length)
    loader = toy_loader(scores)
    if eval_cfg is not False:
        cfg = dict(eval_cfg or {})
        if kind == 'iter':
            cfg.setdefault('by_epoch', False)
            cfg.setdefault('interval', 2)
        runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight',
                                           **cfg), priority=eval_priority)
    if resume_from:
        resume_runner(runner, resume_from)
    run(runner, loader)
    return runner


@pytest.mark.parametrize('async_save', [False, True])
@pytest.mark.parametrize('priority', ['HIGH', 'LOW'])
def test_lightweight_epoch_keeps_exactly_best_and_latest(
        runner_factory, toy_loader, priority, async_save):
    runner = train(runner_factory, toy_loader, EPOCH_SCORES,
                   eval_priority=priority, async_save=async_save, **LIGHT)
    work = runner.work_dir
    assert files(work) == LIGHT_FILES
    best = load(os.path.join(work, 'Best_checkpoint.pth'))
    assert int(best['state_dict']['steps']) == 8  # weights of epoch 4
    assert 'optimizer' not in best
    msgs = best['meta']['hook_msgs']
    assert msgs['best_score'] == 0.9 and type(msgs['best_score']) is float
    assert (msgs['best_unit'], msgs['best_step']) == ('epoch', 4)
    assert msgs['best_ckpt'] == os.path.join(work, 'Best_checkpoint.pth')
    latest = load(os.path.join(work, 'latest_model.pth'))
    assert int(latest['state_dict']['steps']) == 12
    assert latest['meta']['epoch'] == 6 and latest['meta']['iter'] == 12
    assert latest['meta']['hook_msgs']['best_score'] == 0.9
    assert 'optimizer' in latest
    assert runner.meta['hook_msgs']['best_score'] == 0.9


@pytest.mark.parametrize('priority', ['HIGH', 'LOW'])
def test_lightweight_iter_runner(runner_factory, toy_loader, priority):
    scores = {2: 0.1, 4: 0.3, 6: 0.8, 8: 0.2, 10: 0.8, 12: 0.4}
    runner = train(runner_factory, toy_loader, scores, kind='iter',
                   eval_priority=priority, by_iter=True, iter_interval=2,
                   **LIGHT)
    assert files(runner.work_dir) == LIGHT_FILES
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 6
    msgs = runner.meta['hook_msgs']
    assert (msgs['best_unit'], msgs['best_step']) == ('iter', 6)
    latest = load(os.path.join(runner.work_dir, 'latest_model.pth'))
    assert latest['meta']['iter'] == 12


def test_latest_refreshed_at_every_save_point(runner_factory, toy_loader):
    seen = []

    class Spy(Hook):
        def after_train_epoch(self, runner):
            seen.append(steps(os.path.join(runner.work_dir,
                                           'latest_model.pth')))

    runner = runner_factory(checkpoint_config=LIGHT, max_epochs=3)
    runner.register_hook(Spy(), priority='LOWEST')
    loader = toy_loader({})
    run(runner, loader)
    assert seen == [2, 4, 6]
    log = open(os.path.join(runner.work_dir, 'run.log')).read()
    assert log.count('no evaluation has reported') == 1


def test_stale_metric_never_makes_a_best(runner_factory, toy_loader):
    """Evaluation every 2 epochs, saves every epoch: a save point without a
    fresh evaluation must not reuse the previous metric."""
    scores = {4: 0.5, 8: 0.6, 12: 0.55}
    runner = train(runner_factory, toy_loader, scores,
                   eval_cfg=dict(interval=2), **LIGHT)
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 8


def test_milestone_saves_nothing_before(runner_factory, toy_loader):
    scores = {2: 0.95, 4: 0.9, 6: 0.1, 8: 0.5, 10: 0.6, 12: 0.2}
    seen = []

    class Spy(Hook):
        def after_train_epoch(self, runner):
            seen.append(files(runner.work_dir))

    runner = runner_factory(checkpoint_config=dict(LIGHT, model_milestone=0.5),
                            max_epochs=6)
    loader = toy_loader(scores)
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'),
                         priority='LOW')
    runner.register_hook(Spy(), priority='LOWEST')
    run(runner, loader)
    assert seen[:3] == [[], [], []]
    # best after the milestone (epochs 4-6) is epoch 5 (0.6)
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 10


def test_zero_counts_and_nan_never_best(runner_factory, toy_loader):
    scores = {2: 0.0, 4: math.nan, 6: 0.0, 8: -1.0, 10: math.nan, 12: 0.0}
    runner = train(runner_factory, toy_loader, scores, **LIGHT)
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 2
    assert runner.meta['hook_msgs']['best_score'] == 0.0


def test_less_rule_inferred_for_ned(runner_factory, toy_loader):
    scores = {2: 0.5, 4: 0.2, 6: 0.3, 8: 0.25, 10: 0.9, 12: 0.2}
    runner = runner_factory(max_epochs=6, checkpoint_config=dict(
        type='DavarCheckpointHook', save_mode='lightweight', metric='NED'))
    loader = toy_loader(scores, keys=('NED', ))
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
    run(runner, loader)
    # 'less' is better; the tie at epoch 6 does not replace epoch 2
    assert runner.meta['hook_msgs']['best_score'] == 0.2
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 4


def test_missing_metric_lists_available(runner_factory, toy_loader):
    with pytest.raises(KeyError, match=r"'NED'.*available metrics: "
                       r"\['accuracy'\]"):
        train(runner_factory, toy_loader, EPOCH_SCORES,
              type='DavarCheckpointHook', save_mode='lightweight',
              metric='NED')


def test_general_mode_matches_mmcv_checkpoint_hook(runner_factory,
                                                   toy_loader):
    torch.manual_seed(0)
    mmcv_runner = runner_factory(name='mmcv', max_epochs=3, meta={},
                                 checkpoint_config=dict(interval=1))
    run(mmcv_runner, toy_loader({}))
    torch.manual_seed(0)
    davar_runner = runner_factory(
        name='davar', max_epochs=3, meta={},
        checkpoint_config=dict(type='DavarCheckpointHook', interval=1))
    run(davar_runner, toy_loader({}))
    assert any(isinstance(h, CheckpointHook) and
               not isinstance(h, DavarCheckpointHook)
               for h in mmcv_runner.hooks)
    mmcv_files = set(files(mmcv_runner.work_dir))
    davar_files = set(files(davar_runner.work_dir))
    assert mmcv_files == {'epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth',
                          'latest.pth'}
    assert davar_files == mmcv_files | {'last_checkpoint'}
    assert os.readlink(os.path.join(davar_runner.work_dir, 'latest.pth')) \
        == 'epoch_3.pth'
    for name in sorted(mmcv_files):
        a = load(os.path.join(mmcv_runner.work_dir, name))
        b = load(os.path.join(davar_runner.work_dir, name))
        assert (a['meta']['epoch'], a['meta']['iter']) == \
            (b['meta']['epoch'], b['meta']['iter'])
        for key in a['state_dict']:
            assert torch.equal(a['state_dict'][key], b['state_dict'][key])
        assert a['optimizer'].keys() == b['optimizer'].keys()
    for runner in (mmcv_runner, davar_runner):
        assert runner.meta['hook_msgs']['last_ckpt'] == os.path.join(
            runner.work_dir, 'epoch_3.pth')


@pytest.mark.parametrize('async_save', [False, True])
def test_general_mode_iter_runner_and_rotation(runner_factory, toy_loader,
                                               async_save):
    runner = runner_factory(
        'iter', max_iters=10,
        checkpoint_config=dict(type='DavarCheckpointHook', interval=2,
                               max_keep_ckpts=2, async_save=async_save))
    run(runner, toy_loader({}))
    assert files(runner.work_dir) == ['iter_10.pth', 'iter_8.pth',
                                      'last_checkpoint', 'latest.pth']
    msgs = runner.meta['hook_msgs']
    assert msgs['last_ckpt'].endswith('iter_10.pth')
    assert [os.path.basename(p) for p in msgs['ckpt_history']] == [
        'iter_8.pth', 'iter_10.pth']


def test_epoch_and_iter_saves_never_collide(runner_factory, toy_loader):
    runner = runner_factory(max_epochs=2, checkpoint_config=dict(
        type='DavarCheckpointHook', interval=1, by_iter=True,
        iter_interval=1, filename_tmpl='ckpt/ace_e{}.pth'))
    run(runner, toy_loader({}))
    assert files(runner.work_dir) == [
        'ckpt/ace_e1.pth', 'ckpt/ace_e2.pth', 'iter_1.pth', 'iter_2.pth',
        'iter_3.pth', 'iter_4.pth', 'last_checkpoint', 'latest.pth']
    assert steps(os.path.join(runner.work_dir, 'iter_3.pth')) == 3
    mid = load(os.path.join(runner.work_dir, 'iter_3.pth'))['meta']
    # inside epoch 2: a resume restarts epoch 2
    assert (mid['epoch'], mid['iter']) == (1, 3)


def test_rotation_spares_best_and_foreign_files(runner_factory, toy_loader,
                                                tmp_path):
    scores = {2: 0.9, 4: 0.1, 6: 0.2, 8: 0.3, 10: 0.1, 12: 0.1}
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_5.pth.bak').write_text('mine')
    (work / 'notes.pth').write_text('user file')
    runner = runner_factory(max_epochs=6, checkpoint_config=dict(
        type='DavarCheckpointHook', interval=1, max_keep_ckpts=2))
    loader = toy_loader(scores)
    runner.register_hook(DavarEvalHook(loader, save_best='accuracy'),
                         priority='LOW')
    run(runner, loader)
    assert files(runner.work_dir) == [
        'best_accuracy_epoch_1.pth', 'epoch_5.pth', 'epoch_6.pth',
        'last_checkpoint', 'latest.pth', 'notes.pth']
    assert (work / 'epoch_5.pth.bak').read_text() == 'mine'


@pytest.mark.parametrize('kind', ['epoch', 'iter'])
def test_resume_mid_run_ends_with_same_best(runner_factory, toy_loader,
                                            kind):
    scores = {2: 0.3, 4: 0.8, 6: 0.4, 8: 0.6, 10: 0.9, 12: 0.85}
    extra = dict(by_iter=True, iter_interval=2) if kind == 'iter' else {}
    full = train(runner_factory, toy_loader, scores, kind=kind, name='full',
                 **LIGHT, **extra)
    full_msgs = load(os.path.join(full.work_dir,
                                  'Best_checkpoint.pth'))['meta']['hook_msgs']

    class Crash(Hook):
        def after_train_iter(self, runner):
            if runner.iter + 1 == 6:
                raise KeyboardInterrupt

    length = dict(max_epochs=6) if kind == 'epoch' else dict(max_iters=12)
    runner = runner_factory(kind, name='part', checkpoint_config=dict(
        LIGHT, **extra), **length)
    loader = toy_loader(scores)
    ev = dict(by_epoch=False, interval=2) if kind == 'iter' else {}
    runner.register_hook(DavarEvalHook(loader, eval_mode='lightweight', **ev),
                         priority='LOW')
    runner.register_hook(Crash(), priority='LOWEST')
    with pytest.raises(KeyboardInterrupt):
        run(runner, loader)
    latest = os.path.join(runner.work_dir, 'latest_model.pth')
    # the epoch runner crashed inside epoch 3, the iter runner after iter 6
    assert steps(latest) == (4 if kind == 'epoch' else 6)
    assert steps(os.path.join(runner.work_dir, 'Best_checkpoint.pth')) == 4

    resumed = train(runner_factory, toy_loader, scores, kind=kind,
                    name='part', resume_from=latest, **LIGHT, **extra)
    assert resumed.meta['hook_msgs']['best_score'] == full_msgs['best_score']
    msgs = load(os.path.join(resumed.work_dir,
                             'Best_checkpoint.pth'))['meta']['hook_msgs']
    assert {k: msgs[k] for k in ('best_score', 'best_unit', 'best_step')} == \
        {k: full_msgs[k] for k in ('best_score', 'best_unit', 'best_step')}
    assert steps(os.path.join(resumed.work_dir, 'Best_checkpoint.pth')) == 10


def test_worse_score_after_resume_never_replaces_best(runner_factory,
                                                      toy_loader):
    scores = {2: 0.3, 4: 0.9, 6: 0.4, 8: 0.5, 10: 0.6, 12: 0.7}
    first = runner_factory(name='w', max_epochs=2, checkpoint_config=LIGHT)
    loader = toy_loader(scores)
    first.register_hook(DavarEvalHook(loader, eval_mode='lightweight'))
    run(first, loader)
    latest = os.path.join(first.work_dir, 'latest_model.pth')
    resumed = train(runner_factory, toy_loader, scores, name='w',
                    resume_from=latest, **LIGHT)
    assert resumed.meta['hook_msgs']['best_score'] == 0.9
    assert steps(os.path.join(resumed.work_dir, 'Best_checkpoint.pth')) == 4


BAD_ARGS = [
    (dict(save_mode='fast'), r"save_mode must be one of \('general', "
     r"'lightweight'\)"),
    (dict(save_mode='lightweight', metric='wibble'),
     r"cannot infer .*'wibble'.*set rule="),
    (dict(filename_tmpl='epoch.pth'), r'filename_tmpl must be a str with '
     r'exactly one "\{\}"'),
    (dict(filename_tmpl='e{}_{}.pth'), r'filename_tmpl must be'),
    (dict(filename_tmpl='../e{}.pth'), r'filename_tmpl must stay inside'),
    (dict(model_milestone=1.0), r'model_milestone must be .* \[0, 1\)'),
    (dict(model_milestone=-0.1), r'model_milestone'),
    (dict(interval=0), r'interval must be a positive int'),
    (dict(by_iter=True, iter_interval=-1), r'iter_interval must be a '
     r'positive int'),
    (dict(by_iter=True, iter_interval=2, filename_tmpl='x{}.pth',
          iter_filename_tmpl='x{}.pth'), r'must differ'),
    (dict(on_save_error='ignore'), r"on_save_error must be one of"),
]
# a value of the wrong type: TypeError (issue 29)
BAD_TYPES = [
    (dict(init_metric='0'), r"DavarCheckpointHook: init_metric must be a "
     r"number \(int or float\) or None, got '0' \(str\)"),
    (dict(by_epoch='yes'), r'by_epoch must be True or False'),
    (dict(interval='a'), r"interval must be an int, got 'a' \(str\)"),
    (dict(max_keep_ckpts=2.5), r'max_keep_ckpts must be an int'),
    (dict(model_milestone='half'), r'model_milestone must be a fraction'),
    (dict(save_mode=1), r"save_mode must be one of \('general', "),
    (dict(filename_tmpl=3), r'filename_tmpl must be a str'),
]


@pytest.mark.parametrize('kwargs,message', BAD_ARGS)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DavarCheckpointHook(**kwargs)


@pytest.mark.parametrize('kwargs,message', BAD_TYPES)
def test_bad_types_fail_at_construction(kwargs, message):
    with pytest.raises(TypeError, match=message) as info:
        DavarCheckpointHook(**kwargs)
    assert not isinstance(info.value, ValueError)


def test_davarocr_config_builds_unchanged():
    """The runtime section of DavarOCR's res32_bilstm_attn config."""
    from mmcv.runner import HOOKS
    from mmcv.utils import build_from_cfg
    hook = build_from_cfg(dict(
        type='DavarCheckpointHook', interval=1, iter_interval=5000,
        by_epoch=True, by_iter=True, filename_tmpl='ckpt/ace_e{}.pth',
        metric='accuracy', rule='greater', save_mode='lightweight',
        init_metric=-1, model_milestone=0.5), HOOKS)
    assert hook.tracker.rule == 'greater' and hook.tracker.init_metric == -1
    assert hook.intervals == dict(epoch=1, iter=5000)
    assert re.match(r'ckpt/ace_e\{\}\.pth', hook.filename_tmpls['epoch'])


def test_publish_at_end_of_training(runner_factory, toy_loader):
    runner = train(runner_factory, toy_loader, EPOCH_SCORES, publish=True,
                   **LIGHT)
    folder = os.path.join(runner.work_dir, 'publish')
    published = [n for n in os.listdir(folder) if n.endswith('.pth')]
    assert len(published) == 1 and [n for n in os.listdir(folder)
                                     if n.endswith('.tar.gz')]
    ckpt = load(os.path.join(folder, published[0]))
    assert sorted(ckpt) == ['meta', 'state_dict']
    assert int(ckpt['state_dict']['steps']) == 8  # the best weights
    with open(os.path.join(folder, 'metrics.json')) as f:
        assert json.load(f)['best_score'] == 0.9
