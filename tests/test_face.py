"""retarget.face: similarity fit, reference shape, head pose; tracking on a real face photo; importing mediapipe."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from retarget import landmarks as lm
from retarget.face import (
    FaceTracker,
    SmallFaces,
    TrackerSettings,
    _serialised_faces,
    _to_pixels,
    estimate_pose,
    reference_shape,
    rotation_to_euler,
    similarity_fit,
    similarity_fits,
    track_frames,
)
from retarget.types import N_LANDMARKS, Frame, Track


def moved_track(points: np.ndarray, poses: list[tuple[float, np.ndarray, np.ndarray]],
                lost: tuple[int, ...] = ()) -> Track:
    """A track whose frame t is ``s * R @ (points - centre) + centre + t`` for each ``(s, R, t)`` in ``poses``."""
    centre = points.mean(0)
    frames = [(s * (points - centre) @ r.T + centre + t).astype(np.float32) for s, r, t in poses]
    landmarks = np.stack(frames)
    found = np.ones(len(poses), bool)
    for k in lost:
        found[k] = False
        landmarks[k] = np.nan
    return Track(np.arange(len(poses)) / 30.0, landmarks, found, 1000, 1000)


POSES = [
    (1.0, np.eye(3), np.zeros(3)),
    (0.6, Rotation.from_euler("xyz", [5, -12, 20], degrees=True).as_matrix(), np.array([40.0, -25.0, 3.0])),
    (1.7, Rotation.from_euler("xyz", [-8, 15, -10], degrees=True).as_matrix(), np.array([-60.0, 80.0, -5.0])),
    (1.2, Rotation.from_euler("z", 35, degrees=True).as_matrix(), np.array([10.0, 10.0, 0.0])),
]


# ------------------------------------------------------------------------------------------- similarity_fit


@pytest.mark.parametrize("dim", [2, 3])
def test_similarity_fit_recovers_known_transform(dim: int) -> None:
    rng = np.random.default_rng(dim)
    src = rng.normal(0, 50, (40, dim))
    if dim == 3:
        rot = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    else:
        a = np.deg2rad(-70)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    scale, shift = 2.5, rng.normal(0, 100, dim)
    dst = scale * src @ rot.T + shift
    s, r, t = similarity_fit(src, dst)
    assert s == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, shift, atol=1e-7)


def test_similarity_fit_least_squares_with_noise_and_never_reflects() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(0, 1, (200, 3))
    rot = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    dst = 0.5 * src @ rot.T + [1, 2, 3] + rng.normal(0, 0.01, (200, 3))
    s, r, _ = similarity_fit(src, dst)
    assert s == pytest.approx(0.5, rel=0.01)
    assert np.abs(r - rot).max() < 0.02
    # a mirrored target has no proper rotation that fits it exactly; the answer must still be one
    mirrored = src * [-1, 1, 1]
    _, r, _ = similarity_fit(src, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)


def test_similarity_fits_recover_each_pair_and_broadcast_one_shape() -> None:
    rng = np.random.default_rng(5)
    src = rng.normal(0, 30, (6, 35, 3))
    rots = Rotation.from_euler("xyz", rng.uniform(-40, 40, (6, 3)), degrees=True).as_matrix()
    scales, shifts = rng.uniform(0.5, 2.0, 6), rng.normal(0, 50, (6, 3))
    dst = scales[:, None, None] * src @ np.transpose(rots, (0, 2, 1)) + shifts[:, None]
    dst[3] = src[3] * [-1, 1, 1]  # one mirrored pair: its rotation must still be proper
    got_s, got_r, got_t = similarity_fits(src, dst)
    for k in (0, 1, 2, 4, 5):
        assert got_s[k] == pytest.approx(scales[k], rel=1e-9)
        np.testing.assert_allclose(got_r[k], rots[k], atol=1e-9)
        np.testing.assert_allclose(got_t[k], shifts[k], atol=1e-7)
    assert np.linalg.det(got_r[3]) == pytest.approx(1.0)
    # one shape against many: each fit as if the shape were repeated
    one_s, one_r, _ = similarity_fits(src[0], dst[[0, 0]] * [[[1.0]], [[2.0]]])
    assert one_s == pytest.approx([scales[0], 2 * scales[0]], rel=1e-9)
    np.testing.assert_allclose(one_r, rots[[0, 0]], atol=1e-9)


# ------------------------------------------------------------------------------------------ reference_shape


def test_reference_shape_is_centred_unit_and_upright(astronaut_landmarks: np.ndarray) -> None:
    ref = reference_shape(moved_track(astronaut_landmarks.astype(np.float64), POSES[:1]))
    rigid = ref[lm.RIGID]
    np.testing.assert_allclose(rigid.mean(0), 0.0, atol=1e-9)
    assert np.sqrt((rigid ** 2).sum(1).mean()) == pytest.approx(1.0, abs=1e-9)
    # x along the eye line towards the subject's left, y down the face
    right, left = ref[lm.RIGHT_EYE_CORNERS[0]], ref[lm.LEFT_EYE_CORNERS[0]]
    assert left[0] > right[0] + 0.5
    assert abs(left[1] - right[1]) < 1e-9 and abs(left[2] - right[2]) < 1e-9
    assert ref[lm.CHIN, 1] > ref[lm.NOSE_TIP, 1] > ref[10, 1]
    assert ref.shape == (N_LANDMARKS, 3)


def test_reference_shape_does_not_depend_on_pose(astronaut_landmarks: np.ndarray) -> None:
    still = reference_shape(moved_track(astronaut_landmarks.astype(np.float64), POSES[:1]))
    moving = reference_shape(moved_track(astronaut_landmarks.astype(np.float64), POSES, lost=(2,)))
    np.testing.assert_allclose(moving, still, atol=1e-4)


def test_reference_shape_without_face_raises() -> None:
    track = Track(np.zeros(2), np.full((2, N_LANDMARKS, 3), np.nan, np.float32), np.zeros(2, bool), 10, 10)
    with pytest.raises(ValueError, match="no frame with a face"):
        reference_shape(track)


# -------------------------------------------------------------------------------------------- estimate_pose


def test_estimate_pose_removes_pose_and_recovers_it(astronaut_landmarks: np.ndarray) -> None:
    track = moved_track(astronaut_landmarks.astype(np.float64), POSES)
    ref = reference_shape(track)
    pose, normalised = estimate_pose(track, ref)
    assert normalised.shape == (len(POSES), N_LANDMARKS, 3) and normalised.dtype == np.float32
    # the same face in every frame: normalised landmarks equal across frames and equal to the reference
    for t in range(len(POSES)):
        np.testing.assert_allclose(normalised[t], ref, atol=2e-4)
    # the recovered motion relative to frame 0 is the applied one
    for t, (s, r, _) in enumerate(POSES):
        np.testing.assert_allclose(pose.rotation[t] @ pose.rotation[0].T, r, atol=1e-5)
        assert pose.scale[t] / pose.scale[0] == pytest.approx(s, rel=1e-6)
        assert np.linalg.det(pose.rotation[t]) == pytest.approx(1.0)
        # and the pose maps the normalised face back onto the frame
        np.testing.assert_allclose(pose.apply(t, normalised[t].astype(np.float64)), track.landmarks[t],
                                   atol=0.05)


def test_estimate_pose_lost_frames_get_nan_and_nearest_pose(astronaut_landmarks: np.ndarray) -> None:
    track = moved_track(astronaut_landmarks.astype(np.float64), POSES, lost=(1, 2))
    pose, normalised = estimate_pose(track, reference_shape(track))
    assert np.isnan(normalised[1]).all() and np.isnan(normalised[2]).all()
    assert np.isfinite(normalised[[0, 3]]).all()
    # frame 1 is nearest to frame 0, frame 2 to frame 3
    np.testing.assert_allclose(pose.rotation[1], pose.rotation[0])
    np.testing.assert_allclose(pose.translation[2], pose.translation[3])
    assert pose.scale[2] == pose.scale[3]


def test_rotation_to_euler_round_trip() -> None:
    angles = np.deg2rad([12.0, -25.0, 40.0])  # pitch (x), yaw (y), roll (z)
    r = Rotation.from_euler("xyz", angles).as_matrix()  # extrinsic x, y, z: Rz @ Ry @ Rx
    np.testing.assert_allclose(rotation_to_euler(r), angles, atol=1e-9)
    np.testing.assert_allclose(rotation_to_euler(np.eye(3)), 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- tracking


def test_tracker_finds_the_face_where_it_is(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    pts = astronaut_landmarks
    assert pts.shape == (N_LANDMARKS, 3) and pts.dtype == np.float32
    # the astronaut's face sits in the middle of the crop; the right eye (subject's) is on the image's left
    assert 100 < pts[lm.NOSE_TIP, 0] < 400 and 100 < pts[lm.NOSE_TIP, 1] < 400
    assert pts[lm.RIGHT_EYE_CORNERS[0], 0] < pts[lm.LEFT_EYE_CORNERS[0], 0]
    assert pts[lm.UPPER_LIP_TOP, 1] < pts[lm.LOWER_LIP_BOTTOM, 1] < pts[lm.CHIN, 1]
    # the iris centre lies between its eye's corners
    xs = pts[list(lm.RIGHT_EYE_CORNERS), 0]
    assert xs.min() < pts[lm.RIGHT_IRIS_CENTRE, 0] < xs.max()


def test_the_mesh_graph_run_directly_gives_what_process_gives(astronaut: np.ndarray) -> None:
    """``_serialised_faces`` runs the face mesh's graph without ``process``'s wrapping; on a stream of frames
    (detection, tracking, a lost face, detection again) it gives the same landmarks, to the bit."""
    from retarget.mediapipe_import import import_solution

    face_mesh = import_solution("face_mesh")
    shifted = np.roll(astronaut, 9, axis=1)
    images = [astronaut, shifted, astronaut, np.full_like(astronaut, 128), shifted]
    kw = dict(static_image_mode=False, max_num_faces=1, refine_landmarks=True)
    with face_mesh.FaceMesh(**kw) as direct, face_mesh.FaceMesh(**kw) as wrapped:
        for image in images:
            got = [_to_pixels(f, 512, 512) for f in _serialised_faces(direct, image)]
            want = [_to_pixels(f, 512, 512) for f in wrapped.process(image).multi_face_landmarks or []]
            assert len(got) == len(want) == (0 if image.std() == 0 else 1)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_track_frames_marks_frames_without_a_face(astronaut: np.ndarray) -> None:
    grey = np.full_like(astronaut, 128)
    frames = [Frame(0, 0.0, grey), Frame(1, 0.04, astronaut.copy()), Frame(2, 0.08, astronaut.copy())]
    calls = []
    track = track_frames(iter(frames), 512, 512, on_frame=lambda: calls.append(1))
    assert track.found.tolist() == [False, True, True]
    assert np.isnan(track.landmarks[0]).all() and np.isfinite(track.landmarks[1:]).all()
    np.testing.assert_allclose(track.times, [0.0, 0.04, 0.08])
    assert len(calls) == 3 and (track.width, track.height) == (512, 512)


def test_a_detected_frame_is_measured_like_a_tracked_one(astronaut: np.ndarray) -> None:
    """The same image, first and again after a lost frame (both times mediapipe detects the face anew), gives
    the same face as the frames tracked in between: the detector's box used to make it 2.3% smaller."""
    grey = np.full_like(astronaut, 128)
    images = [astronaut, astronaut, astronaut, astronaut, grey, astronaut, astronaut, astronaut]
    track = track_frames(iter([Frame(i, i / 25, im.copy()) for i, im in enumerate(images)]), 512, 512)
    assert track.found.tolist() == [True, True, True, True, False, True, True, True]
    size = np.array([np.ptp(track.landmarks[i, lm.FACE_OVAL, :2], axis=0).max() if track.found[i] else np.nan
                     for i in range(len(images))])
    settled = size[3]
    for i in (0, 5):  # the detected frames
        assert abs(size[i] / settled - 1) < 0.01, (i, size)


