"""`retarget analyze` and the OpenFace-2 CSV layout: write/read, tolerant reading, bad input, the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import media_file

from retarget.aucsv import AUCurves, read_au_csv, write_au_csv
from retarget.errors import RetargetError
from retarget.types import AU_NAMES


def curves(n: int = 5, pose: bool = True) -> AUCurves:
    rng = np.random.default_rng(1)
    return AUCurves(times=np.arange(n) / 30.0, aus=rng.uniform(0, 5, (n, 17)).astype(np.float32),
                    success=np.array([True] * (n - 1) + [False]), confidence=np.linspace(0.5, 1, n).astype(np.float32),
                    pose=rng.normal(size=(n, 6)) if pose else None)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    c = curves()
    path = tmp_path / "aus.csv"
    write_au_csv(path, c)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert header[-17:] == [f"{a}_r" for a in AU_NAMES]
    back = read_au_csv(path)
    np.testing.assert_allclose(back.times, c.times, atol=1e-4)
    np.testing.assert_allclose(back.aus, c.aus, atol=2e-3)
    np.testing.assert_array_equal(back.success, c.success)
    np.testing.assert_allclose(back.pose, c.pose, atol=1e-3)


def test_reads_openface_output_with_spaces_extra_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "openface.csv"
    path.write_text("frame, face_id, timestamp, confidence, success, gaze_0_x, AU12_r, AU26_r, AU12_c\n"
                    "1, 0, 0.000, 0.98, 1, 0.1, 1.5, 0.2, 1\n"
                    "2, 0, 0.033, 0.97, 1, 0.1, 2.5, 7.0, 1\n"
                    "3, 0, 0.067, 0.10, 0, 0.1, 0.0, 0.0, 0\n")
    c = read_au_csv(path)
    assert len(c) == 3 and c.pose is None
    k12, k26, k01 = AU_NAMES.index("AU12"), AU_NAMES.index("AU26"), AU_NAMES.index("AU01")
    np.testing.assert_allclose(c.aus[:, k12], [1.5, 2.5, 0.0])
    assert c.aus[1, k26] == 5.0  # clipped to the scale
    assert (c.aus[:, k01] == 0).all()  # a missing AU counts as 0
    np.testing.assert_array_equal(c.success, [True, True, False])


def test_hand_keyed_curves_load(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    path.write_text("timestamp,AU12_r\n0,0\n1.0,3\n2.5,0\n")
    c = read_au_csv(path)
    np.testing.assert_allclose(c.times, [0, 1.0, 2.5])
    assert c.success.all() and c.aus[1, AU_NAMES.index("AU12")] == 3.0


@pytest.mark.parametrize("text", ["", "timestamp,AU12_r\n", "frame,AU12_r\n1,2\n", "timestamp,success\n0,1\n",
                                  "timestamp,AU12_r\n0,abc\n", "timestamp,AU12_r\n1,0\n0,1\n"])
def test_bad_csv_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(RetargetError) as exc:
        read_au_csv(path)
    assert "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("analyze") / "portrait.png"
    Image.fromarray(astronaut).save(path)
    return path


def test_analyze_cli_writes_csv_and_plot_for_a_still(portrait: Path, tmp_path: Path) -> None:
    from retarget.cli import main

    csv, plot = tmp_path / "a.csv", tmp_path / "a.png"
    assert main(["analyze", str(portrait), "--csv", str(csv), "--plot", str(plot), "-q"]) == 0
    c = read_au_csv(csv)
    assert len(c) == 1 and c.success[0] and c.confidence[0] > 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_cli_errors(portrait: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from retarget.cli import main

    assert main(["analyze", str(tmp_path / "missing.mp4"), "--csv", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("retarget: error:") and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(blank)
    assert main(["analyze", str(blank), "--csv", str(tmp_path / "y.csv"), "-q"]) == 1
    assert "no face" in capsys.readouterr().err and not (tmp_path / "y.csv").exists()


@pytest.mark.media
def test_analyze_real_clip_rows_and_jaw_drop(tmp_path: Path) -> None:
    """d18: one row per frame at the frame times; AU25/AU26 peak where the re-tracked mouth opens widest."""
    from retarget import landmarks as lm
    from retarget.cli import main
    from retarget.face import track_frames
    from retarget.video import probe, read_frames

    clip = media_file("drv_lp_d18.mp4")
    csv = tmp_path / "d18.csv"
    assert main(["analyze", str(clip), "--csv", str(csv), "-q"]) == 0
    c = read_au_csv(csv)
    info = probe(clip)
    track = track_frames(read_frames(clip), info.width, info.height)
    assert len(c) == len(track)
    np.testing.assert_allclose(c.times, track.times, atol=1e-3)
    gap = track.landmarks[:, lm.LOWER_LIP_INNER, 1] - track.landmarks[:, lm.UPPER_LIP_INNER, 1]
    for au in ("AU25", "AU26"):
        curve = c.aus[:, AU_NAMES.index(au)]
        assert np.corrcoef(curve, gap)[0, 1] > 0.8, au
        assert curve.max() > 2.0


@pytest.mark.media
def test_analyze_reads_a_still_against_a_typical_resting_face(tmp_path: Path) -> None:
    """A still is its own neutral; analyze reads it against the population neutral: smile vs neutral portrait."""
    from retarget.cli import main

    reads = {}
    for name in ("img_lp_s1.jpg", "img_lp_s2.jpg"):  # a smiling portrait, a neutral one
        csv = tmp_path / f"{name}.csv"
        assert main(["analyze", str(media_file(name)), "--csv", str(csv), "-q"]) == 0
        reads[name] = read_au_csv(csv).aus[0]
    k12 = AU_NAMES.index("AU12")
    assert reads["img_lp_s1.jpg"][k12] > 1.0 and reads["img_lp_s2.jpg"].max() < 1.0
