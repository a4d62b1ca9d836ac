"""Track and align: the face mesh bundled with mediapipe, and a rigid head pose per frame.

Mediapipe's face mesh detects a face, then tracks it from the previous frame's landmarks and re-detects when the
track is lost. Head pose is a similarity (rotation, translation, scale) fitted on expression-stable landmarks
(``landmarks.RIGID``) against the person's own median face shape, so that expressions can be compared in a
pose-normalised frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .mediapipe_import import import_mediapipe
from .types import N_LANDMARKS, Frame, HeadPose, Track


@dataclass(frozen=True)
class TrackerSettings:
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    max_faces: int = 4  # considered on stills, where the largest is chosen


class FaceTracker:
    """Face mesh on a stream of frames (``still=False``) or on independent images (``still=True``).

    Returns one face per call: the largest on the first call, then the face nearest the previous one, so a
    second person entering the frame does not steal the track. ``max_faces`` faces are looked at (for videos,
    more than one costs a detection per frame, so ``track_frames`` asks for more only when the first frame
    shows several faces).
    """

    def __init__(self, still: bool = False, settings: TrackerSettings | None = None,
                 max_faces: int | None = None) -> None:
        mp = import_mediapipe()  # heavy: imported only when tracking

        s = settings or TrackerSettings()
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=still,
            max_num_faces=max_faces or (s.max_faces if still else 1),
            refine_landmarks=True,  # the 10 iris points, for gaze
            min_detection_confidence=s.min_detection_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
        )
        self._last: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks (478, 3) float32 in pixels of ``image`` (H, W, 3) uint8 RGB, or None when no face."""
        faces = self.all_faces(image)
        if not faces:
            return None
        if self._last is None:
            face = max(faces, key=_face_area)
        else:
            centre = self._last[:, :2].mean(0)
            face = min(faces, key=lambda f: float(np.linalg.norm(f[:, :2].mean(0) - centre)))
        self._last = face
        return face

    def all_faces(self, image: np.ndarray) -> list[np.ndarray]:
        """Every face found, each (478, 3) float32 pixels."""
        h, w = image.shape[:2]
        result = self._mesh.process(image)
        return [_to_pixels(face, w, h) for face in (result.multi_face_landmarks or [])]

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# a NormalizedLandmarkList holding only x, y and z, serialised: per landmark the field tag and length, then each
# coordinate's tag and little-endian float32
_PACKED = np.dtype([("tag", "u1"), ("length", "u1"), ("tag_x", "u1"), ("x", "<f4"), ("tag_y", "u1"), ("y", "<f4"),
                    ("tag_z", "u1"), ("z", "<f4")])
_PACKED_TAGS = (0x0A, 15, 0x0D, 0x15, 0x1D)


def _to_pixels(face: object, width: int, height: int) -> np.ndarray:
    """(478, 3) float32 pixels of a mediapipe landmark list (coordinates normalised by width and height; z by
    width), read from its serialised form (0.02 ms a face, against 0.4 for the Python loop the form falls back
    to when a landmark carries more than x, y and z)."""
    data = face.SerializeToString()
    packed = np.frombuffer(data, _PACKED) if len(data) % _PACKED.itemsize == 0 else None
    if packed is not None and all((packed[f] == v).all() for f, v in zip(("tag", "length", "tag_x", "tag_y",
                                                                            "tag_z"), _PACKED_TAGS)):
        xyz = np.stack([packed["x"], packed["y"], packed["z"]], 1).astype(np.float64)
        arr = (xyz * np.array([width, height, width], np.float64)).astype(np.float32)
    else:
        arr = np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], dtype=np.float32)
    if arr.shape[0] != N_LANDMARKS:
        raise RuntimeError(f"face mesh returned {arr.shape[0]} landmarks, expected {N_LANDMARKS}")
    return arr


def _face_area(points: np.ndarray) -> float:
    span = points[:, :2].max(0) - points[:, :2].min(0)
    return float(span[0] * span[1])


