"""``retarget train``: train (or resume, or fine-tune) the learned generator on clips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  retarget train clips/ --out ckpt/                       # train; run again to resume from ckpt/
  retarget train clips/ --out ckpt/ --steps 50000         # resume up to a new total
  retarget train actor.mp4 driver1.mp4 --init ckpt/ --out actor_ckpt/ --steps 2000   # fine-tune on one actor

ckpt/ receives model.safetensors + config.json (the weights and the settings that made them), optimizer
state for resuming (safetensors + JSON, never pickle), log.csv (losses), samples/step-N.png and cache/ (the
tracked crops, so later runs skip face tracking).
"""


def build_train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retarget train", description="Train the learned generator (the papers' "
                                "AU-swap network) on video clips; a GPU is strongly advised.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", type=Path, help="video files or folders of them (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory; resumed when it holds one")
    p.add_argument("--config", type=Path, help="YAML/JSON file of training settings (see retarget.neural.config)")
    p.add_argument("--steps", type=int, help="total steps to train to (default: the config's)")
    p.add_argument("--init", type=Path, metavar="CKPT_DIR", help="start from these weights (fine-tuning)")
    p.add_argument("--size", type=int, choices=(256, 512), help="crop size of a new model (default 256)")
    p.add_argument("--cache", type=Path, help="folder for tracked crops (default: OUT/cache)")
    p.add_argument("--no-crop-store", dest="store_crops", action="store_false",
                   help="read frames by random access with decord instead of storing every crop as JPEG in the "
                   "cache (less disk, much slower sampling on clips with few keyframes)")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: CUDA when there is one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def train_main(argv: list[str]) -> int:
    parser = build_train_parser()
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    from .cli import _run_job

    result = _run_job(lambda: _train(args), args.debug,
                      interrupted=f"interrupted; {args.out} holds the last whole step (run again to resume)")
    if isinstance(result, int):
        return result
    if not args.quiet:
        print(f"trained steps {result.first_step + 1}..{result.last_step} in {result.seconds:.0f} s; "
              f"checkpoint in {result.out_dir}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace):
    from dataclasses import replace

    from .neural.config import TrainConfig, load_config_file
    from .neural.train import pick_device, train_on_clips

    config = load_config_file(args.config) if args.config else TrainConfig()
    if args.steps:
        config = replace(config, steps=args.steps)
    if args.size:
        config = replace(config, model=replace(config.model, size=args.size))
    device = pick_device(args.device)
    if device.type == "cpu" and not args.quiet:
        print("retarget train: warning: no CUDA device, training on the CPU (very slow)", file=sys.stderr)
    return train_on_clips(args.clips, args.out, config, init=args.init, cache_dir=args.cache, device=device,
                          progress=not args.quiet, store_crops=args.store_crops)
