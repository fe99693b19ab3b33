"""Test a checkpoint, as DavarOCR's tools/test.py.

    python tools/test.py CONFIG CHECKPOINT --eval accuracy NED [--out r.pkl]
    bash tools/dist_test.sh CONFIG CHECKPOINT 2 --eval accuracy
"""
import argparse
import json
import os
import os.path as osp
import sys

import mmcv
from mmcv import Config, DictAction
from mmcv.runner import get_dist_info, load_checkpoint

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from davarocr_mmcv.apis import (build_dataset,  # noqa: E402
                                build_eval_dataloader, build_model,
                                import_custom_modules, init_dist,
                                multi_gpu_test, single_gpu_test, wrap_model)
from davarocr_mmcv.apis.builder import Resolver, split_settings  # noqa: E402
from davarocr_mmcv.apis.dist import LAUNCHERS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--eval', nargs='+', help='metrics to evaluate')
    parser.add_argument('--out', help='pickle file for the raw results')
    parser.add_argument('--eval-options', nargs='+', action=DictAction,
                        help='kwargs for dataset.evaluate')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--tmpdir', help='collect results through files in '
                        'this folder, which every node must see (default: '
                        'through the process group, no folder)')
    parser.add_argument('--gpu-collect', action='store_true')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if not args.eval and not args.out:
        parser.error('give --eval METRIC... and/or --out FILE')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
        import_custom_modules(cfg)  # those given in --cfg-options too
    distributed = args.launcher != 'none'
    if distributed:
        init_dist(args.launcher, **dict(cfg.get('dist_params') or {}))
    rank, _ = get_dist_info()

    # a type is found in every loaded registry: the one the top-level
    # type names, then the imported toolboxes', then mmdet's (apis/builder)
    resolver = Resolver.of(cfg)
    test_cfg, settings = split_settings(cfg.data, 'test')
    dataset = build_dataset(test_cfg, dict(test_mode=True), resolver)
    loader = build_eval_dataloader(
        dataset, settings['samples_per_gpu'], settings['workers_per_gpu'],
        distributed, persistent_workers=settings['persistent_workers'],
        pin_memory=settings['pin_memory'])
    cfg.model.pop('pretrained', None)
    model = build_model(cfg.model, test_cfg=cfg.get('test_cfg'),
                        resolver=resolver)
    checkpoint = load_checkpoint(model, args.checkpoint, map_location='cpu')
    if 'CLASSES' in checkpoint.get('meta', {}):
        model.CLASSES = checkpoint['meta']['CLASSES']
    elif hasattr(dataset, 'CLASSES'):
        model.CLASSES = dataset.CLASSES
    model_type = cfg.get('evaluation', {}).get('model_type', 'DETECTOR')
    model = wrap_model(model, distributed)
    if distributed:
        # tmpdir None: results gathered through the process group
        results = multi_gpu_test(model, loader, tmpdir=args.tmpdir,
                                 gpu_collect=args.gpu_collect,
                                 model_type=model_type)
    else:
        results = single_gpu_test(model, loader, model_type=model_type)
    if rank != 0:
        return
    if args.out:
        mmcv.dump(results, args.out)
        print(f'\nwrote results to {args.out}')
    if args.eval:
        kwargs = dict(args.eval_options or {})
        metrics = dataset.evaluate(results, metric=args.eval, **kwargs)
        print()
        print(json.dumps({k: float(v) if isinstance(v, (int, float)) or
                          hasattr(v, 'item') else v
                          for k, v in metrics.items()}))


if __name__ == '__main__':
    main()
