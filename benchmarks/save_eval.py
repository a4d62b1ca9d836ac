"""Run ``retarget eval`` on the shared clips and keep its tables as benchmarks/results/YYYY-MM-DD-eval.md.

Only the numbers are kept (the report's Markdown); the contact sheet and plots, which are pictures made from
third-party media, stay in the scratch folder given with --out and must not be committed.

    python benchmarks/save_eval.py --out /tmp/eval_full           # runs the standard set, then saves
    python benchmarks/save_eval.py --out /tmp/eval_full --no-run  # saves an existing report
    python benchmarks/save_eval.py --out A --out B --no-run        # merges the items of several runs
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

from machine import machine_summary

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
DRIVERS = ["drv_lp_d0.mp4", "drv_lp_d3.mp4", "drv_lp_d9.mp4", "drv_lp_d14.mp4", "drv_lp_d18.mp4", "drv_lp_d19.mp4"]
TARGETS = ["img_lp_s42.jpg", "img_lp_s2.jpg", "vid_lp_s18.mp4", "vid_vx_RD_Radio10_0_clip_0.mp4"]


def command(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "retarget", "eval", "--self", *[str(MEDIA / d) for d in DRIVERS]]
    for d in DRIVERS:
        for t in TARGETS:
            cmd += ["--cross", str(MEDIA / d), str(MEDIA / t)]
    return cmd + ["--out", str(out)]


def merged_markdown(folders: list[Path]) -> str:
    """The eval tables of every item in the folders' report.json files (later folders win for the same pair)."""
    import json

    sys.path.insert(0, str(ROOT))
    from retarget.eval_report import markdown
    from retarget.evaluate import EvalItem

    items: dict[tuple[str, str, str, str], EvalItem] = {}
    for folder in folders:
        for raw in json.loads((folder / "report.json").read_text())["items"]:
            item = EvalItem(**raw)
            key = (item.kind, item.drive, item.target, item.generator)
            if item.error is None or key not in items:
                items[key] = item
    return markdown(list(items.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, action="append", required=True,
                        help="scratch folder of an eval run (not committed); repeat to merge runs")
    parser.add_argument("--no-run", action="store_true", help="save the report already in --out")
    args = parser.parse_args()
    if not MEDIA.is_dir():
        raise SystemExit(f"shared media not found at {MEDIA}")
    if not args.no_run:
        subprocess.run(command(args.out[0]), check=False)
    report = merged_markdown(args.out)
    today = datetime.date.today().isoformat()
    header = [f"# retarget eval — {today}", "",
              f"- Command: `python -m retarget eval --self <{len(DRIVERS)} drivers> "
              f"--cross <{len(DRIVERS)} drivers x {len(TARGETS)} targets> --out DIR` "
              f"(`python benchmarks/save_eval.py --out DIR`)",
              f"- Drivers: {', '.join(DRIVERS)}; targets: {', '.join(TARGETS)} (../shared/media)",
              f"- Machine: {machine_summary()}",
              ""]
    body = report.split("\n", 1)[1] if report.startswith("# ") else report
    path = ROOT / "benchmarks" / "results" / f"{today}-eval.md"
    path.write_text("\n".join(header) + body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
