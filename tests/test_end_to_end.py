"""The whole job on the real clips in ../shared/media (skipped where that folder is absent).

Each configuration runs once per module (a run takes 10-40 s on a small machine) and its output, written to a
pytest tmp folder only, is shared by the tests that inspect it. Outputs are judged by re-tracking them with the
project's own face tracker and by comparing them with the inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from _helpers import media_file

import retarget
from retarget import landmarks as lm
from retarget.config import resolve
from retarget.face import FaceTracker, track_frames
from retarget.types import AU_NAMES, Track
from retarget.video import probe, read_frames

pytestmark = pytest.mark.media

# d18 closes its eyes around 3.1-3.3 s (a yawn); see ../shared/media/MANIFEST.md
D18_EYES_CLOSED = (3.1, 3.3)


# ------------------------------------------------------------------------------------------------ helpers


def face_height(points: np.ndarray) -> np.ndarray:
    """(...,) height of the face oval, pixels, for landmarks (..., 478, 3)."""
    oval = points[..., lm.FACE_OVAL, 1]
    return oval.max(-1) - oval.min(-1)


def mouth_opening(track: Track) -> np.ndarray:
    """(T,) inner-lip gap (landmarks 13/14) in face heights; NaN where the face was lost."""
    p = track.landmarks
    gap = np.linalg.norm(p[:, lm.LOWER_LIP_INNER, :2] - p[:, lm.UPPER_LIP_INNER, :2], axis=-1)
    return gap / face_height(p)


def eye_opening(track: Track) -> np.ndarray:
    """(T,) mean lid gap of both eyes (159/145 and 386/374) in face heights."""
    p = track.landmarks
    right = np.linalg.norm(p[:, 145, :2] - p[:, 159, :2], axis=-1)
    left = np.linalg.norm(p[:, 374, :2] - p[:, 386, :2], axis=-1)
    return (right + left) / 2 / face_height(p)


def gaze(track: Track) -> np.ndarray:
    """(T,) horizontal iris position within the eye, 0 at the eye's image-left corner and 1 at its image-right
    corner, averaged over both eyes (looking to the image's right raises it for both)."""
    p = track.landmarks
    out = []
    for centre, (left, right) in ((lm.RIGHT_IRIS_CENTRE, (33, 133)), (lm.LEFT_IRIS_CENTRE, (362, 263))):
        a, v = p[:, left, :2], p[:, right, :2] - p[:, left, :2]
        out.append(((p[:, centre, :2] - a) * v).sum(-1) / (v * v).sum(-1))
    return np.mean(out, axis=0)


def track_video(path: Path) -> Track:
    info = probe(path)
    return track_frames(read_frames(path), info.width, info.height)


def streams(path: Path) -> dict:
    """Frame count, frame times, fps and audio packets (start s, size) of an mp4, by decoding/demuxing it."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(video)]
        fps = video.average_rate
    audio = []
    codec = None
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            audio = [(float(p.pts * p.time_base), p.size) for p in container.demux(stream) if p.dts is not None]
    return {"frames": len(times), "times": np.array(times), "fps": fps, "audio": audio, "audio_codec": codec}


def decoded(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    wanted, out = set(indices), {}
    for frame in read_frames(path):
        if frame.index in wanted:
            out[frame.index] = frame.image
        if len(out) == len(wanted):
            break
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def far_from_face(shape: tuple[int, int], points: np.ndarray, faces: float) -> np.ndarray:
    """(h, w) bool: pixels farther than ``faces`` face sizes from the face (its landmarks' convex hull)."""
    hull = cv2.convexHull(np.round(points[:, :2]).astype(np.int32))
    inside = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    dist = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    span = points[:, :2].max(0) - points[:, :2].min(0)
    return dist > faces * float(span.max())


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def d18() -> Path:
    return media_file("drv_lp_d18.mp4")


@pytest.fixture(scope="module")
def s18() -> Path:
    return media_file("vid_lp_s18.mp4")


@pytest.fixture(scope="module")
def s42() -> Path:
    return media_file("img_lp_s42.jpg")


@pytest.fixture(scope="module")
def d18_on_s18(d18: Path, s18: Path, out_dir: Path) -> retarget.RetargetResult:
    return retarget.retarget(d18, s18, out_dir / "d18_s18.mp4")


@pytest.fixture(scope="module")
def d0_on_s18(s18: Path, out_dir: Path) -> retarget.RetargetResult:
    # the fast preset: this run checks timing, not looks
    return retarget.retarget(media_file("drv_lp_d0.mp4"), s18, out_dir / "d0_s18.mp4", preset="fast")


@pytest.fixture(scope="module")
def d18_on_s42(d18: Path, s42: Path, out_dir: Path) -> retarget.RetargetResult:
    return retarget.retarget(d18, s42, out_dir / "d18_s42.mp4")


@pytest.fixture(scope="module")
def d18_on_s42_silent(d18: Path, s42: Path, out_dir: Path) -> retarget.RetargetResult:
    return retarget.retarget(d18, s42, out_dir / "d18_s42_silent.mp4", audio="none", preset="fast", max_size=256)


@pytest.fixture(scope="module")
def d18_track(d18: Path) -> Track:
    return track_video(d18)


# ----------------------------------------------------------------------------------- video target: timing


def test_video_target_keeps_frames_fps_duration(d18_on_s18: retarget.RetargetResult, s18: Path) -> None:
    target, out = streams(s18), streams(d18_on_s18.output)
    assert target["frames"] == 282
    assert out["frames"] == target["frames"] == d18_on_s18.frames_written
    assert out["fps"] == 30
    np.testing.assert_allclose(out["times"], target["times"], atol=1e-3)  # the target's own timestamps
    info_t, info_o = probe(s18), probe(d18_on_s18.output)
    assert abs(info_o.duration - info_t.duration) <= 1 / 30 + 1e-6
    assert (info_o.width, info_o.height) == (info_t.width, info_t.height)
    assert d18_on_s18.target_frames_without_face == 0


def test_video_target_audio_is_copied(d18_on_s18: retarget.RetargetResult, s18: Path) -> None:
    target, out = streams(s18), streams(d18_on_s18.output)
    assert out["audio_codec"] == target["audio_codec"] == "aac"
    end = out["times"][-1] + 1 / 30
    expected = [(t, size) for t, size in target["audio"] if t < end - 1e-6]
    assert len(out["audio"]) == len(expected) > 300
    assert [size for _, size in out["audio"]] == [size for _, size in expected]  # packet for packet
    np.testing.assert_allclose([t for t, _ in out["audio"]], [t for t, _ in expected], atol=1e-4)


def test_25fps_driver_on_30fps_target(d0_on_s18: retarget.RetargetResult, s18: Path) -> None:
    assert probe(media_file("drv_lp_d0.mp4")).fps == 25
    target, out = streams(s18), streams(d0_on_s18.output)
    assert out["frames"] == target["frames"] == 282 and out["fps"] == 30
    np.testing.assert_allclose(out["times"], target["times"], atol=1e-3)


def test_short_driver_rests_on_neutral_after_its_end(d0_on_s18: retarget.RetargetResult) -> None:
    """d0 lasts 3.12 s, the target 9.4 s: after the driver ends the transferred expression eases to zero."""
    report = json.loads(d0_on_s18.config_path.read_text())
    release = report["config"]["drive_release"]
    late = [f for f in report["frames"] if f["time"] > 3.12 + 6 * release]
    assert len(late) > 100
    relative = np.array([f["output_aus"] for f in late])
    mouth = [AU_NAMES.index(n) for n in ("AU10", "AU12", "AU14", "AU20", "AU25", "AU26")]
    assert relative[:, mouth].max() < 0.5  # (the target's own blinks stay: eye AUs are not judged here)


# ------------------------------------------------------------------------------ video target: appearance


def test_outside_the_face_is_the_target(d18_on_s18: retarget.RetargetResult, s18: Path) -> None:
    indices = [10, 75, 96, 135, 200, 270]  # including the yawn (~2.5 s), eyes closed (~3.2 s), the laugh (4.5 s)
    target, out = decoded(s18, indices), decoded(d18_on_s18.output, indices)
    with FaceTracker(still=True) as tracker:
        for k in indices:
            points = tracker(target[k])
            assert points is not None
            far = far_from_face(target[k].shape[:2], points, 0.6)
            assert far.mean() > 0.5
            value = psnr(out[k][far], target[k][far])
            assert value >= 35.0, (k, value)


def sampled(track: Track, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    ok = track.found & np.isfinite(values)
    return np.interp(at, track.times[ok], values[ok])


@pytest.fixture(scope="module")
def s18_output_track(d18_on_s18: retarget.RetargetResult) -> Track:
    return track_video(d18_on_s18.output)


@pytest.fixture(scope="module")
def s42_output_track(d18_on_s42: retarget.RetargetResult) -> Track:
    return track_video(d18_on_s42.output)


@pytest.mark.parametrize("which", ["s18_output_track", "s42_output_track"])
def test_output_mouth_follows_the_driver(which: str, request: pytest.FixtureRequest, d18_track: Track) -> None:
    out: Track = request.getfixturevalue(which)
    assert out.found.mean() > 0.95
    ok = out.found
    drive = sampled(d18_track, mouth_opening(d18_track), out.times[ok])
    mine = mouth_opening(out)[ok]
    assert drive.max() > 0.15  # the driver does open wide (jaw drop, laugh)
    r = np.corrcoef(drive, mine)[0, 1]
    assert r >= 0.8, r


@pytest.mark.parametrize("which", ["s18_output_track", "s42_output_track"])
def test_output_closes_its_eyes_with_the_driver(which: str, request: pytest.FixtureRequest,
                                                d18_track: Track) -> None:
    out: Track = request.getfixturevalue(which)
    drive = eye_opening(d18_track)
    window = (d18_track.times >= D18_EYES_CLOSED[0]) & (d18_track.times <= D18_EYES_CLOSED[1])
    assert np.nanmin(drive[window]) < 0.3 * np.nanmedian(drive)  # the driver's eyes do close there
    mine = eye_opening(out)
    window = (out.times >= D18_EYES_CLOSED[0]) & (out.times <= D18_EYES_CLOSED[1]) & out.found
    assert np.nanmin(mine[window]) < 0.5 * np.nanmedian(mine[out.found])
    # and only there: a second before, they are open
    before = (out.times >= 1.5) & (out.times <= 2.5) & out.found
    assert np.nanmin(mine[before]) > 0.6 * np.nanmedian(mine[out.found])


def test_output_gaze_follows_the_driver(s42: Path, out_dir: Path) -> None:
    """d0 glances left and right (MANIFEST); the still target's irises follow, re-tracked in the output."""
    drive_path = media_file("drv_lp_d0.mp4")
    result = retarget.retarget(drive_path, s42, out_dir / "d0_s42.mp4", preset="fast")
    drive, out = track_video(drive_path), track_video(result.output)
    ok = out.found
    assert ok.mean() > 0.95
    theirs = sampled(drive, gaze(drive), out.times[ok])
    mine = gaze(out)[ok]
    assert np.ptp(theirs) > 0.2  # the driver's irises do travel across the eye
    assert np.corrcoef(theirs, mine)[0, 1] >= 0.8
    assert np.ptp(mine) >= 0.25 * np.ptp(theirs)  # and the target's travel visibly, not just jitter


# ------------------------------------------------------------------------------------------ still target


def test_still_target_follows_the_driver_timing_and_audio(d18_on_s42: retarget.RetargetResult, d18: Path,
                                                          s42: Path) -> None:
    drive, out = streams(d18), streams(d18_on_s42.output)
    assert drive["frames"] == 216
    assert out["frames"] == drive["frames"] == d18_on_s42.frames_written and out["fps"] == 30
    np.testing.assert_allclose(out["times"], drive["times"], atol=1e-3)
    assert abs(probe(d18_on_s42.output).duration - probe(d18).duration) <= 1 / 30 + 1e-6
    info = probe(s42)
    assert (probe(d18_on_s42.output).width, probe(d18_on_s42.output).height) == (info.width, info.height)
    # auto audio for a still target: the driver's, copied
    assert out["audio_codec"] == drive["audio_codec"] == "aac"
    end = out["times"][-1] + 1 / 30
    expected = [size for t, size in drive["audio"] if t < end - 1e-6]
    assert [size for _, size in out["audio"]] == expected


def test_still_target_without_audio(d18_on_s42_silent: retarget.RetargetResult) -> None:
    out = streams(d18_on_s42_silent.output)
    assert out["audio_codec"] is None and out["audio"] == []
    assert out["frames"] == 216
    assert max(probe(d18_on_s42_silent.output).width, probe(d18_on_s42_silent.output).height) == 256


def test_still_target_background_stays(d18_on_s42: retarget.RetargetResult, s42: Path) -> None:
    from retarget.segment import person_mask
    from retarget.video import read_still

    still = read_still(s42)
    with FaceTracker(still=True) as tracker:
        points = tracker(still)
    # the face fills this portrait: half a face size away, and not on her (her hair follows her head's moves)
    far = far_from_face(still.shape[:2], points, 0.5) & (person_mask(still) < 0.1)
    assert far.sum() > 20000
    for k, frame in decoded(d18_on_s42.output, [0, 80, 135, 200]).items():
        assert psnr(frame[far], still[far]) >= 35.0, k


# ------------------------------------------------------------------------------------------------- report


def test_target_blinks_do_not_show_while_the_driver_looks(s18: Path, s18_output_track: Track, d18_track: Track,
                                                          d18_on_s18: retarget.RetargetResult) -> None:
    """`vid_lp_s18` blinks twice (about 0.2-0.5 s and 5.3-5.6 s) while `drv_lp_d18`'s eyes are open: the output's
    eyes stay open there (its shut eyes take an earlier frame's open eye), and the report says from when."""
    own = track_video(s18)
    mine = eye_opening(s18_output_track)
    theirs = eye_opening(own)
    driver = sampled(d18_track, eye_opening(d18_track), own.times)
    blinking = own.found & s18_output_track.found & (theirs < 0.5 * np.nanmedian(theirs[own.found]))
    blinking &= driver > 0.7 * np.nanmedian(eye_opening(d18_track))
    assert blinking.sum() >= 4  # the target does blink under open driver eyes
    assert np.nanmin(mine[blinking]) > 0.6 * np.nanmedian(mine[s18_output_track.found])
    frames = json.loads(d18_on_s18.config_path.read_text())["frames"]
    lent = [(f["time"], f["eyes_from"]) for f in frames if f["eyes_from"] is not None]
    assert {round(float(own.times[i]), 4) for i in np.flatnonzero(blinking)} <= {t for t, _ in lent}
    assert all(0 < t - e <= resolve().eye_borrow for t, e in lent)


def clip_of(source: Path, path: Path, start: int, count: int) -> Path:
    """Frames ``start`` to ``start + count`` of ``source``, re-encoded (near-lossless, same rate, no audio)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = src.streams.video[0]
        video = out.add_stream("libx264", rate=stream.average_rate, width=stream.width, height=stream.height,
                               options={"crf": "12", "preset": "ultrafast"})
        for i, frame in enumerate(src.decode(stream)):
            if i >= start + count:
                break
            if i >= start:
                copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                copy.pts = i - start
                out.mux(video.encode(copy))
        out.mux(video.encode(None))
    return path


def test_a_target_that_starts_in_a_blink_takes_the_open_eye_that_follows(d18: Path, s18: Path,
                                                                       out_dir: Path) -> None:
    """`vid_lp_s18` cut to start 0.3 s in, halfway through its first blink, under `drv_lp_d18`'s open eyes: no
    earlier frame has open eyes, so the shut frames take the first open one after them, and the output's eyes
    are open from the first frame (they stayed shut before)."""
    target = clip_of(s18, out_dir / "s18_from_blink.mp4", 9, 60)
    result = retarget.retarget(d18, target, out_dir / "d18_s18_from_blink.mp4")
    own, out = eye_opening(track_video(target)), eye_opening(track_video(result.output))
    assert (own[:3] < 0.4 * np.median(own)).all()  # the target's eyes are shut at the start
    assert (out[:3] > 0.8 * np.median(out)).all()
    frames = json.loads(result.config_path.read_text())["frames"]
    lent = [(f["time"], f["eyes_from"]) for f in frames[:3]]
    assert all(e is not None and 0 < e - t <= resolve().eye_borrow for t, e in lent)


def test_report_records_config_and_aus(d18_on_s18: retarget.RetargetResult, d18: Path, s18: Path) -> None:
    path = d18_on_s18.config_path
    assert path == d18_on_s18.output.with_name("d18_s18.retarget.json") and path.is_file()
    report = json.loads(path.read_text())
    assert report["config"] == resolve().to_dict()
    assert report["au_names"] == list(AU_NAMES)
    assert Path(report["drive"]) == d18 and Path(report["target"]) == s18
    frames = report["frames"]
    assert len(frames) == d18_on_s18.frames_written == 282
    np.testing.assert_allclose([f["time"] for f in frames], streams(d18_on_s18.output)["times"], atol=1e-3)
    for f in frames:
        assert len(f["drive_aus"]) == len(f["output_aus"]) == 17
        assert all(0 <= v <= 5 for v in f["drive_aus"] + f["output_aus"])
        assert 0 <= f["weight"] <= 1
    # the jaw drop / laugh shows in the recorded AU25 (lips part) around 4.5 s, and not at the start
    au25 = AU_NAMES.index("AU25")
    at = {round(f["time"], 1): f for f in frames}
    assert at[4.5]["drive_aus"][au25] > 3 and at[4.5]["output_aus"][au25] > 3
    assert report["drive_neutral_time"] == pytest.approx(d18_on_s18.drive_neutral_time)
    for role in ("drive", "target"):  # the brows' and eyes' neutral, each a time within the clip
        assert 0.0 <= report[f"{role}_neutral_upper_time"] <= 9.5
    assert set(report["timings_seconds"]) >= {"track", "analyse", "plan", "generate"}
    assert report["notes"] == [] and d18_on_s18.notes == ()  # both faces rest at their calmest
    assert not list(path.parent.glob(".*part*"))  # no temporary files left behind


# ------------------------------------------------------------------------------- a neutral that is not at rest


def test_a_target_that_never_rests_gets_a_note(d18: Path, out_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """`vid_lp_s29` laughs throughout: its calmest frame still smiles with parted lips, so the driver's
    expressions land on that smile. The user is told so, on stderr and in the report, with the flag that sets
    another neutral; set by that flag, the note goes."""
    from retarget.cli import main

    s29 = media_file("vid_lp_s29.mp4")
    out = out_dir / "d18_s29.mp4"
    assert main([str(d18), str(s29), "-o", str(out), "--preset", "fast", "--max-size", "360", "-q"]) == 0
    assert "note:" not in capsys.readouterr().err  # -q: quiet
    assert main([str(d18), str(s29), "-o", str(out), "--preset", "fast", "--max-size", "360"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("retarget: note: ")]
    assert len(notes) == 1
    assert "the target's calmest frame" in notes[0] and "smiles" in notes[0] and "--target-neutral" in notes[0]
    report = json.loads(out.with_name("d18_s29.retarget.json").read_text())
    assert report["notes"] == [notes[0].removeprefix("retarget: note: ")]
    chosen = retarget.retarget(d18, s29, out_dir / "d18_s29_neutral.mp4", preset="fast", max_size=360,
                               target_neutral=0.4)
    assert chosen.notes == ()
