"""`retarget analyze` end to end: a still, a synthetic clip with lost frames, the command's exit codes and outputs,
OpenFace pose conventions, and (media) the jaw drop of d18."""

from __future__ import annotations

import inspect
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from _helpers import media_file
from PIL import Image
from test_video import make_audio_only, make_clip

from retarget.analyze import analyze, openface_euler
from retarget.aucsv import AU_COLUMNS, POSE_COLUMNS, read_au_csv
from retarget.cli_analyze import analyze_main
from retarget.config import RetargetConfig
from retarget.errors import RetargetError
from retarget.types import AU_NAMES

PNG = b"\x89PNG\r\n\x1a\n"
FACE_FRAMES, LOST = 10, (4, 5, 6)  # frames 4-6 of the synthetic clip are blank grey


def head(size: int = 256) -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut test photo")
    return np.ascontiguousarray(cv2.resize(data.astronaut()[0:256, 96:352], (size, size),
                                           interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analyze")


@pytest.fixture(scope="module")
def still(work: Path, astronaut: np.ndarray) -> Path:
    path = work / "portrait.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture(scope="module")
def clip(work: Path) -> Path:
    face, grey = head(), np.full((256, 256, 3), 128, np.uint8)
    images = [grey if i in LOST else face for i in range(FACE_FRAMES)]
    return make_clip(work / "clip.mp4", 256, 256, n_frames=FACE_FRAMES, images=images, fps=25)


@pytest.fixture(scope="module")
def clip_outputs(clip: Path, work: Path) -> tuple[Path, Path]:
    csv, plot = work / "clip.csv", work / "clip.png"
    assert analyze_main([str(clip), "--csv", str(csv), "--plot", str(plot), "-q"]) == 0
    return csv, plot


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


# ------------------------------------------------------------------------------------------------ outputs


def test_clip_csv_has_one_row_per_frame_and_openface_columns(clip_outputs: tuple[Path, Path], clip: Path) -> None:
    csv, _ = clip_outputs
    header = csv.read_text().splitlines()[0].split(",")
    assert header == ["frame", "face_id", "timestamp", "confidence", "success", *POSE_COLUMNS, *AU_COLUMNS]
    c = read_au_csv(csv)
    assert len(c) == FACE_FRAMES
    np.testing.assert_allclose(c.times, frame_times(clip), atol=1e-6)
    expected = np.array([i not in LOST for i in range(FACE_FRAMES)])
    np.testing.assert_array_equal(c.success, expected)
    # lost frames: everything 0; found frames: the detector sees the face, the pose is a real one
    assert not c.aus[~expected].any() and not c.pose[~expected].any() and not c.confidence[~expected].any()
    assert (c.confidence[expected] > 0.8).all()
    assert (c.pose[expected, 2] > 100).all() and (c.pose[expected, 2] < 2000).all()
    # the same face in every found frame: no expression (up to the re-detection noise after the gap)
    assert c.aus[expected].max() < 1.5
    assert np.ptp(c.pose[expected, 2]) < 5.0


def test_plot_is_a_png(clip_outputs: tuple[Path, Path]) -> None:
    _, plot = clip_outputs
    data = plot.read_bytes()
    assert data[:8] == PNG
    with Image.open(plot) as im:
        assert im.size[0] > 800 and im.size[1] > 600
        grey = np.asarray(im.convert("RGB"))
    assert grey.std() > 10  # not a blank canvas
    assert not [p for p in plot.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_still_gives_one_row_and_frontal_pose(still: Path, tmp_path: Path) -> None:
    csv, plot = tmp_path / "s.csv", tmp_path / "s.svg"
    c = analyze(still, csv, plot, RetargetConfig(), show_progress=False)
    back = read_au_csv(csv)
    assert len(c) == len(back) == 1 and back.success[0] and back.times[0] == 0.0
    assert back.confidence[0] > 0.8
    # the astronaut looks almost straight into the camera
    assert np.abs(np.degrees(back.pose[0, 3:])).max() < 10
    assert plot.read_text().lstrip().startswith("<?xml")


def test_roll_sign_follows_openface(astronaut: np.ndarray, tmp_path: Path) -> None:
    """Turning the picture counter-clockwise on screen lowers pose_Rz by that angle (positive Rz: clockwise)."""
    rz = []
    for angle in (0, 15):
        rotation = cv2.getRotationMatrix2D((256, 256), angle, 1.0)  # positive: counter-clockwise on screen
        path = tmp_path / f"rot{angle}.png"
        Image.fromarray(cv2.warpAffine(astronaut, rotation, (512, 512), borderMode=cv2.BORDER_REPLICATE)).save(path)
        rz.append(float(np.degrees(analyze(path, None, None, RetargetConfig(), False).pose[0, 5])))
    assert -19 < rz[1] - rz[0] < -11, rz


def test_euler_decomposition_is_openface_order() -> None:
    a, b, c = 0.3, -0.2, 0.1
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    np.testing.assert_allclose(openface_euler(rx @ ry @ rz), [a, b, c], atol=1e-12)


# ------------------------------------------------------------------------------------------------ command


def test_csv_goes_to_stdout_without_outputs(still: Path, capsys: pytest.CaptureFixture) -> None:
    assert analyze_main([str(still)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("frame,face_id,timestamp,confidence,success,pose_Tx") and len(lines) == 2
    assert "analysed 1 frames" in err and "frame,face_id" not in err


def test_cli_dispatch(still: Path, tmp_path: Path) -> None:
    from retarget import cli

    if '"analyze"' not in inspect.getsource(cli.main):
        pytest.skip("retarget.cli.main does not dispatch 'analyze' yet")
    csv = tmp_path / "d.csv"
    assert cli.main(["analyze", str(still), "--csv", str(csv), "-q"]) == 0
    assert len(read_au_csv(csv)) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in ([], ["a.mp4", "--neutral", "soon"], ["a.mp4", "--bogus"]):
        with pytest.raises(SystemExit) as exc:
            analyze_main(argv)
        assert exc.value.code == 2
    assert "retarget analyze" in capsys.readouterr().err


def fails(argv: list[str], capsys: pytest.CaptureFixture, message: str) -> None:
    assert analyze_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("retarget: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_failures_exit_1_with_one_line_and_write_nothing(still: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    csv, plot = tmp_path / "o.csv", tmp_path / "o.png"
    fails([str(tmp_path / "missing.mp4"), "--csv", str(csv)], capsys, "not found")
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    fails([str(text), "--csv", str(csv)], capsys, "not an image or video")
    audio = make_audio_only(tmp_path / "audio.m4a")
    fails([str(audio), "--csv", str(csv)], capsys, "no video stream")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
    fails([str(blank), "--csv", str(csv), "--plot", str(plot), "-q"], capsys, "no face")
    fails([str(still), "--csv", str(still)], capsys, "would overwrite the input")
    fails([str(still), "--plot", str(tmp_path / "o.gif")], capsys, "the plot must end in")
    fails([str(still), "--neutral", "1"], capsys, "needs a video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.m4a", "blank.png", "notes.txt"]


def test_failure_keeps_an_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
    csv = tmp_path / "old.csv"
    csv.write_text("timestamp,AU12_r\n0,1\n")
    fails([str(blank), "--csv", str(csv), "-q"], capsys, "no face")
    assert csv.read_text() == "timestamp,AU12_r\n0,1\n"


def test_neutral_outside_the_clip(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fails([str(clip), "--csv", str(tmp_path / "n.csv"), "--neutral", "9", "-q"], capsys, "outside the clip")
    with pytest.raises(RetargetError, match="outside"):
        analyze(clip, None, None, RetargetConfig(drive_neutral=-1.0), False)


# ------------------------------------------------------------------------------------------------ media


@pytest.mark.media
def test_d18_rows_times_and_jaw_drop(tmp_path: Path) -> None:
    """d18: one row per decoded frame at its time; AU25/AU26 peak in the jaw drop, where the mouth opens widest."""
    from retarget import landmarks as lm
    from retarget.face import track_frames
    from retarget.video import probe, read_frames

    path = media_file("drv_lp_d18.mp4")
    csv, plot = tmp_path / "d18.csv", tmp_path / "d18.png"
    assert analyze_main([str(path), "--csv", str(csv), "--plot", str(plot), "-q"]) == 0
    c = read_au_csv(csv)
    times = frame_times(path)
    assert len(c) == len(times) == probe(path).frame_count
    np.testing.assert_allclose(c.times, times, atol=1e-6)
    assert c.success.all() and (c.confidence > 0.8).all()
    assert plot.read_bytes()[:8] == PNG

    info = probe(path)
    track = track_frames(read_frames(path), info.width, info.height)
    p = track.landmarks
    opening = (p[:, lm.LOWER_LIP_INNER, 1] - p[:, lm.UPPER_LIP_INNER, 1]) / (p[:, lm.CHIN, 1] - p[:, 10, 1])
    wide = opening > 0.5 * opening.max()  # the jaw drop and the wide-open laugh
    assert 0.1 < wide.mean() < 0.7
    for au in ("AU25", "AU26"):
        curve = c.aus[:, AU_NAMES.index(au)]
        assert curve.max() > 2.0, au
        peak = curve >= 0.9 * curve.max()  # (it saturates at 5 through the widest openings)
        assert wide[peak].mean() > 0.8, f"{au} peaks at {np.round(c.times[peak & ~wide], 2)} s, mouth not wide"
        assert curve[int(np.argmax(opening))] >= 0.8 * curve.max(), au
        assert curve[wide].mean() > 3 * curve[~wide].mean() + 0.5, au
        assert np.corrcoef(curve, opening)[0, 1] > 0.8, au
