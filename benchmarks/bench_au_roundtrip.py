"""AU round trip: analyse a driver, drive a target from the CSV, analyse the output, correlate the AU curves.

    python benchmarks/bench_au_roundtrip.py                     # clean drivers on img_lp_s42, saves results
    python benchmarks/bench_au_roundtrip.py --target vid_lp_s18.mp4 --drivers drv_lp_d18.mp4

For each driver: ``retarget analyze DRIVER --csv aus.csv``, ``retarget aus.csv TARGET -o out.mp4`` (the AU-to-
shape model draws each row on the target's face), ``retarget analyze out.mp4 --csv back.csv``, then the Pearson
correlation per AU between the two CSVs' curves (rows matched by timestamp; AUs whose driver curve barely moves,
peak-to-peak < 0.5, are left out as undefined). The goal line then takes, for each goal AU, the mean over the
drivers in which that AU occurs (the driver's curve reaches intensity 1, FACS's trace level): below it a curve is
tracker noise and crosstalk, and r says nothing about the transfer. The outputs stay in --work (they are made from
third-party media); only the numbers go to benchmarks/results/DATE-au-roundtrip.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine_summary, save_result

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
CLEAN_DRIVERS = ["drv_lp_d0.mp4", "drv_lp_d3.mp4", "drv_lp_d9.mp4", "drv_lp_d18.mp4", "drv_lp_d19.mp4"]
GOAL_AUS = ("AU01", "AU02", "AU12", "AU25", "AU26", "AU45")  # the issue's >= 0.8 goal
OCCURS = 1.0  # an AU occurs in a driver whose curve reaches this intensity (FACS trace, A)


def correlate(a: np.ndarray, b: np.ndarray, min_range: float = 0.5) -> float | None:
    """Pearson r of two curves, None where the first barely moves (r is undefined or noise there)."""
    if np.ptp(a) < min_range or np.std(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def roundtrip(driver: Path, target: Path, work: Path) -> tuple[dict[str, float | None], dict[str, float]]:
    """Per AU: the round trip's r (None where undefined) and the driver's peak intensity."""
    sys.path.insert(0, str(ROOT))
    from retarget.aucsv import read_au_csv
    from retarget.cli import main
    from retarget.types import AU_NAMES

    work.mkdir(parents=True, exist_ok=True)
    stem = f"{driver.stem}__{target.stem}"
    csv, out, back = work / f"{stem}.csv", work / f"{stem}.mp4", work / f"{stem}.back.csv"
    for argv in (["analyze", str(driver), "--csv", str(csv), "-q"],
                 [str(csv), str(target), "-o", str(out), "-q", "--no-pose"],
                 ["analyze", str(out), "--csv", str(back), "-q"]):
        if main(argv) != 0:
            raise SystemExit(f"failed: retarget {' '.join(argv)}")
    src, got = read_au_csv(csv), read_au_csv(back)
    # rows by timestamp: the output of a still target has the CSV's own frame times
    idx = np.clip(np.searchsorted(got.times, src.times - 1e-4), 0, len(got.times) - 1)
    ok = src.success & got.success[idx]
    r = {au: correlate(src.aus[ok, k], got.aus[idx[ok], k]) for k, au in enumerate(AU_NAMES)}
    return r, {au: float(src.aus[ok, k].max(initial=0.0)) for k, au in enumerate(AU_NAMES)}


def goal_lines(results: dict[str, dict[str, float | None]], peaks: dict[str, dict[str, float]]) -> str:
    """Per goal AU: the mean r over the drivers in which it occurs, and which drivers those are."""
    lines = [f"| AU | mean r where it occurs (driver peak >= {OCCURS:g}) | drivers | goal >= 0.8 |", "|---|---:|---|---|"]
    for au in GOAL_AUS:
        used = {d: r[au] for d, r in results.items() if r[au] is not None and peaks[d][au] >= OCCURS}
        if not used:
            lines.append(f"| {au} | | none | |")
            continue
        mean = float(np.mean(list(used.values())))
        names = ", ".join(f"{Path(d).stem.removeprefix('drv_lp_')} {v:.2f}" for d, v in used.items())
        lines.append(f"| {au} | {mean:.2f} | {names} | {'met' if mean >= 0.8 else 'not met'} |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, float | None]]) -> str:
    from retarget.types import AU_NAMES

    lines = ["| driver | " + " | ".join(AU_NAMES) + " |", "|---|" + "---:|" * len(AU_NAMES)]
    for name, r in results.items():
        cells = [("" if r[a] is None else f"{r[a]:.2f}") for a in AU_NAMES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = []
    for a in AU_NAMES:
        vals = [r[a] for r in results.values() if r[a] is not None]
        means.append(f"**{np.mean(vals):.2f}**" if vals else "")
    lines.append("| mean | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drivers", nargs="+", default=CLEAN_DRIVERS)
    p.add_argument("--target", default="img_lp_s42.jpg")
    p.add_argument("--work", type=Path, default=Path("/tmp/au_roundtrip"))
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    if not MEDIA.is_dir():
        raise SystemExit(f"needs the shared media in {MEDIA}")
    start = time.time()
    both = {d: roundtrip(MEDIA / d, MEDIA / args.target, args.work) for d in args.drivers}
    results = {d: r for d, (r, _) in both.items()}
    peaks = {d: p for d, (_, p) in both.items()}
    text = (f"# AU round trip: driver -> CSV -> {args.target} -> CSV\n\n"
            f"Machine: {machine_summary()}.\n"
            f"Command: `python benchmarks/bench_au_roundtrip.py --target {args.target} "
            f"--drivers {' '.join(args.drivers)}` ({time.time() - start:.0f} s).\n\n"
            "Pearson r per AU between the driver's analysed AU curves and the re-analysed output's; blank where "
            "the driver's curve moves less than 0.5.\n\n" + table(results) + "\n\n"
            "Goal AUs, over the drivers in which the AU occurs:\n\n" + goal_lines(results, peaks) + "\n")
    print(text)
    if not args.no_save:
        save_result("au-roundtrip", text)


if __name__ == "__main__":
    main()
