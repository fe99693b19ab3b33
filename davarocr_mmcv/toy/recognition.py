"""A small CRNN text recognizer and a word-image dataset for the recognition
demo, registered in mmdet's registries (``build_detector`` /
``build_dataset``).

The recognizer follows mmdet's ``BaseDetector`` protocol (``forward(img,
img_metas, return_loss=True, **kwargs)``, ``train_step`` returning
``dict(loss, log_vars, num_samples)``) and answers as DavarOCR's recognizers
do: ``{'text': [str, ...]}``, one string per image of the batch.
"""
import os.path as osp
import warnings

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.parallel import DataContainer as DC
from mmdet.datasets.builder import DATASETS
from mmdet.datasets.pipelines import Compose
from mmdet.models.builder import DETECTORS
from mmdet.models.detectors.base import BaseDetector
from torch.utils.data import Dataset

CHARSET = '0123456789abcdefghijklmnopqrstuvwxyz'
METRICS = ('accuracy', 'NED')


def _block(cin, cout, pool):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(pool, pool)]


def unwrap(value):
    """The content of a DataContainer that reached the model unscattered
    (one collated group, or several concatenated); anything else as is."""
    if not isinstance(value, DC):
        return value
    data = value.data
    if not isinstance(data, list) or not data:
        return data
    if len(data) == 1:
        return data[0]
    if all(isinstance(d, torch.Tensor) for d in data):
        return torch.cat(data)
    return [item for group in data for item in group]


