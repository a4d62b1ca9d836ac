"""The AU control surface: the AU-to-shape model, region and AU gains, relative edits and AU curves as a driver.

Landmark-level tests use the astronaut's tracked face; the CLI tests run the real pipeline on the astronaut photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import open_mouth

from retarget import landmarks as lm
from retarget.aushape import AU_REGION, AUShapeModel, _lip_gap
from retarget.config import RetargetConfig
from retarget.expression import au_intensities
from retarget.motion import edit_weights, envelope, from_clip, from_curves
from retarget.plan import build_plan, resolve_gains
from retarget.types import AU_NAMES

UPPER_FACE = np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW, lm.RIGHT_EYE, lm.LEFT_EYE])


@pytest.fixture(scope="module")
def model(astronaut_neutral: np.ndarray) -> AUShapeModel:
    return AUShapeModel.build(astronaut_neutral)


def one_au(name: str, value: float) -> np.ndarray:
    aus = np.zeros((1, len(AU_NAMES)))
    aus[0, AU_NAMES.index(name)] = value
    return aus


@pytest.mark.parametrize("au", ["AU01", "AU02", "AU04", "AU05", "AU06", "AU12", "AU15", "AU20", "AU25", "AU26",
                                "AU45"])
def test_a_requested_au_reads_back(model: AUShapeModel, au: str) -> None:
    shape = model.shapes(one_au(au, 3.0))
    read = au_intensities(shape, model.neutral)[0]
    assert read[AU_NAMES.index(au)] == pytest.approx(3.0, abs=0.6)


def test_jaw_drop_and_lips_part_together_read_back_both(model: AUShapeModel) -> None:
    aus = one_au("AU25", 3.0) + one_au("AU26", 3.0)
    read = au_intensities(model.shapes(aus), model.neutral)[0]
    assert read[AU_NAMES.index("AU25")] == pytest.approx(3.0, abs=0.7)
    assert read[AU_NAMES.index("AU26")] == pytest.approx(3.0, abs=0.7)


def test_upper_face_aus_leave_the_mouth_and_mouth_aus_the_upper_face(model: AUShapeModel) -> None:
    lower = np.concatenate([lm.LIPS, [lm.CHIN]])
    for k, au in enumerate(AU_NAMES):
        moved = np.linalg.norm(model.basis[k], axis=1)
        still = UPPER_FACE if AU_REGION[au] == "mouth" else lower
        assert moved.max() > 0.02, au
        assert moved[still].max() < 0.05 * moved.max(), f"{au} moves landmarks outside its region"


def test_au_directions_follow_anatomy(model: AUShapeModel) -> None:
    def basis(au: str) -> np.ndarray:
        return model.basis[AU_NAMES.index(au)]

    assert basis("AU12")[list(lm.MOUTH_CORNERS), 1].max() < -0.05  # corners up (y is down)
    right, left = basis("AU12")[lm.MOUTH_CORNERS[0], 0], basis("AU12")[lm.MOUTH_CORNERS[1], 0]
    assert right * left < 0  # and out, to both sides
    assert basis("AU26")[lm.CHIN, 1] > 0.3  # the jaw drops
    assert basis("AU01")[list(lm.RIGHT_BROW_INNER), 1].max() < -0.05  # inner brows up
    shut = model.shapes(one_au("AU45", 5.0))[0]
    gap = shut[lm.RIGHT_LID_PAIRS[:, 1], 1] - shut[lm.RIGHT_LID_PAIRS[:, 0], 1]
    assert np.abs(gap).max() < 0.02  # a full blink closes the lids


def _central_gap(shape: np.ndarray) -> float:
    """The inner-lip gap (lower minus upper, y down) averaged over the mouth's central pairs, the measure the
    model keeps (the middle pair alone closed by 0.011-0.013 on one machine's tracking of the astronaut, where
    the five pairs' mean held; the measure, not the lips, was off)."""
    return float(_lip_gap(shape))


def test_only_lips_part_and_jaw_drop_open_the_lips(model: AUShapeModel) -> None:
    # an upper lip raised off a closed mouth (a snarl, a pressed smile) takes the lower lip with it
    aus = one_au("AU10", 5.0) + one_au("AU09", 3.0) + one_au("AU12", 4.0)
    shape = model.shapes(aus)[0]
    assert _central_gap(shape) == pytest.approx(_central_gap(model.neutral), abs=0.01)
    assert shape[lm.UPPER_LIP_INNER, 1] < model.neutral[lm.UPPER_LIP_INNER, 1] - 0.02  # the lip did rise
    assert au_intensities(shape[None], model.neutral)[0, AU_NAMES.index("AU10")] > 2.0
    # asked to, the lips part
    assert _central_gap(model.shapes(aus + one_au("AU25", 3.0))[0]) > _central_gap(model.neutral) + 0.1


def test_mouth_aus_leave_the_base_of_the_nose(model: AUShapeModel) -> None:
    for au in ("AU09", "AU10", "AU12", "AU23", "AU26"):  # else a raised upper lip reads as a jaw drop
        assert abs(model.basis[AU_NAMES.index(au)][lm.SUBNASALE, 1]) < 1e-6, au


def test_envelope_ramps_in_and_out() -> None:
    t = np.arange(0, 3.0, 0.1)
    e = envelope(t, 1.0, 2.0, 0.5)
    assert e[t < 0.95].max() == 0 and e[t > 2.05].max() == 0
    np.testing.assert_allclose(e[(t > 1.55) & (t < 1.45 + 0.1)], 1.0)
    assert 0 < e[np.argmin(np.abs(t - 1.2))] < 1 and 0 < e[np.argmin(np.abs(t - 1.8))] < 1
    np.testing.assert_array_equal(envelope(t, None, None, 0.0), 1.0)


def test_a_decrease_never_goes_below_the_own_intensity() -> None:
    deltas = np.zeros(17)
    deltas[AU_NAMES.index("AU12")] = -3.0
    deltas[AU_NAMES.index("AU25")] = 2.0
    own = np.zeros((2, 17))
    own[1, AU_NAMES.index("AU12")] = 1.0
    w = edit_weights(deltas, np.ones(2), own)
    assert w[0, AU_NAMES.index("AU12")] == 0.0  # nothing to take away
    assert w[1, AU_NAMES.index("AU12")] == pytest.approx(-0.2)  # only the own 1.0 of 5
    assert w[0, AU_NAMES.index("AU25")] == pytest.approx(0.4)


def test_gain_flags_resolve_to_region_and_au_gains() -> None:
    regions, au = resolve_gains(RetargetConfig(gains={"AU12": 1.5, "brows": 0.5}, exclude=["eyes"]))
    assert regions == {"brows": 0.5, "eyes": 0.0, "mouth": 1.0}
    assert au[AU_NAMES.index("AU12")] == 1.5 and au[AU_NAMES.index("AU01")] == 1.0
    regions, _ = resolve_gains(RetargetConfig(only=["mouth"]))
    assert regions == {"brows": 0.0, "eyes": 0.0, "mouth": 1.0}


def _pixel_clip(frames: list[np.ndarray], fps: float):
    from retarget.analysis import analyse_clip
    from retarget.types import Track

    landmarks = np.stack(frames).astype(np.float32)
    track = Track(np.arange(len(frames)) / fps, landmarks, np.ones(len(frames), bool), 512, 512)
    return analyse_clip(track, fps, 0.0, 0, 0)


def _expressive_driver(face: np.ndarray, model_face: AUShapeModel):
    """The astronaut raising her brows, closing her eyes and dropping her jaw, from frame 5 on."""
    height = float(np.ptp(face[lm.FACE_OVAL, 1]))
    frames = []
    for k in range(12):
        f = face.copy()
        if k >= 5:
            f = open_mouth(f, 0.12 * height)
            f[lm.RIGHT_BROW, 1] -= 0.06 * height
            f[lm.LEFT_BROW, 1] -= 0.06 * height
            for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
                f[pairs[:, 0], 1] = f[pairs[:, 1], 1] - 0.5
        frames.append(f)
    return _pixel_clip(frames, 25.0)


def test_only_mouth_leaves_the_upper_face_exactly(astronaut_landmarks: np.ndarray, model: AUShapeModel) -> None:
    face = astronaut_landmarks.astype(np.float64)
    drive = _expressive_driver(face, model)
    target = _pixel_clip([face], 25.0)
    full = build_plan(from_clip(drive), target, True, RetargetConfig(pose=False))
    mouth = build_plan(from_clip(drive), target, True, RetargetConfig(pose=False, only=["mouth"]))
    assert np.abs(full.destination[10, UPPER_FACE] - face[UPPER_FACE]).max() > 3.0  # brows and lids move
    np.testing.assert_allclose(mouth.destination[10, UPPER_FACE, :2], face[UPPER_FACE, :2], atol=0.3)
    jaw = AU_NAMES.index("AU26")
    assert mouth.output_aus[10, jaw] == pytest.approx(full.output_aus[10, jaw], abs=0.3)  # the mouth still moves


def test_excluded_region_of_a_video_target_keeps_its_own_motion(astronaut_landmarks: np.ndarray,
                                                                model: AUShapeModel) -> None:
    face = astronaut_landmarks.astype(np.float64)
    drive = _expressive_driver(face, model)
    own = []
    for k in range(12):  # the target raises its own brows in frames 2-4
        f = face.copy()
        if 2 <= k <= 4:
            f[np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW]), 1] -= 8.0
        own.append(f)
    target = _pixel_clip(own, 25.0)
    plan = build_plan(from_clip(drive), target, False, RetargetConfig(exclude=["brows", "eyes"]))
    for t in (3, 10):
        np.testing.assert_allclose(plan.destination[t, UPPER_FACE, :2], own[t][UPPER_FACE, :2], atol=0.3)


