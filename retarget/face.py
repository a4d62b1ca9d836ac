"""Track and align: the face mesh bundled with mediapipe, and a rigid head pose per frame.

Mediapipe's face mesh detects a face, then tracks it from the previous frame's landmarks and re-detects when the
track is lost. Head pose is a similarity (rotation, translation, scale) fitted on expression-stable landmarks
(``landmarks.RIGID``) against the person's own median face shape, so that expressions can be compared in a
pose-normalised frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .mediapipe_import import import_solution
from .shots import CutScorer, face_jumps, find_cuts
from .spill import FrameStore, RowAppender
from .types import N_LANDMARKS, Frame, HeadPose, Track


@dataclass(frozen=True)
class TrackerSettings:
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    max_faces: int = 4  # considered on stills, where the largest is chosen


FACE_RULES = ("largest", "left", "right")


@dataclass(frozen=True)
class FaceChoice:
    """Which face a clip follows when the first frame with a face shows several.

    ``rule`` is "largest", "left" or "right" (by the face's centre), or "point": the face around ``point``
    (x, y pixels of the frame), within a quarter of its size beyond its landmarks' box. The choice is made on
    that first frame; after it the track follows the face nearest the previous frame's, and at a cut to
    another shot of an edited video where no face is where that one was, the choice is made again.
    """

    rule: str = "largest"
    point: tuple[float, float] | None = None

    @classmethod
    def parse(cls, text: str) -> FaceChoice:
        """``largest``, ``left``, ``right`` or ``X,Y`` (pixels); anything else raises ValueError."""
        word = text.strip().lower()
        if word in FACE_RULES:
            return cls(word)
        parts = word.split(",")
        try:
            x, y = (float(v) for v in parts)
        except ValueError:
            raise ValueError(f"{text!r}: use largest, left, right or X,Y (pixels of the frame)") from None
        if not (np.isfinite(x) and np.isfinite(y)) or x < 0 or y < 0:
            raise ValueError(f"{text!r}: X,Y must be pixel coordinates, 0 or more")
        return cls("point", (x, y))

    def scaled(self, factor: float) -> FaceChoice:
        """The same choice on the frame resized by ``factor`` (a still capped by ``max_size``)."""
        if self.point is None:
            return self
        return FaceChoice(self.rule, (self.point[0] * factor, self.point[1] * factor))

    def pick(self, faces: list[np.ndarray], strict: bool = True) -> np.ndarray:
        """The chosen face among ``faces`` (each (478, 3) pixels, at least one).

        Raises NoFaceThere when the rule is "point" and no face is around it; with ``strict=False`` (a later shot
        of an edited video, framed anew) the face nearest the point is taken instead.
        """
        if self.rule == "left":
            return min(faces, key=lambda f: float(np.nanmean(f[:, 0])))
        if self.rule == "right":
            return max(faces, key=lambda f: float(np.nanmean(f[:, 0])))
        if self.rule == "point":
            x, y = self.point
            near = [f for f in faces if _around(f, x, y)] or ([] if strict else faces)
            if not near:
                raise NoFaceThere(self, [face_box(f) for f in faces])
            return min(near, key=lambda f: float(np.hypot(*(f[:, :2].mean(0) - (x, y)))))
        return max(faces, key=_face_area)

    def __str__(self) -> str:
        return self.rule if self.point is None else f"{self.point[0]:g},{self.point[1]:g}"


class NoFaceThere(ValueError):
    """A point chose the face, and no face was around it; ``boxes`` are the faces that were there."""

    def __init__(self, choice: FaceChoice, boxes: list[tuple[int, int, int, int]]) -> None:
        self.choice, self.boxes = choice, boxes
        where = "; ".join(f"x {x0}-{x1}, y {y0}-{y1}" for x0, y0, x1, y1 in boxes)
        super().__init__(f"no face at {choice} in the first frame with faces (faces there: {where})")


def face_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) whole pixels around the landmarks ``points`` (478, 2 or 3)."""
    lo, hi = np.floor(points[:, :2].min(0)), np.ceil(points[:, :2].max(0))
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def _around(points: np.ndarray, x: float, y: float, margin: float = 0.25) -> bool:
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    pad = margin * (hi - lo)
    return bool(lo[0] - pad[0] <= x <= hi[0] + pad[0] and lo[1] - pad[1] <= y <= hi[1] + pad[1])


class FaceTracker:
    """Face mesh on a stream of frames (``still=False``) or on independent images (``still=True``).

    Returns one face per call: on the first call the one ``choice`` picks (the largest by default), then the
    face nearest the previous one, so a second person entering the frame does not steal the track.
    ``max_faces`` faces are looked at (for videos, more than one costs a detection per frame, so
    ``track_frames`` asks for more only when the first frame with a face shows several).
    """

    def __init__(self, still: bool = False, settings: TrackerSettings | None = None,
                 max_faces: int | None = None, choice: FaceChoice | None = None) -> None:
        face_mesh = import_solution("face_mesh")  # imported only when tracking

        s = settings or TrackerSettings()
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=still,
            max_num_faces=max_faces or (s.max_faces if still else 1),
            refine_landmarks=True,  # the 10 iris points, for gaze
            min_detection_confidence=s.min_detection_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
        )
        self._choice = choice or FaceChoice()
        self._last: np.ndarray | None = None
        self._choose_again = False
        self.detected_afresh = False  # whether the last call's face was detected anew (at a cut, or by the mesh
        #                                after ``SmallFaces``), for ``track_frames`` to settle
        self._settings, self._max_faces = s, max_faces or (s.max_faces if still else 1)
        self._small: SmallFaces | None = None  # made on the first frame where the mesh finds no face
        self._small_found = False  # whether the last call's faces came from ``SmallFaces``

    def __call__(self, image: np.ndarray, cut: bool = False) -> np.ndarray | None:
        """Landmarks (478, 3) float32 in pixels of ``image`` (H, W, 3) uint8 RGB, or None when no face.

        ``cut``: the frame may start a new shot. Unless a face is still where the followed one was, mediapipe
        then detects afresh (instead of looking where the face was), and the face is chosen again (a point no
        longer has to be on a face: the nearest is taken).
        Raises NoFaceThere on the first frame with faces when the choice is a point and none is around it.
        """
        was_small = self._small_found
        faces = self.all_faces(image)
        # the mesh finding a face itself after ``SmallFaces`` did is a fresh detection too (its first box was
        # 1.5 times too tall on a 110 px face): ``track_frames`` lets it settle
        self.detected_afresh = was_small and bool(faces) and not self._small_found
        if cut and self._last is not None and not any(_around(self._last, *f[:, :2].mean(0)) for f in faces):
            self._mesh.reset()
            faces = self.all_faces(image)
            self._choose_again = self.detected_afresh = True
        if not faces:
            return None
        if self._last is None or self._choose_again:
            face = self._choice.pick(faces, strict=self._last is None)
        else:
            centre = self._last[:, :2].mean(0)
            face = min(faces, key=lambda f: float(np.linalg.norm(f[:, :2].mean(0) - centre)))
        self._choose_again = False
        self._last = face
        return face

    def all_faces(self, image: np.ndarray) -> list[np.ndarray]:
        """Every face found, each (478, 3) float32 pixels: the mesh's, else small ones (``SmallFaces``)."""
        h, w = image.shape[:2]
        faces = [_to_pixels(face, w, h) for face in _serialised_faces(self._mesh, image)]
        self._small_found = False
        if not faces:
            self._small = self._small or SmallFaces(self._settings, self._max_faces)
            faces = self._small(image)
            self._small_found = bool(faces)
        return faces

    def close(self) -> None:
        """Release mediapipe's graphs (again: no effect)."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
        if self._small is not None:
            self._small.close()
            self._small = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SmallFaces:
    """Faces too small for the face mesh's own detector: mediapipe's full-range face detector
    (``model_selection=1``, bundled in the same wheel) looks for them, and a still-image face mesh measures each
    in a square crop three times its box wide, where it is large enough.

    The mesh's short-range detector missed a 110 px face in a 1280 x 720 frame (a portrait clip pillarboxed into
    720p) that it found in a 400 x 720 crop of the frame; the full-range detector found it at 0.89. Used only
    where the mesh finds no face, so it costs nothing where the mesh finds one."""

    def __init__(self, settings: TrackerSettings, max_faces: int) -> None:
        confidence = settings.min_detection_confidence
        self._detector = import_solution("face_detection").FaceDetection(model_selection=1,
                                                                        min_detection_confidence=confidence)
        self._mesh = import_solution("face_mesh").FaceMesh(static_image_mode=True, max_num_faces=1,
                                                           refine_landmarks=True, min_detection_confidence=confidence)
        self._max_faces = max_faces

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Each face found in ``image`` (H, W, 3) uint8 RGB, (478, 3) float32 pixels, at most ``max_faces``;
        two detections of one face give it once."""
        h, w = image.shape[:2]
        faces: list[np.ndarray] = []
        for detection in self._detector.process(image).detections or []:
            box = detection.location_data.relative_bounding_box
            cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
            if any(_around(face, cx, cy) for face in faces):
                continue
            half = 1.5 * max(box.width * w, box.height * h)
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            for found in _serialised_faces(self._mesh, np.ascontiguousarray(image[y0:y1, x0:x1])):
                face = _to_pixels(found, x1 - x0, y1 - y0)  # z scales with the crop's width, as x does
                face[:, :2] += np.array([x0, y0], np.float32)
                faces.append(face)
            if len(faces) >= self._max_faces:
                break
        return faces

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()

    def __enter__(self) -> SmallFaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# a NormalizedLandmarkList holding only x, y and z, serialised: per landmark the field tag and length, then each
