"""Plot a training's loss and evaluation metrics into one PNG
(``python tools/plot_metrics.py WORK_DIR``).

Sources: the ``*.log.json`` files of mmcv's TextLoggerHook (one json dict a
line; the first holds env info) and the ``eval_history`` kept in the newest
checkpoint's ``hook_msgs``. The model_milestone of DavarCheckpointHook is
read from the config (dumped in work_dir, or ``meta['config']``).
"""
import ast
import glob
import json
import math
import os.path as osp
from numbers import Real
from typing import NamedTuple

from .core import state
from .core.metrics import infer_rule, is_better
from .core.resume import find_latest_checkpoint
from .core.writer import atomic_write
from .publish import resolve_config
from .serialization import load_checkpoint_file

#: Default output, inside work_dir.
PLOT_FILE = 'metrics.png'
#: Keys of log lines that are neither losses nor metrics.
LOG_KEYS = ('mode', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory',
            'grad_norm')


class PlotData(NamedTuple):
    """What the figure shows.

    Attributes:
        losses (dict): loss name -> (iterations, values).
        metrics (dict): metric name -> (steps, values), steps in ``unit``.
        unit (str): 'epoch' or 'iter', the x axis of the metrics.
        best (dict): metric name -> (step, value) of its best evaluation.
        milestone (dict): unit -> step of model_milestone ('iter' and/or
            'epoch'); empty if unknown.
    """
    losses: dict
    metrics: dict
    unit: str
    best: dict
    milestone: dict


def _number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def read_json_logs(work_dir, iters_per_epoch=None):
    """The log lines of every ``*.log.json`` (oldest file first) that have a
    ``mode``; each gets ``global_iter``, the iterations done at that line.

    Args:
        iters_per_epoch (int | None): to place the lines of epoch-based logs
            (which count iterations inside the epoch); default: the largest
            iteration of each file.
    """
    files = sorted(glob.glob(osp.join(work_dir, '*.log.json')))
    return [line for path in files
            for line in _read_log(path, iters_per_epoch)]


def _read_log(path, iters_per_epoch):
    lines = []
    with open(path) as f:
        for text in f:
            try:
                line = json.loads(text)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(line, dict) and 'mode' in line and 'iter' in line:
                lines.append(line)
    # The 'iter' of mmcv's evaluation ('val') lines is the size of the
    # validation loader; they are placed at the training line before them.
    train = [line for line in lines if line['mode'] == 'train']
    per_epoch = iters_per_epoch or max(
        (line['iter'] for line in train), default=0)
    # Epoch-based logs count iterations inside the epoch: they restart.
    inner = any(b.get('epoch', 0) > a.get('epoch', 0) and
                b['iter'] <= a['iter'] for a, b in zip(train, train[1:]))
    if iters_per_epoch and not inner:
        inner = all(line['iter'] <= per_epoch for line in train) and \
            any(line.get('epoch', 1) > 1 for line in train)
    position = 0
    for line in lines:
        if line['mode'] == 'train':
            position = ((line.get('epoch', 1) - 1) * per_epoch +
                        line['iter']) if inner else line['iter']
        line['global_iter'] = position
    return lines


def _metric_names(lines):
    """Metric keys of the logs, when no eval_history names them: keys of
    evaluation-only ('val') lines, and keys found in some training lines
    only (metrics of evaluations by iteration share the training line)."""
    def candidates(line):
        return {k for k in line if k not in LOG_KEYS and
                k != 'global_iter' and 'loss' not in k}
    names = set()
    train = [candidates(line) for line in lines if line['mode'] == 'train']
    for line in lines:
        if line['mode'] == 'val':
            names |= candidates(line)
    if train:
        names |= set.union(*train) - set.intersection(*train)
    return names


def _latest_meta(work_dir):
    path = find_latest_checkpoint(work_dir)
    if path is None:
        return {}
    return dict(load_checkpoint_file(path).get('meta') or {})