def test_track_frames_empty() -> None:
    track = track_frames(iter([]), 20, 10)
    assert len(track) == 0 and track.landmarks.shape == (0, N_LANDMARKS, 3)


def test_tracker_returns_none_without_face() -> None:
    with FaceTracker(still=True) as tracker:
        assert tracker(np.full((64, 64, 3), 90, np.uint8)) is None


@pytest.mark.parametrize("extra", [False, True])
def test_landmarks_read_from_mediapipe_protos(extra: bool) -> None:
    """Landmark lists become (478, 3) pixels exactly as reading each landmark would give, whether read from the
    serialised form (x, y, z only) or, with visibility set, landmark by landmark."""
    from mediapipe.framework.formats import landmark_pb2

    rng = np.random.default_rng(3)
    values = rng.uniform(-0.2, 1.2, (N_LANDMARKS, 3))
    face = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        point = face.landmark.add(x=x, y=y, z=z)
        if extra:
            point.visibility = 0.5
    expected = np.array([(p.x * 1280, p.y * 720, p.z * 1280) for p in face.landmark], np.float32)
    got = _to_pixels(face, 1280, 720)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got, values * [1280, 720, 1280], rtol=1e-6)
    np.testing.assert_array_equal(_to_pixels(face.SerializeToString(), 1280, 720), expected)  # as the graph gives
    short = landmark_pb2.NormalizedLandmarkList()
    short.landmark.add(x=0.5, y=0.5, z=0.0)
    with pytest.raises(RuntimeError, match="478"):
        _to_pixels(short, 10, 10)