# coordinate's tag and little-endian float32
_PACKED = np.dtype([("tag", "u1"), ("length", "u1"), ("tag_x", "u1"), ("x", "<f4"), ("tag_y", "u1"), ("y", "<f4"),
                    ("tag_z", "u1"), ("z", "<f4")])
_PACKED_TAGS = (0x0A, 15, 0x0D, 0x15, 0x1D)


def _serialised_faces(mesh: object, image: np.ndarray) -> list[bytes]:
    """The serialised ``NormalizedLandmarkList`` of each face ``mesh`` (mediapipe's ``FaceMesh``) finds in
    ``image`` (H, W, 3) uint8 RGB.

    Runs the solution's graph as its ``process`` does (the same packet and timestamps), without what ``process``
    adds per call: a new namedtuple class, and every landmark list parsed into a Python message (that
    ``_to_pixels`` would serialise again): 0.3 ms a frame, on the tracking threads that hold the interpreter lock.
    mediapipe is pinned (0.10.21, the last with the models bundled); where its solution lacks the attributes
    used here, ``process`` is called instead."""
    graph = getattr(mesh, "_graph", None)
    outputs = getattr(mesh, "_graph_outputs", None)
    if graph is None or not isinstance(outputs, dict) or not hasattr(mesh, "_simulated_timestamp"):
        return [face.SerializeToString() for face in (mesh.process(image).multi_face_landmarks or [])]
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import _packet_getter
    from mediapipe.python._framework_bindings.image_frame import ImageFormat

    outputs.clear()
    mesh._simulated_timestamp += 33333  # as process does: a 30 fps video's timestamps
    packet = packet_creator.create_image_frame(data=image, image_format=ImageFormat.SRGB)
    graph.add_packet_to_input_stream(stream="image", packet=packet.at(mesh._simulated_timestamp))
    graph.wait_until_idle()
    found = outputs.get("multi_face_landmarks")
    if found is None or found.is_empty() or _packet_getter._get_proto_vector_size(found) == 0:
        return []
    return list(_packet_getter._get_serialized_proto_list(found))