def test_au_gain_zero_takes_one_au_out(astronaut_landmarks: np.ndarray, model: AUShapeModel) -> None:
    face = astronaut_landmarks.astype(np.float64)
    drive = _expressive_driver(face, model)
    target = _pixel_clip([face], 25.0)
    full = build_plan(from_clip(drive), target, True, RetargetConfig(pose=False))
    no_brows = build_plan(from_clip(drive), target, True, RetargetConfig(pose=False, gains={"AU01": 0, "AU02": 0}))
    strong = build_plan(from_clip(drive), target, True, RetargetConfig(pose=False, gains={"AU26": 1.5}))
    a1, a26 = AU_NAMES.index("AU01"), AU_NAMES.index("AU26")
    assert full.output_aus[10, a1] > 1.5 and no_brows.output_aus[10, a1] < 0.5 * full.output_aus[10, a1]
    assert no_brows.output_aus[10, a26] == pytest.approx(full.output_aus[10, a26], abs=0.3)
    assert strong.output_aus[10, a26] > full.output_aus[10, a26] + 0.5


def test_au_curves_drive_a_still(astronaut_landmarks: np.ndarray, model: AUShapeModel) -> None:
    face = astronaut_landmarks.astype(np.float64)
    target = _pixel_clip([face], 25.0)
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])  # hand-keyed: a jaw drop that comes and goes, one lost row
    aus = np.zeros((5, 17))
    aus[:, AU_NAMES.index("AU26")] = [0, 2, 4, 2, 0]
    success = np.array([True, True, True, True, False])
    motion = from_curves(times, aus, success, AUShapeModel.build(target.expression.neutral), 10.0)
    assert len(motion.times) == 21 and motion.times[-1] == pytest.approx(2.0)
    assert not motion.found[-1] and motion.found[:18].all()
    plan = build_plan(motion, target, True, RetargetConfig(pose=False, drive_release=0))
    jaw = plan.output_aus[:, AU_NAMES.index("AU26")]
    assert jaw[10] == pytest.approx(4.0, abs=0.8) and jaw[5] == pytest.approx(2.0, abs=0.6) and jaw[0] < 0.2
    assert np.argmax(jaw) == 10


