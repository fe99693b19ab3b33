"""DavarEvalHook on real runners: when it evaluates, what it logs, the best
it keeps in general mode, and every DavarOCR `evaluation = dict(...)` shape."""
import json
import math
import os

import pytest
from mmcv.runner import HOOKS
from mmcv.utils import build_from_cfg

from davarocr_mmcv import DavarDistEvalHook, DavarEvalHook
from davarocr_mmcv.core.resume import resume_runner
from toy import load, run

SCORES = {2: 0.2, 4: 0.7, 6: 0.4, 8: 0.9, 10: 0.1, 12: 0.5}


def evaluated_steps(loader):
    return [c['step'] for c in loader.dataset.calls]


def json_log(work_dir):
    name = [n for n in os.listdir(work_dir) if n.endswith('.log.json')][0]
    with open(os.path.join(work_dir, name)) as f:
        return [json.loads(line) for line in f if line.strip()][1:]


@pytest.mark.parametrize('priority', ['HIGH', 'LOW'])
def test_general_mode_best_file_by_epoch(runner_factory, toy_loader,
                                         priority):
    runner = runner_factory(max_epochs=6)
    loader = toy_loader(SCORES)
    runner.register_hook(DavarEvalHook(loader, save_best='accuracy',
                                       metric='accuracy'),
                         priority=priority)
    run(runner, loader)
    assert evaluated_steps(loader) == [2, 4, 6, 8, 10, 12]
    assert loader.dataset.calls[0]['kwargs'] == dict(metric='accuracy')
    pth = sorted(n for n in os.listdir(runner.work_dir) if n.endswith('pth'))
    assert pth == ['best_accuracy_epoch_4.pth']
    best = load(os.path.join(runner.work_dir, pth[0]))
    assert int(best['state_dict']['steps']) == 8
    msgs = runner.meta['hook_msgs']
    assert msgs['best_score'] == 0.9
    assert msgs['best_ckpt'] == os.path.join(runner.work_dir, pth[0])
    assert [h['metrics']['accuracy'] for h in msgs['eval_history']] == \
        [0.2, 0.7, 0.4, 0.9, 0.1, 0.5]
    # metrics reach the json log, with the training values intact
    logged = [r for r in json_log(runner.work_dir) if 'accuracy' in r]
    assert [r['accuracy'] for r in logged] == [0.2, 0.7, 0.4, 0.9, 0.1, 0.5]


@pytest.mark.parametrize('priority', ['HIGH', 'LOW', 'LOWEST'])
def test_by_iter_in_iter_runner_logs_and_train_mode(runner_factory,
                                                    toy_loader, priority):
    runner = runner_factory('iter', max_iters=12)
    loader = toy_loader(SCORES)
    runner.register_hook(DavarEvalHook(loader, by_epoch=False, by_iter=True,
                                       iter_interval=4, save_best='acc'
                                       'uracy'), priority=priority)
    run(runner, loader)
    assert evaluated_steps(loader) == [4, 8, 12]
    assert 'best_accuracy_iter_8.pth' in os.listdir(runner.work_dir)
    # every training forward after an evaluation ran in train mode
    assert all(runner.model.modes_seen)
    records = json_log(runner.work_dir)
    assert sum('accuracy' in r for r in records) == 3
    assert all('data_time' in r for r in records if r['mode'] == 'train')


def test_epoch_and_iter_combined_with_start_iter(runner_factory,
                                                 toy_loader):
    runner = runner_factory(max_epochs=6)
    loader = toy_loader(SCORES)
    runner.register_hook(DavarEvalHook(
        loader, start=3, interval=1, by_epoch=True, by_iter=True,
        iter_interval=3, start_iter=0.5, eval_mode='lightweight'))
    run(runner, loader)
    # epochs 3..6 (steps 6, 8, 10, 12) and iterations 6, 9, 12
    assert evaluated_steps(loader) == [6, 6, 8, 9, 10, 12, 12]


def test_zero_counts_nan_never_best(runner_factory, toy_loader):
    runner = runner_factory(max_epochs=3)
    loader = toy_loader({2: 0.0, 4: math.nan, 6: -0.5})
    runner.register_hook(DavarEvalHook(loader, save_best='accuracy'))
    run(runner, loader)
    assert runner.meta['hook_msgs']['best_score'] == 0.0
    assert 'best_accuracy_epoch_1.pth' in os.listdir(runner.work_dir)


def test_several_save_best_metrics(runner_factory, toy_loader):
    runner = runner_factory(max_epochs=3)
    loader = toy_loader({2: 0.5, 4: 0.8, 6: 0.3}, keys=('accuracy', 'NED'))
    runner.register_hook(DavarEvalHook(loader, save_best=['accuracy', 'NED'],
                                       rule=['greater', 'less']))
    run(runner, loader)
    msgs = runner.meta['hook_msgs']
    assert msgs['best_score_accuracy'] == 0.8
    assert msgs['best_score_NED'] == 0.3
    assert sorted(n for n in os.listdir(runner.work_dir)
                  if n.endswith('.pth')) == ['best_NED_epoch_3.pth',
                                             'best_accuracy_epoch_2.pth']


