"""Command line: flags -> configuration -> ``retarget.retarget``. Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """\
examples:
  retarget drive.mp4 target.mp4 -o out.mp4
  retarget drive.mp4 target.mp4 -o out.mp4 --only mouth          (lip sync only; brows and eyes stay the target's)
  retarget drive.mp4 target.mp4 -o out.mp4 --gain AU12=1.5 --gain brows=0.5
  retarget aus.csv portrait.jpg -o out.mp4                       (AU curves drive: OpenFace 2 CSV layout)
  retarget analyze clip.mp4 --csv aus.csv --plot aus.png         (see retarget analyze --help)
  retarget edit portrait.jpg --au AU12=+2 -o smiling.png         (see retarget edit --help)
  retarget eval --self clip.mp4 --cross drive.mp4 portrait.jpg --out eval/   (see retarget eval --help)
  retarget train clips/ --out ckpt/                              (the learned generator; see retarget train --help)
  retarget drive.mp4 target.mp4 -o out.mp4 --generator neural --checkpoint ckpt/
  retarget drive.mp4 portrait.jpg -o out.mp4 --no-pose --max-size 720
  retarget drive.mp4 target.mp4 -o out.mp4 --preset subtle --preview side_by_side.mp4

Beside OUT, OUT.retarget.json records the resolved configuration and the per-frame AU trajectories.
"""


FACE_HELP = ("which face of the {clip} when it shows several: largest (default), left, right, or X,Y (pixels "
             "of the frame, on the face); chosen on the first frame with a face, then followed")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retarget", description="The target's face performs the driver's facial expressions, keeping its "
        "own identity, head pose, lighting and background.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("drive", type=Path, help="video whose facial expressions are transferred, or a CSV of AU "
                   "curves (OpenFace 2 layout: timestamp, success, AU01_r ... AU45_r; missing AUs count as 0)")
    p.add_argument("target", type=Path, help="video or still portrait (jpg, png, webp) that receives them")
    p.add_argument("-o", "--output", type=Path, required=True, help="mp4 to write (replaced only on success)")
    p.add_argument("--preset", help="configs/NAME.yaml or a YAML file; the flags below override it")
    p.add_argument("--intensity", type=float, help="gain on the driver's expression change (default 1.0)")
    p.add_argument("--drive-neutral", type=float, metavar="SECONDS",
                   help="time of the driver's neutral face (default: its calmest frame; in a video cut into shots, "
                   "each shot takes its own, and this sets the one of its shot)")
    p.add_argument("--target-neutral", type=float, metavar="SECONDS",
                   help="time of the target's neutral face (default: its calmest frame; in a video cut into shots, "
                   "each shot takes its own, and this sets the one of its shot)")
    p.add_argument("--drive-face", metavar="WHICH", help=FACE_HELP.format(clip="driver"))
    p.add_argument("--target-face", metavar="WHICH", help=FACE_HELP.format(clip="target"))
    add_gain_flags(p)
    p.add_argument("--fps", type=float, help="AU curves on a still: output frame rate (default: the rows' own "
                   "rate when they are at most 0.1 s apart, else 25)")
    p.add_argument("--audio", choices=("auto", "target", "drive", "none"),
                   help="audio source, copied without re-encoding (default auto: the target video's, "
                        "or the driver's for a still target)")
    p.add_argument("--loop", action="store_true", default=None,
                   help="loop a driver shorter than the target (default: rest on its neutral after it ends)")
    p.add_argument("--no-pose", dest="pose", action="store_false", default=None,
                   help="still target: keep the head still instead of following the driver's head motion")
    p.add_argument("--max-size", type=int, metavar="PIXELS", help="cap a still target's longer side (default 1280)")
    p.add_argument("--crf", type=int, help="H.264 quality, lower is better (default 21)")
    p.add_argument("--x264-preset", dest="x264_preset", metavar="NAME",
                   help="x264 speed preset (default superfast)")
    p.add_argument("--preview", type=Path, metavar="PATH",
                   help="also write a side-by-side driver | target | result video")
    add_generator_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def add_generator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", choices=("warp", "neural"),
                   help="warp: training-free, CPU (default); neural: the learned generator, needs --checkpoint")
    p.add_argument("--checkpoint", metavar="DIR", help="--generator neural: a directory written by retarget train")
    p.add_argument("--device", help="--generator neural: cuda, cuda:1 or cpu (default: CUDA when there is one)")


def generator_options(args: argparse.Namespace) -> dict:
    return {"generator": args.generator, "checkpoint": args.checkpoint, "device": args.device}


def add_gain_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gain", action="append", default=[], metavar="NAME=GAIN",
                   help="gain on one AU (AU12=1.5) or region (brows, eyes, mouth: brows=0); repeatable")
    p.add_argument("--only", metavar="REGIONS", help="drive only these regions (comma-separated: brows,eyes,mouth); "
                   "the others keep the target's own expression")
    p.add_argument("--exclude", metavar="REGIONS", help="regions that keep the target's own expression")


def parse_pairs(items: list[str], flag: str, signed: bool = False) -> dict[str, float]:
    """``["AU12=1.5", "brows=0"]`` -> ``{"AU12": 1.5, "brows": 0.0}``; a malformed item raises ValueError."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[_au_name(name.strip())] = float(value)
        except ValueError:
            example = "AU12=+2" if signed else "AU12=1.5"
            raise ValueError(f"{flag} {item!r}: expected NAME=NUMBER, e.g. {example}") from None
    return out


def _au_name(name: str) -> str:
    """Accept AU12, au12 and AU1 for AU01."""
    if name.upper().startswith("AU") and name[2:].isdigit():
        return f"AU{int(name[2:]):02d}"
    return name.lower()


def _regions(text: str | None) -> list[str] | None:
    return [r.strip().lower() for r in text.split(",") if r.strip()] if text else None


def entry() -> None:
    """The ``retarget`` command (console script and ``python -m retarget``): ``main``, then a quick exit.

    Finalising the interpreter after the job (mediapipe's graphs, numba's compiler, every module torn down) took
    0.2-0.4 s on the 720p benchmark; by the time ``main`` returns every file it wrote is closed, so only the
    standard streams are flushed before ``os._exit``. An exception (argparse's usage exit included) leaves
    through the normal exit.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .heap import limit_arenas

    limit_arenas()  # the command line owns its process: its threads share two heaps (README, speed and memory)
    if argv and argv[0] == "eval":
        return eval_main(argv[1:])
    if argv and argv[0] == "analyze":
        from .cli_analyze import analyze_main

        return analyze_main(argv[1:])
    if argv and argv[0] == "edit":
        return edit_main(argv[1:])
    if argv and argv[0] == "train":
        from .cli_train import train_main

        return train_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import retarget

    try:
        gains = parse_pairs(args.gain, "--gain")
    except ValueError as exc:
        parser.error(str(exc))
    options = {
        "gains": gains or None, "only": _regions(args.only), "exclude": _regions(args.exclude), "fps": args.fps,
        "intensity": args.intensity, "drive_neutral": args.drive_neutral, "target_neutral": args.target_neutral,
        "drive_face": args.drive_face, "target_face": args.target_face,
        "audio": args.audio, "loop": args.loop, "pose": args.pose, "max_size": args.max_size, "crf": args.crf,
        "x264_preset": args.x264_preset, **generator_options(args),
    }
    result = _run_job(lambda: retarget(args.drive, args.target, args.output, preset=args.preset,
                                       preview=args.preview, progress=not args.quiet, **options), args.debug)
    if isinstance(result, int):
        return result
    lost = ""
    if result.target_frames_without_face:
        lost += f", {result.target_frames_without_face} target frames without a face passed through"
    if result.drive_frames_without_face:
        lost += f", {result.drive_frames_without_face} driver frames without a face held"
    if not args.quiet:
        print(f"wrote {result.output} ({result.frames_written} frames{lost}); report {result.config_path}",
              file=sys.stderr)
        for note in result.notes:
            print(f"retarget: note: {note}", file=sys.stderr)
    return 0


def _run_job(job, debug: bool, interrupted: str = "interrupted; no output written"):
    """Run ``job()`` and return its result, or the exit code of its failure (1, or 130 when interrupted)."""
    from .errors import RetargetError
    from .threads import opencv_on_one_thread

    opencv_on_one_thread()  # the command line owns its process; the job's own threads fill the cores
    try:
        return job()
    except RetargetError as exc:
        return _fail(str(exc), debug)
    except KeyboardInterrupt:
        print(f"retarget: {interrupted}", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure is still one line unless --debug
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", debug)


def _fail(message: str, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    print(f"retarget: error: {message}", file=sys.stderr)
    return 1


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def build_eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retarget eval", description="Measure results the way the field does: self-reenactment (a clip's "
        "first frame driven by the clip, against the real frames and the no-motion baseline) and "
        "cross-reenactment (AU fidelity, shape, background, jitter). Writes report.json, report.md, contact.png "
        "and AU plots into --out.")
    p.add_argument("--self", dest="selfs", nargs="+", default=[], metavar="CLIP",
                   help="clips for self-reenactment (files, folders of clips, or .txt lists of paths)")
    p.add_argument("--cross", nargs=2, action="append", default=[], metavar=("DRIVE", "TARGET"),
                   help="a driver and a target (video or still); repeat for more pairs")
    p.add_argument("--cross-list", type=Path, help="a text file of 'DRIVE TARGET' lines")
    p.add_argument("--out", type=Path, required=True, help="folder for the reports")
    p.add_argument("--generator", action="append", default=None, metavar="NAME",
                   help="generator to evaluate (default: warp); repeat to compare several in one table")
    p.add_argument("--checkpoint", metavar="DIR", help="for --generator neural: a directory written by retarget train")
    p.add_argument("--device", help="for --generator neural: cuda or cpu (default: CUDA when there is one)")
    p.add_argument("--preset", help="configs/NAME.yaml or a YAML file for the runs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="print tracebacks of failing items")
    return p


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.suffix == ".txt" and path.is_file():
            out += [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(path)
    return out


def eval_main(argv: list[str]) -> int:
    args = build_eval_parser().parse_args(argv)
    from .errors import RetargetError
    from .evaluate import run_eval

    crosses = [(Path(d), Path(t)) for d, t in args.cross]
    try:
        if args.cross_list is not None:
            for line in args.cross_list.read_text().splitlines():
                if line.strip():
                    drive, target = line.split()
                    crosses.append((Path(drive), Path(target)))
        selfs = _expand(args.selfs)
        for path in selfs + [p for pair in crosses for p in pair]:
            if not path.exists():
                raise RetargetError(f"{path} not found")
        if not selfs and not crosses:
            raise RetargetError("nothing to evaluate: give --self clips and/or --cross pairs")
        options = {"preset": args.preset} if args.preset else {}
        if args.checkpoint:
            options.update(checkpoint=args.checkpoint, device=args.device)
        items = run_eval(selfs, crosses, args.out, options, progress=not args.quiet, debug=args.debug,
                         generators=tuple(args.generator or ["warp"]))
    except (RetargetError, OSError, ValueError) as exc:
        return _fail(str(exc), args.debug)
    failed = sum(1 for i in items if i.error)
    print(f"evaluated {len(items) - failed} of {len(items)} items; reports in {args.out}", file=sys.stderr)
    return 0 if failed == 0 else 1


def build_edit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retarget edit", description="Relative AU editing without a driver: add AU changes to the target's "
        "own expression in every frame (a video), or to a still portrait (an image, or a clip with --duration).",
        epilog="examples:\n  retarget edit portrait.jpg --au AU12=+2 -o smiling.png\n"
        "  retarget edit clip.mp4 --au AU04=-1 --au AU01=+1.5 --from 2 --to 5 --ramp 0.5 -o out.mp4\n"
        "  retarget edit portrait.jpg --au AU45=+5 --duration 2 --from 0.5 --to 1.5 --ramp 0.3 -o blink.mp4",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", type=Path, help="video or still portrait (jpg, png, webp)")
    p.add_argument("--au", action="append", default=[], metavar="AUxx=CHANGE", required=True,
                   help="relative change of one AU on the 0-5 scale, e.g. AU12=+2 or AU04=-1; repeatable. A "
                   "decrease never goes below the face's own neutral")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="mp4 for a video (or a still with --duration); png/jpg/webp for a still")
    p.add_argument("--from", dest="start", type=float, metavar="SECONDS", help="edit from this time (default: start)")
    p.add_argument("--to", dest="stop", type=float, metavar="SECONDS", help="edit until this time (default: end)")
    p.add_argument("--ramp", type=float, default=0.0, metavar="SECONDS",
                   help="ease the edit in after --from and out before --to over this long (default 0)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="a still target: make a clip this long")
    p.add_argument("--fps", type=float, help="frame rate of a clip made from a still (default 25)")
    p.add_argument("--preset", help="configs/NAME.yaml or a YAML file")
    p.add_argument("--target-neutral", type=float, metavar="SECONDS",
                   help="time of the target video's neutral face (default: its calmest frame)")
    p.add_argument("--target-face", metavar="WHICH", help=FACE_HELP.format(clip="target"))
    p.add_argument("--max-size", type=int, metavar="PIXELS", help="cap a still target's longer side (default 1280)")
    p.add_argument("--crf", type=int, help="H.264 quality, lower is better (default 21)")
    add_generator_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def edit_main(argv: list[str]) -> int:
    parser = build_edit_parser()
    args = parser.parse_args(argv)
    from . import edit

    try:
        deltas = parse_pairs(args.au, "--au", signed=True)
    except ValueError as exc:
        parser.error(str(exc))
    if args.ramp < 0:
        parser.error("--ramp must not be negative")
    options = {"fps": args.fps, "target_neutral": args.target_neutral, "target_face": args.target_face,
               "max_size": args.max_size, "crf": args.crf,
               **generator_options(args)}
    result = _run_job(lambda: edit(args.target, args.output, deltas, start=args.start, stop=args.stop,
                                   ramp=args.ramp, duration=args.duration, preset=args.preset,
                                   progress=not args.quiet, **options), args.debug)
    if isinstance(result, int):
        return result
    if not args.quiet:
        print(f"wrote {result.output} ({result.frames_written} frames); report {result.config_path}", file=sys.stderr)
    return 0
