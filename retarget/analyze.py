"""``retarget analyze``: one clip (or still) -> per-frame AU intensities, head pose and confidence, as AUCurves.

Steps: probe, track (mediapipe face mesh), analyse (``analysis.analyse_clip``: smoothing, head pose, AUs
relative to the face's neutral), convert to OpenFace 2 conventions, write the CSV and/or the plot.

Head pose in OpenFace conventions (an approximation, not OpenFace's own fit)
----------------------------------------------------------------------------
Camera: pinhole with OpenFace's default intrinsics, ``f = (500 * W / 640 + 500 * H / 480) / 2`` pixels and the
principal point at the image centre. Axes as in OpenFace: x to the image's right, y down, z away from the
camera.

- ``pose_Tz`` (mm): weak perspective. The face's scale in pixels per millimetre is its eye-centre distance in
  pixels (the 3D distance between the two eye-corner midpoints of the person's median face, times the
  per-frame scale of the rigid fit, so turning the head does not shrink it) divided by a typical adult
  interpupillary distance of 63 mm; ``Tz = f / (pixels per mm)``. People's real eye distances vary by about
  +-4 mm (sd), so Tz is off by that ratio (about +-6%) for a given person; changes over a clip are consistent.
- ``pose_Tx``, ``pose_Ty`` (mm): the image position of the face centre (the centroid of the 468 mesh points
  of the median face, mapped by the frame's pose) relative to the image centre, back-projected at depth Tz.
  OpenFace's origin is the centre of its own 68-point model; the two centres differ by a few millimetres.
- ``pose_Rx``, ``pose_Ry``, ``pose_Rz`` (radians): the head rotation in camera coordinates decomposed as
  ``R = Rx @ Ry @ Rz`` (OpenFace's ``RotationMatrix2Euler``): Rx pitch (positive: the nose turns down),
  Ry yaw (positive: the nose turns towards the image's left, the subject's right), Rz roll (positive: the
  eye line turns clockwise on screen). The rotation is the rigid fit of the frame's expression-stable
  landmarks to the person's median face (``face.estimate_pose``), composed with that median face's own
  orientation. The head frame's x axis is the line between the eye centres and its y axis lies in the
  face's midline plane (forehead to the base of the nose), so yaw and roll read 0 for a symmetric face
  looking into the camera; pitch has no such symmetry, so ``PITCH_ZERO`` (the forehead-to-nose-base line's
  measured tilt on near-frontal faces) is taken off to make a face looking into the camera read about 0.
  mediapipe's depth (z) is a learned relative estimate, so expect errors of a few degrees, more for yaw
  beyond about 45 degrees. Rotation and translation are smoothed over 0.33 s like the rest of the pipeline.
- Frames without a face get 0 in every pose column (and AU 0, success 0, confidence 0).

Confidence
----------
mediapipe's face-mesh solution does not expose a per-frame presence score. The bundled BlazeFace
short-range detector (``mp.solutions.face_detection``) does, and costs ~3 ms a 480x480 frame against ~6.5 ms
for the mesh, so it runs on one frame in every ``CONFIDENCE_EVERY`` seconds: a sampled frame's confidence is
the best detector score among the detections whose box contains the tracked face's centre (0 when none
does), interpolated linearly in time between sampled frames with a face, and 0 on frames without a face.
Clean faces score 0.89-0.98 on the development clips (small faces in 1280x720 frames included), so
OpenFace-style thresholds of 0.8-0.9 keep them. It measures whether a detector sees a face there, not the
accuracy of the landmarks.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from . import landmarks as lm
from .analysis import ClipAnalysis, analyse_clip
from .aucsv import AUCurves, write_au_csv
from .config import RetargetConfig
from .errors import RetargetError
from .mediapipe_import import import_solution
from .progress import Progress
from .quiet import native_stderr_silenced
from .types import Frame, MediaInfo, Track
from .video import probe, read_frames, read_still

INTERPUPILLARY_MM = 63.0
"""Typical adult interpupillary distance (mm): the face's metric size for pose_Tz."""

PITCH_ZERO = float(np.radians(2.0))
"""Radians taken off the pitch so that a face looking into the camera reads about 0 (see the docstring)."""

