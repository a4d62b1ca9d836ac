"""Keep mediapipe's native log lines (written by its C++ side straight to file descriptor 2) off the terminal.

During tracking, descriptor 2 points at /dev/null and the caller gets a text stream on a duplicate of the real
stderr for its own progress bar. Python errors are raised, not printed, so nothing of ours is lost. Set
``RETARGET_NATIVE_LOGS=1`` to see the native logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def native_stderr_silenced() -> Iterator[TextIO]:
    """Yield a stream for our own stderr output while descriptor 2 is silenced; restores it on exit."""
    if os.environ.get("RETARGET_NATIVE_LOGS") or not _has_fd(sys.stderr):
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    stream = os.fdopen(os.dup(saved), "w", buffering=1, errors="replace")
    try:
        os.dup2(devnull, 2)
        yield stream
    finally:
        stream.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        stream.close()


def _has_fd(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
