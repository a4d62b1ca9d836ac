"""The C heap settings of the command line (``retarget.heap``), checked in fresh interpreters."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the heap settings are glibc's")

# four threads allocating at once, each keeping its blocks until all have them, then glibc's arena count
_THREADS = """
import ctypes, sys, threading
from retarget.heap import limit_arenas, trim
if sys.argv[1] == "limited":
    assert limit_arenas(1)
barrier = threading.Barrier(4)
def work():
    blocks = [ctypes.create_string_buffer(20000) for _ in range(50)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
trim()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def _arenas(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", _THREADS, mode], capture_output=True, text=True, check=True)
    return sum(line.startswith("Arena ") for line in run.stderr.splitlines())


def test_threads_share_the_arenas_the_limit_allows() -> None:
    assert _arenas("default") >= 3  # glibc's default: a heap for each thread allocating at once
    assert _arenas("limited") == 1


def test_the_command_line_limits_its_heaps(monkeypatch, tmp_path) -> None:
    import retarget.heap
    from retarget.cli import main

    asked = []
    monkeypatch.setattr(retarget.heap, "limit_arenas", lambda count=2: asked.append(count) or True)
    missing = str(tmp_path / "missing.mp4")
    assert main([missing, missing, "-o", str(tmp_path / "out.mp4")]) == 1  # fails on the input, after the limit
    assert asked == [2]
