"""retarget.config and the command line (``python -m retarget``), on small synthetic inputs in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from test_video import make_clip

import retarget
from retarget import cli
from retarget.config import CONFIG_DIR, RetargetConfig, load_preset, resolve
from retarget.errors import RetargetError

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["-o", "--output", "--preset", "--intensity", "--drive-neutral", "--target-neutral", "--audio", "--loop",
         "--no-pose", "--max-size", "--crf", "--x264-preset", "--preview", "-q", "--quiet", "--debug", "-h", "--help"]


# ------------------------------------------------------------------------------------------------- config


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_override_order_defaults_preset_flags(tmp_path: Path) -> None:
    preset = write_yaml(tmp_path / "mine.yaml", "intensity: 0.5\ncrf: 30\nloop: true\nwarp:\n  grid: 64\n")
    defaults = RetargetConfig()
    from_preset = resolve(preset)
    assert (from_preset.intensity, from_preset.crf, from_preset.loop) == (0.5, 30, True)
    assert from_preset.warp == {"grid": 64}
    assert from_preset.smooth_pose == defaults.smooth_pose  # not in the preset: the default
    flagged = resolve(preset, intensity=0.8, crf=None, loop=None, audio="none")
    assert flagged.intensity == 0.8  # the flag wins over the preset
    assert flagged.crf == 30 and flagged.loop is True  # an absent flag (None) leaves the preset's value
    assert flagged.audio == "none"
    assert resolve().to_dict() == defaults.to_dict()
    assert resolve(intensity=1.2).intensity == 1.2


def test_every_shipped_preset_loads() -> None:
    presets = sorted(CONFIG_DIR.glob("*.yaml"))
    assert {p.stem for p in presets} >= {"default", "fast", "subtle", "expressive"}
    for path in presets:
        data = load_preset(path.stem)
        config = resolve(path.stem)
        for key, value in data.items():
            assert getattr(config, key) == value, (path.name, key)
        assert resolve(path) == config  # by path as well as by name


def test_default_preset_spells_out_the_defaults() -> None:
    data = load_preset("default")
    defaults = RetargetConfig().to_dict()
    assert data and all(defaults[k] == v for k, v in data.items())


@pytest.mark.parametrize("overrides, message", [
    ({"intensty": 1.0}, "unknown option"),
    ({"audio": "stereo"}, "audio must be one of"),
    ({"intensity": 3.5}, "intensity must be between"),
    ({"intensity": -0.1}, "intensity must be between"),
    ({"crf": 52}, "crf must be between"),
    ({"max_size": 8}, "max_size"),
    ({"smooth_pose": -1}, "smooth_pose must not be negative"),
    ({"gap_blend": -0.1}, "gap_blend"),
    ({"warp": {"grids": 3}}, "unknown warp setting"),
    ({"x264_preset": "warp9"}, "x264 preset"),
    ({"generator": "gan"}, "generator"),
])
def test_invalid_options_raise_retarget_error(overrides: dict, message: str) -> None:
    with pytest.raises(RetargetError, match=message):
        resolve(**overrides)


def test_bad_presets(tmp_path: Path) -> None:
    with pytest.raises(RetargetError, match=r"unknown preset 'nope' \(available: .*default"):
        resolve("nope")
    with pytest.raises(RetargetError, match="not found"):
        resolve(tmp_path / "missing.yaml")
    with pytest.raises(RetargetError, match="not valid YAML"):
        resolve(write_yaml(tmp_path / "broken.yaml", "intensity: [1,\n"))
    with pytest.raises(RetargetError, match="mapping"):
        resolve(write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(RetargetError, match="unknown option.*colour"):
        resolve(write_yaml(tmp_path / "typo.yaml", "colour: red\n"))
    assert resolve(write_yaml(tmp_path / "empty.yaml", "")) == RetargetConfig()


def test_api_rejects_unknown_option_before_touching_files(tmp_path: Path) -> None:
    with pytest.raises(RetargetError, match="unknown option"):
        retarget.retarget(tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "out.mp4", wobble=3)
    assert list(tmp_path.iterdir()) == []


def test_cli_flags_map_to_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake(drive, target, output, **kwargs):
        seen.update(kwargs, drive=drive, target=target, output=output)
        return retarget.RetargetResult(Path(output), 3, 0, 0, 0.0, 0.0, {}, None)

    monkeypatch.setattr(retarget, "retarget", fake)
    preset = write_yaml(tmp_path / "p.yaml", "intensity: 0.5\nloop: true\npose: false\n")
    assert cli.main(["d.mp4", "t.png", "-o", "o.mp4", "-q", "--preset", str(preset), "--intensity", "0.8",
                     "--audio", "none", "--max-size", "720", "--crf", "23", "--x264-preset", "fast"]) == 0
    assert seen["drive"] == Path("d.mp4") and seen["output"] == Path("o.mp4") and seen["progress"] is False
    assert seen["loop"] is None and seen["pose"] is None  # not given: the preset decides
    config = resolve(seen.pop("preset"), **{k: v for k, v in seen.items() if k in RetargetConfig.__annotations__})
    assert (config.intensity, config.loop, config.pose) == (0.8, True, False)
    assert (config.audio, config.max_size, config.crf, config.x264_preset) == ("none", 720, 23, "fast")
    seen.clear()
    assert cli.main(["d.mp4", "t.png", "-o", "o.mp4", "--loop", "--no-pose", "--drive-neutral", "1.5"]) == 0
    assert seen["loop"] is True and seen["pose"] is False and seen["drive_neutral"] == 1.5


# -------------------------------------------------------------------------------------------- CLI process


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "retarget", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=120)


def run_main(capsys: pytest.CaptureFixture, *args: str | Path) -> subprocess.CompletedProcess:
    """``cli.main`` in this process (what ``python -m retarget`` runs, without a new interpreter's start-up)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["retarget", *map(str, args)], code, captured.out, captured.err)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """stderr lines that are the tool's own (mediapipe's native logging is not ours to judge)."""
    return [line for line in result.stderr.splitlines() if line.startswith("retarget")]


def assert_clean_failure(result: subprocess.CompletedProcess, needle: str, strict_stderr: bool = True) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    ours = error_lines(result)
    assert len(ours) == 1 and ours[0].startswith("retarget: error:"), result.stderr
    assert needle in ours[0].lower(), ours[0]
    if strict_stderr:
        assert result.stderr.strip() == ours[0]  # one line and nothing else
    assert result.stdout == ""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> dict[str, Path]:
    """Synthetic inputs: a 6-frame 25 fps clip of the (still) astronaut with audio, a 4-frame 30 fps one without,
    the astronaut as a PNG, a flat grey PNG, and a text file named .mp4."""
    root = tmp_path_factory.mktemp("cli")
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS))
    clip = make_clip(root / "drive.mp4", 256, 256, n_frames=6, fps=25, audio_seconds=0.24, images=[small] * 6)
    # a 4-frame 30 fps video of the same face, no audio
    target = make_clip(root / "target.mp4", 256, 256, n_frames=4, fps=30, images=[small] * 4)
    portrait = root / "portrait.png"
    Image.fromarray(small).save(portrait)
    grey = root / "grey.png"
    Image.new("RGB", (256, 256), (128, 128, 128)).save(grey)
    text = root / "notes.mp4"
    text.write_text("not a video\n" * 50)
    return {"clip": clip, "target": target, "portrait": portrait, "grey": grey, "text": text}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_help_mentions_every_flag() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    declared = {s for action in cli.build_parser()._actions for s in action.option_strings}
    assert set(FLAGS) <= declared  # none of the documented flags went missing
    for flag in declared:
        assert flag in result.stdout, flag
    assert "retarget.json" in result.stdout  # the report is documented


