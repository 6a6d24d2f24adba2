"""Drops TensorFlow's C++ start-up lines from the process's stderr (file descriptor 2).

TensorFlow writes them through absl before its own log level applies
(`TF_CPP_MIN_LOG_LEVEL` hides the later ones, not "All log messages before
absl::InitializeLog() ...", oneDNN's, the CUDA stub's or the CPU-feature
notice), and a CPU-only machine logs "failed call to cuInit" on first use.
The `keras-mmga` command routes descriptor 2 through a pipe whose reader
thread drops those lines and passes everything else on at once (progress
lines drawn with "\\r" included); `--verbose` leaves stderr alone. Worker
processes inherit the pipe, so their start-up lines go too.
"""

import os
import re
import sys
import threading

# absl's C++ line format ("I0000 00:00:1796475075.100881    4881 port.cc:153] ...") and the lines
# TensorFlow prints around it at start-up.
NOISE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    # TensorFlow Lite's interpreter (the pose model, once per worker process; workers may interleave it).
    rb"|(?:INFO: )+(?:Created TensorFlow Lite XNNPACK delegate for CPU\.)?"
    rb"|(?:INFO: )*Created TensorFlow Lite XNNPACK delegate for CPU\.)\r?\n?$"
)
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)")
# A line start that may still become one of those (held back until its end is seen).
_MAYBE = re.compile(
    rb"^(?:[IWEF]\d{0,4}(?: .*)?|W(?:A(?:R(?:N(?:I(?:N(?:G.*)?)?)?)?)?)?|T(?:o.*)?|I(?:N(?:F(?:O.*)?)?)?"
    rb"|C(?:r.*)?)$",
    re.DOTALL,
)


def is_noise(line):
    """True for one of TensorFlow's C++ start-up lines (bytes, with or without its newline)."""
    return NOISE.match(line) is not None


class StartupNoiseFilter:
    """Descriptor 2 through a filtering pipe; `remove()` restores it and flushes what is left."""

    def __init__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read = read_end
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()

    @classmethod
    def install(cls):
        """The filter, or None where descriptor 2 cannot be redirected."""
        try:
            return cls()
        except (OSError, ValueError, AttributeError):
            return None

    def _write(self, data):
        if data:
            os.write(self._saved, data)

    def _pump(self):
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            # Complete lines (ended by \n, or \r for redrawn progress lines) are judged now.
            pieces = _LINE.findall(pending)
            out = [piece for piece in pieces if not is_noise(piece)]
            pending = pending[sum(map(len, pieces)) :]
            if pending and not _MAYBE.match(pending[:80]):
                out.append(pending)
                pending = b""
            self._write(b"".join(out))
        if pending and not is_noise(pending):
            self._write(pending)

    def remove(self):
        """Restores descriptor 2 and waits for the reader to pass on the rest."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # closes the pipe's write end held by descriptor 2
        self._thread.join(timeout=5)
        os.close(self._read)
        os.close(self._saved)