def _in_fresh_interpreter(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_mediapipe_import_defers_matplotlib_until_used():
    code = (
        "import sys\n"
        "from retarget.mediapipe_import import import_mediapipe\n"
        "mp = import_mediapipe()\n"
        "mp.solutions.face_mesh.FaceMesh\n"
        "print(type(sys.modules['matplotlib']).__name__, type(sys.modules['matplotlib.pyplot']).__name__)\n"
        "plt = mp.solutions.drawing_utils.plt\n"  # mediapipe's own plotting gets the real pyplot on first use
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "figure = plt.figure()\n"
        "import matplotlib.pyplot as again\n"
        "print(type(sys.modules['matplotlib.pyplot']).__name__, type(figure).__name__, again.figure is plt.figure)\n"
    )
    assert _in_fresh_interpreter(code) == ["DeferredModule", "DeferredModule", "module", "Figure", "True"]


def test_import_solution_loads_only_the_face_mesh_and_leaves_mediapipe_whole_for_later():
    code = (
        "import sys, threading\n"
        "from retarget.mediapipe_import import import_solution\n"
        "got = []\n"
        "threads = [threading.Thread(target=lambda: got.append(import_solution('face_mesh'))) for _ in range(2)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(got[0] is got[1], hasattr(got[0], 'FaceMesh'))\n"
        "print(any(m.startswith('mediapipe.tasks') for m in sys.modules),\n"
        "      'mediapipe.python.solutions.hands' in sys.modules, type(sys.modules['mediapipe']).__name__)\n"
        "import mediapipe\n"  # user code afterwards gets the whole package
        "print(mediapipe.solutions.face_mesh is got[0], mediapipe.solutions.hands.Hands.__name__,\n"
        "      mediapipe.tasks.vision.FaceLandmarker.__name__, mediapipe.__version__ > '0')\n"
        "print(type(sys.modules['mediapipe']).__name__, type(sys.modules['matplotlib.pyplot']).__name__)\n"
    )
    assert _in_fresh_interpreter(code) == ["True", "True", "False", "False", "LazyPackage", "True", "Hands",
                                           "FaceLandmarker", "True", "module", "DeferredModule"]


def test_the_whole_import_after_import_solution_is_the_whole_package():
    code = (
        "from retarget.mediapipe_import import import_mediapipe, import_solution\n"
        "detection = import_solution('face_detection')\n"
        "mp = import_mediapipe()\n"
        "print(mp.solutions.face_detection is detection, mp.solutions.selfie_segmentation.__name__,\n"
        "      callable(mp.solutions.drawing_utils.draw_landmarks), hasattr(mp, 'python'))\n"
    )
    # mediapipe's __init__ deletes its ``python`` name, as it does when imported directly
    assert _in_fresh_interpreter(code) == ["True", "mediapipe.python.solutions.selfie_segmentation", "True",
                                           "False"]


def test_mediapipe_import_leaves_an_imported_matplotlib_alone():
    code = (
        "import sys, matplotlib.pyplot\n"
        "from retarget.mediapipe_import import import_mediapipe\n"
        "import_mediapipe()\n"
        "module = sys.modules['matplotlib.pyplot']\n"
        "print(type(module).__name__, module is matplotlib.pyplot)\n"
    )
    assert _in_fresh_interpreter(code) == ["module", "True"]


def _small_on_a_wide_frame(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` scaled to ``size`` px wide on a 1280 x 720 grey frame, and where it was put (x, y)."""
    import cv2

    small = cv2.resize(image, (size, size * image.shape[0] // image.shape[1]), interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    x, y = 900, 300
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame, (x, y)


def test_a_face_too_small_for_the_mesh_is_found_by_the_full_range_detector(astronaut: np.ndarray,
                                                                           astronaut_landmarks: np.ndarray) -> None:
    """The astronaut's head 240 px wide on a 720p frame (her face about 110 px): the face mesh's own detector
    finds nothing; the tracker finds her with ``SmallFaces``, where she is (her landmarks scaled and moved with
    the picture). On this grey frame the full-range detector found the head at 180, 220, 240 and 260 px, not at
    200 or below: it is a help for small faces, not a guarantee."""
    frame, (x, y) = _small_on_a_wide_frame(astronaut, 240)
    scale = 240 / astronaut.shape[1]
    with FaceTracker(still=True) as tracker:
        assert _serialised_faces(tracker._mesh, frame) == []
        face = tracker(frame)
    assert face is not None
    expected = astronaut_landmarks[:, :2] * scale + [x, y]
    assert np.abs(face[:, :2] - expected).mean() < 2.0
    with SmallFaces(TrackerSettings(), 4) as small:
        assert small(np.full((720, 1280, 3), 90, np.uint8)) == []  # nothing where there is no face


def test_a_small_face_is_tracked_through_the_mesh_taking_over(media_dir) -> None:
    """`vid_lp_s29` (a portrait clip) pillarboxed into 720p: its 110 px face is found by ``SmallFaces`` on the
    first frames and by the mesh itself later; every frame has the face, and the switch is settled (no jump,
    which would start a new shot)."""
    from retarget.video import read_frames

    frames = []
    for frame in read_frames(media_dir / "vid_lp_s29.mp4"):
        import cv2

        portrait = cv2.resize(frame.image, (380, 720), interpolation=cv2.INTER_AREA)
        wide = np.zeros((720, 1280, 3), np.uint8)
        wide[:, 450:830] = portrait
        frames.append(Frame(frame.index, frame.time, wide))
        if len(frames) == 20:
            break
    track = track_frames(iter(frames), 1280, 720)
    assert track.found.all() and len(track.cuts) == 0
    heights = np.ptp(track.landmarks[:, :, 1], axis=1)
    assert heights.max() < 1.15 * heights.min()
    assert 80 < np.median(heights) < 160
