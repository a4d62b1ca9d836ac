#!/usr/bin/env python3
"""Speed and memory benchmark of the main job (``retarget DRIVE TARGET -o OUT``) on a real 720p clip.

    python benchmarks/bench_main.py [--target PATH] [--drive PATH] [--long-seconds 60] [--skip-memory]
                                    [--rounds 3]

What it measures, all in one run on this machine:

1. A reference transcode of the target: ``ffmpeg -i TARGET -c:v libx264 -preset veryfast -c:a copy OUT.mp4``
   with the ffmpeg executable when there is one on PATH, otherwise the same job done with PyAV (threaded
   decode, libx264 veryfast crf 23, yuv420p, audio packets copied). Nothing is installed either way.
2. ``python -m retarget DRIVE TARGET -o OUT -q`` in a subprocess, under GNU ``/usr/bin/time -v`` when it is
   available (else ``os.wait4`` rusage of that one child): wall time, peak resident memory, and the per-stage
   seconds that the tool records in ``OUT.retarget.json`` (``timings_seconds``). The goal is
   retarget wall / transcode wall <= 3. 1 and 2 alternate ``--rounds`` times (default 3); the ratio is the
   median of the rounds' ratios, each taken beside each other, since this machine's speed drifts.
3. Memory growth (unless ``--skip-memory``): the target looped with PyAV into a ~10 s and a ``--long-seconds``
   clip (libx264 ultrafast, same frame rate, no audio), retargeted the same way; peak RSS of each and their
   ratio. The goal is a peak under 1.5 GB that does not grow with clip length.

The Markdown report goes to stdout and to ``benchmarks/results/YYYY-MM-DD-main.md``; progress goes to
stderr. Every work file (transcodes, looped clips, retarget outputs) lives under ``benchmarks/work/bench_main/``
and only the files this script made there are ever deleted. The default inputs are the shared development
clips in ``../shared/media`` (relative to the repository root); they are read, never copied.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from machine import compile_bytecode, cpu_model, version

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / "work" / "bench_main"
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_TARGET = "../shared/media/vid_lp_s18.mp4"
DEFAULT_DRIVE = "../shared/media/drv_lp_d18.mp4"

STAGES = ("track", "analyse", "plan", "decode", "generate", "encode")
RATIO_GOAL = 3.0  # retarget wall time / reference transcode wall time
PEAK_LIMIT_BYTES = 1.5e9  # 1.5 GB (decimal) = 1430.5 MiB
GROWTH_TOLERANCE = 1.10  # long-clip peak / short-clip peak above this counts as growing with length
SHORT_SECONDS = 10.0
CONTENTION_WARN = 0.2  # average cores used by other processes during a measurement that make it suspect
MIB = 1024 * 1024


class BenchError(Exception):
    """A failure that is reported as one clear line (exit status 1)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class Clip:
    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    audio: str | None

    def describe(self) -> str:
        audio = f"audio {self.audio}" if self.audio else "no audio"
        return (f"`{self.path}` — {self.width}x{self.height}, {float(self.fps):g} fps, {self.frames} frames, "
                f"{self.duration:.2f} s, {audio}")


def resolve_input(given: str | None, default: str, role: str, flag: str) -> Path:
    """The user's path (relative to the current directory) or the default (relative to the repository root)."""
    path = Path(given).expanduser() if given else REPO / default
    path = path.resolve()
    if not path.is_file():
        origin = f"given with {flag}" if given else f"default {default}, relative to the repository root {REPO}"
        hint = ("the shared development clips live in ../shared/media next to the repository (see "
                "../shared/media/MANIFEST.md); ") if not given else ""
        raise BenchError(f"{role} clip not found: {path} ({origin}); {hint}pass {flag} PATH to use another clip")
    return path


