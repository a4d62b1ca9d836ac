"""Speed at 512x512, 1280x720 and 1920x1080 against a plain ffmpeg transcode, and start-up times.

The three targets are made from ../shared/media/vid_lp_s18.mp4 with PyAV into benchmarks/work/ (git-ignored): a
512x512 crop around the face, the clip as it is, and the clip upscaled to 1080p. Each is transcoded with
``ffmpeg -i T -c:v libx264 -preset veryfast -c:a copy`` (fastest of 3) and retargeted once, driven by
drv_lp_d18. Start-up: ``retarget --help`` (fastest of 3), and the time to the first output frame, which is the
run's wall time less the render stage's time for all frames after the first (tracking the whole clip comes
first by design: smoothing is zero-phase). Writes benchmarks/results/YYYY-MM-DD-speed.md.

    python benchmarks/bench_speed.py
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
from machine import compile_bytecode, machine_summary, save_result

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
WORK = ROOT / "benchmarks" / "work" / "bench_speed"
SIZES = {"512x512": (512, 512), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}


def make_target(source: Path, size: tuple[int, int], out: Path) -> Path:
    """Re-encode ``source`` at ``size`` (a centred crop to the aspect, then a resize), keeping the audio."""
    with av.open(str(source)) as inp, av.open(str(out), "w") as dst:
        vin = inp.streams.video[0]
        vout = dst.add_stream("libx264", rate=vin.average_rate, width=size[0], height=size[1],
                              options={"crf": "16", "preset": "veryfast"})
        vout.pix_fmt = "yuv420p"
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            aspect = size[0] / size[1]
            cw, ch = (min(w, round(h * aspect)), h) if w / h > aspect else (w, min(h, round(w / aspect)))
            # the face of s18 sits right of centre: crop around it for the square target
            x0 = min(w - cw, max(0, round(0.58 * w - cw / 2))) if cw < w else 0
            img = cv2.resize(img[(h - ch) // 2:(h - ch) // 2 + ch, x0:x0 + cw], size, interpolation=cv2.INTER_AREA
                             if cw > size[0] else cv2.INTER_CUBIC)
            new = av.VideoFrame.from_ndarray(img, format="rgb24")
            new.pts, new.time_base = frame.pts, frame.time_base
            dst.mux(vout.encode(new))
        dst.mux(vout.encode())
    return out


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    if shutil.which("ffmpeg") is None:
        raise SystemExit("bench_speed needs the ffmpeg executable for the reference transcode")
    source, drive = MEDIA / "vid_lp_s18.mp4", MEDIA / "drv_lp_d18.mp4"
    if not source.exists():
        raise SystemExit(f"shared media not found at {MEDIA}")
    WORK.mkdir(parents=True, exist_ok=True)
    print(compile_bytecode(Path(__file__).resolve().parent.parent / "retarget"), file=sys.stderr)
    py = [sys.executable, "-m", "retarget"]
    rows = []
    first_frame = None
    for name, size in SIZES.items():
        target = source if size == (1280, 720) else make_target(source, size, WORK / f"target_{name}.mp4")
        frames = av.open(str(target)).streams.video[0].frames
        ref = min(timed(["ffmpeg", "-y", "-nostdin", "-loglevel", "error", "-i", str(target), "-c:v", "libx264",
                         "-preset", "veryfast", "-c:a", "copy", str(WORK / "ref.mp4")]) for _ in range(3))
        out = WORK / f"out_{name}.mp4"
        wall = timed(py + [str(drive), str(target), "-o", str(out), "-q"])
        stages = json.loads(out.with_name(out.stem + ".retarget.json").read_text())["timings_seconds"]
        rows.append((name, frames, ref, wall, stages))
        if size == (1280, 720):
            render = stages.get("decode", 0) + stages.get("generate", 0) + stages.get("encode", 0)
            first_frame = wall - render * (frames - 1) / frames
    help_s = min(timed(py + ["--help"]) for _ in range(3))
    lines = [f"# Speed at three resolutions — {datetime.date.today().isoformat()}", "",
             "- Command: `python benchmarks/bench_speed.py`; driver drv_lp_d18; targets made from vid_lp_s18 "
             "(512x512 crop around the face, the 1280x720 original, upscaled 1920x1080)",
             f"- Machine: {machine_summary()}", "- Reference: ffmpeg libx264 veryfast, fastest of 3", "",
             "| target | frames | ffmpeg s | retarget s | ratio | frames/s | track ms/f | generate ms/f |",
             "|---|---|---|---|---|---|---|---|"]
    for name, frames, ref, wall, st in rows:
        lines.append(f"| {name} | {frames} | {ref:.2f} | {wall:.2f} | {wall / ref:.1f}x | {frames / wall:.1f} "
                     f"| {1000 * st.get('track', 0) / frames:.1f} | {1000 * st.get('generate', 0) / frames:.1f} |")
    lines += ["", f"- Start-up: `retarget --help` {help_s:.2f} s; first output frame of the 720p run after "
              f"{first_frame:.1f} s (tracking and planning the whole clip come first)", ""]
    print("\n".join(lines))
    save_result("speed", "\n".join(lines))


if __name__ == "__main__":
    main()
