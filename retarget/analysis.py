"""Per-clip analysis: smoothed landmarks, head pose and expression of one tracked clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expression import analyse
from .face import estimate_pose, reference_shape
from .shots import shot_spans
from .smooth import smooth, smooth_rows
from .spill import FrameRows, FrameStore
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
                 smooth_landmarks: float, smooth_pose: float, population_neutral: bool = False,
                 consume: bool = False, store: FrameStore | None = None) -> ClipAnalysis:
    """Smooth the landmarks (zero-phase), fit head pose, normalise, and measure expression.

    ``population_neutral`` measures the AUs from a typical resting face instead of the clip's own neutral
    (``expression.analyse``); meant for a still image, which would otherwise read 0 on every AU.
    ``consume``: the landmarks are smoothed in place in ``track.landmarks`` (float32), which the analysis then
    holds, so that a long clip's analysis has one whole-clip copy of them fewer (the main job: its raw tracks
    are not read again). ``store`` (the main job's ``FrameStore``): the pose-normalised shapes are written
    there as they are measured, and the smoothed landmarks moved there once the pose is fitted (with
    ``consume``, ``track`` then holds them too), so that a long clip's analysis holds one whole-clip array, not
    two or three.
    """
    if not track.found.any():
        raise ValueError("no face")
    steady = _smoothed_landmarks(track, fps, smooth_landmarks, consume, store)
    smoothed = Track(track.times, steady, track.found, track.width, track.height, track.cuts)
    reference = reference_shape(smoothed)
    pose, normalised = estimate_pose(smoothed, reference, np.empty if store is None else store.empty)
    if store is not None:
        smoothed.landmarks = store.keep(steady)
        if consume:
            track.landmarks = smoothed.landmarks
        del steady
    pose = smooth_head_pose(pose, fps, smooth_pose, track.found, track.cuts)
    expression = analyse(normalised, track.found, track.times, neutral_time, population_neutral)
    return ClipAnalysis(smoothed, pose, expression, fps)


def _smoothed_landmarks(track: Track, fps: float, seconds: float, consume: bool,
                        store: FrameStore | None) -> np.ndarray | FrameRows:
    """(T, 478, 3) float32 ``track.landmarks`` smoothed (``smooth``), NaN where no face: in place with
    ``consume``; tracked to disk (``FrameRows``), a block at a time into a file of ``store`` (``smooth_rows``)."""
    landmarks, lost = track.landmarks, ~track.found
    if isinstance(landmarks, FrameRows):
        steady = smooth_rows(landmarks, fps, seconds, (store or FrameStore()).empty(landmarks.shape, np.float32),
                             valid=track.found, cuts=track.cuts)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], lost.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):  # each run of frames without a face
            steady[a:b] = np.nan
        if consume:
            landmarks.close()  # the raw rows are read no more: their disk goes now
        return steady
    in_place = consume and landmarks.dtype == np.float32 and landmarks.flags.c_contiguous
    steady = smooth(landmarks, fps, seconds, valid=track.found, cuts=track.cuts,
                    out=landmarks if in_place else None).astype(np.float32, copy=False)
    steady[lost] = np.nan
    return steady


def shot_analyses(clip: ClipAnalysis, neutral_time: float | None) -> list[tuple[int, ClipAnalysis | None]]:
    """Each shot of a clip cut into shots (``Track.cuts``) as a clip of its own, with its own neutral face: its
    first frame and its analysis (None: no face in the shot). ``neutral_time`` (seconds) sets the neutral of
    the shot it falls in; the others take their calmest frame. The landmarks are already smoothed shot by shot.
    """
    track, pose, times = clip.track, clip.pose, clip.track.times
    shots: list[tuple[int, ClipAnalysis | None]] = []
    for a, b in shot_spans(len(track), track.cuts):
        found = track.found[a:b]
        if not found.any():
            shots.append((a, None))
            continue
        last = b == len(track)
        own = neutral_time if neutral_time is not None and times[a] - 1e-6 <= neutral_time and (
            last or neutral_time < times[b]) else None
        part = Track(times[a:b], track.landmarks[a:b], found, track.width, track.height)
        expression = analyse(clip.expression.normalised[a:b], found, times[a:b], own)
        shots.append((a, ClipAnalysis(part, HeadPose(pose.rotation[a:b], pose.translation[a:b], pose.scale[a:b]),
                                      expression, clip.fps)))
    return shots


def first_shot(clip: ClipAnalysis, shots: list[tuple[int, ClipAnalysis | None]] | None) -> ClipAnalysis:
    """The clip that stands for one cut into ``shots`` where one neutral is needed (the report's, a driver's
    face proportions): its first shot with a face, or the whole clip when it is not cut."""
    return next((shot for _, shot in shots or [] if shot is not None), clip)


def smooth_head_pose(pose: HeadPose, fps: float, seconds: float, found: np.ndarray,
                     cuts: np.ndarray | None = None) -> HeadPose:
    """Smooth rotation (re-orthonormalised), translation and scale over time, each shot on its own."""
    rot = smooth(pose.rotation, fps, seconds, valid=found, cuts=cuts)
    u, _, vt = np.linalg.svd(rot)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    return HeadPose(u @ vt, smooth(pose.translation, fps, seconds, valid=found, cuts=cuts),
                    smooth(pose.scale, fps, seconds, valid=found, cuts=cuts))
