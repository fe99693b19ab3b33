"""Pre-emption: SIGTERM / SIGUSR1 stop training at the next iteration
boundary with a resumable checkpoint, every rank at the same iteration,
status.json 'preempted', exit status 75; --auto-resume then finishes with
the optimizer steps and data order of an uninterrupted run.

In-process runs on the toy model (a signal sent by a hook at a chosen
iteration) cover the three runners; subprocess runs of tools/train.py and
of torchrun with 2 gloo processes cover what a user does."""
import json
import os
import signal
import sys
import time

import pytest
import torch
from mmcv.runner import Hook, build_runner
from torch.utils.data import RandomSampler

from davarocr_mmcv.core.preempt import (PREEMPTED_EXIT_CODE, Preempted,
                                        SignalCatcher)
from davarocr_mmcv.core.resume import resume_runner
from davarocr_mmcv.hooks import PreemptionHook
from davarocr_mmcv.hooks.status import format_status
from davarocr_mmcv.serialization import load_checkpoint_file
import procs
from procs import kill_group, run_bounded, start
from test_tools_e2e import ENV, RECOGNITION, ROOT
from toy import (ScriptedDataset, ToyModel, free_port, make_loader,
                 make_logger)


# ------------------------------------------------------------ in-process
class SignalAt(Hook):
    """Sends ``signum`` to this process after iteration ``at``; records the
    sample indices of every batch trained."""

    def __init__(self, at=None, signum=signal.SIGTERM):
        self.at = at
        self.signum = signum
        self.batches = []

    def after_train_iter(self, runner):
        self.batches.append(runner.data_batch['x'][:, 0].long().tolist())
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), self.signum)


def toy_run(work_dir, runner_type, signal_at=None, resume=None,
            signum=signal.SIGTERM):
    """A toy training of 3 epochs of 5 batches (or 15 iterations) in a
    random order, with the checkpoint hook saving by epoch only; returns
    (runner, probe, exception)."""
    torch.manual_seed(0)
    model = ToyModel()
    length = dict(max_iters=15) if 'Iter' in runner_type else \
        dict(max_epochs=3)
    runner = build_runner(dict(type=runner_type, **length), default_args=dict(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        work_dir=str(work_dir), logger=make_logger(str(work_dir), 'preempt'),
        meta=None))
    runner.register_training_hooks(
        lr_config=dict(policy='fixed'), optimizer_config=dict(grad_clip=None),
        checkpoint_config=dict(type='DavarCheckpointHook', interval=1,
                               by_epoch='Iter' not in runner_type,
                               by_iter='Iter' in runner_type,
                               iter_interval=100),
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]))
    probe = SignalAt(signal_at, signum)
    runner.register_hook(probe)
    runner.register_hook(PreemptionHook(), priority='LOWEST')
    if resume:
        resume_runner(runner, resume)
    dataset = ScriptedDataset(size=10)
    loader = make_loader(dataset, sampler=RandomSampler(dataset))
    try:
        runner.run([loader], [('train', 1)])
    except Preempted as exc:
        return runner, probe, exc
    return runner, probe, None


@pytest.mark.parametrize('runner_type', [
    'DavarEpochBasedRunner', 'EpochBasedRunner', 'IterBasedRunner',
    'DavarIterBasedRunner'])
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1],
                         ids=['SIGTERM', 'SIGUSR1'])