def _to_pixels(face: object, width: int, height: int) -> np.ndarray:
    """(478, 3) float32 pixels of a mediapipe landmark list (coordinates normalised by width and height; z by
    width), given as a message or serialised, read from its serialised form (0.02 ms a face, against 0.4 for
    the Python loop the form falls back to when a landmark carries more than x, y and z)."""
    data = face if isinstance(face, bytes) else face.SerializeToString()
    packed = np.frombuffer(data, _PACKED) if len(data) % _PACKED.itemsize == 0 else None
    if packed is not None and all((packed[f] == v).all() for f, v in zip(("tag", "length", "tag_x", "tag_y",
                                                                            "tag_z"), _PACKED_TAGS)):
        xyz = np.stack([packed["x"], packed["y"], packed["z"]], 1).astype(np.float64)
        arr = (xyz * np.array([width, height, width], np.float64)).astype(np.float32)
    else:
        if isinstance(face, bytes):
            from mediapipe.framework.formats import landmark_pb2

            face = landmark_pb2.NormalizedLandmarkList.FromString(face)
        arr = np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], dtype=np.float32)
    if arr.shape[0] != N_LANDMARKS:
        raise RuntimeError(f"face mesh returned {arr.shape[0]} landmarks, expected {N_LANDMARKS}")
    return arr


