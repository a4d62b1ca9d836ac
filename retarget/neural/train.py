"""Training the learned generator: same-clip reconstruction, cross-clip swaps, and the adversarial games.

One step (``train_step``):
1. encode: the AU-related feature of frames j (same clip) and o (another clip), the AU-free features of frame i;
2. generate: frame i with frame j's expression (ground truth: frame j), frame i with frame o's (a swap, no ground
   truth), and the swap swapped back (ground truth: frame i);
3. discriminator step on real frames against the reconstructions and swaps;
4. AU-classifier step: read frame i's AUs from its AU-free feature;
5. generator step: reconstruction, feature matching, adversarial, AU regression (real frames and outputs),
   confusion of the AU classifier, swap consistency (cycle and features).
"""

from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from . import checkpoint, losses
from .au_classifier import classifier_loss, confusion_loss
from .config import LossWeights, TrainConfig
from .discriminator import MultiScaleDiscriminator
from .model import RetargetNet, build


class Sampler(Protocol):
    size: int

    def sample(self, batch: int):  # -> data.PairSample
        ...


@dataclass
class Batch:
    """A training batch on the device; images (B, 3, S, S) float in [-1, 1], AUs (B, 17)."""

    source: torch.Tensor
    target: torch.Tensor
    other: torch.Tensor
    source_aus: torch.Tensor
    target_aus: torch.Tensor
    other_aus: torch.Tensor


@dataclass
class Trainer:
    """The networks, their optimizers and where they run."""

    net: RetargetNet
    disc: MultiScaleDiscriminator
    optimizers: dict[str, torch.optim.Optimizer]
    weights: LossWeights
    device: torch.device
    mixed_precision: bool = False


@dataclass
class TrainResult:
    out_dir: Path
    first_step: int  # the step training started (or resumed) from
    last_step: int
    seconds: float
    losses: list[dict[str, float]] = field(default_factory=list)  # one row per logged step
    samples: list[Path] = field(default_factory=list)  # PNG grids written


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 in [-1, 1] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_batch(sample, device: torch.device) -> Batch:
    aus = [torch.from_numpy(np.asarray(a, np.float32)).to(device)
           for a in (sample.source_aus, sample.target_aus, sample.other_aus)]
    return Batch(to_tensor(sample.source, device), to_tensor(sample.target, device), to_tensor(sample.other, device),
                 *aus)


def make_trainer(net: RetargetNet, disc: MultiScaleDiscriminator, config: TrainConfig,
                 device: torch.device) -> Trainer:
    betas = (config.beta1, config.beta2)
    generator_params = [p for n, p in net.named_parameters() if not n.startswith("classifier.")]
    optimizers = {
        "generator": torch.optim.Adam(generator_params, lr=config.lr_generator, betas=betas),
        "classifier": torch.optim.Adam(net.classifier.parameters(), lr=config.lr_classifier, betas=betas),
        "discriminator": torch.optim.Adam(disc.parameters(), lr=config.lr_discriminator, betas=betas),
    }
    return Trainer(net, disc, optimizers, config.losses, device,
                   config.mixed_precision and device.type == "cuda")