# -- command line, on the astronaut photo


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("edit") / "portrait.png"
    Image.fromarray(astronaut).save(path)
    return path


def _track(image_path: Path) -> np.ndarray:
    from retarget.face import FaceTracker
    from retarget.video import read_still

    with FaceTracker(still=True) as tracker:
        points = tracker(read_still(image_path))
    assert points is not None
    return points


def test_edit_cli_raises_the_lip_corners_of_a_still(portrait: Path, tmp_path: Path) -> None:
    from retarget.cli import main

    out = tmp_path / "smile.png"
    assert main(["edit", str(portrait), "--au", "AU12=+4", "-o", str(out), "-q"]) == 0
    before, after = _track(portrait), _track(out)
    corners = list(lm.MOUTH_CORNERS)
    lift = (before[corners, 1] - after[corners, 1]).mean()
    assert lift > 2.0  # pixels, on a 215 px face
    assert np.abs(after[UPPER_FACE, :2] - before[UPPER_FACE, :2]).max() < 2.5
    assert (tmp_path / "smile.retarget.json").is_file()


def test_edit_cli_makes_a_clip_from_a_still(portrait: Path, tmp_path: Path) -> None:
    from retarget.cli import main
    from retarget.video import probe

    out = tmp_path / "blink.mp4"
    args = ["edit", str(portrait), "--au", "AU45=+5", "--duration", "1", "--from", "0.3", "--to", "0.7",
            "--ramp", "0.1", "--fps", "20", "-o", str(out), "-q"]
    assert main(args) == 0
    info = probe(out)
    assert info.frame_count == 20 and float(info.fps) == pytest.approx(20)


