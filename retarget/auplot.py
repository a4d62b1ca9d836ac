"""A picture of AU curves over time: brows, eyes and mouth in three stacked panels (matplotlib, Agg)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from .aucsv import AU_MAX, AUCurves
from .errors import RetargetError
from .types import AU_NAMES

PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("brows", ("AU01", "AU02", "AU04")),
    ("eyes", ("AU05", "AU06", "AU07", "AU45")),
    ("mouth", ("AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")),
)

AU_LABELS = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer",
    "AU05": "upper lid raiser", "AU06": "cheek raiser", "AU07": "lid tightener", "AU45": "blink",
    "AU09": "nose wrinkler", "AU10": "upper lip raiser", "AU12": "lip corner puller",
    "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser", "AU20": "lip stretcher",
    "AU23": "lip tightener", "AU25": "lips part", "AU26": "jaw drop",
}

_STYLES = ("-", "--")


def _lost_spans(times: np.ndarray, success: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of frames without a face, widened by half a frame on each side."""
    if len(times) == 0:
        return []
    half = float(np.median(np.diff(times))) / 2 if len(times) > 1 else 0.5
    spans = []
    lost = ~success
    i = 0
    while i < len(times):
        if lost[i]:
            j = i
            while j + 1 < len(times) and lost[j + 1]:
                j += 1
            spans.append((float(times[i]) - half, float(times[j]) + half))
            i = j + 1
        else:
            i += 1
    return spans


def plot_aus(curves: AUCurves, path: Path, neutral_time: float | None, title: str) -> None:
    """Draw ``curves`` into ``path`` (png, svg or pdf by its suffix; png otherwise), atomically.

    Three panels share the time axis (brows, eyes, mouth), y 0-5; the neutral reference is a dashed black
    vertical line, frames without a face are shaded grey.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    times = np.asarray(curves.times, np.float64)
    few = len(times) <= 3  # a still or a hand-keyed file: show the points themselves
    fig = Figure(figsize=(12, 8.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    colours = [f"C{i}" for i in range(10)]
    spans = _lost_spans(times, np.asarray(curves.success, bool))
    for ax, (region, names) in zip(axes, PANELS):
        for k, name in enumerate(names):
            column = AU_NAMES.index(name)
            values = np.where(curves.success, curves.aus[:, column], np.nan)  # no line through lost frames
            ax.plot(times, values, color=colours[k % 10], linestyle=_STYLES[(k // 10) % 2],
                    linewidth=1.6, marker="o" if few else None, label=f"{name} {AU_LABELS[name]}")
        for start, end in spans:
            ax.axvspan(start, end, color="0.6", alpha=0.35, linewidth=0)
        if neutral_time is not None:
            ax.axvline(neutral_time, color="black", linestyle=":", linewidth=1.4)
        ax.set_ylim(-0.1, AU_MAX + 0.1)
        ax.set_yticks(range(int(AU_MAX) + 1))
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(f"{region}\nintensity 0-5")
        handles, labels = ax.get_legend_handles_labels()
        if neutral_time is not None:
            handles.append(_neutral_handle())
            labels.append(f"neutral ({neutral_time:.2f} s)")
        if spans:
            handles.append(Patch(color="0.6", alpha=0.35))
            labels.append("no face")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False)
    if len(times) == 1:
        axes[-1].set_xlim(times[0] - 0.5, times[0] + 0.5)
    elif len(times) > 1:
        axes[-1].set_xlim(times[0], times[-1])
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fmt = path.suffix.lower().lstrip(".")
    fmt = fmt if fmt in ("png", "svg", "pdf") else "png"
    tmp = path.with_name(f".{path.name}.part{secrets.token_hex(4)}")
    try:
        fig.savefig(tmp, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        raise RetargetError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _neutral_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", linestyle=":", linewidth=1.4)