def probe(path: Path) -> Clip:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BenchError(f"{path} has no video stream")
            v = container.streams.video[0]
            fps = Fraction(v.average_rate or v.guessed_rate or 25)
            if v.duration:
                duration = float(v.duration * v.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            frames = v.frames or round(duration * fps)
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            return Clip(path, v.codec_context.width, v.codec_context.height, fps, int(frames), duration, audio)
    except av.error.FFmpegError as exc:
        raise BenchError(f"cannot read {path} as a video: {exc}") from exc


def count_frames(path: Path) -> int:
    """Video packets in the file (one per frame for H.264 in mp4): exact and cheap, no decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size)


def warm_cache(*paths: Path) -> None:
    """Read the inputs once so that neither measured job pays for a cold disk cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def own_file(path: Path) -> Path:
    """Refuse to touch anything outside the work folder (every output path goes through here)."""
    resolved = path.resolve()
    if WORK.resolve() not in resolved.parents:
        raise BenchError(f"internal error: {resolved} is outside {WORK}")
    return resolved


def remove_own(path: Path) -> None:
    own_file(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- reference transcode


@dataclass
class Transcode:
    method: str
    command: str
    wall: float
    frames: int
    cpu: float  # user + system seconds
    foreign: float = 0.0  # CPU seconds other processes used meanwhile

    @property
    def fps(self) -> float:
        return self.frames / self.wall


def system_busy_seconds() -> float:
    """CPU seconds that all processes on this machine have used since boot (/proc/stat; 0 if unreadable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


QUIET = {"max_wait": 0.0}  # --wait-quiet: seconds each measurement may wait for other processes to go idle


def wait_until_quiet(what: str, window: float = 3.0, threshold: float = 0.15) -> None:
    """Before a measurement, wait (up to --wait-quiet seconds) until other processes use < THRESHOLD cores."""
    deadline = time.monotonic() + QUIET["max_wait"]
    while QUIET["max_wait"] > 0:
        busy0 = system_busy_seconds()
        time.sleep(window)
        cores = (system_busy_seconds() - busy0) / window
        if cores < threshold:
            return
        if time.monotonic() >= deadline:
            log(f"  machine still busy ({cores:.2f} cores used by others); measuring {what} anyway")
            return
        log(f"  waiting for a quiet machine before {what} ({cores:.2f} cores busy)")


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def transcode_ffmpeg(ffmpeg: str, target: Path, out: Path) -> Transcode:
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(target),
           "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", str(out)]
    cpu0, start = _cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    if proc.returncode != 0:
        raise BenchError(f"ffmpeg failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return Transcode(f"ffmpeg CLI ({ffmpeg})", shlex.join(cmd), wall, count_frames(out), cpu)


def transcode_pyav(target: Path, out: Path) -> Transcode:
    """The ffmpeg command above, done in-process with PyAV (no ffmpeg executable on this machine)."""
    import av
    from av.video.frame import PictureType

    cpu0, start = _cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    frames = 0
    with av.open(str(target)) as inp, av.open(str(out), "w") as outc:
        vin = inp.streams.video[0]
        vin.codec_context.thread_type = "AUTO"  # frame + slice threads, as the ffmpeg CLI decodes
        vin.codec_context.thread_count = 0  # 0 = one per core
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = outc.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or 25,
                               options={"preset": "veryfast", "crf": "23"})
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        vout.codec_context.thread_count = 0  # x264 threads=auto, the ffmpeg CLI default
        aout = outc.add_stream_from_template(ain) if ain is not None else None

        def encode(frame):
            for packet in vout.encode(frame):
                outc.mux(packet)

        for packet in inp.demux(*[s for s in (vin, ain) if s is not None]):
            if packet.stream is vin:
                for frame in packet.decode():
                    if frame.format.name != "yuv420p":
                        frame = frame.reformat(format="yuv420p")
                    frame.pict_type = PictureType.NONE  # let x264 choose frame types, as the CLI does
                    encode(frame)
                    frames += 1
            elif packet.dts is not None:  # audio: copied as it is (-c:a copy); skip demuxer flush packets
                packet.stream = aout
                outc.mux(packet)
        encode(None)  # the decoder was flushed by demux()'s final empty packet; this flushes the encoder
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu0
    equivalent = shlex.join(["ffmpeg", "-i", str(target), "-c:v", "libx264", "-preset", "veryfast",
                             "-c:a", "copy", str(out)])
    return Transcode(f"PyAV {importlib.metadata.version('av')} in-process (no ffmpeg executable on PATH; "
                     f"threaded decode, libx264 veryfast crf 23 yuv420p, audio packets copied)",
                     f"equivalent of `{equivalent}`", wall, frames, cpu)


def transcode_once(target: Path) -> Transcode:
    """One run of the reference transcode (ffmpeg, or PyAV where there is no ffmpeg on PATH)."""
    out = own_file(WORK / "reference_transcode.mp4")
    ffmpeg = shutil.which("ffmpeg")
    remove_own(out)
    wait_until_quiet("the transcode")
    busy0 = system_busy_seconds()
    result = transcode_ffmpeg(ffmpeg, target, out) if ffmpeg else transcode_pyav(target, out)
    result.foreign = max(0.0, system_busy_seconds() - busy0 - result.cpu)
    log(f"  transcode {result.wall:.2f} s, {result.frames} frames, {result.fps:.1f} frames/s, "
        f"{result.cpu / result.wall:.2f} cores busy (other processes: {result.foreign / result.wall:.2f})")
    return result


@dataclass
class Rounds:
    """Alternated runs of the transcode and of retarget on the same target, one of each per round."""

    transcodes: list[Transcode]
    runs: list[Run]

    @property
    def ratios(self) -> list[float]:
        return [run.wall / ref.wall for ref, run in zip(self.transcodes, self.runs)]

    @property
    def median_round(self) -> int:
        """The round whose ratio is the median (the lower middle one for an even count)."""
        ratios = self.ratios
        order = sorted(range(len(ratios)), key=ratios.__getitem__)
        return order[(len(order) - 1) // 2]

    @property
    def fastest_transcode(self) -> Transcode:
        return min(self.transcodes, key=lambda r: r.wall)


def alternated_rounds(drive: Path, target: Clip, rounds: int, timer: str | None, code: Path) -> Rounds:
    """The transcode, then retarget, ``rounds`` times. This machine's speed drifts by a third from one hour (even
    one minute) to the next, and not alike for both workloads: a ratio taken within one round, beside each
    other, and the median over the rounds, moves far less than a ratio of runs made minutes apart."""
    ffmpeg = shutil.which("ffmpeg")
    log(f"{rounds} alternated rounds: reference transcode with "
        f"{'ffmpeg ' + ffmpeg if ffmpeg else 'PyAV (no ffmpeg on PATH)'}, then retarget")
    result = Rounds([], [])
    for k in range(rounds):
        result.transcodes.append(transcode_once(target.path))
        result.runs.append(run_retarget(f"original, round {k + 1}", drive, target, "main", timer, code))
    return result


# ------------------------------------------------------------------------------------------ retarget runs


@dataclass
class Run:
    label: str
    target: Clip
    command: list[str]
    wall: float
    peak_rss_kib: int
    user: float
    system: float
    memory_method: str
    frames: int
    timings: dict[str, float] = field(default_factory=dict)
    foreign: float = 0.0  # CPU seconds other processes used meanwhile

    @property
    def fps(self) -> float:
        return self.frames / self.wall

    @property
    def peak_bytes(self) -> int:
        return self.peak_rss_kib * 1024


def gnu_time() -> str | None:
    """/usr/bin/time (or `time` on PATH) when it is GNU time with -v; None otherwise."""
    for candidate in ("/usr/bin/time", shutil.which("time")):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            probe_run = subprocess.run([candidate, "-v", "true"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "Maximum resident set size" in probe_run.stderr:
            return candidate
    return None


def _parse_gnu_time(text: str) -> tuple[int, float, float]:
    def number(label: str) -> float:
        match = re.search(rf"^\s*{re.escape(label)}:\s*([0-9.]+)\s*$", text, re.M)
        if not match:
            raise BenchError(f"GNU time output lacks '{label}':\n{text}")
        return float(match.group(1))

    return (int(number("Maximum resident set size (kbytes)")), number("User time (seconds)"),
            number("System time (seconds)"))


def report_path(output: Path) -> Path:
    """Where the tool writes its sidecar: OUT.retarget.json beside OUT (``retarget.pipeline.report_path``)."""
    return output.with_name(output.stem + ".retarget.json")


def run_retarget(label: str, drive: Path, target: Clip, name: str, timer: str | None, code: Path,
                 extra: tuple[str, ...] = ()) -> Run:
    out = own_file(WORK / f"{name}.mp4")
    sidecar = own_file(report_path(out))
    remove_own(out)
    remove_own(sidecar)
    cmd = [sys.executable, "-m", "retarget", str(drive), str(target.path), "-o", str(out), "-q", *extra]
    log(f"retarget run '{label}': {target.frames} frames ({target.duration:.1f} s) ...")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wait_until_quiet(f"retarget run '{label}'")
    busy0 = system_busy_seconds()
    if timer:
        time_file = own_file(WORK / f"{name}.time.txt")
        remove_own(time_file)
        start = time.perf_counter()
        proc = subprocess.run([timer, "-v", "-o", str(time_file)] + cmd, cwd=code, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall, busy1 = time.perf_counter() - start, system_busy_seconds()
        rc, stderr = proc.returncode, proc.stderr
        if rc == 0:
            peak, user, system = _parse_gnu_time(time_file.read_text())
        method = f"GNU time -v ({timer}): maximum resident set size of the retarget process"
    else:
        # No GNU time: the rusage of exactly this child (os.wait4), which is what
        # getrusage(RUSAGE_CHILDREN) would give for the first child but without mixing in earlier runs.
        err_file = own_file(WORK / f"{name}.stderr.txt")
        with open(err_file, "w+") as err:
            start = time.perf_counter()
            child = subprocess.Popen(cmd, cwd=code, env=env, stdout=err, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(child.pid, 0)
            wall, busy1 = time.perf_counter() - start, system_busy_seconds()
            child.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read()
        rc = child.returncode
        peak, user, system = usage.ru_maxrss, usage.ru_utime, usage.ru_stime
        method = "os.wait4 rusage ru_maxrss of the retarget process (GNU time not installed)"
    if rc != 0:
        raise BenchError(f"retarget failed (exit {rc}) on {target.path}: {shlex.join(cmd)}\n{stderr.strip()[-3000:]}")
    if not sidecar.is_file():
        raise BenchError(f"retarget exited 0 but wrote no sidecar {sidecar}")
    report = json.loads(sidecar.read_text())
    timings = {k: float(v) for k, v in report.get("timings_seconds", {}).items()}
    if not timings:
        raise BenchError(f"{sidecar} has no 'timings_seconds'")
    frames = count_frames(out)
    foreign = max(0.0, busy1 - busy0 - user - system)
    run = Run(label, target, cmd, wall, peak, user, system, method, frames, timings, foreign)
    log(f"  {wall:.1f} s, {run.fps:.2f} frames/s, peak RSS {peak / 1024:.0f} MiB, "
        f"other processes {foreign / wall:.2f} cores busy")
    return run


# ------------------------------------------------------------------------------------------ looped targets


def make_looped(source: Clip, seconds: float, name: str) -> Clip:
    """The source's video looped to ``seconds`` (frame count rounded), libx264 ultrafast, same rate, no audio."""
    import av
    from av.video.frame import PictureType

    out = own_file(WORK / f"{name}.mp4")
    remove_own(out)
    fps = source.fps
    want = max(1, round(seconds * fps))
    tb = 1 / fps  # one tick per frame
    log(f"making {want}-frame ({float(want / fps):.1f} s) looped target {out.name}")
    written = 0
    with av.open(str(out), "w") as outc:
        vout = outc.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        vout.width, vout.height, vout.pix_fmt = source.width, source.height, "yuv420p"
        vout.codec_context.time_base = tb
        while written < want:
            before = written
            with av.open(str(source.path)) as inp:
                vin = inp.streams.video[0]
                vin.codec_context.thread_type = "AUTO"
                for frame in inp.decode(vin):
                    if written >= want:
                        break
                    if frame.format.name != "yuv420p":
                        frame = frame.reformat(format="yuv420p")
                    frame.pts, frame.time_base = written, tb
                    frame.pict_type = PictureType.NONE
                    for packet in vout.encode(frame):
                        outc.mux(packet)
                    written += 1
            if written == before:
                raise BenchError(f"{source.path} decoded to no frames")
        for packet in vout.encode(None):
            outc.mux(packet)
    clip = probe(out)
    clip.frames = count_frames(out)
    return clip


# ------------------------------------------------------------------------------------------------ report


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "retarget", "configs"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" + uncommitted changes in retarget/ or configs/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_fingerprint(root: Path = REPO) -> str:
    """A hash of every file under ROOT/retarget/ as it is on disk now (catches uncommitted edits)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((root / "retarget").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return f"retarget/ sha256 {digest.hexdigest()[:12]}"


def snapshot_code() -> Path:
    """Copy retarget/ and configs/ into the work folder, so that every run measures the same code even while
    the working tree is being edited; ``python -m retarget`` run from there imports the copy first."""
    dest = own_file(WORK / "code")
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "retarget", dest / "retarget", ignore=ignore)
    if (REPO / "configs").is_dir():
        shutil.copytree(REPO / "configs", dest / "configs", ignore=ignore)
    return dest


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def mem_total() -> str:
    try:
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        return f"{int(match.group(1)) / MIB:.1f} GiB" if match else "unknown"
    except OSError:
        return "unknown"


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB ({kib * 1024 / 1e9:.2f} GB)"


def build_report(args: argparse.Namespace, started: dt.datetime, drive: Clip, target: Clip,
                 rounds: Rounds, memory: list[Run] | None, memory_skipped: bool,
                 code_before: str, code_after: str, load_start: str, bytecode: str = "") -> str:
    import av

    median = rounds.median_round
    ref, main = rounds.transcodes[median], rounds.runs[median]  # the median round, side by side

    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    libav = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    lines = [
        f"# retarget main-job benchmark — {started:%Y-%m-%d %H:%M}",
        "",
        f"- Command: `{shlex.join(getattr(sys, 'orig_argv', [sys.executable] + sys.argv))}` (cwd `{Path.cwd()}`)",
        f"- Code under test: `{REPO}` at {code_before}"
        + ("" if args.live_tree else f" — copied at the start into `{(WORK / 'code').relative_to(REPO)}/` and run "
           "from there, so edits made during the run do not reach the measurement")
        + (f"; {bytecode}" if bytecode else ""),
        f"- CPU: {cpu_model()} — {cores} logical cores ({usable} usable), RAM {mem_total()}",
        f"- OS: {platform.platform()}; Python {platform.python_version()}; load average at start {load_start}, "
        f"at end {loadavg()} (other work on these cores skews every number)",
        f"- Versions: torch {version('torch')}, av (PyAV) {version('av')} (libavcodec {libav}), "
        f"mediapipe {version('mediapipe')}, numpy {version('numpy')}",
        f"- Target: {target.describe()}",
        f"- Driver: {drive.describe()}",
    ]
    measured = [(f"reference transcode, round {k + 1}", t.foreign / t.wall) for k, t in enumerate(rounds.transcodes)]
    measured += [(f"retarget {r.label}", r.foreign / r.wall) for r in rounds.runs]
    measured += [(f"retarget {r.label}", r.foreign / r.wall) for r in memory or []]
    lines.append("- CPU used by other processes during each measurement (cores, average): "
                 + ", ".join(f"{name} {cores:.2f}" for name, cores in measured))
    if any(cores > CONTENTION_WARN for _, cores in measured):
        lines.append(f"- **WARNING: other processes used more than {CONTENTION_WARN:g} cores during a measurement**; "
                     "times and ratios are skewed, rerun on a quiet machine.")
    if code_after != code_before:
        lines.append(f"- **WARNING: the code under retarget/ changed during this run** (now {code_after}); "
                     "the runs may have measured different versions, so rerun on a quiet tree.")
    lines += [
        "",
        "## Summary",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| reference transcode wall (median round) | {ref.wall:.2f} s ({ref.fps:.1f} frames/s) | |",
        f"| retarget wall (median round) | {main.wall:.2f} s ({main.fps:.2f} frames/s) | |",
    ]
    ratio = rounds.ratios[median]
    verdict = "PASS" if ratio <= RATIO_GOAL else "FAIL"
    lines.append(f"| **retarget / transcode wall ratio**, median of {len(rounds.runs)} alternated rounds "
                 f"({', '.join(f'{r:.1f}x' for r in rounds.ratios)}) | **{ratio:.1f}x** | "
                 f"<= {RATIO_GOAL:g}x: **{verdict}** |")
    fastest, quickest = rounds.fastest_transcode, min(rounds.runs, key=lambda r: r.wall)
    lines.append(f"| fastest retarget / fastest transcode | {quickest.wall / fastest.wall:.1f}x "
                 f"({quickest.wall:.2f} s / {fastest.wall:.2f} s) | |")
    lines.append(f"| retarget peak RSS ({main.frames} frames) | {fmt_mib(main.peak_rss_kib)} | "
                 f"< 1.5 GB: {'PASS' if main.peak_bytes < PEAK_LIMIT_BYTES else 'FAIL'} |")
    if memory:
        short, long = memory
        growth = long.peak_rss_kib / short.peak_rss_kib
        lines.append(f"| peak RSS {long.target.duration:.0f} s / {short.target.duration:.0f} s target | "
                     f"{growth:.2f}x | <= {GROWTH_TOLERANCE:.2f}x: "
                     f"{'PASS' if growth <= GROWTH_TOLERANCE else 'FAIL'} |")
    lines += [
        "",
        "## Reference transcode",
        "",
        f"- Method: {ref.method}",
        f"- Command: {ref.command if ref.command.startswith('equivalent') else '`' + ref.command + '`'}",
        f"- Runs, one per round: wall s {', '.join(f'{t.wall:.2f}' for t in rounds.transcodes)}; retarget in the "
        f"same rounds: {', '.join(f'{r.wall:.2f}' for r in rounds.runs)}; the median round ({median + 1}) is shown",
        "",
        "| frames | wall s | frames/s | CPU s (user+sys) | cores busy |",
        "|---|---|---|---|---|",
        f"| {ref.frames} | {ref.wall:.2f} | {ref.fps:.1f} | {ref.cpu:.1f} | {ref.cpu / ref.wall:.2f} |",
        "",
        "## Retarget, per stage",
        "",
        f"- Command: `{shlex.join(main.command)}`",
        f"- Wall clock around the subprocess (includes interpreter start and imports); memory: {main.memory_method}",
        f"- CPU time: user {main.user:.1f} s + system {main.system:.1f} s = "
        f"{(main.user + main.system) / main.wall:.2f} cores busy on average",
        f"- Stage seconds from `OUT.retarget.json` `timings_seconds` (wall time of the tool's main thread in each "
        f"stage; codec work the tool runs on background threads overlaps them); per frame = / {main.frames} "
        "output frames",
        "",
        "| stage | seconds | ms/frame | share of wall |",
        "|---|---|---|---|",
    ]
    stages = list(STAGES) + sorted(k for k in main.timings if k not in STAGES)
    total = 0.0
    for stage in stages:
        seconds = main.timings.get(stage)
        if seconds is None:
            lines.append(f"| {stage} | (not recorded) | | |")
            continue
        total += seconds
        lines.append(f"| {stage} | {seconds:.2f} | {1000 * seconds / main.frames:.1f} | "
                     f"{100 * seconds / main.wall:.0f}% |")
    other = main.wall - total
    lines += [
        f"| *sum of stages* | {total:.2f} | {1000 * total / main.frames:.1f} | {100 * total / main.wall:.0f}% |",
        f"| *other (start-up, imports, probing, driver decode while rendering, report)* | {other:.2f} | "
        f"{1000 * other / main.frames:.1f} | {100 * other / main.wall:.0f}% |",
        f"| **end to end** | **{main.wall:.2f}** | **{1000 * main.wall / main.frames:.1f}** | "
        f"**{main.fps:.2f} frames/s** |",
        "",
        "## Memory growth with clip length",
        "",
    ]
    if memory_skipped:
        lines.append("Skipped (`--skip-memory`).")
    else:
        lines += [
            "Targets: the target's video looped with PyAV (libx264 ultrafast, same frame rate, no audio) into "
            f"`{WORK.relative_to(REPO)}/`; same driver and options as above"
            + (", plus `--loop` (the driver loops over the whole target)." if args.loop_driver else
               f" (a driver shorter than the target rests on its neutral after it ends: here after "
               f"{drive.duration:.1f} s, so most of the long clip renders a neutral expression; "
               f"`--loop-driver` loops it instead)."),
            "",
            "| target | frames | wall s | frames/s | generate ms/frame | peak RSS |",
            "|---|---|---|---|---|---|",
            f"| original ({main.target.duration:.1f} s) | {main.frames} | {main.wall:.1f} | {main.fps:.2f} | "
            f"{1000 * main.timings.get('generate', float('nan')) / main.frames:.1f} | {fmt_mib(main.peak_rss_kib)} |",
        ]
        for run in memory or []:
            lines.append(f"| looped {run.target.duration:.1f} s{' --loop' if args.loop_driver else ''} | "
                         f"{run.frames} | {run.wall:.1f} | {run.fps:.2f} | "
                         f"{1000 * run.timings.get('generate', float('nan')) / run.frames:.1f} | "
                         f"{fmt_mib(run.peak_rss_kib)} |")
        if memory:
            short, long = memory
            growth = long.peak_rss_kib / short.peak_rss_kib
            extra = (long.peak_rss_kib - short.peak_rss_kib) / 1024
            per_frame = extra * 1024 / max(1, long.frames - short.frames)
            lines += [
                "",
                f"Peak RSS ratio {long.target.duration:.0f} s / {short.target.duration:.0f} s: **{growth:.2f}x** "
                f"({extra:+,.0f} MiB for {long.frames - short.frames} more frames, {per_frame:+.1f} KiB/frame). "
                f"Goal: every peak under 1.5 GB "
                f"({'met' if max(r.peak_bytes for r in memory) < PEAK_LIMIT_BYTES else 'NOT met'}) "
                f"and no growth with length (ratio <= {GROWTH_TOLERANCE:.2f}: "
                f"{'met' if growth <= GROWTH_TOLERANCE else 'NOT met'}).",
            ]
    lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help=f"target video (default {DEFAULT_TARGET}, relative to the repository root)")
    p.add_argument("--drive", help=f"driver video (default {DEFAULT_DRIVE}, relative to the repository root)")
    p.add_argument("--long-seconds", type=float, default=60.0,
                   help="length of the long looped target for the memory check (default 60)")
    p.add_argument("--skip-memory", action="store_true", help="skip the 10 s / long looped memory runs")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternate the reference transcode and the retarget run this many times; the ratio "
                        "reported is the median of the rounds' ratios (default 3)")
    p.add_argument("--loop-driver", action="store_true",
                   help="pass --loop to the memory runs, so that a driver shorter than the looped targets keeps "
                        "driving expressions instead of resting on its neutral after it ends")
    p.add_argument("--live-tree", action="store_true",
                   help="run the working tree's retarget/ directly instead of a snapshot copied into the work "
                        "folder at the start (the snapshot keeps edits made during the run out of the numbers)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each measurement, wait up to SECONDS for other processes to leave the CPU idle "
                        "(default 0: measure at once; the report shows the contention either way)")
    p.add_argument("--keep-work", action="store_true",
                   help=f"keep the videos written under {WORK.relative_to(REPO)}/ (deleted at the end by default)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.long_seconds <= SHORT_SECONDS:
        p.error(f"--long-seconds must be longer than the {SHORT_SECONDS:g} s short clip")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    QUIET["max_wait"] = max(0.0, args.wait_quiet)
    started = dt.datetime.now()
    made: list[Path] = []
    try:
        target_path = resolve_input(args.target, DEFAULT_TARGET, "target", "--target")
        drive_path = resolve_input(args.drive, DEFAULT_DRIVE, "driver", "--drive")
        target, drive = probe(target_path), probe(drive_path)
        load_start = loadavg()
        WORK.mkdir(parents=True, exist_ok=True)
        code = REPO if args.live_tree else snapshot_code()
        code_before = f"{git_describe()}, {code_fingerprint(code)}"
        if code != REPO:
            check = subprocess.run([sys.executable, "-c", "import retarget; print(retarget.__file__)"], cwd=code,
                                   capture_output=True, text=True)
            if not check.stdout.strip().startswith(str(code)):
                raise BenchError(f"the code snapshot in {code} is not what `python -m retarget` imports there: "
                                 f"{check.stdout.strip() or check.stderr.strip()[-500:]}")
            log(f"measuring a snapshot of the working tree ({code_before}) in {code}")
        bytecode = compile_bytecode(code / "retarget")
        log(bytecode)
        timer = gnu_time()
        log(f"peak memory via {timer + ' -v' if timer else 'os.wait4 rusage (GNU time not found)'}")
        warm_cache(target_path, drive_path)
        # untimed: the snapshot has no compiled kernels yet, and the first run after an install compiles them
        made += [WORK / "warm_up.mp4"]
        run_retarget("warm-up, untimed (compiles the warp kernels once)", drive_path, target, "warm_up", timer, code)

        made += [WORK / "reference_transcode.mp4", WORK / "main.mp4"]
        rounds = alternated_rounds(drive_path, target, args.rounds, timer, code)

        memory: list[Run] | None = None
        if not args.skip_memory:
            memory = []
            for seconds, name in ((SHORT_SECONDS, "loop_short"), (args.long_seconds, "loop_long")):
                made += [WORK / f"{name}_target.mp4", WORK / f"{name}.mp4"]
                clip = make_looped(target, seconds, f"{name}_target")
                memory.append(run_retarget(f"looped {seconds:g} s", drive_path, clip, name, timer, code,
                                           ("--loop",) if args.loop_driver else ()))

        code_after = f"{git_describe()}, {code_fingerprint(code)}"
        if code_after.split(", ")[-1] == code_before.split(", ")[-1]:
            code_after = code_before  # same code measured throughout (HEAD may have moved meanwhile)
        if code_after != code_before:
            log(f"WARNING: retarget/ changed during the run ({code_before} -> {code_after})")
        report = build_report(args, started, drive, target, rounds, memory, args.skip_memory,
                              code_before, code_after, load_start, bytecode)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{started:%Y-%m-%d}-main.md"
        out.write_text(report)
        print(report)
        log(f"report written to {out}")
        return 0
    except BenchError as exc:
        print(f"bench_main: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_main: interrupted", file=sys.stderr)
        return 130
    finally:
        if not args.keep_work:
            for path in made:  # only the videos this run wrote; sidecars and time logs stay for inspection
                remove_own(path)
            if (WORK / "code").is_dir():
                shutil.rmtree(own_file(WORK / "code"))


if __name__ == "__main__":
    raise SystemExit(main())
