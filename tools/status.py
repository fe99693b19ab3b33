"""Show the status of a training written by TrainStatusHook.

    python tools/status.py WORK_DIR [--json]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.constants import STATUS_FILE  # noqa: E402
from davarocr_mmcv.status import format_status, read_status  # noqa: E402
from davarocr_mmcv.version import add_version_option  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=f'Show WORK_DIR/{STATUS_FILE} of a training')
    parser.add_argument('work_dir', help='the training work_dir')
    parser.add_argument('--json', action='store_true',
                        help='print the raw file')
    add_version_option(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path = osp.join(args.work_dir, STATUS_FILE)
    if not osp.isfile(path):
        print(f'no {STATUS_FILE} in {args.work_dir}; add custom_hooks = '
              f"[dict(type='TrainStatusHook')] to the config",
              file=sys.stderr)
        return 1
    if args.json:
        with open(path) as f:
            sys.stdout.write(f.read().rstrip('\n') + '\n')
    else:
        print(format_status(read_status(args.work_dir)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