CONFIDENCE_EVERY = 0.2
"""Seconds between the frames the face detector scores for ``confidence``."""

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def analyze(clip: Path, csv: Path | None, plot: Path | None, config: RetargetConfig,
            show_progress: bool = True) -> AUCurves:
    """Analyse ``clip`` (a video or a still image) and write its AU curves to ``csv`` and/or ``plot``; of several
    faces, ``config.drive_face`` chooses (``--face``).

    Raises RetargetError for a missing or unreadable file, no video stream, no face anywhere, a bad
    ``config.drive_neutral`` or an output path that is the input. Outputs are written only when everything
    succeeded, each atomically.
    """
    clip = Path(clip)
    info = probe(clip)
    csv, plot = _check_outputs(clip, csv, plot)
    neutral = config.drive_neutral
    if neutral is not None and info.is_still:
        raise RetargetError(f"--neutral needs a video; {clip} is a still image")
    progress = Progress(enabled=show_progress)
    with native_stderr_silenced() as stderr:
        track, samples = _track(info, config, progress, stderr)
    analysis = _analyse(track, info, neutral, config)
    curves = to_curves(analysis, samples)
    _write_outputs(curves, csv, plot, analysis.neutral_time, f"{clip.name}: action units")
    return curves


def _check_outputs(clip: Path, csv: Path | None, plot: Path | None) -> tuple[Path | None, Path | None]:
    csv = Path(csv) if csv is not None else None
    plot = Path(plot) if plot is not None else None
    for out in (p for p in (csv, plot) if p is not None):
        if out.resolve() == clip.resolve() or (out.exists() and os.path.samefile(out, clip)):
            raise RetargetError(f"output {out} would overwrite the input {clip}")
        if out.is_dir():
            raise RetargetError(f"output {out} is a folder")
        if not out.parent.is_dir():
            raise RetargetError(f"the folder of the output {out} does not exist")
    if csv is not None and plot is not None and csv.resolve() == plot.resolve():
        raise RetargetError("the CSV and the plot must be different files")
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise RetargetError(f"the plot must end in {', '.join(PLOT_SUFFIXES)}: {plot}")
    return csv, plot


# ----------------------------------------------------------------------------------------------- tracking


class _DetectorSamples:
    """Face-detector scores on every ``every``-th frame, taken while the frames stream to the tracker."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.indices: list[int] = []
        self.detections: list[list[tuple[float, float, float, float, float]]] = []  # x0, y0, x1, y1, score

    def tap(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        face_detection = import_solution("face_detection")

        with face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.05) as det:
            for i, frame in enumerate(frames):
                if i % self.every == 0:
                    self._score(det, i, frame.image)
                yield frame

    def _score(self, detector, index: int, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        found = []
        for d in detector.process(image).detections or []:
            box = d.location_data.relative_bounding_box
            found.append((box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h,
                          float(d.score[0])))
        self.indices.append(index)
        self.detections.append(found)


def _track(info: MediaInfo, config: RetargetConfig, progress: Progress, stream) -> tuple[Track, _DetectorSamples]:
    """The face ``config.drive_face`` chooses (``--face``), tracked, and the detector's scores along the way."""
    from .pipeline import track_chosen_face

    bar = progress.bar("tracking face", 1 if info.is_still else info.frame_count, stream)
    try:
        if info.is_still:
            samples = _DetectorSamples(1)
            frames = samples.tap([Frame(0, 0.0, read_still(info.path, config.max_size))])
        else:
            fps = float(info.fps) if info.fps else 25.0
            samples = _DetectorSamples(round(CONFIDENCE_EVERY * fps))
            frames = samples.tap(read_frames(info.path))
        return track_chosen_face(frames, info, config, "drive", bar.update, flag="--face"), samples
    finally:
        bar.close()


def _analyse(track: Track, info: MediaInfo, neutral: float | None, config: RetargetConfig) -> ClipAnalysis:
    if len(track) == 0:
        raise RetargetError(f"{info.path} has no decodable video frames")
    if not track.found.any():
        raise RetargetError(f"no face found in {info.path}")
    if neutral is not None and not 0 <= neutral <= track.times[-1] + 1e-6:
        raise RetargetError(f"--neutral {neutral} s is outside the clip's 0-{track.times[-1]:.2f} s")
    fps = float(info.fps) if info.fps else 25.0
    if info.is_still:  # a still is its own neutral: read it against a typical resting face instead
        return analyse_clip(track, fps, None, config.smooth_expression, config.smooth_pose, population_neutral=True)
    return analyse_clip(track, fps, neutral, config.smooth_expression, config.smooth_pose)


# ---------------------------------------------------------------------------------------------- conversion


def to_curves(analysis: ClipAnalysis, samples: _DetectorSamples | None = None) -> AUCurves:
    """The analysis as AUCurves: AUs, success, confidence (see the module docstring) and OpenFace pose."""
    track = analysis.track
    found = track.found.copy()
    aus = np.where(found[:, None], analysis.expression.aus, 0.0).astype(np.float32)
    pose = openface_pose(analysis)
    pose[~found] = 0.0
    confidence = detector_confidence(track, samples) if samples is not None else found.astype(np.float32)
    return AUCurves(times=_increasing(track.times), aus=np.round(aus, 3), success=found,
                    confidence=np.round(confidence, 3).astype(np.float32), pose=np.round(pose, 4))


