"""``retarget eval`` on short shared clips produces every output (skipped where ../shared/media is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import media_file
from PIL import Image

pytestmark = pytest.mark.media


def test_eval_writes_every_report(tmp_path: Path) -> None:
    clip, drive, target = media_file("drv_lp_d0.mp4"), media_file("drv_lp_d0.mp4"), media_file("img_lp_s42.jpg")
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "eval"
    result = subprocess.run([sys.executable, "-m", "retarget", "eval", "--self", str(clip), "--cross", str(drive),
                             str(target), "--cross", str(missing), str(target), "--out", str(out), "--preset", "fast",
                             "-q"], capture_output=True, text=True, timeout=600)
    # a missing input is refused up front with one line
    assert result.returncode == 1 and "not found" in result.stderr and "Traceback" not in result.stderr
    video_target = media_file("vid_vx_RD_Radio10_0_clip_0.mp4")
    faceless = tmp_path / "grey.png"
    Image.new("RGB", (128, 128), (128, 128, 128)).save(faceless)
    # a still larger than the output (max_size) and a video target exercise the background comparison
    preset = tmp_path / "small.yaml"
    preset.write_text("x264_preset: ultrafast\nmax_size: 320\n")
    result = subprocess.run([sys.executable, "-m", "retarget", "eval", "--self", str(clip), "--cross", str(drive),
                             str(target), "--cross", str(drive), str(video_target), "--cross", str(drive),
                             str(faceless), "--out", str(out), "--preset", str(preset), "-q"],
                            capture_output=True, text=True, timeout=600)
    # the faceless pair fails, is reported, and the others still run: exit 1 with every report written
    assert result.returncode == 1 and "evaluated 3 of 4 items" in result.stderr, result.stderr
    for name in ("report.json", "report.md", "contact.png", "aus_drv_lp_d0__img_lp_s42.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    failed = [i for i in report["items"] if i["error"]]
    assert len(failed) == 1 and "no face" in failed[0]["error"] and failed[0]["target"].endswith("grey.png")
    selfs = [i for i in report["items"] if i["kind"] == "self"]
    crosses = [i for i in report["items"] if i["kind"] == "cross" and not i["error"]]
    assert len(selfs) == 1 and len(crosses) == 2 and selfs[0]["error"] is None
    own, base = selfs[0]["metrics"], selfs[0]["baseline"]
    assert own["frames"] >= 70
    # the method moves the face like the clip does: closer landmarks and AUs than the still repeated
    assert own["akd"] < base["akd"] and own["au_mae"] < base["au_mae"]
    cross = crosses[0]["metrics"]
    assert cross["au_corr"] > 0.6
    for item in crosses:  # the background stays the target's, for the downscaled still and for the video
        assert item["metrics"]["background_psnr"] > 30, item["target"]
    for au in ("AU12", "AU25"):  # d0's broad smile comes through
        assert crosses[0]["per_au"][au]["corr"] > 0.8
    table = (out / "report.md").read_text()
    assert "Self-reenactment" in table and "Cross-reenactment" in table and "drv_lp_d0.mp4" in table
    assert "failed" in table
