"""Aligned square face crops for the learned generator: the same crop for training data and for inference.

A crop is a similarity (rotation, uniform scale, translation) of the frame, fitted by least squares
(``face.similarity_fit``, Umeyama) from 31 expression-stable landmarks (``STABLE``: the head-pose set
``landmarks.RIGID`` less the cheeks -- eye corners, nose bridge and tip, forehead, temples) onto a fixed
frontal template (``TEMPLATE``). Mouth, brows, lids, cheeks and chin are left out of the fit on purpose, so
that a smile or a jaw drop changes the face inside the crop and does not move the crop.

Layout, measured on the development clips: the face's width (landmarks 234-454) is 0.62-0.71 of the crop
side, the top of the forehead (landmark 10) 0.06-0.10 below the top edge, the brows at about 0.21, the chin
at 0.81-0.93 at rest (0.99 in the widest jaw drop), the nose tip within 0.06 of the centre and the eye line
level within 1 degree on average. ``CROP_SPAN`` sets the zoom (3.0 makes the face about 0.75 of the crop but
cuts off a wide-open chin). The crop is defined in units of the crop side, so ``size`` only scales it: the
512 crop is the 256 crop scaled by 2 (affines and crop landmarks exactly, pixels up to resampling).

Coordinates are the project's (``types``): landmark ``x, y`` in frame pixels, read in cv2's convention
(pixel ``(i, j)``'s centre at ``x=j, y=i``) as the warp generator does, so an affine goes to
``cv2.warpAffine`` unchanged. Only numpy and cv2 are used here (no torch).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..face import similarity_fit
from ..smooth import smooth

# The template: a frontal face in the project's pose-normalised frame (``face.reference_shape``: x along the
# eye line towards the subject's left, y down, unit = RMS radius of ``landmarks.RIGID``), projected onto x-y.
# The numbers are the normalised face-mesh landmarks of scikit-image's astronaut photo (public domain, the
# face the tests use), made left-right symmetric: the midline at x = 0, each left-right pair averaged.
_MIDLINE: dict[int, float] = {  # index: y. Forehead top to nose tip.
    10: -0.694, 151: -0.447, 9: -0.193, 8: -0.057, 168: 0.070, 6: 0.204, 197: 0.329, 195: 0.445, 5: 0.570,
    4: 0.720, 1: 0.829,
}
_PAIRS: dict[tuple[int, int], tuple[float, float]] = {  # (subject's right, left): (|x|, y)
    (33, 263): (0.760, 0.114),  # outer eye corners
    (133, 362): (0.286, 0.165),  # inner eye corners
    (127, 356): (1.162, 0.160),  # temples and the face's sides, top to bottom
    (234, 454): (1.157, 0.384),
    (162, 389): (1.138, -0.070),
    (21, 251): (1.084, -0.251),
    (54, 284): (0.989, -0.421),  # forehead, outside in
    (103, 332): (0.835, -0.558),
    (67, 297): (0.590, -0.646),
    (109, 338): (0.321, -0.686),
}

STABLE = np.array([*_MIDLINE, *(i for pair in _PAIRS for i in pair)], dtype=np.int64)
"""The 31 landmarks the crop is fitted on: ``landmarks.RIGID`` (the head-pose set) less the cheek points, which
rise with a smile. Eye corners, nose bridge and tip, forehead, temples: they move little with expression."""

_STABLE_XY = np.array([(0.0, y) for y in _MIDLINE.values()]
                      + [p for (ax, y) in _PAIRS.values() for p in ((-ax, y), (ax, y))], dtype=np.float64)

CROP_CENTRE = (0.0, 0.70)
"""The crop centre in the normalised frame: on the midline, just below the nose tip (y = 0.83)."""

CROP_SPAN = 3.4
"""The crop side in normalised units (the astronaut's face is 2.32 wide, 2.69 tall from landmark 10 to the chin)."""

TEMPLATE = (_STABLE_XY - np.array(CROP_CENTRE)) / CROP_SPAN + 0.5
"""(31, 2) float64: where the ``STABLE`` landmarks go, in units of the crop side (0..1, x right, y down)."""


def crop_affine(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The (2, 3) float64 affine that maps frame pixels to pixels of the ``size`` x ``size`` aligned crop.

    Args:
        landmarks: (478, 2 or 3) face-mesh landmarks in frame pixels (``Track.landmarks[t]``).
        size: crop side in pixels.
    Raises:
        ValueError: when a landmark the fit uses is not finite (a frame without a face).
    """
    pts = np.asarray(landmarks, dtype=np.float64)[STABLE, :2]
    if not np.isfinite(pts).all():
        raise ValueError("crop_affine needs finite landmarks (was the face found in this frame?)")
    scale, rot, trans = similarity_fit(pts, TEMPLATE * float(size))
    return np.concatenate([scale * rot, trans[:, None]], axis=1)


def cut_crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 frame -> (size, size, 3) uint8 crop through ``affine`` (bilinear, border reflected)."""
    return cv2.warpAffine(np.ascontiguousarray(image), np.asarray(affine, dtype=np.float64), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def affine_scale(affine: np.ndarray) -> float | np.ndarray:
    """Uniform scale of a similarity affine (2, 3), or (T,) of a stack (T, 2, 3)."""
    a = np.asarray(affine, dtype=np.float64)
    return np.sqrt(np.abs(np.linalg.det(a[..., :2, :2])))


def crop_landmarks(landmarks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Landmarks (N, 3) in frame pixels -> crop pixels: x, y through ``affine``, z times its scale.

    Same dtype as ``landmarks``; NaN stays NaN.
    """
    pts = np.asarray(landmarks)
    a = np.asarray(affine, dtype=np.float64)
    out = np.empty(pts.shape, dtype=np.float64)
    out[:, :2] = pts[:, :2].astype(np.float64) @ a[:, :2].T + a[:, 2]
    if pts.shape[1] > 2:
        out[:, 2:] = pts[:, 2:] * affine_scale(a)
    return out.astype(pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The (2, 3) float64 inverse of an invertible (2, 3) affine: crop pixels back to frame pixels."""
    a = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.concatenate([inv, -(inv @ a[:, 2])[:, None]], axis=1)


def smooth_affines(affines: np.ndarray, found: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Zero-phase smoothing of per-frame crop affines (T, 2, 3) over ``seconds`` (``smooth.smooth``).

    A similarity ``[[a, -b, tx], [b, a, ty]]`` is linear in its parameters, so smoothing the matrix entries
    gives similarities again. Frames where ``found`` is False are bridged (linear interpolation, nearest value
    at the ends) and come back filled; with no found frame at all the input is returned unchanged.
    Returns float64 (T, 2, 3).
    """
    a = np.asarray(affines, dtype=np.float64)
    found = np.asarray(found, dtype=bool)
    if not found.any():
        return a.copy()
    return smooth(np.where(found[:, None, None], a, 0.0), fps, seconds, valid=found)
