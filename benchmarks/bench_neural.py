"""Throughput of the learned generator's networks alone: frames/s of inference and steps/s of training.

    python benchmarks/bench_neural.py                         # default model, 256 px, batch 32 (CUDA: bf16)
    python benchmarks/bench_neural.py --device cpu --batch 8 --repeats 3
    python benchmarks/bench_neural.py --size 512 --batch 8

Inference is ``RetargetNet.swap`` (expression encoder on the driver crop, appearance encoder, generator) on
random crops, the number ``--generator neural`` spends per frame before paste-back; training is one
``train.train_step`` (three players) per step. Untrained weights: speed does not depend on their values. Writes
benchmarks/results/DATE-neural-DEVICE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from machine import machine_summary, save_result

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeats: int, sync) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from retarget.neural.config import ModelConfig, TrainConfig
    from retarget.neural.model import build, parameter_count
    from retarget.neural.train import Batch, make_trainer, train_step

    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = TrainConfig(model=ModelConfig(size=args.size, depth=5 if args.size == 256 else 6))
    net, disc = build(config.model)
    net, disc = net.to(device).eval(), disc.to(device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1
    rel = torch.zeros(args.batch, 17, device=device)
    cast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())

    def infer() -> None:
        with torch.no_grad(), cast:
            net.swap(x, x.flip(0), rel)

    infer_s = timed(infer, args.repeats, sync)
    trainer = make_trainer(net.train(), disc, config, device)
    b = args.train_batch
    batch = Batch(*(torch.rand(b, 3, args.size, args.size, device=device) * 2 - 1 for _ in range(3)),
                  *(torch.rand(b, 17, device=device) * 5 for _ in range(3)))
    step_s = timed(lambda: train_step(trainer, batch), max(1, args.repeats // 2), sync)
    dtype = "bf16 autocast" if device.type == "cuda" else "float32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"# Learned generator throughput ({name}, {args.size} px)", "",
        f"Machine: {machine_summary()}; device: {name}.",
        f"Command: `python benchmarks/bench_neural.py {' '.join(sys.argv[1:])}`", "",
        (f"Model: default ModelConfig at {args.size} px, {parameter_count(net) / 1e6:.1f} M parameters "
         f"(+ {parameter_count(disc) / 1e6:.1f} M discriminator); {dtype}; best of {args.repeats}."), "",
        "| what | batch | seconds per batch | frames (or samples) per second | ms per frame |",
        "|---|---:|---:|---:|---:|",
        (f"| inference (swap) | {args.batch} | {infer_s:.3f} | {args.batch / infer_s:.1f} | "
         f"{1000 * infer_s / args.batch:.1f} |"),
        f"| training step | {b} | {step_s:.3f} | {b / step_s:.1f} | {1000 * step_s / b:.1f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        save_result(f"neural-{device.type}", text)


if __name__ == "__main__":
    main()
