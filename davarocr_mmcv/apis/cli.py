"""What tools/train.py and tools/test.py share: the options they have in
common with mmdet 2.28's and DavarOCR's tools, with their meaning, and
the first steps of a run (the config, the device, the process group)."""
import argparse
import ast
import os
import re
import warnings

import torch
from mmcv import Config, DictAction
from mmcv.runner import get_dist_info

from ..version import add_version_option
from .data import WRAPPED_KEYS
from .dist import LAUNCHERS, init_dist
from .resolve import import_custom_modules

#: how to use N devices, per tool: one process each
DIST_COMMANDS = {'train': 'bash tools/dist_train.sh CONFIG {n}',
                 'test': 'bash tools/dist_test.sh CONFIG CHECKPOINT {n}'}
_BARE_KEY = re.compile(r'([{,]\s*)([A-Za-z_]\w*)\s*:')


class DictOptionsAction(DictAction):
    """mmcv's ``DictAction`` (``key=value``, ``key=a,b``, ``key="[a,b]"``,
    ``key="(a,b)"``) that also reads a dict, quoted for the shell:
    ``key="{'a': 1, 'b': [2, 3]}"`` (bare keys too: ``key="{a: 1}"``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = {}
        for pair in values:
            key, sep, value = pair.partition('=')
            if not sep or not key:
                parser.error(f'{option_string}: {pair!r} is not KEY=VALUE')
            text = value.strip().strip('\'"')
            if text.startswith('{') and text.endswith('}'):
                options[key] = self._parse_dict(parser, option_string, key,
                                                text)
            else:
                options[key] = self._parse_iterable(value)
        setattr(namespace, self.dest, options)

    @staticmethod
    def _parse_dict(parser, option_string, key, text):
        for attempt in (text, _BARE_KEY.sub(r"\1'\2':", text)):
            try:
                value = ast.literal_eval(attempt)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, dict):
                return value
        parser.error(f'{option_string} {key}={text}: not a dict literal; '
                     f"write it as {key}=\"{{'name': 0.5}}\" (quoted for "
                     'the shell)')


def merge_options(settings, options):
    """``settings`` (a dict) updated with ``options``: a key replaces the
    value (mmdet's ``dict.update``); a dotted key ``a.b`` sets ``b`` in the
    dict ``a`` and keeps its other keys. Returns a new dict."""
    merged = dict(settings)
    for key, value in (options or {}).items():
        *path, last = key.split('.')
        node = merged
        for part in path:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = value
    return merged


def make_parser(doc):
    """A parser whose description is the tool's usage docstring ``doc``,
    with ``--version``; abbreviated options are not taken."""
    parser = argparse.ArgumentParser(
        description=doc, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    return parser


def add_run_options(parser, options_alias_of, gpus=False):
    """The options both tools take: ``--cfg-options``, ``--options`` (the
    deprecated alias of ``--<options_alias_of>``), ``--launcher``,
    ``--local_rank``, ``--gpu-id`` / ``--gpu-ids`` (and ``--gpus``)."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictOptionsAction,
        metavar='KEY=VALUE',
        help='override config settings: a.b=1, k=a,b or k="[a,b]" for a '
        "list, k=\"{'a': 1}\" for a dict (quoted for the shell)")
    parser.add_argument(
        '--options', nargs='+', action=DictOptionsAction,
        metavar='KEY=VALUE',
        help=f'deprecated alias of --{options_alias_of} (as in mmdet 2.28 '
        'and DavarOCR); not with it')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='how the processes were started (default: '
                        'none, one process)')
    parser.add_argument(
        '--local_rank', '--local-rank', type=int, default=0,
        help='set by python -m torch.distributed.launch; LOCAL_RANK in the '
        'environment wins')
    group = parser.add_mutually_exclusive_group()
    if gpus:
        group.add_argument(
            '--gpus', type=int, metavar='N',
            help='(mmdet 2.28, DavarOCR) a run that is not distributed uses '
            'one device; N > 1 warns. Use tools/dist_train.sh for N')
    group.add_argument(
        '--gpu-ids', type=int, nargs='+', metavar='ID',
        help='(mmdet 2.28, DavarOCR) a run that is not distributed uses the '
        'first; more than one warns')
    group.add_argument('--gpu-id', type=int, default=0, metavar='ID',
                       help='the GPU of a run that is not distributed '
                       '(default: 0; no effect without CUDA)')


