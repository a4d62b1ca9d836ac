"""Output timing through the whole pipeline, on synthetic clips (no shared media needed)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from test_video import make_clip

import retarget

# irregular presentation times (ms) of a variable-frame-rate target: gaps of 40, 60, 20, 80 and 33 ms
VFR_MS = [0, 40, 100, 120, 200, 233, 266, 300, 380, 400, 460, 500]


def head() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut test photo")
    return cv2.resize(data.astronaut()[0:256, 96:352], (256, 256), interpolation=cv2.INTER_AREA)


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


def test_variable_frame_rate_target_keeps_its_timestamps(tmp_path: Path) -> None:
    face = head()
    target, drive = tmp_path / "vfr.mp4", tmp_path / "drive.mp4"
    make_clip(target, 256, 256, images=[face] * len(VFR_MS), pts_ms=VFR_MS)
    make_clip(drive, 256, 256, images=[np.ascontiguousarray(face[:, ::-1])] * 15, pts_ms=[40 * i for i in range(15)])
    source_times = frame_times(target)
    assert np.allclose(source_times, np.array(VFR_MS) / 1000, atol=1e-3)  # the input really is irregular
    result = retarget.retarget(drive, target, tmp_path / "out.mp4")
    assert result.frames_written == len(VFR_MS)
    np.testing.assert_allclose(frame_times(result.output), source_times, atol=1e-3)
