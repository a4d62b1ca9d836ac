"""What machine a benchmark ran on, in one line, for every results file."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
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


def compile_bytecode(package: Path) -> str:
    """Compile ``package``'s modules to bytecode once (``python -m compileall``), as ``pip install`` does and as
    Python does on a package's first import; and say so, for the report.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (this project's development machine sets it), Python never writes
    the bytecode it compiles, so every timed run compiled retarget's 55 modules again (0.07 s), which no
    installed copy does."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, capture_output=True)
    return (f"retarget's bytecode compiled beforehand (`python -m compileall -q {package.name}`), as an install "
            f"does; PYTHONDONTWRITEBYTECODE is {'set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else 'unset'} "
            "here")