@DETECTORS.register_module(name=['ToyCRNN', 'ToyTextRecognizer'])
class ToyCRNN(BaseDetector):
    """Four conv blocks, a bidirectional LSTM and CTC over ``charset``.

    A 32-pixel-high input gives a 2-pixel-high feature map that is averaged
    over its height, one time step per 4 pixels of width (25 for 100 px).

    Args:
        channels (tuple[int]): widths of the 4 conv blocks.
        hidden (int): LSTM width per direction.
        charset (str): recognizable characters (the CTC blank is extra).
            Characters of a label outside it are left out of the target.
        in_channels (int): image channels (1 for grayscale).
        train_cfg, test_cfg: accepted as mmdet detectors do; unused.
        init_cfg (dict | None): mmcv initialization config; None keeps
            PyTorch's default initialization.
    """

    def __init__(self, channels=(16, 32, 64, 64), hidden=64,
                 charset=CHARSET, in_channels=1, train_cfg=None,
                 test_cfg=None, init_cfg=None):
        super().__init__(init_cfg)
        if len(channels) != 4:
            raise ValueError(f'channels must give 4 widths, got {channels}')
        if len(set(charset)) != len(charset) or not charset:
            raise ValueError('charset must be non-empty, without repeats')
        c = channels
        self.charset = charset
        self.char_index = {ch: i + 1 for i, ch in enumerate(charset)}
        self.cnn = nn.Sequential(*_block(in_channels, c[0], (2, 2)),
                                 *_block(c[0], c[1], (2, 2)),
                                 *_block(c[1], c[2], (2, 1)),
                                 *_block(c[2], c[3], (2, 1)))
        self.rnn = nn.LSTM(c[3], hidden, bidirectional=True,
                           batch_first=True)
        self.fc = nn.Linear(2 * hidden, len(charset) + 1)
        self._warned_chars = set()

    def init_weights(self):
        # PyTorch's default initialization, without BaseModule's per-parameter
        # report in the log; an init_cfg still applies.
        if self.init_cfg:
            super().init_weights()

    # ---------------------------------------------------------- network
    def extract_feat(self, img):
        """(N, C, H, W) images -> (N, T, C') sequence features."""
        return self.cnn(img).mean(2).permute(0, 2, 1)

    def logits(self, img):
        """(N, T, len(charset) + 1) class scores; index 0 is the blank."""
        return self.fc(self.rnn(self.extract_feat(img))[0])

    # ---------------------------------------------------------- forward
    def forward(self, img, img_metas=None, return_loss=True, **kwargs):
        """Losses (``return_loss=True``) or ``{'text': [str, ...]}``.

        ``img`` is an (N, C, H, W) tensor, or at test time mmdet's list of
        test-time augmentations of it; DataContainers left by a wrapper
        that did not scatter are unwrapped.
        """
        img = unwrap(img)
        img_metas = unwrap(img_metas)
        kwargs = {k: unwrap(v) for k, v in kwargs.items()}
        if return_loss:
            return self.forward_train(img, img_metas, **kwargs)
        return self.forward_test(img, img_metas, **kwargs)

    def forward_train(self, img, img_metas=None, gt_texts=None, **kwargs):
        if gt_texts is None:
            raise ValueError('ToyCRNN needs gt_texts to compute its loss')
        if isinstance(gt_texts, str):
            gt_texts = [gt_texts]
        if len(gt_texts) != img.size(0):
            raise ValueError(f'{len(gt_texts)} gt_texts for a batch of '
                             f'{img.size(0)} images')
        if img_metas:
            super().forward_train(img, img_metas)  # batch_input_shape
        log_probs = self.logits(img).log_softmax(-1).permute(1, 0, 2)
        encoded = [self.encode(text) for text in gt_texts]
        targets = torch.tensor([k for codes in encoded for k in codes],
                               dtype=torch.long, device=img.device)
        lengths = torch.tensor([len(codes) for codes in encoded],
                               dtype=torch.long)
        inputs = torch.full((img.size(0), ), log_probs.size(0),
                            dtype=torch.long)
        loss = F.ctc_loss(log_probs, targets, inputs, lengths,
                          zero_infinity=True)
        return dict(loss_ctc=loss)

    def forward_test(self, img, img_metas=None, rescale=False, **kwargs):
        if isinstance(img, (list, tuple)):  # mmdet's test-time aug. lists
            metas = img_metas if isinstance(img_metas, (list, tuple)) \
                else [img_metas] * len(img)
            if len(img) == 1:
                return self.simple_test(img[0], metas[0], rescale=rescale)
            return self.aug_test(list(img), list(metas), rescale=rescale)
        return self.simple_test(img, img_metas, rescale=rescale)

    def simple_test(self, img, img_metas=None, rescale=False, **kwargs):
        return dict(text=self.decode(self.logits(img)))

    def aug_test(self, imgs, img_metas=None, rescale=False, **kwargs):
        """Average the class probabilities of the augmentations (all of the
        same size), then decode."""
        probs = torch.stack([self.logits(img).softmax(-1) for img in imgs])
        return dict(text=self.decode(probs.mean(0)))

    def train_step(self, data, optimizer=None, **kwargs):
        return super().train_step({k: unwrap(v) for k, v in data.items()},
                                  optimizer)

    def val_step(self, data, optimizer=None, **kwargs):
        return super().val_step({k: unwrap(v) for k, v in data.items()},
                                optimizer)

    # ------------------------------------------------------------- text
    def encode(self, text):
        """Label indices of ``text`` (1-based; 0 is the CTC blank)."""
        codes = [self.char_index.get(ch) for ch in text]
        if None in codes:
            unknown = {ch for ch in text if ch not in self.char_index}
            new = unknown - self._warned_chars
            if new:
                self._warned_chars |= new
                warnings.warn(f'ToyCRNN: characters {sorted(new)} are not '
                              'in the charset and are left out of targets')
            codes = [k for k in codes if k is not None]
        return codes

    def decode(self, scores):
        """Greedy CTC decoding of (N, T, classes) scores."""
        texts = []
        for seq in scores.argmax(-1).tolist():
            chars, prev = [], 0
            for k in seq:
                if k != prev and k != 0:
                    chars.append(self.charset[k - 1])
                prev = k
            texts.append(''.join(chars))
        return texts

    def show_result(self, img, result, show=False, out_file=None,
                    win_name='', wait_time=0, **kwargs):
        """Draw the recognized text under ``img`` (a path or an array)."""
        import mmcv
        img = mmcv.imread(img).copy()
        text = result['text'][0] if isinstance(result, dict) else result
        h, w = img.shape[:2]
        band = np.full((max(h // 2, 16), w, 3), 255, dtype=np.uint8)
        cv2.putText(band, str(text), (2, band.shape[0] - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, band.shape[0] / 32, (0, 0, 255),
                    1, cv2.LINE_AA)
        img = np.vstack([img, band])
        if show:
            mmcv.imshow(img, win_name, wait_time)
        if out_file is not None:
            mmcv.imwrite(img, out_file)
        if not (show or out_file):
            return img
        return None


ToyTextRecognizer = ToyCRNN


def edit_distance(a, b):
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _text_of(result):
    """A prediction as a string: recognizers may give (text, length) pairs."""
    if isinstance(result, (tuple, list)):
        result = result[0] if result else ''
    return '' if result is None else str(result)


@DATASETS.register_module()
class ToyTextDataset(Dataset):
    """Word images listed in ``ann_file``, one ``<image path>\\t<text>``
    line each, normalized to ``(pixel - mean) / std``.

    ``__getitem__`` gives ``img`` (DataContainer of a float (C, H, W)
    tensor, stacked by mmcv's collate), ``img_metas`` and ``gt_texts``
    (cpu-only DataContainers): what MMDataParallel and MMDistributedDataParallel
    scatter.

    Args:
        ann_file (str): the label file.
        img_prefix (str | None): folder the image paths are relative to;
            None: the folder of ``ann_file``.
        pipeline (list[dict | callable] | None): transforms (mmdet's
            ``PIPELINES`` or callables) applied to the results dict before
            normalization; ``results['img']`` is the grayscale (H, W) uint8
            image and ``results['gt_text']`` its label.
        img_size (tuple[int] | None): (height, width) every image is resized
            to before the pipeline; None keeps the files' size.
        mean, std (float): normalization; the default maps 0..255 to -1..1.
        test_mode (bool): accepted as mmdet datasets do; samples keep their
            labels either way.
    """

    CLASSES = None  # a recognizer has a charset, not classes

    def __init__(self, ann_file, img_prefix=None, pipeline=None,
                 img_size=None, mean=127.5, std=127.5, test_mode=False):
        root = osp.dirname(ann_file) if img_prefix is None else img_prefix
        self.ann_file = ann_file
        self.items = []
        with open(ann_file, encoding='utf-8') as f:
            for num, line in enumerate(f, 1):
                line = line.rstrip('\r\n')
                if not line.strip():
                    continue
                path, sep, text = line.partition('\t')
                if not sep:
                    raise ValueError(f'{ann_file}:{num}: expected '
                                     f'"<image path>\\t<text>", got {line!r}')
                self.items.append((osp.join(root, path), text))
        if not self.items:
            raise ValueError(f'{ann_file} lists no image')
        self.texts = [text for _, text in self.items]
        self.flag = np.zeros(len(self), dtype=np.uint8)
        self.pipeline = Compose(pipeline) if pipeline else None
        self.img_size = tuple(img_size) if img_size else None
        self.mean, self.std = float(mean), float(std)
        self.test_mode = test_mode
        self._cache = {}

    def __len__(self):
        return len(self.items)

    def _read(self, idx):
        img = self._cache.get(idx)
        if img is None:
            path = self.items[idx][0]
            img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise FileNotFoundError(f'cannot read image {path}')
            if self.img_size is not None:
                h, w = self.img_size
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            self._cache[idx] = img  # 600 small images: a few MB
        return img

    def prepare(self, idx):
        """The results dict of sample ``idx`` after the pipeline."""
        path, text = self.items[idx]
        img = self._read(idx)
        results = dict(img=img.copy(), gt_text=text, filename=path,
                       ori_filename=osp.basename(path),
                       ori_shape=(*img.shape[:2], 1), img_fields=['img'])
        if self.pipeline is not None:
            results = self.pipeline(results)
        return results

    def __getitem__(self, idx):
        results = self.prepare(idx)
        img = results['img']
        if not isinstance(img, torch.Tensor):
            img = np.asarray(img, dtype=np.float32)
            img = (img - self.mean) / self.std
            img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
            img = torch.from_numpy(np.ascontiguousarray(img))
        meta = dict(filename=results['filename'],
                    ori_filename=results['ori_filename'],
                    ori_shape=results['ori_shape'],
                    img_shape=(*img.shape[1:], img.shape[0]),
                    img_norm_cfg=dict(mean=self.mean, std=self.std))
        return dict(img=DC(img, stack=True),
                    img_metas=DC(meta, cpu_only=True),
                    gt_texts=DC(results['gt_text'], cpu_only=True))

    def evaluate(self, results, logger=None, metric=METRICS, **kwargs):
        """Word accuracy (exact match, higher is better) and mean normalized
        edit distance (``NED``, lower is better) of ``results``, the
        predicted strings in dataset order.

        Args:
            metric (str | list[str] | None): among ``METRICS``; None: all.

        Raises:
            KeyError: for an unknown metric name.
            ValueError: when ``results`` does not hold one entry per sample.
        """
        names = list(METRICS) if metric is None else (
            [metric] if isinstance(metric, str) else list(metric))
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise KeyError(f'metric {unknown} is not supported; available '
                           f'metrics: {list(METRICS)}')
        if len(results) != len(self):
            raise ValueError(f'{len(results)} results for {len(self)} '
                             'samples')
        pairs = [(_text_of(p), t) for p, t in zip(results, self.texts)]
        scores = dict(
            accuracy=sum(p == t for p, t in pairs) / len(pairs),
            NED=sum(edit_distance(p, t) / max(len(p), len(t), 1)
                    for p, t in pairs) / len(pairs))
        return {name: round(float(scores[name]), 4) for name in names}