def autocast(trainer: Trainer):
    if trainer.mixed_precision:
        return torch.autocast(trainer.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Gradients flow through ``module`` to its inputs but not into its parameters."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def train_step(trainer: Trainer, batch: Batch) -> dict[str, float]:
    """One step of all three players; returns every loss term as a float."""
    net = trainer.net
    with autocast(trainer):
        # 1. encode
        feat_t, aus_t = net.expression(batch.target)
        feat_o, aus_o = net.expression(batch.other)
        feat_s, aus_s = net.expression(batch.source)
        app_s = net.appearance(batch.source)
        # 2. generate
        recon = net.generator(batch.source, app_s, feat_t, batch.target_aus - batch.source_aus)
        swap = net.generator(batch.source, app_s, feat_o, batch.other_aus - batch.source_aus)
        app_swap = net.appearance(swap.image)
        back = net.generator(swap.image, app_swap, feat_s, batch.source_aus - batch.other_aus)
    logged = {"discriminator": _discriminator_step(trainer, batch, recon.image, swap.image),
              "classifier": _classifier_step(trainer, app_s[-1], batch.source_aus)}
    with autocast(trainer):
        terms = _generator_terms(trainer, batch, (feat_o, app_s), (aus_s, aus_t, aus_o), recon, swap, back,
                                 app_swap)
    total = sum(getattr(trainer.weights, name) * value for name, value in terms.items())
    _step(trainer.optimizers["generator"], total)
    logged.update({name: float(value.detach()) for name, value in terms.items()})
    logged["generator_total"] = float(total.detach())
    return logged


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _discriminator_step(trainer: Trainer, batch: Batch, recon: torch.Tensor, swap: torch.Tensor) -> float:
    with autocast(trainer):
        real = trainer.disc(torch.cat([batch.target, batch.other]))
        fakes = [trainer.disc(recon.detach()), trainer.disc(swap.detach())]
        loss = losses.discriminator_hinge(real, fakes)
    _step(trainer.optimizers["discriminator"], loss)
    return float(loss.detach())


def _classifier_step(trainer: Trainer, au_free: torch.Tensor, aus: torch.Tensor) -> float:
    with autocast(trainer):
        loss = classifier_loss(trainer.net.classifier(au_free.detach()), aus)
    _step(trainer.optimizers["classifier"], loss)
    return float(loss.detach())


def _generator_terms(trainer: Trainer, batch: Batch, features, predicted_aus, recon, swap, back,
                     app_swap) -> dict[str, torch.Tensor]:
    net, disc = trainer.net, trainer.disc
    (feat_o, app_s), (aus_s, aus_t, aus_o) = features, predicted_aus
    with frozen(disc):
        real, fake_recon, fake_swap = disc(batch.target), disc(recon.image), disc(swap.image)
    with frozen(net.expression):
        feat_swap, aus_swap = net.expression(swap.image)
        _, aus_recon = net.expression(recon.image)
    with frozen(net.classifier):
        confusion = confusion_loss(net.classifier(app_s[-1]))
    labels = (batch.source_aus, batch.target_aus, batch.other_aus)
    return {
        "reconstruction": losses.reconstruction(recon.image, batch.target),
        "feature_matching": losses.feature_matching(real, fake_recon),
        "adversarial": 0.5 * (losses.generator_hinge(fake_recon) + losses.generator_hinge(fake_swap)),
        "au_regression": (sum(losses.au_regression(p, y) for p, y in zip((aus_s, aus_t, aus_o), labels)) / 3
                          + losses.au_regression(aus_recon, batch.target_aus)
                          + losses.au_regression(aus_swap, batch.other_aus)),
        "disentangle": confusion,
        "swap_cycle": losses.reconstruction(back.image, batch.source),
        "swap_features": (losses.reconstruction(app_swap[-1], app_s[-1].detach())
                          + losses.reconstruction(feat_swap, feat_o.detach())),
    }


def pick_device(name: str | None = None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``) or the first CUDA device when there is one."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def start(out_dir: Path, config: TrainConfig, init: Path | None,
          device: torch.device) -> tuple[Trainer, TrainConfig, int]:
    """Resume from ``out_dir`` when it holds a checkpoint, else start from ``init``'s weights or from scratch.

    On resume the architecture and settings come from the checkpoint, except ``steps`` (the new total).
    """
    torch.manual_seed(config.seed)
    if checkpoint.has_checkpoint(out_dir):
        net, disc, saved, step = checkpoint.load(out_dir, device)
        config = replace(saved, steps=config.steps)
        trainer = make_trainer(net, disc, config, device)
        checkpoint.load_training_state(out_dir, trainer.optimizers, step)
        return trainer, config, step
    if init is not None:
        net, disc, saved, _ = checkpoint.load(init, device)
        config = replace(config, model=saved.model)  # the architecture is the initial weights'
    else:
        net, disc = build(config.model)
    net, disc = net.to(device), disc.to(device)
    return make_trainer(net, disc, config, device), config, 0


def run(sampler: Sampler, out_dir: Path, config: TrainConfig, init: Path | None = None,
        device: torch.device | None = None, progress: bool = True) -> TrainResult:
    """Train until ``config.steps`` (the total, counting earlier runs in ``out_dir``); checkpoints, a loss log
    (``log.csv``) and sample grids (``samples/step-N.png``) go to ``out_dir``."""
    out_dir = Path(out_dir)
    device = device or pick_device()
    trainer, config, first = start(out_dir, config, init, device)
    if sampler.size != config.model.size:
        from ..errors import RetargetError

        raise RetargetError(f"the data's crops are {sampler.size} px but the model's are {config.model.size} px")
    trim_log(out_dir / "log.csv", first)
    result = TrainResult(out_dir, first, first, 0.0)
    began = time.perf_counter()
    bar = _bar(progress, first, config.steps)
    done = first  # the last whole step
    try:
        for step in range(first + 1, config.steps + 1):
            batch = to_batch(sampler.sample(config.batch), device)
            row = {"step": step, **train_step(trainer, batch)}
            _after_step(trainer, config, out_dir, step, row, batch, result)
            done = step
            bar.update(1)
            bar.set_postfix(loss=f"{row['reconstruction']:.3f}")
    except KeyboardInterrupt:
        if done > first:  # Ctrl-C keeps the work done: the next run resumes from here
            checkpoint.save(out_dir, trainer.net, trainer.disc, config, done, trainer.optimizers)
        raise
    finally:
        bar.close()
    if done > first and done % config.checkpoint_every:
        checkpoint.save(out_dir, trainer.net, trainer.disc, config, done, trainer.optimizers)
    result.last_step, result.seconds = done, time.perf_counter() - began
    return result


