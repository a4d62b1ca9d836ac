"""The one place defaults live. Presets (``configs/*.yaml``) override them; flags override presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RetargetError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AUDIO_CHOICES = ("auto", "target", "drive", "none")


@dataclass
class RetargetConfig:
    generator: str = "warp"  # face generator (see retarget.generators)
    intensity: float = 1.0  # gain on the driver's expression change; 0 keeps the target's neutral
    drive_neutral: float | None = None  # seconds: the driver's neutral frame; None picks the calmest frame
    target_neutral: float | None = None  # seconds: the target's neutral frame; None picks the calmest frame
    drive_face: str = "largest"  # which face the driver follows: largest, left, right or X,Y (pixels)
    target_face: str = "largest"  # which face of the target takes the expressions (the same choices)
    audio: str = "auto"  # auto: the target video's audio, or the driver's for a still target
    loop: bool = False  # a driver shorter than the target loops instead of resting on its neutral
    pose: bool = True  # a still target follows the driver's head motion (rotation, translation, scale)
    head_reach: float = 0.15  # a still's head moves about this far at most, in face sizes (soft limit; 0: none)
    head_turn: float = 20.0  # and turns out of the image plane about this many degrees at most (ditto)
    max_size: int = 1280  # longer side cap for still targets, pixels
    smooth_expression: float = 0.2  # seconds: Savitzky-Golay window on expression trajectories (0 = off)
    smooth_pose: float = 0.33  # seconds: window on head pose and target landmarks
    gap_blend: float = 0.2  # seconds: blend in and out of frames where the target's face is lost
    drive_release: float = 0.3  # seconds: time constant of the ease back to neutral when the driver's face is lost
    eye_borrow: float = 1.0  # seconds: a video target's eye shut for at most this long between frames with both
    #                          eyes open (or the clip's start or end), which the driver opens, takes the open eye of
    #                          the earlier one (at the start, the later one); 0: off, the eye keeps its own lids
    # x264: superfast at crf 21 is as close to a lossless render as veryfast at crf 18; with the 192-cell warp
    # grid it takes 16% less CPU in the 720p job, for files about a quarter larger (README, speed)
    crf: int = 21  # H.264 quality (lower = better, bigger)
    x264_preset: str = "superfast"  # x264 speed preset
    warp: dict[str, Any] = field(default_factory=dict)  # overrides of generators.warp.WarpSettings
    checkpoint: str | None = None  # generator "neural": a directory written by retarget train
    device: str | None = None  # generator "neural": "cuda", "cpu", ...; default: CUDA when there is one
    gains: dict[str, float] = field(default_factory=dict)  # per-AU ("AU12") or per-region ("brows") gains
    only: list[str] = field(default_factory=list)  # regions to drive (empty: all); the others keep the target's
    exclude: list[str] = field(default_factory=list)  # regions that keep the target's own expression
    fps: float | None = None  # frame rate of made-up timing (AU curves or an edit on a still); None: inferred

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(RetargetConfig)}


def preset_path(name: str | Path) -> Path:
    """A preset by name (``configs/NAME.yaml``) or by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise RetargetError(f"preset file not found: {p}")
        return p
    candidate = CONFIG_DIR / f"{name}.yaml"
    if not candidate.is_file():
        known = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))) or "none"
        raise RetargetError(f"unknown preset {name!r} (available: {known})")
    return candidate


def load_preset(name: str | Path) -> dict[str, Any]:
    import yaml

    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RetargetError(f"preset {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RetargetError(f"preset {path} must be a mapping of option: value")
    return data


def resolve(preset: str | Path | None = None, **overrides: Any) -> RetargetConfig:
    """Defaults, then the preset, then ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(load_preset(preset))
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - _field_names()
    if unknown:
        raise RetargetError(f"unknown option(s): {', '.join(sorted(unknown))}")
    config = RetargetConfig(**values)
    validate(config)
    return config


def validate(c: RetargetConfig) -> None:
    if c.audio not in AUDIO_CHOICES:
        raise RetargetError(f"audio must be one of {', '.join(AUDIO_CHOICES)}, not {c.audio!r}")
    if not 0 <= c.intensity <= 3:
        raise RetargetError(f"intensity must be between 0 and 3, not {c.intensity}")
    if not 0 <= c.crf <= 51:
        raise RetargetError(f"crf must be between 0 and 51, not {c.crf}")
    if c.max_size < 16:
        raise RetargetError(f"max_size must be at least 16 pixels, not {c.max_size}")
    for name in ("smooth_expression", "smooth_pose", "gap_blend", "drive_release", "eye_borrow", "head_reach",
                 "head_turn"):
        if getattr(c, name) < 0:
            raise RetargetError(f"{name} must not be negative")
    _validate_gains(c)
    from .face import FaceChoice

    for name in ("drive_face", "target_face"):
        try:
            FaceChoice.parse(str(getattr(c, name)))
        except ValueError as exc:
            raise RetargetError(f"{name} {exc}") from None
    if c.fps is not None and not 1 <= c.fps <= 240:
        raise RetargetError(f"fps must be between 1 and 240, not {c.fps}")
    # checked here, before any tracking, rather than when the generator or the encoder is first made
    from .generators import GENERATORS
    from .video import X264_PRESETS

    if c.generator not in GENERATORS:
        raise RetargetError(f"unknown generator {c.generator!r} (available: {', '.join(GENERATORS)})")
    if c.x264_preset not in X264_PRESETS:
        raise RetargetError(f"unknown x264 preset {c.x264_preset!r}; use one of {', '.join(X264_PRESETS)}")
    from .generators.warp import WarpSettings

    bad = set(c.warp) - {f.name for f in dataclasses.fields(WarpSettings)}
    if bad:
        raise RetargetError(f"unknown warp setting(s): {', '.join(sorted(bad))}")
    _validate_neural(c)


def _validate_neural(c: RetargetConfig) -> None:
    """The learned generator's checkpoint is looked at before any tracking (only its files, not the weights)."""
    if c.generator != "neural":
        if c.checkpoint is not None:
            raise RetargetError("--checkpoint is for --generator neural")
        return
    if not c.checkpoint:
        raise RetargetError("--generator neural needs --checkpoint DIR (a directory written by retarget train)")
    from .neural.checkpoint import CONFIG_FILE, MODEL_FILE

    folder = Path(c.checkpoint)
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise RetargetError(f"{folder}: not a checkpoint directory (no {missing[0]})")


def generator_settings(c: RetargetConfig) -> dict[str, Any]:
    """The keyword settings ``generators.make_generator`` gets for ``c.generator``."""
    if c.generator == "neural":
        return {"checkpoint": c.checkpoint, "device": c.device}
    return dict(c.warp)


REGIONS = ("brows", "eyes", "mouth")


def _validate_gains(c: RetargetConfig) -> None:
    from .types import AU_NAMES

    for name, value in c.gains.items():
        if name not in AU_NAMES and name not in REGIONS:
            raise RetargetError(f"unknown gain {name!r}: use an AU ({AU_NAMES[0]}..{AU_NAMES[-1]}) or a region "
                                f"({', '.join(REGIONS)})")
        if not isinstance(value, (int, float)) or not 0 <= value <= 3:
            raise RetargetError(f"gain {name}={value} must be a number between 0 and 3")
    for flag, names in (("only", c.only), ("exclude", c.exclude)):
        bad = [n for n in names if n not in REGIONS]
        if bad:
            raise RetargetError(f"unknown region(s) in {flag}: {', '.join(bad)} (regions: {', '.join(REGIONS)})")