def test_signal_saves_at_the_boundary_and_resume_loses_nothing(
        tmp_path, runner_type, signum):
    before = signal.getsignal(signum)
    _, whole, _ = toy_run(tmp_path / 'whole', runner_type)
    runner, first, exc = toy_run(tmp_path / 'work', runner_type,
                                 signal_at=7, signum=signum)
    # stopped after iteration 7 (inside the second epoch), nothing later
    assert isinstance(exc, Preempted) and exc.code == PREEMPTED_EXIT_CODE
    assert (exc.signal_name, exc.iter) == (signum.name, 7)
    assert len(first.batches) == 7
    assert signal.getsignal(signum) is before  # handlers are back
    ckpt = load_checkpoint_file(exc.checkpoint)
    assert os.path.basename(exc.checkpoint) == 'iter_7.pth'
    assert ckpt['meta']['iter'] == 7 and int(
        ckpt['state_dict']['steps']) == 7
    assert open(tmp_path / 'work' / 'last_checkpoint').read().endswith(
        'iter_7.pth')

    runner, rest, exc = toy_run(tmp_path / 'work', runner_type,
                                resume=exc.checkpoint)
    assert exc is None and runner.iter == 15
    steps = int(runner.model.steps)
    if runner_type == 'EpochBasedRunner':
        # mmcv's runner cannot resume inside an epoch: epoch 2 restarts,
        # from the iteration count of its start
        assert steps == 15 + 2 and len(rest.batches) == 10
        return
    # no iteration repeated or lost: 15 optimizer steps in all
    assert steps == 15 and len(first.batches) + len(rest.batches) == 15
    if runner_type.startswith('Davar'):
        # the interrupted epoch (and the next) in the uninterrupted order
        assert first.batches + rest.batches == whole.batches


def test_last_iteration_of_an_epoch_stops_after_the_epoch(tmp_path):
    runner, _, exc = toy_run(tmp_path / 'work', 'DavarEpochBasedRunner',
                             signal_at=10)
    # the epoch's own hooks ran: its checkpoint is the one to resume from
    assert exc.checkpoint.endswith('epoch_2.pth') and exc.epoch == 2
    assert load_checkpoint_file(exc.checkpoint)['meta']['epoch'] == 2


def test_a_signal_at_the_last_iteration_lets_training_finish(tmp_path):
    runner, _, exc = toy_run(tmp_path / 'work', 'DavarEpochBasedRunner',
                             signal_at=15)
    assert exc is None and runner.iter == 15


SECOND_SIGNAL = '''
import importlib.util, os, signal, sys, time
# the module alone: the package would import mmcv and mmdet
spec = importlib.util.spec_from_file_location(
    'preempt', os.path.join('davarocr_mmcv', 'core', 'preempt.py'))
preempt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preempt)
catcher = preempt.SignalCatcher(repeat_window=0.5)
catcher.install()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)  # the same request, delivered twice
time.sleep(0.1)
print('first', catcher.received, flush=True)
time.sleep(0.6)
os.kill(os.getpid(), signal.SIGTERM)  # a second request: stop at once
time.sleep(5)
print('still alive', flush=True)
'''


def test_a_second_signal_stops_at_once():
    code, out = run_bounded([sys.executable, '-c', SECOND_SIGNAL],
                            ENV, timeout=120)
    assert code == -signal.SIGTERM, out
    assert 'first SIGTERM' in out and 'still alive' not in out


@pytest.mark.parametrize('kwargs,message', [
    (dict(signals=['SIGFOO']), "unknown signal 'SIGFOO'; accepted: ["),
    (dict(signals=['SIGKILL']), 'cannot be caught'),
    (dict(signals=[]), 'at least one signal'),
    (dict(interval=0), 'interval must be a positive int'),
    (dict(repeat_window=-1), 'repeat_window must be a number of seconds'),
])
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[')):
        PreemptionHook(**kwargs)


def test_catcher_restores_the_handlers_it_found():
    def mine(signum, frame):
        pass
    before = signal.signal(signal.SIGUSR1, mine)
    try:
        catcher = SignalCatcher()
        catcher.install()
        assert signal.getsignal(signal.SIGUSR1) == catcher._handle
        catcher.restore()
        assert signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, before)


# ------------------------------------------------------------ subprocess
CONFIG = '''_base_ = [{base!r}]
custom_imports = dict(
    imports=['davarocr_mmcv', 'davarocr_mmcv.toy', 'preempt_probe'],
    allow_failed_imports=False)
# 19 iterations per epoch in one process, 10 per rank with 2
data = dict(train=dict(times=1))
runner = dict(type='DavarEpochBasedRunner', max_epochs=2)
custom_hooks = [dict(type='TrainStatusHook', interval=1),
                dict(type='PreemptProbe')]
'''


