"""What a long job shows on the terminal: its own progress and tables, nothing else.

``quiet(log_path)`` sends everything written to the process's stdout and stderr (file
descriptors 1 and 2: Ray and Ray Train reports, worker output relayed by Ray, library
warnings, progress bars) to ``log_path``; ``say`` writes to the terminal and to the log. Without
``quiet`` (``--verbose``), ``say`` is a plain print.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_console = None  # the terminal while quiet() is active


def say(message: str = "") -> None:
    """A progress or result line for the user (terminal, and the log while quiet)."""
    if _console is not None:
        _console.write(message + "\n")
        _console.flush()
    print(message, flush=True)


@contextlib.contextmanager
def quiet(log_path: str) -> Iterator[None]:
    """Redirect fds 1 and 2 to ``log_path`` (appended) for the duration; ``say`` still
    reaches the terminal."""
    global _console
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        _console = console
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _console = None
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console.close()
