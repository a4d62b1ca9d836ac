"""``retarget analyze``: per-frame AU intensities of one clip or still, as an OpenFace-style CSV and/or a plot.

Exit codes: 0 ok, 1 failure (one ``retarget: error:`` line), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .cli import _fail

EPILOG = """\
examples:
  retarget analyze clip.mp4 --csv clip_aus.csv --plot clip_aus.png
  retarget analyze portrait.jpg                 (the CSV goes to standard output)
  retarget analyze clip.mp4 --neutral 1.5 > clip_aus.csv

CSV columns (OpenFace 2 layout): frame, face_id, timestamp, confidence, success, pose_Tx, pose_Ty, pose_Tz
(mm), pose_Rx, pose_Ry, pose_Rz (radians), AU01_r ... AU45_r (0-5, relative to the face's neutral).
"""


def build_analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retarget analyze", description="Measure a face's 17 action-unit intensities (0-5, relative to "
        "its own neutral), head pose and tracking confidence in every frame of a video or a still image.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", type=Path, metavar="CLIP", help="video or still image (jpg, png, webp)")
    p.add_argument("--csv", type=Path, metavar="PATH", help="CSV to write (OpenFace 2 columns)")
    p.add_argument("--plot", type=Path, metavar="PATH", help="picture of the AU curves (.png, .svg or .pdf)")
    p.add_argument("--neutral", type=float, metavar="SECONDS",
                   help="time of the neutral face the AUs are measured from (default: the calmest frame)")
    p.add_argument("--face", metavar="WHICH", help="which face when the clip shows several: largest (default), "
                   "left, right, or X,Y (pixels of the frame, on the face); chosen on the first frame with a face")
    p.add_argument("--preset", help="configs/NAME.yaml or a YAML file (its smoothing settings apply)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def analyze_main(argv: list[str]) -> int:
    args = build_analyze_parser().parse_args(argv)
    from .analyze import analyze
    from .config import resolve
    from .errors import RetargetError

    to_stdout = args.csv is None and args.plot is None
    try:
        config = resolve(args.preset, drive_neutral=args.neutral, drive_face=args.face)
        if to_stdout:
            curves = _analyze_to_stdout(analyze, args, config)
        else:
            curves = analyze(args.clip, args.csv, args.plot, config, show_progress=not args.quiet)
    except RetargetError as exc:
        return _fail(str(exc), args.debug)
    except KeyboardInterrupt:
        print("retarget: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an unexpected failure is still one line unless --debug
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", args.debug)
    if not args.quiet:
        lost = int((~curves.success).sum())
        written = ", ".join(str(p) for p in (args.csv, args.plot) if p is not None) or "standard output"
        print(f"analysed {len(curves)} frames of {args.clip}"
              + (f" ({lost} without a face)" if lost else "") + f"; wrote {written}", file=sys.stderr)
    return 0


def _analyze_to_stdout(analyze, args: argparse.Namespace, config):
    """Write the CSV to a temporary file, then copy it to standard output (nothing is printed on failure)."""
    with tempfile.TemporaryDirectory(prefix="retarget-analyze-") as tmp:
        path = Path(tmp) / "aus.csv"
        curves = analyze(args.clip, path, None, config, show_progress=not args.quiet)
        sys.stdout.write(path.read_text(encoding="utf-8"))
        sys.stdout.flush()
    return curves