def test_help_and_the_default_preset_state_the_real_defaults() -> None:
    """``--help`` and ``configs/default.yaml`` repeat defaults that live in ``RetargetConfig``: they must not
    drift from it (the encoder's defaults changed once)."""
    import yaml

    defaults = RetargetConfig()
    helps = {s: a.help for a in cli.build_parser()._actions for s in a.option_strings}
    assert f"(default {defaults.crf})" in helps["--crf"]
    assert f"(default {defaults.x264_preset})" in helps["--x264-preset"]
    assert f"(default {defaults.max_size})" in helps["--max-size"]
    spelled = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())
    assert spelled == {k: v for k, v in defaults.to_dict().items() if k in spelled}
    assert resolve("default").to_dict() == defaults.to_dict()


def test_no_arguments_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage: retarget" in result.stderr and "Traceback" not in result.stderr


def test_bad_flag_value_is_a_usage_error(inputs: dict[str, Path], tmp_path: Path, capsys) -> None:
    result = run_main(capsys, inputs["clip"], inputs["portrait"], "-o", tmp_path / "o.mp4", "--audio", "loud")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_missing_input(tmp_path: Path, inputs: dict[str, Path]) -> None:
    out = tmp_path / "out.mp4"
    result = run_cli(tmp_path / "nope.mp4", inputs["portrait"], "-o", out)
    assert_clean_failure(result, "not found")
    assert not out.exists() and leftovers(tmp_path) == []


