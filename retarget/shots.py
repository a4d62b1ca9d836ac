"""Shots: where an edited video cuts from one shot to the next.

A cut breaks everything that runs over time: the face tracker would look for the face where it was in the
previous shot, smoothing would blend two shots' landmarks (the warp then pulls the face towards where the other
shot had it), and a neutral face taken in one shot, perhaps of another person, would reshape the face in the
other. So a video is scored for cuts while it is tracked, and the stages after tracking treat each shot as a clip
of its own.

A cut is a frame whose small HSV thumbnail differs from the previous frame's far more than both the usual change
from frame to frame and the changes around it (the content-aware measure of PySceneDetect's ``ContentDetector``
with the local ratio of its ``AdaptiveDetector``). PySceneDetect itself is not used: its releases that work
without their own OpenCV build (0.6) mark this per-frame interface unstable, and 0.7 requires ``opencv-python``
beside mediapipe's ``opencv-contrib-python``.

Gradual transitions (dissolves) change the picture too slowly to score as cuts. There the tracker follows the
fading face until it is lost, then finds the next shot's face somewhere else: a frame whose face lies far from the
one before it (``face_jumps``) starts a new shot as well.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import landmarks as lm

THUMB_WIDTH = 96  # pixels; an HSV thumbnail this wide is compared between frames
# A cut changes the thumbnail by at least this much (mean absolute HSV difference, 0-255 scale) ...
CUT_CHANGE = 10.0
# ... and by at least this many times the median change of the frames around it (4 on each side). Measured on
# cuts made from the shared clips: two women in different places 58 (34 times the change around it), the same
# room at 1.6x zoom 45 (29x), two men before the same grey wall 15.9 (16x). Within the shots of every shared
# clip the change reached 18.5 (a head moving fast close to the camera, `drv_lp_d12`; 2.8x), and its ratio 5.6
# (on a change of 7.9).
CUT_RATIO = 8.0
MIN_SHOT = 0.5  # seconds: a candidate this close after the previous cut is not a new shot
# The followed face starts a new shot where it lies this many face sizes (the larger of the two faces' oval
# boxes) from the previous frame's face, or is this many times larger or smaller. Within the shots of every shared
# clip a face moved at most 0.25 face sizes from one frame to the next (a fast head near the camera, `drv_lp_d12`;
# 0.07 elsewhere) and changed size by at most 7%; a dissolve from `vid_lp_s18` to `vid_lp_s32` moved it 0.89.
JUMP = 0.5
JUMP_SCALE = 1.4


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(h, THUMB_WIDTH, 3) int16 HSV (hue on 0-255) of ``image`` (H, W, 3) uint8 RGB. Every ``k``-th pixel
    is averaged, not every pixel: 0.6 ms against 5 for a 720p frame, and a cut changes the whole picture."""
    h, w = image.shape[:2]
    step = max(1, w // (2 * THUMB_WIDTH))
    sampled = image[::step, ::step]
    size = (THUMB_WIDTH, max(1, round(THUMB_WIDTH * h / w)))
    small = cv2.resize(sampled, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).astype(np.int16)


class CutScorer:
    """How much each frame of a stream changes from the one before: ``scorer(image)`` returns the change (0 on the
    first frame) and keeps it in ``scores``."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self.scores: list[float] = []

    def likely_cut(self) -> bool:
        """Whether the latest frame may start a new shot, judged from the frames before it alone (the tracker
        then looks afresh; ``find_cuts`` decides later, with the frames after it too)."""
        return bool(self.scores) and _is_cut(self.scores[-1], np.asarray(self.scores[-5:-1]))

    def __call__(self, image: np.ndarray) -> float:
        thumb = thumbnail(image)
        same_shape = self._previous is not None and self._previous.shape == thumb.shape
        score = float(np.abs(thumb - self._previous).mean()) if same_shape else 0.0
        self._previous = thumb
        self.scores.append(score)
        return score


def _is_cut(score: float, around: np.ndarray) -> bool:
    """Whether a frame that changed by ``score`` starts a new shot, given the changes of frames ``around`` it."""
    typical = float(np.median(around)) if len(around) else 0.0
    return score >= CUT_CHANGE and score >= CUT_RATIO * max(typical, 1.0)


def find_cuts(scores: np.ndarray, times: np.ndarray, min_shot: float = MIN_SHOT) -> np.ndarray:
    """(K,) int, increasing: the frames that start a new shot, from the ``scores`` (T,) of ``CutScorer`` and
    the frame ``times`` (T,) in seconds. Frame 0 is never one."""
    scores = np.asarray(scores, np.float64)
    cuts: list[int] = []
    for i in np.flatnonzero(scores >= CUT_CHANGE):
        if i == 0 or not _is_cut(scores[i], np.concatenate([scores[max(1, i - 4):i], scores[i + 1:i + 5]])):
            continue
        if cuts and times[i] - times[cuts[-1]] < min_shot:
            if scores[i] > scores[cuts[-1]]:
                cuts[-1] = int(i)  # the stronger of two candidates too close together
            continue
        cuts.append(int(i))
    return np.asarray(cuts, int)


def shot_spans(length: int, cuts: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop), ...] frame ranges of the shots of a clip of ``length`` frames cut at ``cuts``."""
    edges = [0, *(int(c) for c in cuts if 0 < c < length), length]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def face_jumps(landmarks: np.ndarray, found: np.ndarray, times: np.ndarray, cuts: np.ndarray,
               min_shot: float = MIN_SHOT) -> np.ndarray:
    """(K,) int, increasing: ``cuts`` together with the frames whose face jumped from the previous frame with a
    face (``JUMP``, ``JUMP_SCALE``), frames without a face between them allowed. A jump over one of ``cuts`` is
    that cut's doing and adds nothing; a jump within ``min_shot`` seconds after an earlier one is not a new shot.

    Args:
        landmarks: (T, 478, >=2) pixels, NaN where no face; found: (T,) bool; times: (T,) seconds;
        cuts: (C,) int, increasing, the picture's cuts (``find_cuts``).
    """
    seen = np.flatnonzero(found)
    if len(seen) < 2:
        return np.asarray(cuts, int)
    centre, size = _face_places(landmarks, seen)
    larger, smaller = np.maximum(size[1:], size[:-1]), np.minimum(size[1:], size[:-1])
    step = np.linalg.norm(np.diff(centre, axis=0), axis=1) / larger
    scale = larger / smaller
    out = [int(c) for c in cuts]
    last_jump = None
    for k in np.flatnonzero((step >= JUMP) | (scale >= JUMP_SCALE)):
        before, at = int(seen[k]), int(seen[k + 1])
        if any(before < c <= at for c in out):
            continue
        if last_jump is not None and times[at] - times[last_jump] < min_shot:
            continue
        out.append(at)
        last_jump = at
    return np.asarray(sorted(out), int)


def _face_places(landmarks: np.ndarray, frames: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The face oval's centre (F, 2) and size (F,) (its larger extent, at least 1 px) in ``frames`` (F,) of
    ``landmarks`` (T, 478, >=2; an array or rows on disk), read ``block`` frames at a time."""
    centres, sizes = [], []
    for start in range(0, len(landmarks), block):
        picked = frames[(frames >= start) & (frames < start + block)] - start
        oval = np.asarray(landmarks[start:start + block])[picked][:, lm.FACE_OVAL, :2]
        centres.append(oval.mean(1))
        sizes.append(np.maximum(np.ptp(oval, axis=1).max(1), 1.0))
    return np.concatenate(centres), np.concatenate(sizes)
