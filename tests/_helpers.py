"""Expression edits on landmark sets and small measures shared by the tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retarget import landmarks as lm

# the real clips live outside the repository, beside it (../shared/media); see MANIFEST.md there
MEDIA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "media"

CORNERS = np.array([*lm.MOUTH_CORNERS, *lm.INNER_MOUTH_CORNERS])


def media_file(name: str) -> Path:
    """Path of one real clip, or skip the test with the reason it is not there."""
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"real test media not available: {MEDIA_DIR} does not exist")
    path = MEDIA_DIR / name
    if not path.is_file():
        pytest.skip(f"real test media not available: {path} is missing")
    return path


def open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    """A jaw drop: copy of ``points`` (478, >=2) with the lower lip, chin and jaw moved down by ``amount``.

    A smooth field that only moves points down, more the lower they are: 0 above the mouth, 1 below it,
    ramping across a band as tall as the lips' inner gap, centred on the line through the mouth corners and the
    middle of the inner lips. The corners move by half (they stay on the lips' vertical midline: the mouth
    opens, it does not smile or frown), the middle of the upper lip stays, and no mesh triangle folds because
    the motion is monotone in y. Meant for a face with parted lips (the astronaut); ``amount`` is in the units
    of ``points``.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    x, y = out[:, 0], out[:, 1]
    left, right = lm.MOUTH_CORNERS
    mid_x = x[lm.UPPER_LIP_INNER]
    mid_y = (y[lm.UPPER_LIP_INNER] + y[lm.LOWER_LIP_INNER]) / 2
    order = np.argsort([x[left], mid_x, x[right]])
    line = np.interp(x, np.array([x[left], mid_x, x[right]])[order], np.array([y[left], mid_y, y[right]])[order])
    band = y[lm.LOWER_LIP_INNER] - y[lm.UPPER_LIP_INNER]
    weight = np.clip(0.5 + (y - line) / band, 0.0, 1.0)
    out[:, 1] += amount * weight
    return out.astype(points.dtype)


def close_eyes(points: np.ndarray, x_too: bool = False) -> np.ndarray:
    """Copy of ``points`` with every upper-lid point moved onto its lower partner (y only, or x and y)."""
    out = np.array(points, copy=True)
    cols = slice(0, 2) if x_too else slice(1, 2)
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        out[pairs[:, 0], cols] = points[pairs[:, 1], cols]
    return out


def raise_corners(points: np.ndarray, amount: float) -> np.ndarray:
    """Copy of ``points`` with the mouth corners (outer and inner) moved up by ``amount``."""
    out = np.array(points, copy=True)
    out[CORNERS, 1] -= amount
    return out


def polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """(h, w) bool mask of the pixels inside ``polygon`` (N, 2) pixel coordinates."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(polygon) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)
