"""Pre-emption: a termination signal becomes a request to stop, agreed by
every rank.

The one place that knows about signals. :class:`SignalCatcher` turns the
first SIGTERM / SIGUSR1 (slurm's ``--signal``) into a request and lets the
process go on; :func:`agree` makes every rank of the process group see the
request of any of them, so that all stop at the same iteration.
:class:`Preempted` is raised once the resumable checkpoint is written (see
``hooks/preempt.py``, which decides WHEN); the process then exits with
:data:`PREEMPTED_EXIT_CODE`.
"""
import os
import signal
import threading
import time

import torch
import torch.distributed as dist

#: Exit status of a run that stopped on a pre-emption signal after writing
#: a resumable checkpoint: EX_TEMPFAIL of sysexits.h, "try again later".
PREEMPTED_EXIT_CODE = 75
#: Environment variable naming a file where every process that stops on
#: pre-emption appends a line (tools/torchrun.py, the launcher of
#: tools/dist_train.sh, then exits with PREEMPTED_EXIT_CODE too).
PREEMPTED_FILE_ENV = 'DAVAR_PREEMPTED_FILE'
#: Signals that request a pre-emption stop by default.
DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1')
#: Seconds after the first signal during which the same signal again is
#: the same request delivered twice (slurm signals every process of a step,
#: and torchrun forwards what it received to its workers), not a second one.
REPEAT_WINDOW = 2.0


def signal_number(name):
    """``signal.SIGTERM`` for 'SIGTERM' (or 'TERM', or the number).

    Raises:
        ValueError: naming the argument and the signals accepted.
    """
    if isinstance(name, int) and not isinstance(name, bool):
        try:
            return signal.Signals(name)
        except ValueError:
            pass
    elif isinstance(name, str):
        full = name.upper() if name.upper().startswith('SIG') \
            else 'SIG' + name.upper()
        if full in ('SIGKILL', 'SIGSTOP'):
            raise ValueError(f'signals: {name!r} cannot be caught')
        number = getattr(signal, full, None)
        if isinstance(number, signal.Signals):
            return number
    accepted = sorted(s.name for s in signal.Signals
                      if s not in (signal.SIGKILL, signal.SIGSTOP))
    raise ValueError(f'signals: unknown signal {name!r}; accepted: '
                     f'{accepted}')


class Preempted(SystemExit):
    """Training stopped on a pre-emption signal; a resumable checkpoint
    has been written. Uncaught, the process exits with
    :data:`PREEMPTED_EXIT_CODE`.

    Attributes:
        signal_name (str): 'SIGTERM', 'SIGUSR1', ...
        epoch (int): epochs completed.
        iter (int): iterations completed.
        checkpoint (str | None): the file training continues from.
    """

    def __init__(self, signal_name, epoch, iters, checkpoint):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signal_name = signal_name
        self.epoch = epoch
        self.iter = iters
        self.checkpoint = checkpoint

    def __str__(self):
        return (f'pre-empted by {self.signal_name} at epoch {self.epoch}, '
                f'iter {self.iter}; resumable checkpoint: {self.checkpoint}')


class SignalCatcher:
    """Catches ``signals`` between :meth:`install` and :meth:`restore`.

    The first one is recorded (:attr:`received`) and the process goes on. A
    second one, later than ``repeat_window`` seconds after the first, stops
    the process at once, as the signal would without the catcher (the
    handler in place before :meth:`install` is given the signal; the default
    one, for SIGTERM and SIGUSR1, ends the process). Files are written
    atomically, so nothing torn is left.

    Args:
        signals (Sequence[str | int]): Default: ('SIGTERM', 'SIGUSR1').
        repeat_window (float): seconds during which a repeat of the first
            signal counts as the same request. Default: 2.0.
        logger: where the signals are reported. Default: None.
    """

    def __init__(self, signals=DEFAULT_SIGNALS, repeat_window=REPEAT_WINDOW,
                 logger=None):
        if isinstance(signals, (str, int)):
            signals = [signals]
        self.signals = tuple(dict.fromkeys(signal_number(s)
                                           for s in signals))
        if not self.signals:
            raise ValueError('signals must name at least one signal, e.g. '
                             f'{list(DEFAULT_SIGNALS)}')
        if isinstance(repeat_window, bool) or \
                not isinstance(repeat_window, (int, float)) or \
                repeat_window < 0:
            raise ValueError('repeat_window must be a number of seconds '
                             f'>= 0, got {repeat_window!r}')
        self.repeat_window = float(repeat_window)
        self.logger = logger
        self.received = None  # name of the first signal
        self._first_at = None
        self._previous = {}

    @property
    def installed(self):
        return bool(self._previous)

    def install(self):
        """Catch the signals; False (nothing changed) outside the main
        thread, where Python cannot set signal handlers."""
        if self.installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        self.received = self._first_at = None
        for number in self.signals:
            self._previous[number] = signal.signal(number, self._handle)
        return True

    def restore(self):
        """Put back the handlers found by :meth:`install`."""
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number,
                          signal.SIG_DFL if handler is None else handler)

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        now = time.monotonic()
        if self.received is None:
            self.received, self._first_at = name, now
            self._log('warning', f'{name} received: training stops after '
                      'this iteration, once a resumable checkpoint is '
                      f'written (a second signal, {self.repeat_window:g} s '
                      'from now on, stops at once)')
            return
        if now - self._first_at <= self.repeat_window:
            return  # the same request, delivered twice
        self._log('warning', f'{name} received again: stopping at once')
        previous = self._previous.get(number, signal.SIG_DFL)
        self.restore()
        if callable(previous):
            previous(number, frame)
            return
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    def _log(self, level, msg):
        if self.logger is not None:
            try:
                getattr(self.logger, level)(msg)
            except Exception:  # noqa: B902  never fail inside a handler
                pass


def agree(received):
    """The signal some rank of the default process group received, or None.

    Every rank calls it at the same point with the name of the signal it
    received (:attr:`SignalCatcher.received`, None if none) and gets the
    same answer; without a group, ``received`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or \
            dist.get_world_size() == 1:
        return received
    from .comm import comm_device
    number = signal_number(received) if received else 0
    flag = torch.tensor([int(number)], device=comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    number = int(flag.item())
    return signal.Signals(number).name if number else None


def wait_for_rank0():
    """Every rank of the group waits until rank 0 gets here (the
    checkpoint it writes is on disk before any rank exits)."""
    if dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        from .comm import comm_device
        flag = torch.zeros(1, device=comm_device())
        dist.all_reduce(flag)


def report_to_launcher(exc):
    """Append ``exc`` (:class:`Preempted`) to the file the launcher names
    in ``DAVAR_PREEMPTED_FILE``, if any."""
    path = os.environ.get(PREEMPTED_FILE_ENV)
    if not path:
        return
    try:
        with open(path, 'a') as f:
            f.write(f'{os.getpid()} {exc}\n')
    except OSError:
        pass