def check_args(parser, args, options_alias_of):
    """LOCAL_RANK from ``--local_rank`` unless set; ``--options`` moved to
    ``--<options_alias_of>`` with mmdet's warning (both: an error);
    ``--gpus`` at least 1. Returns ``args``."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    dest = options_alias_of.replace('-', '_')
    if args.options is not None:
        if getattr(args, dest) is not None:
            parser.error(f'--options and --{options_alias_of} cannot be both '
                         'specified, --options is deprecated in favor of '
                         f'--{options_alias_of}')
        warnings.warn(f'--options is deprecated in favor of '
                      f'--{options_alias_of}')
        setattr(args, dest, args.options)
    if getattr(args, 'gpus', None) is not None and args.gpus < 1:
        parser.error(f'--gpus must be at least 1, got {args.gpus}')
    return args


def load_config(args):
    """``args.config`` with ``--cfg-options`` merged; the modules that
    ``custom_imports`` names there are imported too."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
        import_custom_modules(cfg)
    return cfg


def _asked_devices(args):
    """(the device ids asked for, the flag that asked)."""
    if getattr(args, 'gpus', None) is not None:
        return list(range(args.gpus)), f'--gpus {args.gpus}'
    if args.gpu_ids is not None:
        return args.gpu_ids, '--gpu-ids ' + ' '.join(map(str, args.gpu_ids))
    return [args.gpu_id], None


def start_run(args, cfg, tool):
    """The device and process group of a run of ``tool`` ('train' or
    'test'), as mmdet 2.28 sets them: not distributed, ``cfg.gpu_ids`` is
    one device (more asked for: a warning that says how to use them);
    distributed, the process group is joined (``cfg.dist_params`` gets the
    backend) and ``cfg.gpu_ids`` is one per process.

    Returns:
        tuple: (distributed, rank)
    """
    ids, flag = _asked_devices(args)
    distributed = args.launcher != 'none'
    if distributed:
        if flag:
            warnings.warn(f'{flag} is not used with --launcher '
                          f'{args.launcher}: each process takes the device '
                          'of its LOCAL_RANK')
        dist_params = dict(cfg.get('dist_params') or {})
        cfg.dist_params = dict(dist_params, backend=init_dist(
            args.launcher, **dist_params))
        cfg.gpu_ids = list(range(get_dist_info()[1]))
    else:
        if len(ids) > 1:
            warnings.warn(
                f'{flag}: a run that is not distributed uses one device, '
                f'GPU {ids[0]} here (as in mmdet 2.28); for {len(ids)}, one '
                f'process each: {DIST_COMMANDS[tool].format(n=len(ids))}')
        cfg.gpu_ids = ids[:1]
        if torch.cuda.is_available():
            torch.cuda.set_device(ids[0])
    return distributed, get_dist_info()[0]


def apply_mc_config(cfg, path):
    """DavarOCR's ``--mc-config``: the ``mc_file_client_args`` of the
    config file ``path`` (a memory cache, e.g. memcached's
    ``dict(backend='memcached', server_list_cfg=..., client_cfg=...)``)
    become the ``file_client_args`` of the first step (the image loading)
    of every training pipeline: ``data.train``'s, as in DavarOCR, and
    those of the datasets it wraps.

    Raises:
        KeyError: the file has no ``mc_file_client_args``.
        ValueError: ``data.train`` has no pipeline to give them to.
    """
    mc = Config.fromfile(path)
    if 'mc_file_client_args' not in mc:
        raise KeyError(f'--mc-config {path}: the file has no '
                       "mc_file_client_args (DavarOCR's memory-cache "
                       "config: mc_file_client_args=dict(backend='memcached'"
                       ', server_list_cfg=..., client_cfg=...))')
    args, todo, given = dict(mc.mc_file_client_args), [cfg.data.train], 0
    while todo:
        node = todo.pop()
        if isinstance(node, (list, tuple)):
            todo.extend(node)
        elif isinstance(node, dict):
            pipeline = node.get('pipeline') or []
            for steps in pipeline if pipeline and isinstance(
                    pipeline[0], (list, tuple)) else [pipeline]:
                if steps and isinstance(steps[0], dict):
                    steps[0].update(file_client_args=args)
                    given += 1
            todo.extend(node[k] for k in WRAPPED_KEYS if k in node)
    if not given:
        raise ValueError(f'--mc-config {path}: data.train has no pipeline '
                         'whose first step loads the images; give the '
                         'file_client_args in the config instead')
    return given
