"""What drives the target: an expression over time, relative to a neutral, from one of three sources.

* a driver video (``from_clip``): its pose-normalised landmarks and its head motion;
* AU curves (``from_curves``, e.g. a CSV from ``retarget analyze`` or OpenFace): the AU-to-shape model turns
  each row's intensities into a shape on the target's own neutral;
* relative AU edits (``from_edit``): the target's own expression in every frame plus AU changes.

All three become a ``DriveMotion``, which the render plan transfers onto the target the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analysis import ClipAnalysis, first_shot
from .aushape import AUShapeModel
from .expression import au_intensities
from .timeline import sample
from .transfer import region_scales


@dataclass
class HeadMotion:
    """The driver's head motion relative to its neutral frame (applied to still targets)."""

    rotation: np.ndarray  # (T, 3, 3) rotation relative to the neutral frame's
    shift: np.ndarray  # (T, 3) translation in normalised units (the rigid points' RMS radius, ~0.37 face sizes)
    ratio: np.ndarray  # (T,) scale relative to the neutral frame's


@dataclass
class DriveMotion:
    times: np.ndarray  # (T,) seconds
    # (T, 478, 3) float32 pose-normalised shapes (ignored where not found); None once the main job has planned
    # its frames (``pipeline.release_normalised``)
    normalised: np.ndarray | None
    neutral: np.ndarray  # (478, 3) the neutral the shapes are relative to
    found: np.ndarray  # (T,) bool
    end: float  # seconds: when the motion ends (the last frame's time plus its duration)
    head: HeadMotion | None = None  # None: no head motion to follow
    landmarks: np.ndarray | None = None  # (T, 478, 3) pixels in the driver's frames, when there is a driver video
    neutral_time: float = 0.0  # seconds: where the neutral's mouth was taken
    upper_neutral_time: float | None = None  # where its brows and eyes were taken (None: at neutral_time)

    @property
    def displacement(self) -> np.ndarray:
        """(T, 478, 3) float32 shape minus neutral; 0 where not found."""
        disp = (self.normalised - self.neutral).astype(np.float32)
        disp[~self.found] = 0.0
        return disp


def from_clip(clip: ClipAnalysis, shots: list[tuple[int, ClipAnalysis | None]] | None = None) -> DriveMotion:
    """The motion of a tracked driver video. ``shots`` (``analysis.shot_analyses``): a driver cut into shots,
    each of whose expression and head motion is taken relative to its own neutral (the first shot's with a face
    stands for all of them in the transfer: the others' changes are first scaled from their own face's
    proportions to its, so that a shot of another person drives as it would alone)."""
    times = clip.track.times
    base = first_shot(clip, shots)
    normalised = clip.expression.normalised
    head = _head_motion(clip)
    if shots is not None:
        normalised = normalised.copy()
        for start, shot in shots:
            if shot is None:
                continue
            stop = start + len(shot.track)
            if shot is not base:
                own = shot.expression.neutral
                scales = region_scales(own, base.expression.neutral)
                normalised[start:stop] = base.expression.neutral + (normalised[start:stop] - own) * scales
            part = _head_motion(shot)
            head.rotation[start:stop], head.shift[start:stop], head.ratio[start:stop] = \
                part.rotation, part.shift, part.ratio
    return DriveMotion(times=times, normalised=normalised, neutral=base.expression.neutral,
                       found=clip.expression.found, end=float(times[-1]) + 1.0 / max(clip.fps, 1e-6), head=head,
                       landmarks=clip.track.landmarks, neutral_time=base.neutral_time,
                       upper_neutral_time=base.upper_neutral_time)


def _head_motion(clip: ClipAnalysis) -> HeadMotion:
    """The head's motion through ``clip`` relative to its neutral frame."""
    k = clip.expression.neutral_index
    p = clip.pose
    return HeadMotion(p.rotation @ p.rotation[k].T, (p.translation - p.translation[k]) / p.scale[k],
                      p.scale / p.scale[k])


def frame_times(end: float, fps: float) -> np.ndarray:
    """(T,) times k / fps covering [0, end]."""
    return np.arange(int(np.floor(end * fps + 1e-6)) + 1) / fps


