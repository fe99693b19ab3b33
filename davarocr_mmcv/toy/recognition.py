"""A small CRNN text recognizer and a word-image dataset for the recognition
demo, registered in mmdet's registries (``build_detector`` /
``build_dataset``). The recognizer answers as DavarOCR's do:
``{'text': [str, ...]}``."""
import os.path as osp
from collections import OrderedDict

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmcv.parallel import DataContainer as DC
from mmdet.datasets.builder import DATASETS
from mmdet.models.builder import DETECTORS
from torch.utils.data import Dataset

CHARSET = '0123456789abcdefghijklmnopqrstuvwxyz'
METRICS = ('accuracy', 'NED')


def _block(cin, cout, pool):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(pool, pool)]


@DETECTORS.register_module()
class ToyCRNN(nn.Module):
    """Conv layers, a BiLSTM and CTC over ``charset``.

    Args:
        channels (tuple[int]): widths of the 4 conv blocks.
        hidden (int): LSTM width per direction.
        charset (str): recognizable characters (CTC blank is extra).
    """

    def __init__(self, channels=(16, 32, 64, 64), hidden=64,
                 charset=CHARSET, train_cfg=None, test_cfg=None):
        super().__init__()
        c = channels
        self.charset = charset
        self.cnn = nn.Sequential(*_block(1, c[0], (2, 2)),
                                 *_block(c[0], c[1], (2, 2)),
                                 *_block(c[1], c[2], (2, 1)),
                                 *_block(c[2], c[3], (2, 1)))
        self.rnn = nn.LSTM(c[3], hidden, bidirectional=True,
                           batch_first=True)
        self.fc = nn.Linear(2 * hidden, len(charset) + 1)

    def init_weights(self):
        pass

    def logits(self, img):
        feat = self.cnn(img).mean(2).permute(0, 2, 1)  # N, T, C
        return self.fc(self.rnn(feat)[0])

    def forward(self, img, img_metas=None, return_loss=True, gt_texts=None,
                **kwargs):
        if return_loss:
            return self.forward_train(img, gt_texts)
        return dict(text=self.decode(self.logits(img)))

    def forward_train(self, img, gt_texts):
        log_probs = self.logits(img).log_softmax(-1).permute(1, 0, 2)
        targets = torch.tensor([self.charset.index(ch) + 1
                                for text in gt_texts for ch in text],
                               dtype=torch.long)
        lengths = torch.tensor([len(t) for t in gt_texts], dtype=torch.long)
        inputs = torch.full((len(gt_texts), ), log_probs.shape[0],
                            dtype=torch.long)
        loss = F.ctc_loss(log_probs, targets.to(img.device), inputs, lengths,
                          zero_infinity=True)
        return dict(loss_ctc=loss)

    def decode(self, logits):
        texts = []
        for seq in logits.argmax(-1).tolist():
            chars, prev = [], 0
            for k in seq:
                if k != prev and k != 0:
                    chars.append(self.charset[k - 1])
                prev = k
            texts.append(''.join(chars))
        return texts

    @staticmethod
    def _parse_losses(losses):
        log_vars = OrderedDict((k, v.mean()) for k, v in losses.items())
        loss = sum(v for k, v in log_vars.items() if 'loss' in k)
        log_vars['loss'] = loss
        for name, value in log_vars.items():
            if dist.is_available() and dist.is_initialized():
                value = value.data.clone()
                dist.all_reduce(value.div_(dist.get_world_size()))
            log_vars[name] = value.item()
        return loss, log_vars

    def train_step(self, data, optimizer=None, **kwargs):
        loss, log_vars = self._parse_losses(self(**data))
        return dict(loss=loss, log_vars=log_vars,
                    num_samples=len(data['img_metas']))

    def val_step(self, data, optimizer=None, **kwargs):
        return self.train_step(data, optimizer)


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@DATASETS.register_module()
class ToyTextDataset(Dataset):
    """Word images listed in ``ann_file`` (``<image path>\\t<text>`` lines,
    paths relative to the file's folder), normalized to [-1, 1].

    Args:
        ann_file (str): the label file.
        test_mode (bool): unused; accepted as mmdet datasets do.
    """

    CLASSES = None  # a recognizer has a charset, not classes

    def __init__(self, ann_file, test_mode=False, pipeline=None):
        root = osp.dirname(ann_file)
        self.items = []
        with open(ann_file) as f:
            for line in f:
                path, text = line.rstrip('\n').split('\t')
                self.items.append((osp.join(root, path), text))
        self.texts = [text for _, text in self.items]
        self.flag = np.zeros(len(self), dtype=np.uint8)
        self.test_mode = test_mode
        self._cache = {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        img = self._cache.get(idx)
        if img is None:
            path = self.items[idx][0]
            gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise FileNotFoundError(path)
            img = torch.from_numpy(
                (gray.astype(np.float32) - 127.5) / 127.5)[None]
            self._cache[idx] = img
        meta = dict(filename=self.items[idx][0], ori_shape=tuple(img.shape))
        return dict(img=DC(img, stack=True),
                    img_metas=DC(meta, cpu_only=True),
                    gt_texts=DC(self.items[idx][1], cpu_only=True))

    def evaluate(self, results, logger=None, metric=METRICS, **kwargs):
        """Word accuracy (exact match) and mean normalized edit distance of
        ``results`` (predicted strings in dataset order)."""
        names = [metric] if isinstance(metric, str) else list(metric)
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise KeyError(f'metric {unknown} is not supported; available '
                           f'metrics: {list(METRICS)}')
        if len(results) != len(self):
            raise ValueError(f'{len(results)} results for {len(self)} '
                             'samples')
        pairs = list(zip(results, self.texts))
        scores = dict(
            accuracy=sum(p == t for p, t in pairs) / len(pairs),
            NED=sum(edit_distance(p, t) / max(len(p), len(t), 1)
                    for p, t in pairs) / len(pairs))
        return {name: round(float(scores[name]), 4) for name in names}
