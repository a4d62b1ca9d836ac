"""Progress bars on stderr (frames/s and time left), or nothing when disabled."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def bar(self, description: str, total: int, stream=None, unit: str = "frame"):
        """A bar on ``stream`` (default stderr) counting ``unit``s."""
        if not self.enabled:
            return _Silent()
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit=unit, file=stream or sys.stderr, dynamic_ncols=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                               "[{elapsed}<{remaining}, {rate_fmt}]")

    @contextmanager
    def note_if_slow(self, message: str, after: float = 1.0, stream=None) -> Iterator[None]:
        """Print ``retarget: MESSAGE`` on ``stream`` (default stderr) if the block is still running ``after``
        seconds in (nothing when disabled): a pause that is usually short says why it is long."""
        if not self.enabled:
            yield
            return
        out = stream or sys.stderr
        timer = threading.Timer(after, lambda: print(f"retarget: {message}", file=out, flush=True))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
