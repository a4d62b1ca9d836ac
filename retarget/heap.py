"""The C heap under glibc: settings and calls that keep a long job's resident memory down.

glibc gives each thread that allocates its own heap ("arena", up to 8 a core) and keeps freed memory in it for
reuse. The job's threads (decoding, generating, encoding) each allocate whole frames, so every arena grows to
its own high-water mark, and a long clip's plan leaves its freed temporaries behind. None of these does anything
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_arenas(count: int = 2) -> bool:
    """Let threads started from now on share ``count`` arenas (``mallopt(M_ARENA_MAX)``); whether it was set.

    The main job's peak on the 720p benchmark clip: 368-373 MiB with glibc's default, 324-334 MiB with 2
    arenas, at the same speed (three alternated rounds, README, speed and memory). Meant for a process the
    tool owns (the command line), as it changes the process's allocator.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, int(count)) == 1)


def trim() -> None:
    """Hand the free pages inside the heap back to the system (``malloc_trim``). After a long clip's plan, its
    whole-clip temporaries otherwise stay resident under the render's frames: on a 3-minute target the peak fell
    from 510 to 462 MiB (the call added to a run from outside, with a garbage collection before it)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


TRIM_PERIOD = 0.5  # seconds between trims while a job runs


class Trimming:
    """While in use (a context manager), ``trim`` every ``period`` seconds on a thread of its own.

    The freed memory glibc keeps is scattered between the blocks still in use, so it grows with the job's
    length: its frames are allocated and freed thousands of times, and the high-water mark of those holes rose
    with every minute of footage. Trimming twice a second kept the main job's peak on the 720p benchmark clip
    looped to 60 s at 322-325 MiB, against 379-397 without (10 s: 312 against 318-319), at no cost that
    showed in its time (README, speed and memory). Does nothing where the C library is not glibc.
    """

    def __init__(self, period: float | None = None) -> None:
        self.period = TRIM_PERIOD if period is None else period
        self.count = 0  # trims done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Trimming:
        libc = _glibc()
        if libc is not None and self.period > 0:
            self._trim = libc.malloc_trim
            self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._trim(0)
            self.count += 1


def trimming(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` with every call run under ``Trimming()`` (the main job and the edits)."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> T:
        with Trimming():
            return function(*args, **kwargs)

    return wrapped
