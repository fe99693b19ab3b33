"""ReduceonplateauLrUpdaterHook on real runners: the LR drops after the
scripted evaluations that expect it, and the plateau state survives resume.

The toy dataset has 2 iterations per epoch, so after epoch e the model has
made 2e steps and the evaluation reports ``scores[2e]``."""
import os

import pytest
import torch
from mmcv.runner import HOOKS, EpochBasedRunner, Hook, IterBasedRunner
from mmcv.utils import build_from_cfg

import davarocr_mmcv.hooks.lr_plateau as lr_plateau
from davarocr_mmcv import DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from davarocr_mmcv.hooks.lr_plateau import ReduceonplateauLrUpdaterHook
from toy import ToyModel, load, make_logger, run

PLATEAU = dict(policy='Reduceonplateau', metric='accuracy', mode='max',
               factor=0.1, patience=2, threshold=1e-4, min_lr=0, cooldown=0)
# improves at epochs 1, 2 and 6; flat (or worse) otherwise
SCORES = {2: 0.5, 4: 0.6, 6: 0.6, 8: 0.6, 10: 0.59, 12: 0.7, 14: 0.7,
          16: 0.7, 18: 0.7}


class LrSpy(Hook):
    """The LR of the first param group at the first iteration of each epoch
    (or at every iteration)."""

    def __init__(self, every_iter=False):
        self.every_iter = every_iter
        self.lrs = []

    def before_train_iter(self, runner):
        if self.every_iter or runner.inner_iter == 0:
            self.lrs.append(runner.current_lr()[0])


def plateau_runner(work_dir, kind='epoch', lr_config=None, scores=SCORES,
                   checkpoint_config=None, keys=('accuracy', ), **length):
    """A real runner whose LR is driven by ``lr_config`` (default PLATEAU),
    evaluated by DavarEvalHook every epoch (every 2 iterations for 'iter')."""
    from toy import ScriptedDataset, make_loader
    model = ToyModel()
    cls = dict(epoch=EpochBasedRunner, iter=IterBasedRunner)[kind]
    runner = cls(model=model,
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                 work_dir=str(work_dir), logger=make_logger(str(work_dir)),
                 **length)
    lr_config = dict(lr_config or PLATEAU)
    if kind == 'iter':
        lr_config.setdefault('by_epoch', False)
    runner.register_training_hooks(
        lr_config=lr_config, optimizer_config=dict(grad_clip=None),
        checkpoint_config=checkpoint_config,
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]))
    loader = make_loader(ScriptedDataset(scores=scores, keys=keys))
    ev = dict(by_epoch=False, interval=2) if kind == 'iter' else {}
    runner.register_hook(DavarEvalHook(loader, **ev), priority='LOW')
    spy = LrSpy(every_iter=kind == 'iter')
    runner.register_hook(spy, priority='LOWEST')
    return runner, loader, spy


def lr_hook(runner):
    return [h for h in runner.hooks
            if isinstance(h, ReduceonplateauLrUpdaterHook)][0]


def approx(values):
    return pytest.approx(values, rel=1e-9)


def test_policy_builds_the_hook():
    cfg = dict(PLATEAU)
    cfg['type'] = cfg.pop('policy').title() + 'LrUpdaterHook'
    hook = build_from_cfg(cfg, HOOKS)
    assert isinstance(hook, ReduceonplateauLrUpdaterHook)
    assert (hook.metric, hook.mode, hook.patience) == ('accuracy', 'max', 2)
    assert HOOKS.get('ReduceOnPlateauLrUpdaterHook') is \
        ReduceonplateauLrUpdaterHook


def test_lr_drops_after_patience_by_epoch(tmp_path):
    runner, loader, spy = plateau_runner(tmp_path / 'w', max_epochs=9)
    run(runner, loader)
    # bad evaluations at epochs 3, 4, 5 (0.59 is worse) -> reduced after 5;
    # 0.7 at epoch 6, then bad at 7, 8, 9 -> reduced after 9
    assert spy.lrs == approx([0.01] * 5 + [0.001] * 4)
    assert runner.current_lr()[0] == pytest.approx(1e-4)
    state = runner.meta['hook_msgs']['lr_plateau']
    assert state['best'] == 0.7 and state['num_bad'] == 0
    assert state['reductions'] == 2
    assert state['scale'] == pytest.approx(0.01)


def test_lr_drops_by_iteration(tmp_path):
    runner, loader, spy = plateau_runner(tmp_path / 'w', kind='iter',
                                         max_iters=18)
    run(runner, loader)
    # evaluations every 2 iterations: reduced after iterations 10 and 18
    assert spy.lrs == approx([0.01] * 10 + [0.001] * 8)
    assert runner.current_lr()[0] == pytest.approx(1e-4)


