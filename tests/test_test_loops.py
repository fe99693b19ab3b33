"""The test loops pass a model only the keyword arguments its test path
takes: ``rescale=True`` to a detector (mmdet's ``simple_test(...,
rescale=False)``), nothing more to a classifier whose head takes no
``rescale`` (mmcls's ``LinearClsHead.simple_test``), whatever
``model_type``."""
import json

import pytest
import torch
import torch.nn as nn
from mmcv.parallel import MMDataParallel

from davarocr_mmcv import DavarEvalHook, multi_gpu_test, single_gpu_test
from davarocr_mmcv.apis.test import multi_gpu_test as apis_multi_gpu_test
from davarocr_mmcv.apis.test import single_gpu_test as apis_single_gpu_test
from davarocr_mmcv.core.testing import MODEL_TYPES, inference_kwargs
from dist_workers import dist_loader, launch
from toy import ScriptedDataset, make_loader, run


class ClsHead(nn.Module):
    """mmcls's LinearClsHead: ``simple_test`` takes no other keyword; it
    predicts each sample's index."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)

    def simple_test(self, x, softmax=True, post_process=True):
        return [int(v) for v in x[:, 0]]


class TinyClassifier(nn.Module):
    """mmcls's ImageClassifier shape: ``**kwargs`` handed down to the
    head."""

    def __init__(self):
        super().__init__()
        self.head = ClsHead()

    def forward(self, x, return_loss=True, **kwargs):
        if return_loss:
            return self.head.fc(x).pow(2).mean()
        return self.forward_test(x, **kwargs)

    def forward_test(self, imgs, **kwargs):
        return self.simple_test(imgs, **kwargs)

    def simple_test(self, img, img_metas=None, **kwargs):
        return self.head.simple_test(img, **kwargs)

    def train_step(self, data_batch, optimizer=None, **kwargs):
        loss = self(data_batch['x'])
        return dict(loss=loss, log_vars=dict(loss=float(loss)),
                    num_samples=len(data_batch['x']))


class TinyDetector(nn.Module):
    """mmdet's BaseDetector shape: ``simple_test(..., rescale=False)``."""

    def __init__(self):
        super().__init__()
        self.rescale_seen = []

    def forward(self, x, return_loss=True, **kwargs):
        return self.forward_test(x, **kwargs)

    def forward_test(self, imgs, **kwargs):
        return self.simple_test(imgs, **kwargs)

    def simple_test(self, img, img_metas=None, rescale=False):
        self.rescale_seen.append(rescale)
        return [int(v) for v in img[:, 0]]


def loader(size=5):
    return make_loader(ScriptedDataset(size=size))


def test_the_kwargs_follow_the_test_path():
    assert inference_kwargs(TinyClassifier()) == dict(return_loss=False)
    assert inference_kwargs(TinyDetector()) == dict(return_loss=False,
                                                    rescale=True)
    # the wrapper's forward(*inputs, **kwargs) is not the model's
    assert inference_kwargs(MMDataParallel(TinyClassifier())) == \
        dict(return_loss=False)


@pytest.mark.parametrize('model_type', MODEL_TYPES)
@pytest.mark.parametrize('wrap', [False, True])
def test_single_gpu_test_classifier_and_detector(model_type, wrap):
    classifier = TinyClassifier()
    model = MMDataParallel(classifier) if wrap else classifier
    assert single_gpu_test(model, loader(),
                           model_type=model_type) == [0, 1, 2, 3, 4]
    detector = TinyDetector()
    model = MMDataParallel(detector) if wrap else detector
    assert single_gpu_test(model, loader(),
                           model_type=model_type) == [0, 1, 2, 3, 4]
    assert detector.rescale_seen == [True] * 3  # 3 batches of 2, 2, 1


def test_the_loops_are_where_davarocr_had_them():
    assert apis_single_gpu_test is single_gpu_test
    assert apis_multi_gpu_test is multi_gpu_test


def test_eval_hook_evaluates_a_classifier(runner_factory, toy_loader):
    """The default test_fn, model_type left at 'DETECTOR'."""
    runner = runner_factory(max_epochs=2, model=TinyClassifier())
    val = toy_loader({0: 0.5})  # scored by the first prediction: 0
    runner.register_hook(DavarEvalHook(val, save_best='accuracy'))
    run(runner, val)
    assert [c['n'] for c in val.dataset.calls] == [4, 4]
    assert runner.meta['hook_msgs']['best_score'] == 0.5


def loops_on_two_ranks(rank, world_size, out):
    classifier, detector = TinyClassifier(), TinyDetector()
    results = dict(
        classifier=multi_gpu_test(classifier, dist_loader(
            ScriptedDataset(size=5)), model_type='RECOGNIZOR'),
        detector=multi_gpu_test(detector, dist_loader(
            ScriptedDataset(size=5))),
        rescale=detector.rescale_seen)
    with open(f'{out}/rank{rank}.json', 'w') as f:
        json.dump(results, f)


def test_multi_gpu_test_classifier_and_detector(tmp_path):
    launch(loops_on_two_ranks, 2, 180, str(tmp_path))
    rank0 = json.loads((tmp_path / 'rank0.json').read_text())
    assert rank0['classifier'] == [0, 1, 2, 3, 4]
    assert rank0['detector'] == [0, 1, 2, 3, 4]
    for r in range(2):
        rank = json.loads((tmp_path / f'rank{r}.json').read_text())
        assert rank['rescale'] == [True, True]  # 3 padded samples per rank
