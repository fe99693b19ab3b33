"""Test a checkpoint, as DavarOCR's and mmdet 2.28's tools/test.py do, with
their options.

    python tools/test.py CONFIG CHECKPOINT --eval accuracy NED [--out r.pkl]
    python tools/test.py CONFIG Best_checkpoint.pth --split val --eval NED
    python tools/test.py CONFIG CHECKPOINT --format-only \\
        --eval-options jsonfile_prefix=results
    python tools/test.py CONFIG CHECKPOINT --show-dir painted/
    bash tools/dist_test.sh CONFIG CHECKPOINT 2 --eval accuracy

--eval passes the config's evaluation settings (less the eval hook's own)
to dataset.evaluate, as during training; --eval-options overrides them.
The metrics are printed as the last line, in json.
"""
import json
import os.path as osp
import sys
import time
import warnings

import mmcv
import torch
from mmcv.cnn import fuse_conv_bn
from mmcv.runner import wrap_fp16_model
from mmcv.utils import get_logger

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.apis import (build_model, multi_gpu_test,  # noqa: E402
                                single_gpu_test, wrap_model)
from davarocr_mmcv.apis.cli import (DictOptionsAction,  # noqa: E402
                                    add_run_options, check_args, load_config,
                                    make_parser, merge_options, start_run)
from davarocr_mmcv.apis.data import build_eval_loader  # noqa: E402
from davarocr_mmcv.apis.resolve import Resolver  # noqa: E402
from davarocr_mmcv.apis.train import evaluate_kwargs  # noqa: E402
from davarocr_mmcv.core.accept import (CheckpointLoadError,  # noqa: E402
                                       load_accepted, load_weights_into)

#: the splits a checkpoint can be tested on
SPLITS = ('test', 'val')


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--split', choices=SPLITS, default='test',
                        help='the data split to test on (default: test); '
                        'val re-tests a Best_checkpoint.pth on the data '
                        'its logged best was measured on')
    parser.add_argument('--eval', nargs='+', metavar='METRIC',
                        help='metrics for dataset.evaluate, e.g. bbox, '
                        'hmean, accuracy NED')
    parser.add_argument('--eval-options', nargs='+',
                        action=DictOptionsAction, metavar='KEY=VALUE',
                        help="kwargs for dataset.evaluate over the config's "
                        'evaluation settings (with --format-only, for '
                        "dataset.format_results): k=v, a.b=v, k=\"{'a': 1}\"")
    parser.add_argument('--out', help='pickle file (.pkl) for the raw results')
    parser.add_argument('--format-only', action='store_true',
                        help='write the results in the dataset\'s format '
                        '(dataset.format_results, e.g. --eval-options '
                        'jsonfile_prefix=DIR/name for COCO), no evaluation')
    parser.add_argument('--work-dir', help='write the metrics of --eval to '
                        'eval_<timestamp>.json in this folder')
    parser.add_argument('--show', action='store_true',
                        help="show each image with a detector's results")
    parser.add_argument('--show-dir', help="write each image painted with a "
                        "detector's results (model.show_result) here")
    parser.add_argument('--show-score-thr', type=float, default=0.3,
                        help='score threshold of painted boxes (default: '
                        '0.3)')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='fuse each conv and its batch norm (faster '
                        'inference, same results)')
    parser.add_argument('--tmpdir', help='collect results through files in '
                        'this folder, which every node must see (default: '
                        'through the process group, no folder)')
    parser.add_argument('--gpu-collect', action='store_true',
                        help='collect results through the process group '
                        'even with --tmpdir')
    add_run_options(parser, 'eval-options')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = check_args(parser, parser.parse_args(argv), 'eval-options')
    if not (args.eval or args.out or args.format_only or args.show
            or args.show_dir):
        parser.error('give at least one of --eval METRIC..., --out FILE, '
                     '--format-only, --show, --show-dir DIR')
    if args.eval and args.format_only:
        parser.error('--eval and --format-only cannot be both specified')
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out}: the output file must be a .pkl '
                     'file')
    if (args.show or args.show_dir) and args.launcher != 'none':
        parser.error('--show / --show-dir paint in one process: run '
                     'python tools/test.py without --launcher')
    return args


