"""Choosing the face when a frame shows several: ``--target-face`` and ``--drive-face``, end to end on a frame with
two people (the astronaut twice: small on the left, large on the right), no shared media needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image
from test_config_cli import assert_clean_failure, leftovers, run_cli, run_main
from test_video import make_clip

import retarget
from retarget.config import resolve
from retarget.pipeline import Inputs, check_face_choices
from retarget.video import probe

REPO = Path(__file__).resolve().parents[1]
SPLIT = 210  # every pixel of the small face lies left of this column, every pixel of the large one right of it


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    """(300, 520, 3) uint8: a 200 px astronaut on the left, a 300 px one on the right, on grey."""
    data = pytest.importorskip("skimage.data")
    face = data.astronaut()[0:300, 100:400]
    out = np.full((300, 520, 3), 128, np.uint8)
    out[:, 220:520] = face
    out[60:260, 0:200] = np.asarray(Image.fromarray(face).resize((200, 200)))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, canvas: np.ndarray) -> dict[str, Path]:
    """The sample driver (the astronaut smiling and dropping her jaw), the two-face still, and 6-frame videos:
    the two faces, and the astronaut alone."""
    root = tmp_path_factory.mktemp("faces")
    run = subprocess.run([sys.executable, str(REPO / "samples" / "make_samples.py"), "--out", str(root)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    still = root / "two.png"
    Image.fromarray(canvas).save(still)
    return {"drive": root / "drive.mp4", "still": still,
            "two_video": make_clip(root / "two.mp4", 520, 300, n_frames=6, fps=25, images=[canvas] * 6)}


def report_of(output: Path) -> dict:
    return json.loads(output.with_suffix(".retarget.json").read_text())


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_target_face_left_animates_the_small_face_and_leaves_the_other(files, tmp_path, canvas):
    out = tmp_path / "left.mp4"
    result = run_cli(files["drive"], files["still"], "-o", out, "--target-face", "left", "-q")
    assert result.returncode == 0, result.stderr
    chosen = report_of(out)["target_face"]
    assert chosen["choice"] == "left" and chosen["box"][2] < SPLIT
    frames = frames_of(out).astype(np.float32)
    # against the still as given, blurred: the encoder's error is fine-grained and settles over the first frames
    # (x264 refines a static picture), while a face that moves changes whole features
    change = np.stack([cv2.GaussianBlur(np.abs(f - canvas).mean(-1), (0, 0), 3) for f in frames])  # (T, H, W)
    left, right = change[:, :, :SPLIT].max(), change[:, :, SPLIT + 10:].max()
    assert left > 40  # the small face performs
    assert right < 0.2 * left  # the large one stays as it was


def test_a_point_on_a_face_chooses_it(files, tmp_path):
    out = tmp_path / "point.mp4"
    assert retarget.retarget(files["drive"], files["still"], out, target_face="100,160", progress=False)
    assert report_of(out)["target_face"]["box"][2] < SPLIT
    assert report_of(out)["drive_face"]["choice"] == "largest"


def test_a_point_beside_every_face_fails_cleanly_and_says_where_they_are(files, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    result = run_main(capsys, files["drive"], files["still"], "-o", out, "--target-face", "212,5", "-q")
    assert_clean_failure(result, "no face there", strict_stderr=False)
    assert "faces: x " in result.stderr and "two.png" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("value, needle", [("900,5", "outside"), ("biggest", "use largest, left, right or x,y")])
def test_bad_choices_fail_before_any_work(files, tmp_path, capsys, value, needle):
    out = tmp_path / "out.mp4"
    result = run_main(capsys, files["drive"], files["still"], "-o", out, "--target-face", value)
    assert_clean_failure(result, needle)
    assert list(tmp_path.iterdir()) == []


def test_drive_face_needs_a_driver_video(files, tmp_path, capsys):
    curves = tmp_path / "aus.csv"
    curves.write_text("timestamp, success, AU12_r\n0.0, 1, 0.0\n0.04, 1, 2.0\n")
    result = run_main(capsys, curves, files["still"], "-o", tmp_path / "out.mp4", "--drive-face", "left")
    assert_clean_failure(result, "driver video")
    # the default, however it is spelled, is no choice to refuse
    assert check_face_choices(Inputs(None, probe(files["still"]), tmp_path / "o.mp4", None, curves),
                              resolve(drive_face=" Largest")) is None


def test_video_target_and_driver_follow_the_chosen_faces(files, tmp_path):
    """A video target tracks its chosen face through every frame; a two-person driver gives the chosen one's
    expressions."""
    out = tmp_path / "video.mp4"
    result = retarget.retarget(files["two_video"], files["two_video"], out, target_face="right", drive_face="left",
                               progress=False)
    assert result.frames_written == 6 and result.target_frames_without_face == 0
    report = report_of(out)
    assert report["target_face"]["box"][0] > SPLIT and report["drive_face"]["box"][2] < SPLIT
    assert report["config"]["target_face"] == "right" and report["config"]["drive_face"] == "left"


@pytest.mark.parametrize("which, sign", [("left", -1), ("right", 1)])
def test_analyze_measures_the_chosen_face(files, tmp_path, capsys, which, sign):
    """``retarget analyze --face``: the curves are the chosen person's (their face's position says whose)."""
    from retarget.aucsv import read_au_csv

    csv = tmp_path / "aus.csv"
    result = run_main(capsys, "analyze", files["two_video"], "--face", which, "--csv", csv, "-q")
    assert result.returncode == 0, result.stderr
    curves = read_au_csv(csv)
    assert curves.success.all()
    assert (np.sign(curves.pose[:, 0]) == sign).all()  # pose_Tx: left or right of the image centre


def test_analyze_point_beside_every_face_fails_cleanly(files, tmp_path, capsys):
    csv = tmp_path / "aus.csv"
    result = run_main(capsys, "analyze", files["still"], "--face", "212,5", "--csv", csv)
    assert_clean_failure(result, "--face 212,5: no face there", strict_stderr=False)
    assert not csv.exists()
