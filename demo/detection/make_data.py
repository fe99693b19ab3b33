"""Render the tiny COCO-format detection dataset of the detection demo.

Writes ``data/{train,val}/`` next to this file: 128x128 RGB PNGs with one
to three filled shapes (class ``box``: rectangles, class ``disk``: circles)
on a plain background, and ``data/{train,val}.json`` in COCO format.
Everything comes from a fixed seed: running the script again rewrites
byte-identical files.

Usage (from the repository root)::

    python demo/detection/make_data.py
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

SIZE = 128
CLASSES = ('box', 'disk')
SPLITS = (('train', 160, 7), ('val', 40, 8))


def draw_image(rng):
    img = np.full((SIZE, SIZE, 3), rng.integers(0, 80, 3), dtype=np.uint8)
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(0, len(CLASSES)))
        w, h = (int(v) for v in rng.integers(24, 56, 2))
        if label == 1:
            h = w
        x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
        color = tuple(int(c) for c in rng.integers(140, 256, 3))
        if label == 0:
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, -1)
        else:
            cv2.circle(img, (x + w // 2, y + h // 2), w // 2, color, -1)
        shapes.append((label, [x, y, w, h]))
    return img, shapes


def make_split(out, name, num, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out, name), exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, shapes = draw_image(rng)
        file_name = f'{i:05d}.png'
        cv2.imwrite(osp.join(out, name, file_name), img,
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        images.append(dict(id=i, file_name=file_name, width=SIZE,
                           height=SIZE))
        for label, (x, y, w, h) in shapes:
            annotations.append(dict(id=len(annotations), image_id=i,
                                    category_id=label, bbox=[x, y, w, h],
                                    area=w * h, iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i, name=n) for i, n in
                            enumerate(CLASSES)])
    with open(osp.join(out, f'{name}.json'), 'w') as f:
        json.dump(coco, f, sort_keys=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=osp.join(osp.dirname(
        osp.abspath(__file__)), 'data'))
    args = parser.parse_args(argv)
    for name, num, seed in SPLITS:
        make_split(args.out, name, num, seed)
        print(f'{name}: {num} images in {osp.join(args.out, name)}')


if __name__ == '__main__':
    main()
