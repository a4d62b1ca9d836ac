"""Checkpoints: safetensors for every tensor, JSON for everything else; nothing is ever unpickled.

A checkpoint directory holds
- ``model.safetensors``: the networks (``net.*``: encoders, generator, AU classifier; ``disc.*``: discriminator),
- ``config.json``: the architecture and training settings that travel with the weights,
- for resuming, ``optimizer.safetensors`` (the optimizers' tensors) and ``training.json`` (step, the optimizers'
  settings and scalar state).
The step is written into the metadata of both safetensors files, so a checkpoint torn by a crash between two
files is detected instead of silently mixing steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import RetargetError
from ..types import AU_NAMES
from .config import TrainConfig, from_dict, to_dict
from .discriminator import MultiScaleDiscriminator
from .model import RetargetNet, build

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "training.json"
FORMAT = "retarget-neural"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def has_checkpoint(directory: Path) -> bool:
    return (Path(directory) / MODEL_FILE).is_file() and (Path(directory) / CONFIG_FILE).is_file()


def save(directory: Path, net: RetargetNet, disc: MultiScaleDiscriminator, config: TrainConfig, step: int,
         optimizers: dict[str, torch.optim.Optimizer] | None = None) -> None:
    """Write a checkpoint into ``directory``; each file goes to a temporary name first, then is renamed."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "step": str(step)}
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
    if optimizers:
        opt_tensors, opt_state = _flatten_optimizers(optimizers)
        _atomic(directory / OPTIMIZER_FILE, lambda p: save_file(opt_tensors, p, metadata=meta))
        _atomic(directory / STATE_FILE, lambda p: Path(p).write_text(json.dumps({"step": step, **opt_state})))
    _atomic(directory / CONFIG_FILE, lambda p: Path(p).write_text(json.dumps(
        {"format": FORMAT, "version": 1, "au_names": list(AU_NAMES), "config": to_dict(config)}, indent=2)))
    _atomic(directory / MODEL_FILE, lambda p: save_file({k: v.contiguous() for k, v in tensors.items()}, p,
                                                          metadata=meta))


def _atomic(path: Path, write) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(temp))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load(directory: Path, device: str | torch.device = "cpu") -> tuple[RetargetNet, MultiScaleDiscriminator,
                                                                         TrainConfig, int]:
    """The networks, their config and the step of the checkpoint in ``directory``."""
    directory = checkpoint_dir(directory)
    config = read_config(directory)
    tensors, meta = _read_safetensors(directory / MODEL_FILE, device)
    net, disc = build(config.model)
    _load_part(net, tensors, "net.", directory)
    _load_part(disc, tensors, "disc.", directory)
    return net.to(device), disc.to(device), config, int(meta.get("step", 0))


def read_config(directory: Path) -> TrainConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise RetargetError(f"{path}: missing or not valid JSON; is {directory} a retarget checkpoint?") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RetargetError(f"{path}: not a retarget neural-generator config")
    if data.get("au_names") != list(AU_NAMES):
        raise RetargetError(f"{path}: the checkpoint was trained on other action units than this version's")
    return from_dict(data.get("config", {}))


def checkpoint_dir(directory: Path) -> Path:
    """``directory`` (or the folder of a checkpoint file named in it) if it holds model.safetensors; otherwise a
    one-line RetargetError, with a hint when a pickle checkpoint sits there instead."""
    directory = Path(directory)
    if directory.is_file():
        directory = directory.parent if directory.name in (MODEL_FILE, CONFIG_FILE) else directory
    if not directory.is_dir():
        raise RetargetError(f"{directory}: no such checkpoint directory")
    if not (directory / MODEL_FILE).is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" ({pickles[0]} looks like a pickle checkpoint; those are refused)" if pickles else ""
        raise RetargetError(f"{directory}: no {MODEL_FILE} in the checkpoint directory{hint}")
    return directory


def _read_safetensors(path: Path, device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else (a pickle in disguise) is refused."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise RetargetError(f"{path}: not a valid safetensors file; only safetensors checkpoints are "
                            f"loaded, pickles are refused ({str(exc).splitlines()[0][:80]})") from None


def _load_part(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, directory: Path) -> None:
    part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as exc:
        raise RetargetError(f"{directory}: weights do not match config.json "
                            f"({str(exc).splitlines()[0][:120]})") from None


def load_training_state(directory: Path, optimizers: dict[str, torch.optim.Optimizer], step: int) -> None:
    """Restore the optimizers saved with the checkpoint at ``step`` (from ``load``)."""
    directory = Path(directory)
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise RetargetError(f"{directory}: {STATE_FILE} missing or unreadable; cannot resume "
                            f"(start a new run, or use --init to start from these weights)") from None
    tensors, meta = _read_safetensors(directory / OPTIMIZER_FILE, "cpu")
    if int(meta.get("step", -1)) != step or int(state.get("step", -1)) != step:
        raise RetargetError(f"{directory}: the optimizer state is from another step than the weights "
                            f"(a checkpoint write was interrupted); use --init to start from the weights")
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten(name, tensors, state[name]))


def _flatten_optimizers(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor],
                                                                               dict[str, Any]]:
    tensors, json_state = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, values in sd["state"].items():
            for key, value in values.items():
                if torch.is_tensor(value):
                    tensors[f"{name}/{idx}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}/{key}"] = value
        json_state[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, json_state


def _unflatten(name: str, tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        owner, idx, field = key.split("/")
        if owner == name:
            state.setdefault(int(idx), {})[field] = value
    for key, value in saved["scalars"].items():
        idx, field = key.split("/")
        state.setdefault(int(idx), {})[field] = value
    return {"state": state, "param_groups": saved["param_groups"]}