def _after_step(trainer: Trainer, config: TrainConfig, out_dir: Path, step: int, row: dict, batch: Batch,
                result: TrainResult) -> None:
    if step % config.log_every == 0 or step == config.steps:
        append_log(out_dir / "log.csv", row)
        result.losses.append(row)
    if step % config.sample_every == 0 or step == config.steps:
        result.samples.append(write_samples(trainer, batch, out_dir / "samples" / f"step-{step:07d}.png"))
    if step % config.checkpoint_every == 0:
        checkpoint.save(out_dir, trainer.net, trainer.disc, config, step, trainer.optimizers)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, first: int, total: int):
    if not enabled:
        return _NoBar()
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=first, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)


LOG_COLUMNS = ("step", "discriminator", "classifier", "reconstruction", "feature_matching", "adversarial",
               "au_regression", "disentangle", "swap_cycle", "swap_features", "generator_total")


def append_log(path: Path, row: dict[str, float]) -> None:
    """Append one row to the CSV loss log (header written when the file is new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (row[k] if k == "step" else f"{row[k]:.6g}") for k in LOG_COLUMNS})


def trim_log(path: Path, step: int) -> None:
    """Drop the log rows after ``step``: a resumed run redoes those steps (they were not in the checkpoint)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    if len(kept) < len(lines):
        path.write_text("".join(kept))


def read_log(path: Path) -> dict[str, np.ndarray]:
    """The loss log as columns."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in LOG_COLUMNS}


@torch.no_grad()
def write_samples(trainer: Trainer, batch: Batch, path: Path, rows: int = 4) -> Path:
    """A PNG grid, one row per sample: source | target | reconstruction | other | swap | swapped back."""
    from PIL import Image

    net = trainer.net
    n = min(rows, batch.source.shape[0])
    s, t, o = batch.source[:n], batch.target[:n], batch.other[:n]
    with autocast(trainer):
        recon = net.swap(s, t, batch.target_aus[:n] - batch.source_aus[:n]).image
        swap = net.swap(s, o, batch.other_aus[:n] - batch.source_aus[:n]).image
        back = net.swap(swap, s, batch.source_aus[:n] - batch.other_aus[:n]).image
    tiles = torch.cat([torch.cat(list(col), dim=1) for col in (s, t, recon, o, swap, back)], dim=2)
    image = ((tiles.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def train_on_clips(clips: list[Path], out_dir: Path, config: TrainConfig, init: Path | None = None,
                   cache_dir: Path | None = None, device: torch.device | None = None,
                   progress: bool = True, store_crops: bool = True) -> TrainResult:
    """Track and crop every clip once (cached in ``cache_dir``, default ``out_dir/cache``), then ``run``.

    ``store_crops`` keeps every frame's crop in the cache as JPEG, so that sampling reads crops instead of
    seeking with decord (seeking is slow on clips with few keyframes; ``data.PairSampler``). With ``init`` and
    no checkpoint in ``out_dir`` the model starts from ``init``'s weights (per-target fine-tuning); the crop size
    is the model's.
    """
    from ..quiet import native_stderr_silenced
    from .data import PairSampler, list_clips, prepare_clip

    paths = list_clips([Path(c) for c in clips])
    size = _model_size(out_dir, config, init)
    cache_dir = Path(cache_dir) if cache_dir else Path(out_dir) / "cache"
    prepared = []
    with native_stderr_silenced() as stderr:  # mediapipe's native log lines would bury the progress bars
        for k, path in enumerate(paths):
            with _clip_bar(progress, path, k, len(paths), stderr) as bar:
                prepared.append(prepare_clip(path, cache_dir, size, on_progress=bar.update,
                                             store_crops=store_crops))
    sampler = PairSampler(prepared, seed=config.seed, num_threads=config.data_threads)
    return run(sampler, out_dir, config, init=init, device=device, progress=progress)


@contextlib.contextmanager
def _clip_bar(enabled: bool, path: Path, k: int, count: int, stream):
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    bar = tqdm(desc=f"preparing {path.name} ({k + 1}/{count})", unit="frame", file=stream, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _model_size(out_dir: Path, config: TrainConfig, init: Path | None) -> int:
    """The crop size of the model that will train: the resumed checkpoint's, ``init``'s, or the config's.

    Reads only config.json (the weights are loaded once, by ``start``); a bad ``init`` fails here, before any
    clip is tracked."""
    if checkpoint.has_checkpoint(out_dir):
        return checkpoint.read_config(out_dir).model.size
    if init is not None:
        return checkpoint.read_config(checkpoint.checkpoint_dir(init)).model.size
    return config.model.size