def track_frames(frames: Iterable[Frame], width: int, height: int, still: bool = False,
                 on_frame=None) -> Track:
    """Track the face through ``frames``; keeps only landmarks, never the frames themselves."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return Track(np.zeros(0), np.zeros((0, N_LANDMARKS, 3), np.float32), np.zeros(0, bool), width, height)
    faces_at_start = 1
    if not still:
        with FaceTracker(still=True) as probe:
            faces_at_start = max(1, len(probe.all_faces(first.image)))
    times, points, found = [], [], []
    with FaceTracker(still=still, max_faces=None if still else faces_at_start) as tracker:
        previous = None
        for frame in _chain(first, frames):
            face = tracker(frame.image)
            if not still and previous is None and face is not None:
                face = _settled(tracker, frame.image, face)
            previous = face
            times.append(frame.time)
            found.append(face is not None)
            points.append(face if face is not None else np.full((N_LANDMARKS, 3), np.nan, np.float32))
            if on_frame is not None:
                on_frame()
    return Track(np.asarray(times, np.float64), np.stack(points), np.asarray(found), width, height)


def _settled(tracker: FaceTracker, image: np.ndarray, face: np.ndarray, rounds: int = 5) -> np.ndarray:
    """The face of a frame where mediapipe had to detect it (the first, or the first after a loss), measured
    again as tracked frames are.

    The detector's box differs from the landmark-based box the mesh is tracked with afterwards: on a still
    image repeated, the detected frame's face came out 2.3% smaller than a frame later. Running the same
    image ``rounds`` more times lets the tracking box settle.
    """
    for _ in range(rounds):
        again = tracker(image)
        if again is None:
            break
        face = again
    return face


def _chain(first: Frame, rest: Iterable[Frame]) -> Iterable[Frame]:
    yield first
    yield from rest


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama) with ``dst ≈ s * R @ src + t``.

    Args:
        src, dst: (N, D) corresponding points.
    Returns:
        ``(s, R, t)``: scale, (D, D) proper rotation, (D,) translation.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(src.shape[1])
    fix[-1, -1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ fix @ vt
    var = (a ** 2).sum() / len(src)
    scale = float((sig * np.diag(fix)).sum() / var) if var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def reference_shape(track: Track, iterations: int = 3) -> np.ndarray:
    """The person's median face (478, 3), centred on the rigid set, unit RMS radius, axes upright.

    Axes of the normalised frame: x along the eye line towards the subject's left (image right for a
    frontal face), y downwards (as in images), z away from the camera.
    """
    pts = track.landmarks[track.found].astype(np.float64)
    if len(pts) == 0:
        raise ValueError("no frame with a face")
    ref = pts[0]
    for _ in range(iterations):
        aligned = [_align_to(p, ref) for p in pts[:: max(1, len(pts) // 300)]]
        ref = np.median(np.stack(aligned), axis=0)
    return _upright(ref)


def _align_to(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    s, r, t = similarity_fit(points[lm.RIGID], ref[lm.RIGID])
    return s * points @ r.T + t


def _upright(shape: np.ndarray) -> np.ndarray:
    rigid = shape[lm.RIGID]
    centred = shape - rigid.mean(0)
    radius = np.sqrt(((rigid - rigid.mean(0)) ** 2).sum(1).mean())
    x = centred[lm.LEFT_EYE_CORNERS[0]] - centred[lm.RIGHT_EYE_CORNERS[0]]
    x /= np.linalg.norm(x)
    down = centred[lm.SUBNASALE] - centred[10]
    y = down - x * (down @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    basis = np.stack([x, y, z])  # rows: new axes in old coordinates
    return (centred @ basis.T / radius).astype(np.float64)


def estimate_pose(track: Track, reference: np.ndarray) -> tuple[HeadPose, np.ndarray]:
    """Per-frame head pose and pose-normalised landmarks.

    Args:
        track: the tracked face, T frames.
        reference: (478, 3) from ``reference_shape``.
    Returns:
        ``(pose, normalised)`` with normalised (T, 478, 3) float32 in the reference's frame; frames without a
        face get the identity-free pose of the nearest found frame and NaN landmarks.
    """
    n = len(track)
    rot = np.tile(np.eye(3), (n, 1, 1))
    trans = np.zeros((n, 3))
    scale = np.ones(n)
    normalised = np.full((n, reference.shape[0], 3), np.nan, np.float32)
    for t in np.flatnonzero(track.found):
        p = track.landmarks[t].astype(np.float64)
        s, r, tr = similarity_fit(reference[lm.RIGID], p[lm.RIGID])
        rot[t], trans[t], scale[t] = r, tr, s
        normalised[t] = ((p - tr) @ r / s).astype(np.float32)
    _fill_lost_poses(track.found, rot, trans, scale)
    return HeadPose(rot, trans, scale), normalised


def _fill_lost_poses(found: np.ndarray, rot: np.ndarray, trans: np.ndarray, scale: np.ndarray) -> None:
    good = np.flatnonzero(found)
    if len(good) == 0:
        return
    for t in np.flatnonzero(~found):
        g = good[np.argmin(np.abs(good - t))]
        rot[t], trans[t], scale[t] = rot[g], trans[g], scale[g]


def rotation_to_euler(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (pitch, yaw, roll) in radians (x, y, z axes of the normalised frame)."""
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.array([pitch, yaw, roll])
