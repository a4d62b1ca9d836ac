"""Overlap I/O with work: a prefetching iterator and a writer that runs in its own thread.

PyAV releases the GIL while decoding, converting and encoding, so on a 2-core machine the codec work of one
frame overlaps with the generation of the next.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class Handoff:
    """A bounded first-in first-out buffer from one producing thread to one consuming thread that wakes each side
    in batches: a producer that finds it full sleeps until the consumer has emptied it to half, and a consumer
    that finds it empty sleeps until ``batch`` items (or the last one) are in.

    Waking a sleeping thread costs about 20 us of CPU time on this project's 2-core machine (a round trip through
    two ``queue.Queue`` s between two threads: 45 us of CPU, 33 of them in the kernel), and a hand-over one item
    at a time woke a thread for every frame, on each of the job's streams (README, speed)."""

    def __init__(self, depth: int, batch: int = 1) -> None:
        self._items: deque = deque()
        self._ready = threading.Condition()
        self._depth, self._low, self._batch = depth, depth // 2, min(batch, depth)
        self._ended = self._closed = False

    def put(self, item: object, last: bool = False) -> bool:
        """Append ``item`` (``last``: no more will come), waiting while the buffer is full; False, and nothing
        appended, once the consumer has closed it."""
        with self._ready:
            if len(self._items) >= self._depth:
                self._ready.wait_for(lambda: self._closed or len(self._items) <= self._low)
            if self._closed:
                return False
            self._items.append(item)
            self._ended = self._ended or last
            if last or len(self._items) >= self._batch:
                self._ready.notify()
            return True

    def get(self) -> Any:
        """The oldest item, waiting for one (for ``batch`` of them, or the last one) while the buffer is empty."""
        with self._ready:
            if not self._items:
                self._ready.wait_for(lambda: len(self._items) >= self._batch or (self._ended and self._items))
            item = self._items.popleft()
            if len(self._items) == self._low:
                self._ready.notify()
            return item

    def close(self) -> None:
        """The consumer stops taking items: a waiting producer returns, and later puts are refused."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


def prefetch(items: Iterator[T], depth: int = 8) -> Iterator[T]:
    """Yield ``items`` while a background thread produces up to ``depth`` ahead (``Handoff``); its errors re-raise
    here."""
    box = Handoff(depth)

    def produce() -> None:
        try:
            for item in items:
                if not box.put(item):
                    return
            box.put(_DONE, last=True)
        except BaseException as exc:  # handed to the consumer
            box.put(exc, last=True)

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
        box.close()
        worker.join(timeout=5)
        close = getattr(items, "close", None)
        if close is not None and not worker.is_alive():
            close()


class BackgroundCalls:
    """Run ``fn(*args)`` calls in order on one background thread; ``finish`` waits and re-raises errors. Calls are
    handed over in pairs (``Handoff``), the last one on its own."""

    def __init__(self, fn: Callable[..., Any], depth: int = 4) -> None:
        self._fn = fn
        self._box = Handoff(depth, batch=2)
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
        self._box.put(_DONE, last=True)
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
