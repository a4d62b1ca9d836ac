"""The command's quick exit (``cli.entry``) and the note a slow preparation prints (``Progress.note_if_slow``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retarget import cli
from retarget.progress import Progress

REPO = Path(__file__).resolve().parents[1]


def test_entry_flushes_and_exits_with_mains_code(monkeypatch: pytest.MonkeyPatch) -> None:
    events = []

    class Stream(io.StringIO):
        def flush(self) -> None:
            events.append(("flush", self.getvalue()))

    monkeypatch.setattr(cli, "main", lambda: (print("done", file=sys.stderr), 3)[1])
    monkeypatch.setattr(sys, "stderr", Stream())
    monkeypatch.setattr(sys, "stdout", Stream())

    def fake_exit(code: int) -> None:
        events.append(("exit", code))
        raise SystemExit(code)  # what os._exit would have ended

    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        cli.entry()
    assert events[-1] == ("exit", 3)
    assert ("flush", "done\n") in events[:-1]  # what main wrote was flushed before the exit


def test_python_m_retarget_exits_through_entry_with_its_code(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "retarget", str(tmp_path / "none.mp4"), str(tmp_path / "t.png"),
                          "-o", str(tmp_path / "out.mp4")], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [f"retarget: error: {tmp_path / 'none.mp4'} not found"]


def test_note_if_slow_speaks_only_when_slow() -> None:
    out = io.StringIO()
    with Progress().note_if_slow("compiling", after=0.05, stream=out):
        time.sleep(0.3)
    assert out.getvalue() == "retarget: compiling\n"
    quick = io.StringIO()
    with Progress().note_if_slow("compiling", after=0.5, stream=quick):
        pass
    time.sleep(0.6)  # the cancelled timer never fires
    assert quick.getvalue() == ""
    silent = io.StringIO()
    with Progress(enabled=False).note_if_slow("compiling", after=0.0, stream=silent):
        time.sleep(0.1)
    assert silent.getvalue() == ""


def test_a_job_runs_opencv_on_its_own_thread_alone(tmp_path: Path) -> None:
    """The command's jobs set OpenCV to one thread (``threads.opencv_on_one_thread``): its pool's worker waited
    actively on the cores the job's own threads need."""
    import cv2

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        code = cli._run_job(lambda: cv2.getNumThreads(), debug=False)
        assert code == 1
    finally:
        cv2.setNumThreads(before)
