"""Train a model from an old-style mmcv config, as DavarOCR's tools/train.py.

    python tools/train.py CONFIG [--work-dir DIR] [--validate]
    bash tools/dist_train.sh CONFIG 2 [--validate]
"""
import argparse
import os
import os.path as osp
import sys
import time

import mmcv
import torch
from mmcv import Config, DictAction
from mmcv.runner import get_dist_info
from mmcv.utils import get_logger

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.apis import (build_dataset, build_model,  # noqa: E402
                                import_custom_modules, init_dist,
                                train_model)
from davarocr_mmcv.apis.builder import Resolver, split_settings  # noqa: E402
from davarocr_mmcv.apis.dist import LAUNCHERS  # noqa: E402
from davarocr_mmcv.core.preempt import (PREEMPTED_EXIT_CODE,  # noqa: E402
                                        Preempted)
from davarocr_mmcv.core.resume import CheckpointLoadError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
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
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--deterministic', action='store_true')
    parser.add_argument('--gpu-id', type=int, default=0,
                        help='GPU to use in a non-distributed run')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
        import_custom_modules(cfg)  # those given in --cfg-options too
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
    if torch.cuda.is_available() and args.launcher == 'none':
        torch.cuda.set_device(args.gpu_id)
        cfg.gpu_ids = [args.gpu_id]

    distributed = args.launcher != 'none'
    if distributed:
        dist_params = dict(cfg.get('dist_params') or {})
        cfg.dist_params = dict(dist_params, backend=init_dist(
            args.launcher, **dist_params))
        _, world_size = get_dist_info()
        cfg.gpu_ids = list(range(world_size))
    rank, _ = get_dist_info()

    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    log_file = osp.join(cfg.work_dir, f'{timestamp}.log')
    logger = get_logger('davarocr_mmcv', log_file=log_file,
                        log_level=cfg.get('log_level', 'INFO'))
    if rank == 0:
        cfg.dump(osp.join(cfg.work_dir, osp.basename(args.config)))
    logger.info(f'Distributed training: {distributed}')
    logger.info(f'Config:\n{cfg.pretty_text}')

    seed = args.seed if args.seed is not None else cfg.get('seed')
    if seed is not None:
        from mmcv.runner import set_random_seed
        set_random_seed(seed + rank, deterministic=args.deterministic)
        logger.info(f'Set random seed to {seed}, '
                    f'deterministic: {args.deterministic}')
    cfg.seed = seed

    # a type is found in every loaded registry: the one the top-level
    # type names, then the imported toolboxes', then mmdet's (apis/builder)
    resolver = Resolver.of(cfg)
    train_cfg, _ = split_settings(cfg.data, 'train')
    model = build_model(cfg.model, train_cfg=cfg.get('train_cfg'),
                        test_cfg=cfg.get('test_cfg'), resolver=resolver)
    if hasattr(model, 'init_weights'):
        model.init_weights()
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