def test_missing_save_best_metric_lists_available(runner_factory,
                                                  toy_loader):
    runner = runner_factory(max_epochs=2)
    loader = toy_loader({}, keys=('accuracy', 'NED'))
    runner.register_hook(DavarEvalHook(loader, save_best='hmean'))
    with pytest.raises(KeyError, match=r"'hmean'.*available metrics: "
                       r"\['NED', 'accuracy'\]"):
        run(runner, loader)
    assert loader.dataset.calls and len(loader.dataset.calls) == 1


def test_resume_restores_best_and_history(runner_factory, toy_loader):
    first = runner_factory(name='r', max_epochs=3, checkpoint_config=dict(
        type='DavarCheckpointHook', interval=1))
    loader = toy_loader(SCORES)
    first.register_hook(DavarEvalHook(loader, save_best='accuracy'))
    run(first, loader)
    second = runner_factory(name='r', max_epochs=6, checkpoint_config=dict(
        type='DavarCheckpointHook', interval=1))
    loader = toy_loader(SCORES)
    second.register_hook(DavarEvalHook(loader, save_best='accuracy'))
    resume_runner(second, os.path.join(second.work_dir, 'epoch_3.pth'))
    assert second.meta['hook_msgs']['best_score'] == 0.7
    assert len(second.meta['hook_msgs']['eval_history']) == 3
    run(second, loader)
    msgs = second.meta['hook_msgs']
    assert msgs['best_score'] == 0.9
    assert len(msgs['eval_history']) == 6
    pth = sorted(n for n in os.listdir(second.work_dir)
                 if n.startswith('best'))
    assert pth == ['best_accuracy_epoch_4.pth']


# every `evaluation = dict(...)` shape found in DavarOCR's demo configs
DAVAR_EVALUATION_CFGS = [
    dict(start=3, start_iter=0.5, save_best='accuracy', interval=1,
         iter_interval=5000, model_type='RECOGNIZOR', eval_mode='lightweight',
         by_epoch=True, by_iter=True, rule='greater',
         metric=['accuracy', 'NED']),
    dict(model_type='DETECTOR', type='DavarDistEvalHook', interval=1,
         metric=['hmean'], by_epoch=True, by_iter=False, eval_mode='general',
         save_best='hmean', rule='greater', priority='HIGH'),
    dict(model_type='SPOTTER', type='DavarDistEvalHook', interval=1,
         iter_interval=2000, by_epoch=False, by_iter=True, start_iter=0.4,
         eval_mode='lightweight', metric=['hmean'], save_best='hmean',
         rule='greater', priority='HIGH'),
    dict(save_best='macro_f1', interval=1, metric='macro_f1',
         model_type='DETECTOR', priority='HIGH'),
    dict(save_best='NED', interval=5, metric=['NED', 'accuracy'],
         model_type='RECOGNIZOR', eval_mode='lightweight'),
    dict(interval=1, metric='bbox', save_best='bbox_mAP'),
    dict(save_best='avg_f1', rule=None, metric='avg_f1', start=2),
]


@pytest.mark.parametrize('cfg', DAVAR_EVALUATION_CFGS)
def test_every_davarocr_evaluation_shape_builds(cfg, toy_loader):
    from davarocr_mmcv.apis.train import build_eval_hook
    hook, priority = build_eval_hook(cfg, toy_loader({}), distributed=False)
    assert isinstance(hook, DavarEvalHook)
    assert not isinstance(hook, DavarDistEvalHook)
    assert priority == cfg.get('priority', 'LOW')
    for tracker in hook.trackers:
        assert tracker.rule == ('less' if tracker.metric == 'NED'
                                else 'greater')


def test_built_from_registry_with_dataloader_default(toy_loader):
    hook = build_from_cfg(dict(type='DavarEvalHook', interval=2,
                               save_best='hmean'), HOOKS,
                          default_args=dict(dataloader=toy_loader({})))
    assert hook.interval == 2 and hook.trackers[0].rule == 'greater'


BAD = [
    (dict(model_type='CLASSIFIER'), r"model_type must be one of \('DETECTOR',"
     r" 'RECOGNIZOR', 'SPOTTER'\)"),
    (dict(eval_mode='fast'), r"eval_mode must be one of \('general', "
     r"'lightweight'\)"),
    (dict(save_best='wibble'), r"cannot infer .*'wibble'"),
    (dict(by_iter=True, iter_interval=0), r'iter_interval must be a '
     r'positive int'),
    (dict(start_iter=1.5, by_iter=True, iter_interval=2), r'start_iter must '
     r'be a fraction'),
    (dict(save_best=['accuracy', 'NED'], rule=['greater', 'less', 'less']),
     r'rule must be one value or one per save_best metric'),
]


@pytest.mark.parametrize('kwargs,message', BAD)
def test_bad_arguments(kwargs, message, toy_loader):
    with pytest.raises(ValueError, match=message):
        DavarEvalHook(toy_loader({}), **kwargs)


def test_greater_and_less_keys_extend_inference(toy_loader):
    hook = DavarEvalHook(toy_loader({}), save_best='wibble',
                         less_keys=['wib'])
    assert hook.trackers[0].rule == 'less'