def _face_area(points: np.ndarray) -> float:
    span = points[:, :2].max(0) - points[:, :2].min(0)
    return float(span[0] * span[1])


def track_frames(frames: Iterable[Frame], width: int, height: int, still: bool = False,
                 on_frame=None, choice: FaceChoice | None = None, store: FrameStore | None = None) -> Track:
    """Track the face through ``frames``; keeps only landmarks, never the frames themselves.

    ``choice`` picks the face on the first frame with a face (the largest by default). A video is tracked from
    that frame on with as many faces as it shows, so the chosen one can be followed among them. A video is also
    scored for cuts (``shots``): where the picture changes as at a cut and no face is where the followed one
    was, the tracker detects afresh and the face is chosen again; the cuts confirmed by the frames around them,
    and the frames where the followed face jumped elsewhere (a dissolve to another shot), are returned in
    ``Track.cuts``. With a ``store`` (``spill.FrameStore``), the landmarks are written there a block at a time
    (``RowAppender``) and the track holds them as ``FrameRows``.
    """
    times, found = [], []
    points = RowAppender((N_LANDMARKS, 3), np.float32, store)
    tracker = probe = None
    previous = None
    scorer = None if still else CutScorer()
    try:
        for frame in frames:
            cut = False
            if scorer is not None:
                scorer(frame.image)
                cut = scorer.likely_cut()
            if tracker is None and not still:
                probe = probe or FaceTracker(still=True)
                faces = len(probe.all_faces(frame.image))
                if faces:
                    tracker = FaceTracker(max_faces=faces, choice=choice)
                    probe.close()
            elif tracker is None:
                tracker = FaceTracker(still=True, choice=choice)
            face = tracker(frame.image, cut) if tracker is not None else None
            if not still and face is not None and (previous is None or tracker.detected_afresh):
                face = _settled(tracker, frame.image, face)
            previous = face
            times.append(frame.time)
            found.append(face is not None)
            points.append(face if face is not None else np.nan)
            if on_frame is not None:
                on_frame()
    finally:
        for t in (tracker, probe):
            if t is not None:
                t.close()
    if not times:
        return Track(np.zeros(0), np.zeros((0, N_LANDMARKS, 3), np.float32), np.zeros(0, bool), width, height)
    stamps = np.asarray(times, np.float64)
    landmarks, found = points.finish(), np.asarray(found)
    cuts = np.zeros(0, int)
    if scorer is not None:
        cuts = face_jumps(landmarks, found, stamps, find_cuts(np.asarray(scorer.scores), stamps))
    return Track(stamps, landmarks, found, width, height, cuts)


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


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama) with ``dst ≈ s * R @ src + t``.

    Args:
        src, dst: (N, D) corresponding points.
    Returns:
        ``(s, R, t)``: scale, (D, D) proper rotation, (D,) translation.
    """
    scale, rot, shift = similarity_fits(src[None], dst[None])
    return float(scale[0]), rot[0], shift[0]


def similarity_fits(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``similarity_fit`` for B pairs at once: ``src``, ``dst`` (B, N, D), either broadcast over B.

    Returns:
        scales (B,), proper rotations (B, D, D) and translations (B, D).
    """
    src, dst = np.broadcast_arrays(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    mu_s, mu_d = src.mean(1), dst.mean(1)
    a, b = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("bni,bnj->bij", b, a) / src.shape[1]  # b.T @ a per pair
    u, sig, vt = np.linalg.svd(cov)
    fix = np.ones(sig.shape)
    det = np.sign(np.linalg.det(u @ vt))
    fix[:, -1] = np.where(det == 0, 1.0, det)
    rot = u @ (fix[:, :, None] * vt)
    var = (a ** 2).sum((1, 2)) / src.shape[1]
    scale = np.where(var > 0, (sig * fix).sum(1) / np.where(var > 0, var, 1.0), 1.0)
    return scale, rot, mu_d - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_s)