def model_type_of(cfg):
    """``evaluation.model_type``, else DavarOCR's top-level ``type`` when it
    is a test loop's model type, else 'DETECTOR'."""
    evaluation = cfg.get('evaluation') or {}
    if 'model_type' in evaluation:
        return evaluation['model_type']
    return cfg.get('type') if cfg.get('type') in (
        'RECOGNIZOR', 'SPOTTER') else 'DETECTOR'


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    distributed, rank = start_run(args, cfg, 'test')
    model_type = model_type_of(cfg)
    if (args.show or args.show_dir) and model_type != 'DETECTOR':
        sys.exit(f'error: --show / --show-dir paint a detector\'s results '
                 f'(model.show_result); this model type is {model_type}')

    # a type is found in every loaded registry: the one the top-level
    # type names, then the imported toolboxes', then mmdet's (apis/resolve.py)
    resolver = Resolver.of(cfg)
    dataset, loader = build_eval_loader(cfg, args.split, distributed,
                                        resolver)
    cfg.model.pop('pretrained', None)
    model = build_model(cfg.model, test_cfg=cfg.get('test_cfg'),
                        resolver=resolver)
    if cfg.get('fp16') is not None:
        if torch.cuda.is_available():
            wrap_fp16_model(model)
        else:  # mmcv casts the inputs to half, which CPU convolutions refuse
            warnings.warn('fp16 is set in the config, but mmcv\'s fp16 '
                          'inference needs CUDA: testing in fp32')
    # refused unless it fills every weight of the model (core/accept.py):
    # a test never scores weights it did not load
    logger = get_logger('davarocr_mmcv')
    checkpoint = load_accepted(args.checkpoint, 'checkpoint', model, logger)
    load_weights_into(model, checkpoint, f'checkpoint: {args.checkpoint}',
                      logger, complete=True)
    if args.fuse_conv_bn:
        model = fuse_conv_bn(model)
    if 'CLASSES' in checkpoint.get('meta', {}):
        model.CLASSES = checkpoint['meta']['CLASSES']
    elif hasattr(dataset, 'CLASSES'):
        model.CLASSES = dataset.CLASSES
    model = wrap_model(model, distributed)
    if distributed:
        # tmpdir None: results gathered through the process group
        results = multi_gpu_test(model, loader, tmpdir=args.tmpdir,
                                 gpu_collect=args.gpu_collect,
                                 model_type=model_type)
    else:
        results = single_gpu_test(model, loader, args.show, args.show_dir,
                                  args.show_score_thr, model_type=model_type)
    if rank != 0:
        return
    if args.out:
        mmcv.dump(results, args.out)
        print(f'\nwrote results to {args.out}')
    if args.format_only:
        dataset.format_results(results, **(args.eval_options or {}))
    if args.eval:
        kwargs = merge_options(dict(evaluate_kwargs(cfg.get('evaluation')),
                                    metric=args.eval), args.eval_options)
        metrics = dataset.evaluate(results, **kwargs)
        if args.work_dir:
            mmcv.mkdir_or_exist(osp.abspath(args.work_dir))
            stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
            mmcv.dump(dict(config=args.config, metric=metrics),
                      osp.join(args.work_dir, f'eval_{stamp}.json'))
        print()
        print(json.dumps({k: float(v) if isinstance(v, (int, float)) or
                          hasattr(v, 'item') else v
                          for k, v in metrics.items()}))


if __name__ == '__main__':
    try:
        main()
    except CheckpointLoadError as exc:  # its message names the file
        sys.exit(f'error: {exc}')
