"""The floor of the main job: the same 720p job with generation doing nothing, beside the real one and ffmpeg.

The floor run pastes each frame's face crop back unchanged (same crop box, same feathered paste, same writer), so
everything but the warp still runs: decoding, tracking both clips, analysing, planning, the box conversion and
x264 at the tool's settings. What the floor takes over the transcode is what no faster generator can win back.
Rounds alternate ffmpeg / floor / full, because this machine's speed drifts within minutes.

Run: ``python benchmarks/bench_floor.py [--rounds 2]`` (needs ../shared/media); writes results/DATE-floor.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import compile_bytecode, machine_summary, save_result

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
WORK = ROOT / "benchmarks" / "work" / "bench_floor"

# Runs in a child interpreter: the warp generator's ``generate`` replaced by a pass-through of the same crop.
FLOOR = """
import sys
from retarget.generators import warp
from retarget.generators.base import GeneratedFace

def generate(self, edit):
    box = warp.crop_box(edit.source, edit.destination, self.settings.margin * warp.face_size(edit.source),
                        edit.image.shape)
    x0, y0, x1, y1 = box
    crop = edit.image[y0:y1, x0:x1].copy()
    return GeneratedFace(box, crop, warp.border_feather(crop.shape[:2], self.settings.feather))

warp.WarpGenerator.generate = generate
import retarget
retarget.retarget(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    drive, target = MEDIA / "drv_lp_d18.mp4", MEDIA / "vid_lp_s18.mp4"
    if not target.is_file():
        sys.exit(f"needs {target} (../shared/media)")
    if shutil.which("ffmpeg") is None:
        sys.exit("needs the ffmpeg executable on PATH for the reference transcode (e.g. apt-get install ffmpeg)")
    WORK.mkdir(parents=True, exist_ok=True)
    print(compile_bytecode(Path(__file__).resolve().parent.parent / "retarget"), file=sys.stderr)
    runs = {
        "ffmpeg transcode": ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(target),
                             "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", str(WORK / "ref.mp4")],
        "retarget, generation a pass-through": [sys.executable, "-c", FLOOR, str(drive), str(target),
                                                str(WORK / "floor.mp4")],
        "retarget": [sys.executable, "-m", "retarget", str(drive), str(target), "-o", str(WORK / "full.mp4"), "-q"],
    }
    started = dt.datetime.now()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, command in runs.items():
            results[name].append(timed(command))
    reference = [wall for wall, _ in results["ffmpeg transcode"]]
    lines = [f"# The main job's floor — {started:%Y-%m-%d %H:%M}", "",
             f"- Command: `python benchmarks/bench_floor.py --rounds {args.rounds}`; driver `{drive.name}`, "
             f"target `{target.name}` (1280x720, 282 frames); rounds alternate the three runs",
             f"- Machine: {machine_summary()}", "",
             "| run | wall s per round | CPU s per round | wall / transcode, per round |", "|---|---|---|---|"]
    for name, samples in results.items():
        walls = ", ".join(f"{wall:.2f}" for wall, _ in samples)
        cpus = ", ".join(f"{cpu:.1f}" for _, cpu in samples)
        ratios = ", ".join(f"{wall / ref:.1f}x" for (wall, _), ref in zip(samples, reference))
        lines.append(f"| {name} | {walls} | {cpus} | {ratios} |")
    save_result("floor", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
