"""What machine a benchmark ran on, in one line, for every results file."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_summary() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; PyAV {version('av')}, "
            f"mediapipe {version('mediapipe')}, numpy {version('numpy')}, torch {version('torch')}")


def save_result(kind: str, text: str) -> Path:
    """Write ``text`` to benchmarks/results/TODAY-KIND.md (what summarise.py collects) and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{datetime.date.today():%Y-%m-%d}-{kind}.md"
    path.write_text(text)
    print(f"saved {path}")
    return path
