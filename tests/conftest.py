"""Shared fixtures: a real 478-point face without third-party media, and the optional real clips.

The face is scikit-image's astronaut photo (Eileen Collins, NASA, public domain, bundled with scikit-image): its
head, cropped and upscaled 2x so the face is about 215 px tall, tracked once per session with the project's own
``FaceTracker``. Landmark-level tests build expressions by moving these landmarks.

The real clips live outside the repository in ``../shared/media`` (see its MANIFEST.md); tests that need them are
marked ``media`` and skip with a reason when the folder is absent. Nothing made from them is written anywhere
but pytest's tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import MEDIA_DIR

@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"real test media not available: {MEDIA_DIR} does not exist")
    return MEDIA_DIR


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: the astronaut's head (rows 0-256, columns 96-352) upscaled 2x, read-only."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut test photo")
    import cv2

    image = cv2.resize(data.astronaut()[0:256, 96:352], (512, 512), interpolation=cv2.INTER_CUBIC)
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def astronaut_landmarks(astronaut: np.ndarray) -> np.ndarray:
    """(478, 3) float32 landmarks of the astronaut's face in pixels, read-only."""
    from retarget.face import FaceTracker

    with FaceTracker(still=True) as tracker:
        points = tracker(astronaut.copy())
    assert points is not None, "mediapipe found no face in the astronaut photo"
    points.setflags(write=False)
    return points


@pytest.fixture(scope="session")
def astronaut_neutral(astronaut_landmarks: np.ndarray) -> np.ndarray:
    """(478, 3) float64 pose-normalised astronaut face (``face.reference_shape`` of a one-frame track)."""
    from retarget.face import reference_shape
    from retarget.types import Track

    track = Track(np.zeros(1), astronaut_landmarks[None].copy(), np.ones(1, bool), 512, 512)
    shape = reference_shape(track)
    shape.setflags(write=False)
    return shape
