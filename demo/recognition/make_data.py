"""Render the synthetic word images of the recognition demo.

Writes ``data/train`` and ``data/val`` next to this file: grayscale PNGs of
32x100 pixels under ``images/`` and a ``labels.txt`` with one
``<relative path>\\t<text>`` line per image. Texts are 3 to 6 characters of
``0-9a-z`` drawn with OpenCV's Hershey fonts. Everything comes from a fixed
seed, so running the script again rewrites byte-identical files.

Usage (from the repository root)::

    python demo/recognition/make_data.py [--out demo/recognition/data]
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np

CHARSET = '0123456789abcdefghijklmnopqrstuvwxyz'
HEIGHT, WIDTH = 32, 100
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)
SPLITS = (('train', 600, 20240), ('val', 100, 20241))


def random_text(rng, min_len=3, max_len=6):
    length = int(rng.integers(min_len, max_len + 1))
    return ''.join(CHARSET[i] for i in rng.integers(0, len(CHARSET), length))


def render(text, rng):
    """One HEIGHT x WIDTH uint8 image of ``text``: dark text, light noisy
    background, random font, size and position."""
    background = int(rng.integers(170, 256))
    ink = int(rng.integers(0, 90))
    font = FONTS[int(rng.integers(0, len(FONTS)))]
    thickness = int(rng.integers(1, 3))
    (w, h), base = cv2.getTextSize(text, font, 1.0, thickness)
    # fit the text into 70-95% of the width and at most 75% of the height
    scale = min(WIDTH * rng.uniform(0.7, 0.95) / w, HEIGHT * 0.75 / (h + base))
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    x = int(rng.integers(0, max(WIDTH - w, 0) + 1))
    y = h + int(rng.integers(0, max(HEIGHT - h - base, 0) + 1))
    img = np.full((HEIGHT, WIDTH), background, dtype=np.uint8)
    cv2.putText(img, text, (x, y), font, scale, ink, thickness, cv2.LINE_AA)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def make_split(out_dir, name, num, seed):
    rng = np.random.default_rng(seed)
    split_dir = osp.join(out_dir, name)
    img_dir = osp.join(split_dir, 'images')
    os.makedirs(img_dir, exist_ok=True)
    for old in os.listdir(img_dir):  # no stale images from a larger run
        if old.endswith('.png'):
            os.remove(osp.join(img_dir, old))
    lines = []
    for i in range(num):
        text = random_text(rng)
        rel = f'images/{i:05d}.png'
        if not cv2.imwrite(osp.join(split_dir, rel), render(text, rng),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise OSError(f'cannot write {osp.join(split_dir, rel)}')
        lines.append(f'{rel}\t{text}\n')
    with open(osp.join(split_dir, 'labels.txt'), 'w', newline='\n') as f:
        f.writelines(lines)
    return num


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=osp.join(osp.dirname(
        osp.abspath(__file__)), 'data'), help='output folder')
    args = parser.parse_args(argv)
    for name, num, seed in SPLITS:
        make_split(args.out, name, num, seed)
        print(f'{name}: {num} images in {osp.join(args.out, name)}')


if __name__ == '__main__':
    main()
