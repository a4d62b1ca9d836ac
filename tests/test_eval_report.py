"""The Markdown report of ``retarget eval`` (no media needed)."""

from __future__ import annotations

from retarget.eval_report import markdown
from retarget.evaluate import EvalItem
from retarget.types import AU_NAMES


def self_item(generator: str, l1: float) -> EvalItem:
    metrics = {"l1": l1, "psnr": 25.0, "ssim": 0.8, "akd": 3.0, "au_mae": 0.2, "frames": 10.0}
    baseline = {"l1": 0.05, "psnr": 27.0, "ssim": 0.85, "akd": 5.0, "au_mae": 1.0}
    return EvalItem("self", "clip.mp4", "clip.mp4", generator=generator, metrics=metrics, baseline=baseline)


def test_one_generator_needs_no_label_and_states_the_baseline_difference() -> None:
    table = markdown([self_item("warp", 0.03)])
    assert "| clip.mp4 | 10 | 0.030 | 0.050 |" in table
    assert "[warp]" not in table
    assert "l1 -0.020" in table and "akd -2.000" in table and "PSNR -2.00 dB" in table


def test_several_generators_are_labelled_in_one_table() -> None:
    per_au = {name: {"mae": 0.1, "corr": 0.9, "reference_std": 1.0} for name in AU_NAMES}
    cross = EvalItem("cross", "d.mp4", "t.jpg", generator="neural", per_au=per_au,
                     metrics={"au_corr": 0.9, "au_mae": 0.1, "shape_distance": 0.01, "background_psnr": 40.0,
                              "jitter_output": 0.002, "jitter_drive": 0.002})
    failed = EvalItem("cross", "d.mp4", "t.jpg", generator="warp", error="RetargetError: no face")
    table = markdown([self_item("warp", 0.03), self_item("neural", 0.02), cross, failed])
    assert "| clip.mp4 [warp] |" in table and "| clip.mp4 [neural] |" in table
    assert "| d.mp4 [neural] | t.jpg | 0.90 |" in table
    assert "| d.mp4 [warp] | t.jpg | failed: RetargetError: no face |" in table
    assert "1 of 4 items failed" in table
