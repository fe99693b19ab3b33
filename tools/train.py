r"""Train a model from an old-style mmcv config, as DavarOCR's and mmdet
2.28's tools/train.py do, with their options.

    python tools/train.py CONFIG [--work-dir DIR] [--no-validate] [--seed S]
    bash tools/dist_train.sh CONFIG N [--validate]
    python -m torch.distributed.launch --nproc_per_node N tools/train.py \
        CONFIG --launcher pytorch
"""
import logging
import os.path as osp
import sys
import time
import warnings

import mmcv
from mmcv.runner import set_random_seed
from mmcv.utils import get_logger

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.apis import build_dataset, build_model  # noqa: E402
from davarocr_mmcv.apis import train_model  # noqa: E402
from davarocr_mmcv.apis.cli import (add_run_options,  # noqa: E402
                                    apply_mc_config, check_args, load_config,
                                    make_parser, start_run)
from davarocr_mmcv.apis.data import split_settings  # noqa: E402
from davarocr_mmcv.apis.resolve import Resolver  # noqa: E402
from davarocr_mmcv.apis.train import check_training_config  # noqa: E402
from davarocr_mmcv.core.preempt import (PREEMPTED_EXIT_CODE,  # noqa: E402
                                        Preempted)
from davarocr_mmcv.core.accept import load_accepted  # noqa: E402
from davarocr_mmcv.core.resume import CheckpointLoadError  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models '
                        "(default: the config's work_dir, else "
                        'work_dirs/<config name>)')
    parser.add_argument('--resume-from', help='checkpoint to resume from')
    parser.add_argument('--auto-resume', action='store_true',
                        help='resume from the latest checkpoint in work_dir')
    parser.add_argument('--load-from', help='checkpoint to load weights from')
    parser.add_argument('--validate', dest='validate', action='store_true',
                        default=True,
                        help='evaluate during training (default)')
    parser.add_argument('--no-validate', dest='validate',
                        action='store_false',
                        help='do not evaluate during training')
    add_run_options(parser, 'cfg-options', gpus=True)
    parser.add_argument('--seed', type=int, default=None,
                        help="random seed (default: the config's seed)")
    parser.add_argument('--diff-seed', action='store_true',
                        help='seed each process with seed + rank (mmdet '
                        "2.28); the data samplers keep the one seed")
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic options for the CUDNN backend')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help="(mmdet 2.28) scale optimizer.lr by the total batch over the "
        "config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--mc-config', metavar='FILE',
        help="(DavarOCR) a config file whose mc_file_client_args (a memory "
        'cache) become the file_client_args of the first step of the '
        'training pipelines')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    return check_args(parser, parser.parse_args(argv), 'cfg-options')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    if args.mc_config:
        apply_mc_config(cfg, args.mc_config)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.resume_from:
        cfg.resume_from = args.resume_from
    if args.load_from:
        cfg.load_from = args.load_from
    cfg.auto_resume = args.auto_resume or cfg.get('auto_resume', False)
    if args.auto_scale_lr:
        if 'base_batch_size' in (cfg.get('auto_scale_lr') or {}):
            cfg.auto_scale_lr.enable = True
        else:
            # mmdet 2.28 warns and trains on
            warnings.warn('--auto-scale-lr: the config has no auto_scale_lr.'
                          'base_batch_size (the total batch its optimizer.lr '
                          'is for), so the LR is not scaled; give it with '
                          '--cfg-options auto_scale_lr.base_batch_size=N')
    # the runner section and the hooks' arguments, before the work_dir is
    # touched or a process group joined; the message names the setting
    try:
        check_training_config(cfg, validate=args.validate,
                              distributed=args.launcher != 'none')
    except (KeyError, TypeError, ValueError) as exc:
        text = exc.args[0] if len(exc.args) == 1 else exc
        sys.exit(f'error: {type(exc).__name__}: {text}')
    distributed, rank = start_run(args, cfg, 'train')

    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    log_file = osp.join(cfg.work_dir, f'{timestamp}.log')
    logger = get_logger('davarocr_mmcv', log_file=log_file,
                        log_level=cfg.get('log_level', 'INFO'))
    logger.info(f'Distributed training: {distributed}')
    logger.info(f'Config:\n{cfg.pretty_text}')

    seed = args.seed if args.seed is not None else cfg.get('seed')
    if seed is not None:
        # one seed for the samplers; each process's own with --diff-seed
        own = seed + rank if args.diff_seed else seed
        set_random_seed(own, deterministic=args.deterministic)
        logger.info(f'Set random seed to {own}, '
                    f'deterministic: {args.deterministic}')
    cfg.seed = seed

    # a type is found in every loaded registry: the one the top-level
    # type names, then the imported toolboxes', then mmdet's (apis/resolve.py)
    resolver = Resolver.of(cfg)
    train_cfg, _ = split_settings(cfg.data, 'train')
    model = build_model(cfg.model, train_cfg=cfg.get('train_cfg'),
                        test_cfg=cfg.get('test_cfg'), resolver=resolver)
    if hasattr(model, 'init_weights'):
        model.init_weights()
    # the checkpoint named, judged against the model before the work_dir's
    # copy of the config is written: a refusal changes no file there
    # (train_model judges it again where it applies it, with the log)
    given = 'resume_from' if cfg.get('resume_from') else 'load_from'
    if cfg.get(given) and osp.isfile(cfg.get(given)):
        quiet = logging.getLogger('davarocr_mmcv.given_checkpoint')
        quiet.propagate = False
        quiet.handlers = [logging.NullHandler()]
        load_accepted(cfg.get(given), given, model, logger=quiet,
                      resume=given == 'resume_from')
    if rank == 0:
        cfg.dump(osp.join(cfg.work_dir, osp.basename(args.config)))
    datasets = [build_dataset(train_cfg, resolver=resolver)]
    if len(cfg.workflow) == 2:
        val, _ = split_settings(cfg.data, 'val')
        val.pipeline = train_cfg.get('pipeline', val.get('pipeline'))
        datasets.append(build_dataset(val, resolver=resolver))
    meta = dict(config=cfg.pretty_text, seed=seed, exp_name=osp.basename(
        args.config))
    classes = getattr(datasets[0], 'CLASSES', None)
    if classes is not None:
        model.CLASSES = classes
        meta['CLASSES'] = classes
    train_model(model, datasets, cfg, distributed=distributed,
                validate=args.validate, timestamp=timestamp, meta=meta)


if __name__ == '__main__':
    try:
        main()
    except CheckpointLoadError as exc:  # its message names the file
        sys.exit(f'error: {exc}')
    except KeyboardInterrupt:  # train_model logged how to continue
        print('KeyboardInterrupt: training interrupted', file=sys.stderr)
        sys.exit(130)
    except Preempted as exc:  # resumable: train_model logged how
        print(f'Preempted: {exc}', file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)
