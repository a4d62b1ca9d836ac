"""samples/make_samples.py, the quick start's first step: it writes the two sample inputs and nothing else to the
terminal than its one line (mediapipe's native log lines are kept off it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent


def test_make_samples_writes_both_inputs_quietly(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "samples" / "make_samples.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no "W0000 ... inference_feedback_manager" lines
    assert run.stdout.strip() == f"wrote {tmp_path / 'target.png'} and {tmp_path / 'drive.mp4'}"
    with av.open(str(tmp_path / "drive.mp4")) as clip:
        assert clip.streams.video[0].frames == 100 and len(clip.streams.audio) == 1
    assert (tmp_path / "target.png").stat().st_size > 100_000
