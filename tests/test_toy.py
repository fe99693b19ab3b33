"""ToyCRNN / ToyTextDataset: registries, DataContainer inputs, outputs and
metrics (fast, no training)."""
import os

import pytest
import torch
from mmcv.parallel import MMDataParallel, collate

import davarocr_mmcv.toy  # noqa: F401  registers the toy modules
from mmdet.datasets import build_dataset
from mmdet.models import build_detector

VAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'demo', 'recognition', 'data', 'val', 'labels.txt')


@pytest.fixture(scope='module')
def dataset():
    return build_dataset(dict(type='ToyTextDataset', ann_file=VAL),
                         dict(test_mode=True))


def test_dataset_sample(dataset):
    assert len(dataset) == 100 and dataset.flag.dtype.name == 'uint8'
    sample = dataset[0]
    assert sample['img'].stack and sample['img'].data.shape == (1, 32, 100)
    assert sample['img_metas'].cpu_only and sample['gt_texts'].cpu_only
    assert sample['gt_texts'].data == dataset.texts[0]


def test_train_and_test_through_mmdataparallel(dataset):
    model = build_detector(dict(type='ToyCRNN'))
    assert type(build_detector(dict(type='ToyTextRecognizer'))) is type(model)
    wrapped = MMDataParallel(model)
    batch = collate([dataset[i] for i in range(4)], samples_per_gpu=4)
    out = wrapped.train_step(batch, None)
    assert set(out) == {'loss', 'log_vars', 'num_samples'}
    assert out['num_samples'] == 4 and 'loss_ctc' in out['log_vars']
    out['loss'].backward()
    model.eval()
    with torch.no_grad():
        result = wrapped(return_loss=False, rescale=True, **batch)
        raw = model(return_loss=False, rescale=True, **batch)  # unscattered
    assert set(result) == {'text'} and len(result['text']) == 4
    assert all(isinstance(t, str) for t in result['text'])
    assert raw == result


def test_evaluate(dataset):
    texts = list(dataset.texts)
    assert dataset.evaluate(texts) == {'accuracy': 1.0, 'NED': 0.0}
    wrong = [''] * len(texts)
    assert dataset.evaluate(wrong, metric='NED') == {'NED': 1.0}
    assert dataset.evaluate([(t, len(t)) for t in texts],
                            metric=['accuracy']) == {'accuracy': 1.0}
    with pytest.raises(KeyError, match='accuracy'):
        dataset.evaluate(texts, metric='hmean')
    with pytest.raises(ValueError):
        dataset.evaluate(texts[:-1])
