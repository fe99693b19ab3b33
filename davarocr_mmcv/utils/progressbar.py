"""A time-throttled progress bar, readable in log files."""
import sys
import time


class DavarProgressBar:
    """A progress bar that stays readable in log files: on a terminal it
    redraws one line; otherwise it prints a line at most every
    ``min_time_interval`` seconds, and once at the end."""

    def __init__(self, total, min_time_interval=1.0, stream=None):
        self.total = total
        self.done = 0
        self.min_time_interval = min_time_interval
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, 'isatty', lambda: False)()
        self.start = self.last = time.time()

    def update(self, num=1):
        self.done += num
        now = time.time()
        finished = self.done >= self.total
        if not finished and now - self.last < self.min_time_interval:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        line = (f'[{self.done}/{self.total}] {self.done / elapsed:.1f} '
                f'samples/s, elapsed {elapsed:.0f}s')
        if self.tty:
            self.stream.write('\r' + line + ('\n' if finished else ''))
        else:
            self.stream.write(line + '\n')
        self.stream.flush()
