"""Command line: flags -> configuration -> ``retarget.retarget``. Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  retarget drive.mp4 target.mp4 -o out.mp4
  retarget eval --self clip.mp4 --cross drive.mp4 portrait.jpg --out eval/   (see retarget eval --help)
  retarget drive.mp4 portrait.jpg -o out.mp4 --no-pose --max-size 720
  retarget drive.mp4 target.mp4 -o out.mp4 --preset subtle --preview side_by_side.mp4

Beside OUT, OUT.retarget.json records the resolved configuration and the per-frame AU trajectories.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retarget", description="The target's face performs the driver's facial expressions, keeping its "
        "own identity, head pose, lighting and background.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("drive", type=Path, help="video whose facial expressions are transferred")
    p.add_argument("target", type=Path, help="video or still portrait (jpg, png, webp) that receives them")
    p.add_argument("-o", "--output", type=Path, required=True, help="mp4 to write (replaced only on success)")
    p.add_argument("--preset", help="configs/NAME.yaml or a YAML file; the flags below override it")
    p.add_argument("--intensity", type=float, help="gain on the driver's expression change (default 1.0)")
    p.add_argument("--drive-neutral", type=float, metavar="SECONDS",
                   help="time of the driver's neutral face (default: its calmest frame)")
    p.add_argument("--target-neutral", type=float, metavar="SECONDS",
                   help="time of the target's neutral face (default: its calmest frame)")
    p.add_argument("--audio", choices=("auto", "target", "drive", "none"),
                   help="audio source, copied without re-encoding (default auto: the target video's, "
                        "or the driver's for a still target)")
    p.add_argument("--loop", action="store_true", default=None,
                   help="loop a driver shorter than the target (default: rest on its neutral after it ends)")
    p.add_argument("--no-pose", dest="pose", action="store_false", default=None,
                   help="still target: keep the head still instead of following the driver's head motion")
    p.add_argument("--max-size", type=int, metavar="PIXELS", help="cap a still target's longer side (default 1280)")
    p.add_argument("--crf", type=int, help="H.264 quality, lower is better (default 18)")
    p.add_argument("--x264-preset", dest="x264_preset", metavar="NAME",
                   help="x264 speed preset (default veryfast)")
    p.add_argument("--preview", type=Path, metavar="PATH",
                   help="also write a side-by-side driver | target | result video")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "eval":
        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    from . import retarget
    from .errors import RetargetError

    options = {
        "intensity": args.intensity, "drive_neutral": args.drive_neutral, "target_neutral": args.target_neutral,
        "audio": args.audio, "loop": args.loop, "pose": args.pose, "max_size": args.max_size, "crf": args.crf,
        "x264_preset": args.x264_preset,
    }
    try:
        result = retarget(args.drive, args.target, args.output, preset=args.preset, preview=args.preview,
                          progress=not args.quiet, **options)
    except RetargetError as exc:
        return _fail(str(exc), args.debug)
    except KeyboardInterrupt:
        print("retarget: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure is still one line unless --debug
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", args.debug)
    lost = ""
    if result.target_frames_without_face:
        lost += f", {result.target_frames_without_face} target frames without a face passed through"
    if result.drive_frames_without_face:
        lost += f", {result.drive_frames_without_face} driver frames without a face held"
    if not args.quiet:
        print(f"wrote {result.output} ({result.frames_written} frames{lost}); report {result.config_path}",
              file=sys.stderr)
    return 0


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
        items = run_eval(selfs, crosses, args.out, options, progress=not args.quiet, debug=args.debug,
                         generators=tuple(args.generator or ["warp"]))
    except (RetargetError, OSError, ValueError) as exc:
        return _fail(str(exc), args.debug)
    failed = sum(1 for i in items if i.error)
    print(f"evaluated {len(items) - failed} of {len(items)} items; reports in {args.out}", file=sys.stderr)
    return 0 if failed == 0 else 1
