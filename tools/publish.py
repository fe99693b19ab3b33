"""Publish the best model of a training: weights without optimizer state
named after their sha256, the config and metrics.json, in one .tar.gz.

    python tools/publish.py WORK_DIR [--out DIR] [--config CFG] [--name N]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.publish import PUBLISH_DIR, publish  # noqa: E402
from davarocr_mmcv.version import add_version_option  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Publish the best checkpoint of a training')
    parser.add_argument('work_dir', help='the training work_dir')
    parser.add_argument('--out', help='output folder (default: '
                        f'WORK_DIR/{PUBLISH_DIR})')
    parser.add_argument('--config', help='config file (default: the one '
                        'dumped in WORK_DIR, else the checkpoint\'s)')
    parser.add_argument('--name', help='base name of the published files '
                        '(default: the config\'s name)')
    parser.add_argument('--metric', help='which best to publish when several '
                        'metrics are tracked')
    add_version_option(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        archive = publish(args.work_dir, args.out, config=args.config,
                          name=args.name, metric=args.metric)
    except (FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    folder = osp.dirname(archive)
    stem = osp.basename(archive)[:-len('.tar.gz')]
    print(f'published {archive}')
    print(f'  checkpoint: {osp.join(folder, stem + ".pth")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
