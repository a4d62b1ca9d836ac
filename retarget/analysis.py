"""Per-clip analysis: smoothed landmarks, head pose and expression of one tracked clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expression import analyse
from .face import estimate_pose, reference_shape
from .smooth import smooth
from .types import Expression, HeadPose, Track


@dataclass
class ClipAnalysis:
    track: Track  # landmarks smoothed over time (NaN kept where lost)
    pose: HeadPose  # smoothed
    expression: Expression
    fps: float

    @property
    def neutral_time(self) -> float:
        """Seconds: where the neutral's mouth was taken."""
        return float(self.track.times[self.expression.neutral_index])

    @property
    def upper_neutral_time(self) -> float:
        """Seconds: where the neutral's brows, eyes and cheeks were taken."""
        upper = self.expression.upper_neutral_index
        return float(self.track.times[self.expression.neutral_index if upper is None else upper])


def analyse_clip(track: Track, fps: float, neutral_time: float | None,
                 smooth_landmarks: float, smooth_pose: float, population_neutral: bool = False) -> ClipAnalysis:
    """Smooth the landmarks (zero-phase), fit head pose, normalise, and measure expression.

    ``population_neutral`` measures the AUs from a typical resting face instead of the clip's own neutral
    (``expression.analyse``); meant for a still image, which would otherwise read 0 on every AU.
    """
    if not track.found.any():
        raise ValueError("no face")
    steady = smooth(track.landmarks, fps, smooth_landmarks, valid=track.found)
    steady = np.where(track.found[:, None, None], steady, np.nan).astype(np.float32)
    smoothed = Track(track.times, steady, track.found, track.width, track.height)
    reference = reference_shape(smoothed)
    pose, normalised = estimate_pose(smoothed, reference)
    pose = smooth_head_pose(pose, fps, smooth_pose, track.found)
    expression = analyse(normalised, track.found, track.times, neutral_time, population_neutral)
    return ClipAnalysis(smoothed, pose, expression, fps)


def smooth_head_pose(pose: HeadPose, fps: float, seconds: float, found: np.ndarray) -> HeadPose:
    """Smooth rotation (re-orthonormalised), translation and scale over time."""
    rot = smooth(pose.rotation, fps, seconds, valid=found)
    u, _, vt = np.linalg.svd(rot)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    return HeadPose(u @ vt, smooth(pose.translation, fps, seconds, valid=found),
                    smooth(pose.scale, fps, seconds, valid=found))
