"""Summarise a training run from its checkpoint directory: the loss log at a few steps, and the settings.

    python benchmarks/training_report.py CKPT_DIR --command "retarget train ..." [--device cpu|cuda] [--note TEXT]

Reads CKPT_DIR/log.csv and CKPT_DIR/config.json (numbers only: nothing made from the clips' pixels) and writes
benchmarks/results/DATE-neural-train-DEVICE.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from machine import machine_summary, save_result

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("reconstruction", "swap_cycle", "feature_matching", "adversarial", "discriminator", "classifier",
           "disentangle", "au_regression")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from retarget.neural.checkpoint import read_config
    from retarget.neural.model import build, parameter_count
    from retarget.neural.train import read_log

    p = argparse.ArgumentParser()
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--command", required=True, help="the retarget train command that made the run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--note", default="", help="a sentence on what the run was for")
    p.add_argument("--rows", type=int, default=8, help="how many logged steps to show")
    args = p.parse_args()
    log = read_log(args.checkpoint / "log.csv")
    config = read_config(args.checkpoint)
    net, disc = build(config.model)
    picks = np.unique(np.linspace(0, len(log["step"]) - 1, args.rows).round().astype(int))
    window = max(1, len(log["step"]) // 10)  # the losses are noisy: each row is the mean of this many log rows
    lines = [f"# Learned generator: a training run ({args.device})", "",
             f"Machine: {machine_summary()}; device: {args.device}.", f"Command: `{args.command}`", "",
             args.note, "",
             (f"Model: {config.model.size} px, {parameter_count(net) / 1e6:.2f} M parameters "
              f"(+ {parameter_count(disc) / 1e6:.2f} M discriminator); batch {config.batch}; "
              f"settings: `{json.dumps(config.model.__dict__)}`."), "",
             f"Loss terms from `log.csv`, each the mean of {window} logged rows ending at the step shown.", "",
             "| step | " + " | ".join(COLUMNS) + " |", "|---:|" + "---:|" * len(COLUMNS)]
    for i in picks:
        lo = max(0, i - window + 1)
        cells = [f"{log[c][lo:i + 1].mean():.4f}" for c in COLUMNS]
        lines.append(f"| {int(log['step'][i])} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    save_result(f"neural-train-{args.device}", text)


if __name__ == "__main__":
    main()
