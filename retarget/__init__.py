"""retarget: the target's face performs the driver's facial expressions.

    import retarget
    result = retarget.retarget("drive.mp4", "target.mp4", "out.mp4", intensity=0.8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RetargetError
from .types import AU_NAMES, RetargetResult

__all__ = ["AU_NAMES", "RetargetError", "RetargetResult", "edit", "retarget"]
__version__ = "0.1.0"


def retarget(drive: str | Path, target: str | Path, output: str | Path, *, preset: str | Path | None = None,
             preview: str | Path | None = None, progress: bool = False, **options: Any) -> RetargetResult:
    """Make ``output`` (an mp4): the target's face performing the driver's expressions.

    Args:
        drive: a video whose facial expressions are transferred, or a CSV of AU curves (OpenFace 2 layout).
        target: a video or a still portrait (jpg, png, webp) whose face receives them.
        output: the mp4 to write; replaced only when the whole job succeeds.
        preset: a name from ``configs/`` or a YAML path; ``options`` override it.
        preview: optional side-by-side video (driver | target | result).
        progress: show progress bars on stderr.
        options: any field of ``retarget.config.RetargetConfig`` (intensity, audio, loop, pose, gains, only,
            exclude, ...); ``gains={"AU12": 1.5, "brows": 0}``, ``only=["mouth"]``.
    Returns:
        A ``RetargetResult`` with frame counts, neutral times, timings per stage and the report path.
    Raises:
        RetargetError: bad input or a failure the user can act on.
    """
    from .config import resolve
    from .pipeline import run

    config = resolve(preset, **options)
    return run(Path(drive), Path(target), Path(output), config, Path(preview) if preview else None, progress)


def edit(target: str | Path, output: str | Path, aus: dict[str, float], *, start: float | None = None,
         stop: float | None = None, ramp: float = 0.0, duration: float | None = None,
         preset: str | Path | None = None, progress: bool = False, **options: Any) -> RetargetResult:
    """Relative AU editing: add ``aus`` (e.g. ``{"AU12": 2, "AU04": -1}``, on the 0-5 scale) to the target's own
    expression in every frame.

    Args:
        target: a video (the output is an mp4) or a still (an image, or an mp4 with ``duration``).
        output: mp4, or png/jpg/webp for a still; replaced only on success.
        start, stop: seconds between which the edit applies (default: throughout); ``ramp`` eases it in and out.
        duration: a still target becomes a clip this many seconds long.
        options: fields of ``retarget.config.RetargetConfig`` (fps, max_size, crf, target_neutral, ...).
    """
    from .config import resolve
    from .pipeline import run_edit

    config = resolve(preset, **options)
    return run_edit(Path(target), Path(output), config, dict(aus), start, stop, ramp, duration, progress)
