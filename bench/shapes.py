"""Result sets as toolboxes return them, for the collection benchmark.

Each generator returns one rank's share of ``n`` results (samples rank,
rank + world, ...), drawn from a generator seeded by the rank, so that rank
0 can rebuild any rank's share and check what it collected.

- ``mmdet_bbox``: mmdet 2.x ``bbox2result``: per image, 80 float32 arrays
  ``dets[labels == i, :]`` of 100 detections spread over a few classes; the
  other classes are empty (0, 5) arrays.
- ``mmdet_mask``: mmdet 2.x Mask R-CNN after ``encode_mask_results``:
  ``(bbox_results, segm_results)``, one RLE dict ``{'size': [h, w],
  'counts': bytes}`` per box, encoded by pycocotools from elliptic masks.
- ``davar_recognizer``: DavarOCR recognizers, formatted per sample: one
  short string.
- ``davar_spotter``: DavarOCR spotters (``PostMaskRCNNSpot``): ``{'points':
  [[x1, y1, ..., xn, yn], ...], 'texts': [...]}``: no arrays at all.
- ``davar_detector``: DavarOCR detectors (``PostMaskRCNN``): ``{'points':
  ..., 'confidence': [np.float32, ...], 'labels': [[0], ...]}``.
- ``single_array``: one (3, 5) float32 array per sample (the bench's former
  only shape).
"""
import numpy as np
import torch

CLASSES = 80
DETECTIONS = 100  # mmdet's max_per_img
_ALPHABET = np.frombuffer(b'abcdefghijklmnopqrstuvwxyz0123456789', np.uint8)


def _share(rank, n, world):
    return range(rank, n, world)


def _bbox_result(rng, classes=CLASSES, count=DETECTIONS):
    """mmdet's ``bbox2result`` of ``count`` detections in a few classes."""
    used = rng.choice(classes, rng.randint(1, 9), replace=False)
    labels = rng.choice(used, count)
    dets = rng.rand(count, 5).astype(np.float32) * np.float32(
        [640, 480, 640, 480, 1])
    return [dets[labels == i, :] for i in range(classes)], labels


def mmdet_bbox(rank, n, world):
    rng = np.random.RandomState(rank)
    return [_bbox_result(rng)[0] for _ in _share(rank, n, world)]


def _rle_pool(rng, size=64, shape=(480, 640)):
    """RLE dicts of elliptic masks, encoded as mmdet's
    ``encode_mask_results`` does."""
    import pycocotools.mask as mask_util
    ys, xs = np.ogrid[:shape[0], :shape[1]]
    pool = []
    for _ in range(size):
        cy, cx = rng.rand(2) * shape
        ry, rx = 5 + rng.rand(2) * (np.array(shape) / 4)
        mask = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
        pool.append(mask_util.encode(np.array(
            mask[:, :, np.newaxis], order='F', dtype='uint8'))[0])
    return pool


def mmdet_mask(rank, n, world):
    rng = np.random.RandomState(rank)
    pool = _rle_pool(rng)
    out = []
    for _ in _share(rank, n, world):
        bboxes, labels = _bbox_result(rng)
        picks = iter(rng.randint(len(pool), size=DETECTIONS).tolist())
        segms = []
        for i in range(CLASSES):
            segms.append([])
            for _ in range(int((labels == i).sum())):
                rle = pool[next(picks)]
                # a distinct dict, list and bytes per mask, as encoded
                segms[-1].append({'size': list(rle['size']),
                                  'counts': bytes(bytearray(rle['counts']))})
        out.append((bboxes, segms))
    return out


def _words(rng, count, shortest=1, longest=15):
    lengths = rng.randint(shortest, longest + 1, size=count)
    text = _ALPHABET[rng.randint(len(_ALPHABET), size=int(lengths.sum()))]
    text = text.tobytes().decode()
    ends = np.cumsum(lengths).tolist()
    return [text[end - size:end] for end, size in zip(ends, lengths)]


def davar_recognizer(rank, n, world):
    rng = np.random.RandomState(rank)
    return _words(rng, len(_share(rank, n, world)))


def _polygons(rng, count):
    """``curve_poly.reshape(-1).tolist()``: 4 to 14 points of int coords."""
    return [(rng.randint(0, 1280, size=2 * rng.randint(4, 15))).tolist()
            for _ in range(count)]


def davar_spotter(rank, n, world):
    rng = np.random.RandomState(rank)
    out = []
    for _ in _share(rank, n, world):
        k = rng.randint(0, 31)
        out.append({'points': _polygons(rng, k), 'texts': _words(rng, k)})
    return out


def davar_detector(rank, n, world):
    rng = np.random.RandomState(rank)
    out = []
    for _ in _share(rank, n, world):
        k = rng.randint(0, 31)
        scores = rng.rand(k, 5).astype(np.float32)
        out.append({'points': _polygons(rng, k),
                    'confidence': [scores[i, 4] for i in range(k)],
                    'labels': [[0] for _ in range(k)]})
    return out


def single_array(rank, n, world):
    rng = np.random.RandomState(rank)
    return [[rng.rand(3, 5).astype(np.float32)]
            for _ in _share(rank, n, world)]


def same(a, b):
    """``a`` and ``b`` are equal, exactly: types, dtypes (byte order
    included), shapes, strides of contiguous arrays, bytes."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(same, a, b))
    if kind is dict:
        return list(a) == list(b) and all(map(same, a.values(),
                                              b.values()))
    if kind is np.ndarray:
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return same(a.tolist(), b.tolist())
        if (a.flags.c_contiguous or a.flags.f_contiguous) and \
                a.size and a.strides != b.strides:
            return False
        return a.tobytes() == b.tobytes()
    if kind is torch.Tensor:
        return a.dtype == b.dtype and a.shape == b.shape and \
            a.device == b.device and a.stride() == b.stride() and \
            a.cpu().reshape(-1).view(torch.uint8).equal(
                b.cpu().reshape(-1).view(torch.uint8))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if kind is float:
        return a == b or (a != a and b != b)
    return a == b
