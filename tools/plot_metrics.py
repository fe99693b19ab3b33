"""Plot a training's loss and evaluation metrics into a PNG.

    python tools/plot_metrics.py WORK_DIR [--out PNG]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.plot import PLOT_FILE, plot_metrics  # noqa: E402
from davarocr_mmcv.version import add_version_option  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plot loss and evaluation metrics of a training')
    parser.add_argument('work_dir', help='the training work_dir')
    parser.add_argument('--out', help=f'PNG to write (default: '
                        f'WORK_DIR/{PLOT_FILE})')
    add_version_option(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = plot_metrics(args.work_dir, args.out)
    except FileNotFoundError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
