"""Memory of a long clip's analysis and plan, per frame: the part of the main job that still grows with length.

The target is `vid_lp_s18`'s tracked face played forwards and backwards to ``--frames`` frames (one shot, no
cut: a looped video would be cut at every loop, which bounds the smoothing to one loop at a time), driven by
`drv_lp_d18` looped. Tracking runs once on the real clips; the analysis and the plan then run on the long track
as the main job runs them (the tracked landmarks, the smoothed ones, the pose-normalised shapes and the
destinations all on disk, ``spill.FrameStore``, and read a block at a time), under tracemalloc. Reported per
frame, so that a constant (a block's temporaries) shows by comparing two lengths.

Run: ``python benchmarks/bench_long_memory.py [--frames 20160 40320]`` (needs ../shared/media); prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"


def measure(target, drive, frames: int) -> dict[str, float]:
    """KiB a frame above the start: the analysis's peak and what it keeps, the plan's peak and what it keeps
    (above the analysis's), for ``target`` (a Track) played forwards and backwards to ``frames`` frames."""
    from retarget import spill
    from retarget.analysis import analyse_clip
    from retarget.config import RetargetConfig
    from retarget.plan import build_plan
    from retarget.types import Track

    order = np.resize(np.concatenate([np.arange(len(target)), np.arange(len(target))[::-1]]), frames)
    config = RetargetConfig(loop=True)
    with tempfile.TemporaryDirectory() as folder, spill.FrameStore(folder) as store:
        # the main job's tracking writes a video target's landmarks to its store as it goes
        long = Track(np.arange(frames) / 30.0, store.keep(np.ascontiguousarray(target.landmarks[order])),
                     target.found[order].copy(), target.width, target.height)
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        clip = analyse_clip(long, 30.0, None, config.smooth_expression, config.smooth_pose, consume=True,
                            store=store)
        del long
        analysed, analysis_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        build_plan(drive, clip, False, config, allocate=store.empty)
        planned, plan_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    kib = frames * 1024
    return {"analysis peak": (analysis_peak - start) / kib, "analysis keeps": (analysed - start) / kib,
            "plan peak": (plan_peak - analysed) / kib, "plan keeps": (planned - analysed) / kib,
            "plan peak MiB": (plan_peak - analysed) / 2 ** 20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[20160, 40320])
    args = p.parse_args()
    if not MEDIA.is_dir():
        print(f"needs the shared clips in {MEDIA}", file=sys.stderr)
        return 1
    from retarget.analysis import analyse_clip
    from retarget.face import track_frames
    from retarget.motion import from_clip
    from retarget.quiet import native_stderr_silenced
    from retarget.video import read_frames

    with native_stderr_silenced():
        target = track_frames(read_frames(MEDIA / "vid_lp_s18.mp4"), 1280, 720)
        driver = track_frames(read_frames(MEDIA / "drv_lp_d18.mp4"), 480, 480)
    drive = from_clip(analyse_clip(driver, 30.0, None, 0.2, 0.33, consume=True))
    print("| frames | analysis peak | analysis keeps | plan peak | plan keeps |")
    print("|---|---|---|---|---|")
    for frames in args.frames:
        m = measure(target, drive, frames)
        print(f"| {frames} | {m['analysis peak']:.1f} KiB/frame | {m['analysis keeps']:.1f} KiB/frame | "
              f"{m['plan peak']:.1f} KiB/frame ({m['plan peak MiB']:.0f} MiB) | {m['plan keeps']:.1f} KiB/frame |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