def reference_shape(track: Track, iterations: int = 3) -> np.ndarray:
    """The person's median face (478, 3), centred on the rigid set, unit RMS radius, axes upright.

    Axes of the normalised frame: x along the eye line towards the subject's left (image right for a
    frontal face), y downwards (as in images), z away from the camera.
    """
    found = np.flatnonzero(track.found)
    if len(found) == 0:
        raise ValueError("no frame with a face")
    sample = track.landmarks[found[:: max(1, len(found) // 300)]].astype(np.float64)
    ref = sample[0]
    for _ in range(iterations):
        scale, rot, shift = similarity_fits(sample[:, lm.RIGID], ref[lm.RIGID])
        aligned = scale[:, None, None] * sample @ np.transpose(rot, (0, 2, 1)) + shift[:, None]
        ref = np.median(aligned, axis=0)
    return _upright(ref)


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


def estimate_pose(track: Track, reference: np.ndarray,
                  allocate: Callable[[tuple[int, ...], type], np.ndarray] = np.empty) -> tuple[HeadPose, np.ndarray]:
    """Per-frame head pose and pose-normalised landmarks.

    Args:
        track: the tracked face, T frames.
        reference: (478, 3) from ``reference_shape``.
        allocate: makes the (T, 478, 3) float32 array the shapes are written into, ``POSE_BLOCK`` frames at a
            time (the main job's is on disk: ``spill.FrameStore``).
    Returns:
        ``(pose, normalised)`` with normalised (T, 478, 3) float32 in the reference's frame; frames without a
        face get the identity-free pose of the nearest found frame and NaN landmarks.
    """
    n = len(track)
    rot = np.tile(np.eye(3), (n, 1, 1))
    trans = np.zeros((n, 3))
    scale = np.ones(n)
    normalised = allocate((n, reference.shape[0], 3), np.float32)
    for start in range(0, n, POSE_BLOCK):  # in blocks: float64 copies of a long clip's landmarks are large
        frames = slice(start, min(n, start + POSE_BLOCK))
        found = track.found[frames]
        good = start + np.flatnonzero(found)
        p = np.asarray(track.landmarks[frames])[found].astype(np.float64)
        scale[good], rot[good], trans[good] = similarity_fits(reference[lm.RIGID], p[:, lm.RIGID])
        shapes = np.full((len(found), reference.shape[0], 3), np.nan, np.float32)
        shapes[found] = ((p - trans[good, None]) @ rot[good] / scale[good, None, None]).astype(np.float32)
        normalised[frames] = shapes
    _fill_lost_poses(track.found, rot, trans, scale)
    return HeadPose(rot, trans, scale), normalised


POSE_BLOCK = 512  # frames posed at once by ``estimate_pose``


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
