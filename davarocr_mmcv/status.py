"""Reading a training's ``status.json``, and the command that continues a
training: the command-line side of
:class:`~davarocr_mmcv.hooks.TrainStatusHook` (``tools/status.py``)."""
import datetime
import json
import os.path as osp
import shlex

from .constants import STATUS_FILE

#: Values of the ``state`` field.
STATES = ('training', 'evaluating', 'finished', 'failed', 'interrupted',
          'preempted')


def resume_command(config, work_dir, world_size=1, validate=True):
    """The command that continues a training of ``config`` in ``work_dir``
    from its newest checkpoint (``--auto-resume``; from the start when none
    was written). Uses the copy of the config that tools/train.py leaves in
    ``work_dir`` when there is one, since it holds the ``--cfg-options``.
    """
    saved = osp.join(work_dir, osp.basename(config))
    config = saved if osp.isfile(saved) else config
    if world_size > 1:
        cmd = ['bash', 'tools/dist_train.sh', config, str(world_size)]
    else:
        cmd = ['python', 'tools/train.py', config]
    cmd += ['--work-dir', work_dir, '--auto-resume']
    if not validate:
        cmd.append('--no-validate')
    return ' '.join(shlex.quote(part) for part in cmd)


def read_status(work_dir):
    """The parsed ``work_dir/status.json``.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    with open(osp.join(work_dir, STATUS_FILE)) as f:
        return json.load(f)


def _duration(seconds):
    if seconds is None:
        return '-'
    return str(datetime.timedelta(seconds=int(seconds)))


def _values(values):
    return ', '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                     for k, v in (values or {}).items()) or '-'


def format_status(status):
    """``status`` (the content of status.json) as a few readable lines."""
    state = status.get('state', '?')
    if state in ('failed', 'interrupted', 'preempted') and \
            status.get('error'):
        state += f" ({status['error']})"
    lines = [f'state:    {state}',
             f"host:     {status.get('host')} pid {status.get('pid')}",
             f"started:  {status.get('started_at')}, updated "
             f"{status.get('updated_at')}"]
    progress = []
    if status.get('max_epochs'):
        progress.append(f"epoch {status.get('epoch')}/{status['max_epochs']}")
    progress.append(f"iter {status.get('iter')}/{status.get('max_iters')}")
    if status.get('samples_total'):
        progress.append(f"samples {status.get('samples_done')}/"
                        f"{status['samples_total']} in this epoch")
    lines.append('progress: ' + ', '.join(progress))
    lines.append(f"time:     elapsed {_duration(status.get('elapsed_s'))}, "
                 f"ETA {_duration(status.get('eta_s'))}")
    lines.append(f"loss:     {_values(status.get('loss'))}")
    evaluation = status.get('last_eval')
    if evaluation:
        lines.append(f"metrics:  {_values(evaluation.get('metrics'))} "
                     f"({evaluation.get('unit')} {evaluation.get('step')})")
    for metric, best in (status.get('best') or {}).items():
        lines.append(f"best:     {metric} {best.get('score')} at "
                     f"{best.get('unit')} {best.get('step')}: "
                     f"{best.get('ckpt')}")
    if status.get('resume'):
        lines.append(f"resume:   {status['resume']}")
    return '\n'.join(lines)
