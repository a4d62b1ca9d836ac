"""Overlap I/O with work: a prefetching iterator and a writer that runs in its own thread.

PyAV releases the GIL while decoding, converting and encoding, so on a 2-core machine the codec work of one
frame overlaps with the generation of the next.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Yield ``items`` while a background thread produces up to ``depth`` ahead; its errors re-raise here."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            box.put(exc)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
        close = getattr(items, "close", None)
        if close is not None and not worker.is_alive():
            close()


class BackgroundCalls:
    """Run ``fn(*args)`` calls in order on one background thread; ``finish`` waits and re-raises errors."""

    def __init__(self, fn: Callable[..., Any], depth: int = 4) -> None:
        self._fn = fn
        self._box: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name="writer", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            args = self._box.get()
            if args is _DONE:
                return
            if self._error is None:
                try:
                    self._fn(*args)
                except BaseException as exc:
                    self._error = exc

    def submit(self, *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._box.put(args)

    def finish(self) -> None:
        self._box.put(_DONE)
        self._worker.join()
        if self._error is not None:
            raise self._error


def opencv_on_one_thread() -> None:
    """Run OpenCV's functions on the calling thread alone (``cv2.setNumThreads(1)``), for the rest of the process.

    For a process the command line owns. The job keeps the cores busy with threads of its own (generating,
    encoding, decoding, mediapipe's), and OpenCV's pool added a worker that, between the generator's calls,
    waited actively (165 000 ``sched_yield`` calls in a 5 s job on this project's 2-core machine) on the cores
    those threads need. On one thread, six alternated rounds of the 720p job took 4.99 s on average against
    5.11 s, with 0.3 CPU-s less, and wrote the same bytes (README, speed).
    """
    import cv2

    cv2.setNumThreads(1)