def write_config(tmp_path):
    path = tmp_path / 'preempt_crnn.py'
    path.write_text(CONFIG.format(base=os.path.join(ROOT, RECOGNITION)))
    return str(path)


def probe_env(log, mark_at=0, slow=0):
    return dict(ENV, PYTHONPATH=os.path.join(ROOT, 'tests'), PROBE_LOG=log,
                PROBE_MARK_AT=str(mark_at), PROBE_SLOW=str(slow))


def steps(log, rank=0):
    """The probe's records of one rank, one per optimizer step."""
    with open(f'{log}.rank{rank}') as f:
        return [json.loads(line) for line in f]


def finish(proc, timeout=420):
    return procs.finish(proc, timeout)


def signal_when_marked(args, env, log, signum=signal.SIGTERM,
                       timeout=420):
    """Run ``args``; send ``signum`` to it once the probe's mark appears;
    (exit status, output)."""
    proc = start(args, env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and \
                not os.path.exists(f'{log}.mark'):
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-6000:]
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return proc.returncode, out


def check(code, out, expected=0):
    assert code == expected, out[-6000:]
    return out


def train_args(config, work, *extra):
    return [sys.executable, 'tools/train.py', config, '--work-dir',
            str(work), '--validate', *extra]


def dist_args(config, work, *extra):
    return ['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
            str(work), '--validate', *extra]


def read_status(work):
    with open(os.path.join(str(work), 'status.json')) as f:
        return json.load(f)


def test_sigterm_one_process_mid_epoch_then_auto_resume(tmp_path):
    config = write_config(tmp_path)
    whole_log, log = str(tmp_path / 'whole'), str(tmp_path / 'steps')
    work = tmp_path / 'work'
    # the uninterrupted run, beside the one signalled
    uninterrupted = start(train_args(config, tmp_path / 'whole_work'),
                          probe_env(whole_log))
    try:
        # SIGTERM in the second epoch (iterations 20-38)
        code, out = signal_when_marked(train_args(config, work),
                                       probe_env(log, mark_at=25, slow=0.4),
                                       log)
    finally:
        whole_code, whole_out = finish(uninterrupted)
    check(whole_code, whole_out)
    whole = steps(whole_log)
    assert [s['iter'] for s in whole] == list(range(1, 39))
    check(code, out, PREEMPTED_EXIT_CODE)
    assert 'Traceback' not in out
    first = steps(log)
    stop = first[-1]['iter']
    assert 25 <= stop < 38, stop
    assert f'Preempted: pre-empted by SIGTERM at epoch 1, iter {stop}' in out
    status = read_status(work)
    assert (status['state'], status['error'], status['iter']) == \
        ('preempted', 'SIGTERM', stop)
    assert status['resume'].endswith(f'--work-dir {work} --auto-resume')
    assert 'state:    preempted (SIGTERM)' in format_status(status)
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert (latest['epoch'], latest['iter']) == (1, stop)
    assert latest['epoch_position']['batches_done'] == stop - 19
    assert status['last_ckpt'] == str(work / 'latest_model.pth')

    out = check(*run_bounded(train_args(config, work, '--auto-resume'),
                             probe_env(log), timeout=420))
    assert f'epoch 2 continues after its first {stop - 19} batches' in out
    assert (read_status(work)['state'], read_status(work)['iter']) == \
        ('finished', 38)
    done = steps(log)
    # every optimizer step once: as many as without the signal, in the
    # same data order, with the same losses
    assert [s['iter'] for s in done] == list(range(1, 39))
    assert [s['batch'] for s in done] == [s['batch'] for s in whole]
    assert [s['loss'] for s in done] == pytest.approx(
        [s['loss'] for s in whole], rel=1e-4)


def kill_left_workers(log):
    """torchrun starts each worker in a session of its own: kill those the
    probe saw that are still running (an agent killed by the timeout)."""
    for rank in (0, 1):
        try:
            pids = {s['pid'] for s in steps(log, rank)}
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    if b'train.py' in f.read():
                        os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def probe_log(tmp_path):
    log = str(tmp_path / 'steps')
    yield log
    kill_left_workers(log)