def test_text_file_named_mp4(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli(inputs["text"], inputs["portrait"], "-o", out), "not an image or video")
    assert_clean_failure(run_main(capsys, inputs["clip"], inputs["text"], "-o", out), "not an image or video")
    assert not out.exists()


def test_still_image_as_driver(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_main(capsys, inputs["portrait"], inputs["clip"], "-o", out), "still image")
    assert not out.exists()


def test_output_must_not_overwrite_an_input(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    before = inputs["clip"].read_bytes()
    stat = inputs["clip"].stat()
    assert_clean_failure(run_main(capsys, inputs["clip"], inputs["portrait"], "-o", inputs["clip"]), "overwrite")
    alias = tmp_path / "alias.mp4"  # the same file under another name
    os.link(inputs["clip"], alias)
    assert_clean_failure(run_main(capsys, inputs["clip"], alias, "-o", inputs["clip"]), "overwrite")
    assert_clean_failure(run_main(capsys, alias, inputs["portrait"], "-o", inputs["clip"]), "overwrite")
    assert inputs["clip"].read_bytes() == before and inputs["clip"].stat().st_mtime_ns == stat.st_mtime_ns


def test_output_must_be_mp4(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    result = run_main(capsys, inputs["clip"], inputs["portrait"], "-o", tmp_path / "out.avi")
    assert_clean_failure(result, "must end in")


def test_bad_option_value(tmp_path: Path, inputs: dict[str, Path], capsys) -> None:
    out = tmp_path / "o.mp4"
    assert_clean_failure(run_main(capsys, inputs["clip"], inputs["portrait"], "-o", out, "--intensity", "7"),
                         "intensity")
    assert_clean_failure(run_main(capsys, inputs["clip"], inputs["portrait"], "-o", out, "--preset", "nope"),
                         "unknown preset")
    assert_clean_failure(run_main(capsys, inputs["clip"], inputs["portrait"], "-o", out, "--x264-preset", "quick"),
                         "x264 preset")
    assert list(tmp_path.iterdir()) == []


def test_target_without_a_face_leaves_existing_output_alone(tmp_path: Path, inputs: dict[str, Path]) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    result = run_cli(inputs["clip"], inputs["grey"], "-o", out, "-q")
    # mediapipe's own native log lines may precede ours; the tool's message is still one line
    assert_clean_failure(result, "no face", strict_stderr=False)
    assert "grey.png" in error_lines(result)[0]
    assert out.read_bytes() == b"previous result"
    assert not (tmp_path / "out.retarget.json").exists()
    assert leftovers(tmp_path) == []


def test_cli_success_on_synthetic_inputs(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """The whole job on the astronaut: a 6-frame driver on a still portrait (no shared media needed)."""
    out = tmp_path / "result.mp4"
    result = run_cli(inputs["clip"], inputs["portrait"], "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"wrote {out}" in result.stderr
    # mediapipe's native set-up chatter (glog/absl lines, TFLite delegate notes) stays off the terminal
    assert "W0000" not in result.stderr and "XNNPACK" not in result.stderr and "absl::" not in result.stderr
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        assert (video.width, video.height) == (256, 256)
        assert video.average_rate == 25
        assert len(container.streams.audio) == 1  # a still target takes the driver's audio
    assert len(frames) == 6
    report = json.loads((tmp_path / "result.retarget.json").read_text())
    assert len(report["frames"]) == 6 and report["config"]["intensity"] == 1.0
    assert leftovers(tmp_path) == []
    # the driver is the astronaut's own face at rest: the portrait barely changes
    portrait = np.asarray(Image.open(inputs["portrait"]).convert("RGB")).astype(float)
    assert np.abs(frames[0].astype(float) - portrait).mean() < 4.0


def test_api_video_target_with_preview(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """A driver longer than the video target is cut at the target's end; the preview shows three panels."""
    out, preview = tmp_path / "out.mp4", tmp_path / "side.mp4"
    result = retarget.retarget(inputs["clip"], inputs["target"], out, preview=preview)
    assert result.frames_written == 4 and result.output == out
    assert result.target_frames_without_face == 0 and result.drive_frames_without_face == 0
    assert set(result.timings) >= {"track", "analyse", "plan", "generate", "encode"}
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(video)]
        assert float(video.average_rate) == pytest.approx(30, rel=1e-3)  # ms timestamps: 30.005 fps
        assert not container.streams.audio  # the target's (absent) audio
    np.testing.assert_allclose(times, np.arange(4) / 30, atol=1e-3)
    with av.open(str(preview)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (3 * 256, 256)
        assert sum(1 for _ in container.decode(video)) == 4
    assert leftovers(tmp_path) == []


def test_an_output_in_a_new_folder_is_written_there(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """The plan's temporary files go beside the output before the writer opens it: the folder is made first,
    as the writer makes it."""
    out = tmp_path / "new" / "deeper" / "out.mp4"
    result = retarget.retarget(inputs["clip"], inputs["target"], out)
    assert result.frames_written == 4 and out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4", "out.retarget.json"]  # nothing else left


def test_temporary_files_that_cannot_be_written_are_one_clear_error(tmp_path: Path, inputs: dict[str, Path],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    out = tmp_path / "out.mp4"
    with pytest.raises(RetargetError, match=f"cannot write temporary files in {tmp_path}: No space left on device"):
        retarget.retarget(inputs["clip"], inputs["target"], out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_no_whole_clip_landmarks_stay_in_memory_while_rendering(tmp_path: Path, inputs: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracked landmarks of both clips (smoothed in place by the analysis) are on disk or gone by the time
    the render starts: nothing of the job still holds them in memory."""
    import gc
    import weakref

    from retarget import pipeline

    tracked, alive = [], []
    track_inputs, render = pipeline.track_inputs, pipeline.render

    def tracking(*args, **kwargs):
        tracks = track_inputs(*args, **kwargs)
        tracked.extend(weakref.ref(t.landmarks) for t in tracks)
        return tracks

    def rendering(*args, **kwargs):
        gc.collect()
        alive.extend(ref() is not None for ref in tracked)
        return render(*args, **kwargs)

    monkeypatch.setattr(pipeline, "track_inputs", tracking)
    monkeypatch.setattr(pipeline, "render", rendering)
    retarget.retarget(inputs["clip"], inputs["target"], tmp_path / "out.mp4")
    assert alive == [False, False]  # the driver's and the target's
