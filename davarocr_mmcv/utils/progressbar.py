"""A time-throttled progress bar, readable in log files."""
import sys
import time
import warnings


class DavarProgressBar:
    """A progress bar that stays readable in log files: on a terminal it
    redraws one line; otherwise it prints a line at most every
    ``min_time_interval`` seconds, and once at the end.

    Counting past ``total`` is never silent: the first update beyond it
    prints a line and raises a ``RuntimeWarning`` saying that the loader
    yields more samples than expected (an endless sampler, for instance),
    and every later line is marked ``past total``.
    """

    def __init__(self, total, min_time_interval=1.0, stream=None):
        self.total = total
        self.done = 0
        self.min_time_interval = min_time_interval
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, 'isatty', lambda: False)()
        self.start = self.last = time.time()
        self.overrun = False

    def update(self, num=1):
        self.done += num
        now = time.time()
        if self.done > self.total and not self.overrun:
            self.overrun = True
            self._past_total()
        finished = self.done == self.total
        if not finished and now - self.last < self.min_time_interval:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        line = (f'[{self.done}/{self.total}] {self.done / elapsed:.1f} '
                f'samples/s, elapsed {elapsed:.0f}s')
        if self.overrun:
            line += ', past total'
        if self.tty:
            self.stream.write('\r' + line + ('\n' if finished else ''))
        else:
            self.stream.write(line + '\n')
        self.stream.flush()

    def _past_total(self):
        message = (f'progress: {self.done} samples done, past the expected '
                   f'total of {self.total}; the loader yields more samples '
                   f'than its dataset holds (an endless or repeating '
                   f'sampler?)')
        self.stream.write(('\n' if self.tty else '') + message + '\n')
        self.stream.flush()
        warnings.warn(message, RuntimeWarning, stacklevel=3)
