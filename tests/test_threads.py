"""The hand-over between the job's threads (``retarget.threads``): order, batched wake-ups, errors, early stops."""

from __future__ import annotations

import threading
import time

import pytest

from retarget.threads import BackgroundCalls, Handoff, prefetch

WAIT = 5.0  # seconds: only a broken hand-over waits this long


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def _waiting(thread: threading.Thread, state: dict, key: str) -> bool:
    """Whether ``thread`` has been blocked in the hand-over since ``state[key]`` was last set (it sets
    ``state[key]`` just before each call)."""
    before = state[key]
    time.sleep(0.05)
    return thread.is_alive() and state[key] == before


def test_a_full_buffer_wakes_its_producer_only_once_half_is_taken() -> None:
    box = Handoff(4)
    state = {"put": 0}

    def produce() -> None:
        for i in range(8):
            state["put"] = i
            box.put(i)
        box.put(None, last=True)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    _wait_until(lambda: state["put"] == 4, "the producer fills the buffer")
    assert _waiting(worker, state, "put")  # full: the fifth put waits
    assert box.get() == 0
    assert _waiting(worker, state, "put")  # three left: still above half
    assert box.get() == 1
    _wait_until(lambda: state["put"] == 6, "at half the producer refills the buffer in one go")
    assert [box.get() for _ in range(7)] == [2, 3, 4, 5, 6, 7, None]
    worker.join(WAIT)
    assert not worker.is_alive()


def test_a_batched_consumer_waits_for_a_pair_or_the_last_item() -> None:
    box = Handoff(4, batch=2)
    got: list = []

    def consume() -> None:
        while (item := box.get()) is not None:
            got.append(item)
        got.append("end")

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    box.put("a")
    time.sleep(0.05)
    assert got == []  # one item does not wake it
    box.put("b")
    _wait_until(lambda: got == ["a", "b"], "a pair wakes the consumer")
    box.put("c")
    time.sleep(0.05)
    assert got == ["a", "b"]
    box.put(None, last=True)  # the last item wakes it with fewer than a pair in
    _wait_until(lambda: got == ["a", "b", "c", "end"], "the last item wakes the consumer")


def test_prefetch_keeps_order_and_reraises_the_producers_error() -> None:
    assert list(prefetch(iter(range(50)), depth=4)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad frame")

    stream = prefetch(failing(), depth=4)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(stream)


def test_prefetch_stops_its_producer_when_the_consumer_stops_early() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def items():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=4)
    assert next(stream) == 0
    stream.close()  # the consumer stops after one item
    assert closed.wait(WAIT)
    assert len(produced) <= 6  # the buffer's worth, not the whole stream


def test_background_calls_run_in_order_and_finish_reraises() -> None:
    seen: list[int] = []
    calls = BackgroundCalls(seen.append, depth=4)
    for i in range(25):  # an odd count: the last call is handed over on its own
        calls.submit(i)
    calls.finish()
    assert seen == list(range(25))

    def fail(i: int) -> None:
        if i == 3:
            raise OSError("disk full")

    calls = BackgroundCalls(fail)
    for i in range(5):
        calls.submit(i)
    with pytest.raises(OSError, match="disk full"):
        calls.finish()