def test_threshold_cooldown_and_min_lr(tmp_path):
    # creeps up, but never by more than 2% over epoch 1's 1.0
    flat = {2 * e: 1.0 + 0.02 * (1 - 0.5 ** (e - 1)) for e in range(1, 9)}
    cfg = dict(PLATEAU, patience=0, cooldown=1, threshold=0.02,
               min_lr=5e-5)
    runner, loader, spy = plateau_runner(tmp_path / 'w', lr_config=cfg,
                                         scores=flat, max_epochs=8)
    run(runner, loader)
    # reduced after epoch 2, the cooldown ignores epoch 3, reduced after 4,
    # then 6 (clipped to min_lr); at the floor epoch 8 changes nothing
    assert spy.lrs == approx([0.01] * 2 + [1e-3] * 2 + [1e-4] * 2 +
                             [5e-5] * 2)
    assert runner.meta['hook_msgs']['lr_plateau']['reductions'] == 3


def test_min_mode_inferred_for_ned(tmp_path):
    cfg = dict(policy='Reduceonplateau', metric='NED', patience=1,
               threshold_mode='abs', threshold=0.05)
    scores = {2: 0.5, 4: 0.3, 6: 0.28, 8: 0.2, 10: 0.21, 12: 0.3}
    runner, loader, spy = plateau_runner(tmp_path / 'w', lr_config=cfg,
                                         scores=scores, keys=('NED', ),
                                         max_epochs=6)
    assert lr_hook(runner).mode == 'min'
    run(runner, loader)
    # improves at 1, 2 and 4 (by more than 0.05); bad at 3 (by 0.02 only),
    # 5 and 6: reduced after 6 only, as 4 resets the count
    assert spy.lrs == approx([0.01] * 6)
    assert runner.current_lr()[0] == pytest.approx(1e-3)


@pytest.mark.parametrize('resume_at', [4, 6])
def test_state_survives_resume(tmp_path, resume_at):
    ckpt = dict(type='DavarCheckpointHook', interval=1)
    full, loader, full_spy = plateau_runner(
        tmp_path / 'full', checkpoint_config=ckpt, max_epochs=9)
    run(full, loader)

    saved = load(os.path.join(full.work_dir, f'epoch_{resume_at}.pth'))
    state = saved['meta']['hook_msgs']['lr_plateau']
    assert state['num_bad'] == (2 if resume_at == 4 else 0)
    assert state['scale'] == (1.0 if resume_at == 4 else pytest.approx(0.1))

    resumed, loader, spy = plateau_runner(
        tmp_path / 'full', checkpoint_config=ckpt, max_epochs=9)
    resume_runner(resumed, os.path.join(full.work_dir,
                                        f'epoch_{resume_at}.pth'))
    run(resumed, loader)
    assert spy.lrs == approx(full_spy.lrs[resume_at:])
    assert resumed.current_lr()[0] == pytest.approx(full.current_lr()[0])
    assert resumed.meta['hook_msgs']['lr_plateau'] == \
        full.meta['hook_msgs']['lr_plateau']


def test_state_of_another_metric_is_not_reused(tmp_path):
    runner, loader, spy = plateau_runner(tmp_path / 'w', max_epochs=1)
    runner.meta = dict(hook_msgs=dict(lr_plateau=dict(
        metric='hmean', mode='max', best=0.9, num_bad=5, cooldown_left=0,
        scale=1e-3, reductions=3)))
    run(runner, loader)
    assert spy.lrs == approx([0.01])
    assert runner.meta['hook_msgs']['lr_plateau']['metric'] == 'accuracy'


def test_missing_metric_lists_available(tmp_path):
    cfg = dict(PLATEAU, metric='hmean')
    runner, loader, _ = plateau_runner(tmp_path / 'w', lr_config=cfg,
                                       max_epochs=1)
    with pytest.raises(KeyError, match=r"'hmean'.*available metrics: "
                       r"\['accuracy'\]"):
        run(runner, loader)


BAD = [
    (dict(mode='bigger'), r"mode must be one of \('min', 'max'\)"),
    (dict(metric='wibble'), r"cannot infer .*'wibble'.*set mode to one of "
     r"\('min', 'max'\)"),
    (dict(metric=''), r'metric must name an evaluation metric'),
    (dict(factor=1.0), r'factor must be a number in \(0, 1\)'),
    (dict(factor=0), r'factor must be a number in \(0, 1\)'),
    (dict(patience=-1), r'patience must be an int in \[0, inf\]'),
    (dict(patience=1.5), r'patience must be an int'),
    (dict(threshold=-1e-4), r'threshold must be a number in \[0, inf\]'),
    (dict(threshold_mode='relative'), r"threshold_mode must be one of "
     r"\('rel', 'abs'\)"),
    (dict(cooldown=True), r'cooldown must be an int'),
    (dict(min_lr=-1), r'min_lr must be a number in \[0, inf\]'),
]


@pytest.mark.parametrize('kwargs,message', BAD)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceonplateauLrUpdaterHook(**kwargs)


def test_no_torch_six():
    with open(lr_plateau.__file__) as f:
        assert '_six' not in f.read()