def config_values(text, names):
    """Top-level assignments ``names`` of a config's text, read without
    running it (a config from a checkpoint's meta is untrusted): literals
    and ``dict(...)`` of literals; entries that are not literal are left
    out."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in names:
            try:
                values[node.targets[0].id] = _literal(node.value)
            except ValueError:
                pass
    return values


def _literal(node):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and len(node.args) <= 1:
        out = {}
        for arg in node.args:  # dict({'a-b': 1}), as mmcv dumps odd keys
            base = _literal(arg)
            if not isinstance(base, dict):
                raise ValueError('not a dict')
            out.update(base)
        for keyword in node.keywords:
            try:
                if keyword.arg is not None:
                    out[keyword.arg] = _literal(keyword.value)
            except ValueError:
                pass
        return out
    if isinstance(node, ast.Dict):
        out = {}
        for key, value in zip(node.keys, node.values):
            try:
                out[ast.literal_eval(key)] = _literal(value)
            except ValueError:
                pass
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item) for item in node.elts]
    return ast.literal_eval(node)


def _milestone(work_dir, meta, iters_per_epoch):
    """{unit: step} up to which DavarCheckpointHook saves nothing."""
    _, text = resolve_config(work_dir, meta)
    if text is None:
        return {}
    cfg = config_values(text, ('checkpoint_config', 'runner',
                               'total_epochs'))
    ckpt_cfg = cfg.get('checkpoint_config')
    fraction = ckpt_cfg.get('model_milestone') \
        if isinstance(ckpt_cfg, dict) else None
    if not _number(fraction) or not fraction:
        return {}
    runner = cfg.get('runner') if isinstance(cfg.get('runner'), dict) \
        else {}
    max_epochs = runner.get('max_epochs') or cfg.get('total_epochs')
    max_iters = runner.get('max_iters')
    if max_iters is None and max_epochs and iters_per_epoch:
        max_iters = max_epochs * iters_per_epoch
    out = {}
    if _number(max_epochs) and max_epochs:
        out['epoch'] = int(max_epochs * fraction)
    if _number(max_iters) and max_iters:
        out['iter'] = int(max_iters * fraction)
    return out


def collect(work_dir):
    """Read ``work_dir`` into :class:`PlotData`.

    Raises:
        FileNotFoundError: if there is neither a json log nor an evaluation.
    """
    meta = _latest_meta(work_dir)
    msgs = state.msgs_of(meta)
    history = state.eval_history(msgs)
    per_epoch = next((h['iters_done'] // h['step'] for h in history
                      if h['unit'] == 'epoch' and h['step']), None)
    lines = read_json_logs(work_dir, per_epoch)

    losses = {}
    for line in lines:
        if line['mode'] != 'train':
            continue
        for key, value in line.items():
            if 'loss' in key and _number(value):
                losses.setdefault(key, {})[line['global_iter']] = value
    losses = {k: _sorted(v) for k, v in losses.items()}

    if history:
        unit = 'epoch' if all(h['unit'] == 'epoch' for h in history) \
            else 'iter'
        points = [(h['step'] if unit == 'epoch' else h['iters_done'],
                   h['metrics']) for h in history]
    else:
        unit = 'iter'
        names = _metric_names(lines)
        points = [(line['global_iter'], {k: line[k] for k in names
                                         if k in line}) for line in lines]
    metrics = {}
    for step, values in points:
        for key, value in values.items():
            if _number(value):
                metrics.setdefault(key, {})[step] = value
    metrics = {k: _sorted(v) for k, v in metrics.items()}
    if not losses and not metrics:
        raise FileNotFoundError(
            f'nothing to plot in {work_dir}: no *.log.json with training '
            'lines and no checkpoint with an eval_history')
    return PlotData(losses, metrics, unit, _best(metrics, msgs, unit),
                    _milestone(work_dir, meta, per_epoch))


def _sorted(values):
    steps = sorted(values)
    return steps, [values[s] for s in steps]


def _best(metrics, msgs, unit):
    """The best evaluation of each metric: the recorded best for the
    ranked metric, else the best by the metric's inferred rule."""
    best = {}
    for name, (steps, values) in metrics.items():
        if msgs.get(state.BEST_METRIC) == name and \
                msgs.get(state.BEST_UNIT) == unit and \
                msgs.get(state.BEST_STEP) in steps:
            step = msgs[state.BEST_STEP]
            best[name] = (step, values[steps.index(step)])
            continue
        try:
            rule = infer_rule(name)
        except ValueError:
            continue
        top = None
        for step, value in zip(steps, values):
            if is_better(float(value), None if top is None else top[1],
                         rule):
                top = (step, value)
        if top is not None:
            best[name] = top
    return best


def draw(data, out):
    """Draw ``data`` into the PNG ``out`` (matplotlib's Agg canvas, no
    pyplot state); written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = 1 + len(data.metrics)
    fig = Figure(figsize=(8, 2.8 * rows), tight_layout=True)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    loss_ax = axes[0]
    for name, (steps, values) in sorted(data.losses.items()):
        loss_ax.plot(steps, values, label=name, linewidth=1)
    if data.losses:
        loss_ax.legend(loc='upper right', fontsize='small')
    else:
        loss_ax.text(0.5, 0.5, 'no training log (*.log.json)',
                     ha='center', va='center', transform=loss_ax.transAxes)
    loss_ax.set(title='loss', xlabel='iteration', ylabel='loss')
    _milestone_line(loss_ax, data.milestone.get('iter'))

    xlabel = 'epoch' if data.unit == 'epoch' else 'iteration'
    for ax, (name, (steps, values)) in zip(axes[1:],
                                           sorted(data.metrics.items())):
        ax.plot(steps, values, marker='o', markersize=3, linewidth=1)
        if name in data.best:
            step, value = data.best[name]
            ax.plot([step], [value], marker='*', markersize=14,
                    color='tab:red', linestyle='none',
                    label=f'best {value:g} at {xlabel} {step}')
            ax.legend(loc='best', fontsize='small')
        ax.set(title=name, xlabel=xlabel, ylabel=name)
        _milestone_line(ax, data.milestone.get(data.unit))
    atomic_write(out, lambda f: fig.savefig(f, format='png', dpi=100))
    return out


def _milestone_line(ax, step):
    if step is None or not math.isfinite(step):
        return
    ax.axvline(step, color='gray', linestyle='--', linewidth=1)
    ax.text(step, 1.0, ' model_milestone', transform=ax.get_xaxis_transform(),
            va='top', fontsize='small', color='gray')


def plot_metrics(work_dir, out=None):
    """Plot the loss and metrics of ``work_dir`` into ``out`` (default
    ``work_dir/metrics.png``); return its path."""
    return draw(collect(work_dir), out or osp.join(work_dir, PLOT_FILE))
