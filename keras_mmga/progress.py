"""Progress of long work: count, rate (items/s), elapsed and time left, on stderr.

On a terminal one line is redrawn in place; in a log file (not a TTY) a line is
written at most every `interval` seconds and once at the end, so logs stay short.
This module imports nothing heavy: data, deploy and CLI code all use it.

Example:
```python
from keras_mmga.progress import Progress
with Progress(3, "images", label="check", verbose=False) as bar:
    for _ in range(3):
        bar.update(1)
bar.count
```
"""

import sys
import time


def _format_seconds(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Reports progress of `total` items (None when unknown).

    Args:
        total: number of items expected, or None.
        unit: name of the items ("images", "batches").
        label: what is being done, shown first ("gallery features").
        verbose: False makes every call a no-op (counting still happens).
        interval: seconds between lines when the stream is not a terminal.
        stream: where to write (default `sys.stderr`).
    """

    def __init__(self, total=None, unit="items", label="", verbose=True, interval=10.0, stream=None):
        if total is not None and int(total) < 0:
            raise ValueError(f"total must be >= 0 or None, got {total}")
        self.total = None if total is None else int(total)
        self.unit = unit
        self.label = label
        self.verbose = bool(verbose)
        self.interval = float(interval)
        self.stream = sys.stderr if stream is None else stream
        self.count = 0
        self._start = time.monotonic()
        self._last_line = -float("inf")
        self._closed = False
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty and isatty())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def elapsed(self):
        return time.monotonic() - self._start

    @property
    def rate(self):
        """Items per second so far (0 before any time has passed)."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self):
        """The current progress as one line of text."""
        head = f"{self.label}: " if self.label else ""
        done = f"{self.count}/{self.total}" if self.total is not None else f"{self.count}"
        text = f"{head}{done} {self.unit}, {self.rate:.1f} {self.unit}/s, elapsed {_format_seconds(self.elapsed)}"
        if self.total is not None and self.count and self.count < self.total:
            text += f", left {_format_seconds((self.total - self.count) / max(self.rate, 1e-9))}"
        return text

    def update(self, n=1):
        self.count += int(n)
        if not self.verbose or self._closed:
            return
        now = time.monotonic()
        if self._tty:
            if now - self._last_line >= 0.1:
                self.stream.write("\r" + self.line() + "\033[K")
                self.stream.flush()
                self._last_line = now
        elif now - self._last_line >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_line = now

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self.verbose:
            self.stream.write(("\r" + self.line() + "\033[K\n") if self._tty else self.line() + "\n")
            self.stream.flush()


def track(iterable, total=None, unit="items", label="", verbose=True, **kwargs):
    """Yields from `iterable`, counting one item each, with a `Progress` line."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, unit, label=label, verbose=verbose, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)
