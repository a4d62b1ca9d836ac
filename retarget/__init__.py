"""retarget: the target's face performs the driver's facial expressions.

    import retarget
    result = retarget.retarget("drive.mp4", "target.mp4", "out.mp4", intensity=0.8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RetargetError
from .types import AU_NAMES, RetargetResult

__all__ = ["retarget", "RetargetError", "RetargetResult", "AU_NAMES"]
__version__ = "0.1.0"


def retarget(drive: str | Path, target: str | Path, output: str | Path, *, preset: str | Path | None = None,
             preview: str | Path | None = None, progress: bool = False, **options: Any) -> RetargetResult:
    """Make ``output`` (an mp4): the target's face performing the driver's expressions.

    Args:
        drive: a video whose facial expressions are transferred.
        target: a video or a still portrait (jpg, png, webp) whose face receives them.
        output: the mp4 to write; replaced only when the whole job succeeds.
        preset: a name from ``configs/`` or a YAML path; ``options`` override it.
        preview: optional side-by-side video (driver | target | result).
        progress: show progress bars on stderr.
        options: any field of ``retarget.config.RetargetConfig`` (intensity, audio, loop, pose, ...).
    Returns:
        A ``RetargetResult`` with frame counts, neutral times, timings per stage and the report path.
    Raises:
        RetargetError: bad input or a failure the user can act on.
    """
    from .config import resolve
    from .pipeline import run

    config = resolve(preset, **options)
    return run(Path(drive), Path(target), Path(output), config, Path(preview) if preview else None, progress)