def test_sigterm_to_the_torchrun_agent_stops_both_ranks(tmp_path,
                                                        probe_log):
    config = write_config(tmp_path)
    log, work = probe_log, tmp_path / 'work'
    # SIGTERM to torchrun (dist_train.sh execs it) in the second epoch
    # (iterations 11-20 of each rank); it forwards SIGTERM to the workers
    code, out = signal_when_marked(dist_args(config, work),
                                   probe_env(log, mark_at=14, slow=0.5),
                                   log)
    check(code, out, PREEMPTED_EXIT_CODE)
    ranks = [steps(log, rank) for rank in (0, 1)]
    stop = ranks[0][-1]['iter']
    assert 14 <= stop < 20 and ranks[1][-1]['iter'] == stop
    status = read_status(work)
    assert (status['state'], status['iter']) == ('preempted', stop)
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert (latest['epoch'], latest['iter']) == (1, stop)

    out = check(*run_bounded(dist_args(config, work, '--auto-resume'),
                             probe_env(log), timeout=420))
    assert f'epoch 2 continues after its first {stop - 10} batches' in out
    assert (read_status(work)['state'], read_status(work)['iter']) == \
        ('finished', 20)
    for rank in (0, 1):
        # 20 optimizer steps on each rank, as without the signal
        assert [s['iter'] for s in steps(log, rank)] == list(range(1, 21))


WORKER = '''
import os, signal, sys, time
def stop(signum, frame):  # as tools/train.py does once pre-empted
    with open(os.environ['DAVAR_PREEMPTED_FILE'], 'a') as f:
        f.write(signal.Signals(signum).name + '\\n')
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
open(sys.argv[1] + '.ready', 'w').close()
if sys.argv[2] == 'self':
    os.kill(os.getpid(), signal.SIGTERM)
time.sleep(120)
'''


@pytest.mark.parametrize('who', ['agent', 'self'])
def test_torchrun_launcher_forwards_sigusr1_and_exits_75(tmp_path, who):
    """tools/torchrun.py, dist_train.sh's torchrun: SIGUSR1 to it reaches
    the worker (torchrun alone would die of it), and a worker that stopped
    on pre-emption makes it exit 75, whether torchrun was signalled or
    only the worker was."""
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    ready = str(tmp_path / 'w')
    args = [sys.executable, 'tools/torchrun.py', '--nproc-per-node=1',
            '--master-port', str(free_port()), str(script), ready, who]
    proc = start(args, ENV)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and \
                not os.path.exists(ready + '.ready'):
            time.sleep(0.05)
        if who == 'agent':
            time.sleep(0.5)  # the agent monitors its worker by then
            proc.send_signal(signal.SIGUSR1)
    finally:
        code, out = finish(proc, timeout=300)
    assert code == PREEMPTED_EXIT_CODE, out[-4000:]


def test_sigterm_to_one_rank_stops_both_at_the_same_iteration(tmp_path,
                                                               probe_log):
    """Only rank 1 receives the signal (slurm signalling one node): the
    ranks agree through the process group and both stop at the same
    iteration, rank 0 writing the checkpoint."""
    config = write_config(tmp_path)
    log, work = probe_log, tmp_path / 'work'
    proc = start(dist_args(config, work, '--no-validate'),
                 probe_env(log, mark_at=14, slow=0.5))
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and proc.poll() is None and \
                not os.path.exists(f'{log}.mark'):
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0][-6000:]
        os.kill(steps(log, 1)[-1]['pid'], signal.SIGTERM)
    finally:
        code, out = finish(proc)
    check(code, out, PREEMPTED_EXIT_CODE)
    ranks = [steps(log, rank) for rank in (0, 1)]
    stop = ranks[0][-1]['iter']
    assert 14 <= stop < 20 and ranks[1][-1]['iter'] == stop
    status = read_status(work)
    assert (status['state'], status['error'], status['iter']) == \
        ('preempted', 'SIGTERM', stop)
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert (latest['epoch'], latest['iter']) == (1, stop)