@pytest.mark.parametrize("args, message", [
    (["--au", "AU99=1"], "unknown AU"),
    (["--au", "AU12=1", "--duration", "1"], "is an image"),
    (["--au", "AU12=1", "-o", "{tmp}/x.mp4"], "--duration"),
    (["--au", "AU12=1", "-o", "{portrait}"], "overwrite"),
])
def test_edit_cli_refuses_bad_requests(portrait: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       args: list[str], message: str) -> None:
    from retarget.cli import main

    args = [a.format(tmp=tmp_path, portrait=portrait) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.png")]
    before = portrait.read_bytes()
    assert main(["edit", str(portrait), *args, "-q"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert portrait.read_bytes() == before
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.mp4").exists()


def test_edit_cli_usage_errors(portrait: Path, tmp_path: Path) -> None:
    from retarget.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["edit", str(portrait), "--au", "AU12", "-o", str(tmp_path / "x.png")])
    assert exc.value.code == 2


def test_main_cli_rejects_unknown_gain_and_region(portrait: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    from retarget.cli import main

    out = tmp_path / "o.mp4"
    assert main([str(portrait), str(portrait), "-o", str(out), "--gain", "nose=2"]) == 1
    assert "unknown gain 'nose'" in capsys.readouterr().err
    assert main([str(portrait), str(portrait), "-o", str(out), "--only", "mouth,ears"]) == 1
    assert "unknown region(s) in only: ears" in capsys.readouterr().err
    assert not out.exists()


def test_csv_drives_a_still_from_the_command_line(portrait: Path, tmp_path: Path) -> None:
    from retarget.cli import main
    from retarget.video import probe, read_frames

    csv = tmp_path / "aus.csv"
    csv.write_text("timestamp, AU26_r, AU25_r\n0.0, 0, 0\n0.4, 4, 3\n0.8, 0, 0\n")  # OpenFace-style spaces
    out = tmp_path / "out.mp4"
    assert main([str(csv), str(portrait), "-o", str(out), "-q", "--fps", "10"]) == 0
    assert probe(out).frame_count == 9
    from retarget.face import FaceTracker

    gaps = []
    with FaceTracker() as tracker:
        for frame in read_frames(out):
            p = tracker(frame.image)
            gaps.append(p[lm.LOWER_LIP_INNER, 1] - p[lm.UPPER_LIP_INNER, 1])
    assert int(np.argmax(gaps)) == 4 and gaps[4] - gaps[0] > 10.0


# -- on real footage (../shared/media; skipped where absent)


@pytest.mark.media
def test_only_mouth_on_real_footage_keeps_the_upper_face(tmp_path: Path) -> None:
    """d18 (yawn with closed eyes, laugh with raised brows) drives s42 with --only mouth: re-tracked, the output's
    brows and eyes stay where the portrait's are (within tracking noise) while its mouth follows the driver."""
    from _helpers import media_file

    import retarget
    from retarget.face import track_frames
    from retarget.video import probe, read_frames

    drive, portrait = media_file("drv_lp_d18.mp4"), media_file("img_lp_s42.jpg")
    out = tmp_path / "mouth.mp4"
    retarget.retarget(drive, portrait, out, only=["mouth"], pose=False)
    info = probe(out)
    track = track_frames(read_frames(out), info.width, info.height)
    points = track.landmarks
    height = float(np.ptp(points[0, lm.FACE_OVAL, 1]))
    # every frame's brows and eyes against the first (neutral) output frame, tracked the same way: within
    # tracking noise (measured 0.9% of the face height at most; 1.9% without --only, where the eyes close)
    moved = np.linalg.norm(points[:, UPPER_FACE, :2] - points[0, UPPER_FACE, :2], axis=-1).mean(-1) / height
    assert moved.max() < 0.012, "brows or eyes moved with --only mouth"
    lids = points[:, lm.RIGHT_LID_PAIRS[:, 1], 1] - points[:, lm.RIGHT_LID_PAIRS[:, 0], 1]
    assert lids.mean(1).min() > 0.8 * lids[0].mean()  # d18's closed eyes did not come through
    gap = track.landmarks[:, lm.LOWER_LIP_INNER, 1] - track.landmarks[:, lm.UPPER_LIP_INNER, 1]
    assert gap.max() - gap.min() > 0.1 * height  # the jaw drop came through