def from_curves(times: np.ndarray, aus: np.ndarray, success: np.ndarray, model: AUShapeModel, fps: float,
                rotation: np.ndarray | None = None) -> DriveMotion:
    """Motion from AU curves: rows at ``times`` (R,) with ``aus`` (R, 17) and ``success`` (R,), resampled at
    ``fps`` by linear interpolation; rows with ``success`` False are lost frames.

    ``rotation`` (R, 3, 3): optional head rotations per row, followed relative to the first good row.
    """
    out_t = frame_times(float(times[-1]), fps)
    good = np.asarray(success, bool)
    if not good.any():
        raise ValueError("no row with success=1")
    values = sample(np.asarray(aus, np.float64)[good], np.asarray(times)[good], out_t)
    # an output frame is lost when its nearest row is a lost one
    nearest = np.clip(np.searchsorted(times, out_t), 0, len(times) - 1)
    left = np.clip(nearest - 1, 0, len(times) - 1)
    pick = np.where(np.abs(times[left] - out_t) <= np.abs(times[nearest] - out_t), left, nearest)
    found = good[pick]
    head = None
    if rotation is not None:
        rel = rotation @ rotation[np.flatnonzero(good)[0]].T
        u, _, vt = np.linalg.svd(sample(rel, times, out_t))
        n = len(out_t)
        head = HeadMotion(u @ vt, np.zeros((n, 3)), np.ones(n))
    return DriveMotion(times=out_t, normalised=model.shapes(values), neutral=model.neutral.astype(np.float32),
                       found=found, end=float(out_t[-1]) + 1.0 / fps, head=head)


def envelope(times: np.ndarray, start: float | None, stop: float | None, ramp: float) -> np.ndarray:
    """(T,) edit strength: 1 between ``start`` and ``stop`` (None: open-ended), 0 outside, with smoothstep
    ramps of ``ramp`` seconds inside the interval's ends."""
    lo = -np.inf if start is None else start
    hi = np.inf if stop is None else stop
    inside = (times >= lo) & (times <= hi)
    if ramp <= 0:
        return inside.astype(float)
    up = np.clip((times - lo) / ramp, 0, 1) if start is not None else np.ones(len(times))
    down = np.clip((hi - times) / ramp, 0, 1) if stop is not None else np.ones(len(times))
    x = np.minimum(up, down) * inside
    return x * x * (3 - 2 * x)


def edit_weights(deltas: np.ndarray, strength: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(T, 17) basis weights of relative AU edits ``deltas`` (17,) scaled by ``strength`` (T,), never taking an AU
    below zero: a decrease is limited to the frame's own intensity ``own`` (T, 17)."""
    w = strength[:, None] * deltas[None] / 5.0
    return np.maximum(w, -own / 5.0)


def from_edit(target: ClipAnalysis, model: AUShapeModel, deltas: np.ndarray, times: np.ndarray,
              strength: np.ndarray, own: np.ndarray | None = None) -> DriveMotion:
    """The target's own expression at ``times`` plus relative AU changes ``deltas`` (17,) times ``strength`` (T,).

    A video target is edited frame by frame (``times`` are its frame times); a still repeats its one frame.
    ``own`` (T, 17): the AU intensities edits may take away (default: those measured against the neutral).
    """
    expr = target.expression
    still = len(expr.normalised) == 1
    index = np.zeros(len(times), int) if still else np.arange(len(times))
    found = np.ones(len(times), bool) if still else expr.found.copy()
    current = np.where(found[:, None, None], expr.normalised[index], expr.neutral)
    if own is None:
        own = au_intensities(current, expr.neutral)
    shapes = current + model.displacement(edit_weights(deltas, strength, own))
    end = float(times[-1]) + (float(np.median(np.diff(times))) if len(times) > 1 else 0.04)
    return DriveMotion(times=np.asarray(times, float), normalised=shapes.astype(np.float32),
                       neutral=expr.neutral, found=found, end=end, neutral_time=target.neutral_time)
