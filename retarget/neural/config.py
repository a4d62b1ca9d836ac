"""Settings of the learned generator: the model's dimensions (they travel with the weights) and training.

Every field has its default here and nowhere else; ``--config FILE`` (YAML or JSON) overrides fields by name,
for example ``{"steps": 2000, "model": {"channels": 48}, "losses": {"swap_cycle": 2.0}}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import RetargetError


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of the networks; saved in ``config.json`` beside ``model.safetensors``."""

    size: int = 256  # aligned crop side in pixels (256 or 512; any multiple of 2**depth works)
    channels: int = 32  # width of the first level; doubles per level up to max_channels
    max_channels: int = 256
    depth: int = 5  # downsamplings: a 256 crop has an 8 x 8 AU-free feature
    expression_dim: int = 128  # length of the AU-related feature
    au_count: int = 17  # AU_NAMES
    au_bins: int = 6  # classes per AU for the disentanglement classifier (intensity rounded to 0..5)
    discriminator_channels: int = 32
    discriminator_layers: int = 3  # stride-2 layers per patch discriminator
    discriminator_scales: int = 2  # the crop and its half-size copy
    max_flow: float = 0.2  # largest displacement of the motion step, in units of the crop's half-width


@dataclass(frozen=True)
class LossWeights:
    """Weights of the training losses (``train.generator_losses`` names each term)."""

    reconstruction: float = 10.0  # L1 between the same-clip swap and the real frame j
    feature_matching: float = 10.0  # L1 between discriminator features of real frame j and the output
    adversarial: float = 1.0  # hinge loss, on reconstructions and cross-clip swaps
    au_regression: float = 1.0  # the expression encoder's AU head on real frames (labels) and on outputs
    disentangle: float = 0.5  # the appearance encoder's confusion of the AU classifier
    swap_cycle: float = 5.0  # swapping back returns the original (L1)
    swap_features: float = 1.0  # a swap keeps the source's AU-free and the driver's AU-related feature


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved in ``config.json`` with the model's."""

    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    steps: int = 20000
    batch: int = 8
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_classifier: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    sample_every: int = 500  # steps between PNG sample grids
    log_every: int = 10  # steps between rows of the loss log
    seed: int = 0
    mixed_precision: bool = True  # bf16 autocast on CUDA; ignored on CPU
    data_threads: int = 2  # decord decode threads per clip


def tiny_config(size: int = 64, steps: int = 40) -> TrainConfig:
    """A configuration small enough to train for a few dozen steps on a CPU (tests, smoke runs)."""
    depth = max(2, min(4, size.bit_length() - 4))
    model = ModelConfig(size=size, channels=8, max_channels=32, depth=depth, expression_dim=16,
                        discriminator_channels=8, discriminator_layers=2)
    return TrainConfig(model=model, steps=steps, batch=4, checkpoint_every=steps, sample_every=steps, log_every=5)


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)


def from_dict(data: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with the fields named in ``data``; unknown names are an error."""
    base = base or TrainConfig()
    top = _pick(TrainConfig, {k: v for k, v in data.items() if k not in ("model", "losses")}, "")
    model = replace(base.model, **_pick(ModelConfig, data.get("model", {}), "model."))
    losses = replace(base.losses, **_pick(LossWeights, data.get("losses", {}), "losses."))
    config = replace(base, model=model, losses=losses, **top)
    check(config)
    return config


def _pick(kind: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RetargetError(f"training config: {prefix.rstrip('.') or 'the file'} must be a mapping")
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RetargetError(f"training config: unknown setting {prefix}{unknown[0]} "
                            f"(known: {', '.join(prefix + k for k in known)})")
    out = {}
    for name, value in data.items():
        want = float if known[name].type in ("float", float) else int if known[name].type in ("int", int) else None
        if want is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RetargetError(f"training config: {prefix}{name} must be a number, not {value!r}")
        out[name] = want(value) if want is not None else value
    return out


def check(config: TrainConfig) -> None:
    m = config.model
    if m.depth < 1 or m.size % (2 ** m.depth) or m.size < 2 ** (m.depth + 1):
        raise RetargetError(f"training config: model.size {m.size} must be a multiple of 2**depth ({2 ** m.depth})")
    for name in ("steps", "batch", "checkpoint_every", "sample_every", "log_every"):
        if getattr(config, name) < 1:
            raise RetargetError(f"training config: {name} must be at least 1")


def load_config_file(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """Overrides from a YAML or JSON file on top of ``base``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise RetargetError(f"{path}: no such training config file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RetargetError(f"{path}: not a readable YAML/JSON training config ({type(exc).__name__})") from None
    return from_dict(data, base)


def dumps(config: TrainConfig) -> str:
    return json.dumps(to_dict(config), indent=2)