def _increasing(times: np.ndarray) -> np.ndarray:
    """``times`` made strictly increasing (a repeated or backward timestamp is nudged 1 microsecond on)."""
    out = np.asarray(times, np.float64).copy()
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            out[i] = out[i - 1] + 1e-6
    return out


def camera_focal(width: int, height: int) -> float:
    """OpenFace's default focal length in pixels for a ``width`` x ``height`` frame."""
    return (500.0 * width / 640.0 + 500.0 * height / 480.0) / 2.0


def _rx(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def openface_euler(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) (Rx, Ry, Rz) radians with ``R = Rx @ Ry @ Rz`` (OpenFace's order)."""
    ry = np.arcsin(np.clip(r[..., 0, 2], -1.0, 1.0))
    rx = np.arctan2(-r[..., 1, 2], r[..., 2, 2])
    rz = np.arctan2(-r[..., 0, 1], r[..., 0, 0])
    return np.stack([rx, ry, rz], -1)


def head_rotation(analysis: ClipAnalysis) -> np.ndarray:
    """(T, 3, 3) head rotation in camera coordinates: the pose's rotation of the median face, pitch-corrected.

    The median face (``face.reference_shape``) is upright in its own frame (x along the eye line, y along the
    forehead-to-nose-base midline), so the frame's rotation already has 0 yaw and roll for a frontal face;
    ``PITCH_ZERO`` re-bases the head frame's pitch.
    """
    return analysis.pose.rotation @ _rx(PITCH_ZERO)


def _median_face(analysis: ClipAnalysis) -> np.ndarray:
    """(478, 3) the person's median pose-normalised face (the frame the head pose maps from)."""
    normalised = analysis.expression.normalised[analysis.track.found]
    return np.median(normalised[:: max(1, len(normalised) // 300)], axis=0).astype(np.float64)


def openface_pose(analysis: ClipAnalysis) -> np.ndarray:
    """(T, 6) float64 pose_Tx, pose_Ty, pose_Tz (mm), pose_Rx, pose_Ry, pose_Rz (radians); see the docstring."""
    track, pose = analysis.track, analysis.pose
    shape = _median_face(analysis)
    eyes = [shape[list(corners)].mean(0) for corners in (lm.RIGHT_EYE_CORNERS, lm.LEFT_EYE_CORNERS)]
    eye_distance = float(np.linalg.norm(eyes[1] - eyes[0]))  # normalised units
    centre = shape[:468].mean(0)
    f = camera_focal(track.width, track.height)
    px_per_mm = pose.scale * eye_distance / INTERPUPILLARY_MM
    tz = f / px_per_mm
    image_centre = np.einsum("tij,j->ti", pose.rotation, centre) * pose.scale[:, None] + pose.translation
    tx = (image_centre[:, 0] - track.width / 2.0) * tz / f
    ty = (image_centre[:, 1] - track.height / 2.0) * tz / f
    euler = openface_euler(head_rotation(analysis))
    return np.column_stack([tx, ty, tz, euler]).astype(np.float64)


def detector_confidence(track: Track, samples: _DetectorSamples) -> np.ndarray:
    """(T,) float32 0-1: the detector's score for the tracked face (see the module docstring)."""
    found = track.found
    conf = np.zeros(len(track), np.float32)
    at, scores = [], []
    for index, detections in zip(samples.indices, samples.detections):
        if index >= len(track) or not found[index]:
            continue
        cx, cy = np.nanmean(track.landmarks[index, :468, :2], axis=0)
        inside = [s for x0, y0, x1, y1, s in detections if x0 <= cx <= x1 and y0 <= cy <= y1]
        at.append(track.times[index])
        scores.append(max(inside, default=0.0))
    if not at:  # no sampled frame had the face: nothing measured, so the tracker's own verdict stands
        conf[found] = 1.0
        return conf
    conf[found] = np.interp(track.times[found], at, scores)
    return conf


# ------------------------------------------------------------------------------------------------- output


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.stem}.part{secrets.token_hex(4)}{path.suffix}")


def _write_outputs(curves: AUCurves, csv: Path | None, plot: Path | None, neutral_time: float | None,
                   title: str) -> None:
    """Write both outputs to temporary files first and rename them only when both are complete."""
    from .auplot import plot_aus

    pending: list[tuple[Path, Path]] = []
    try:
        if plot is not None:
            pending.append((_temp_beside(plot), plot))
            plot_aus(curves, pending[-1][0], neutral_time, title)
        if csv is not None:
            pending.append((_temp_beside(csv), csv))
            write_au_csv(pending[-1][0], curves)
        for tmp, final in pending:
            os.replace(tmp, final)
    finally:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
