"""The human-readable side of ``retarget eval``: Markdown tables, the contact sheet and AU plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import KEY_AUS, EvalItem


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "—" if value is None or np.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{digits}f}"


def _name(item: EvalItem, path: str, several: bool) -> str:
    """A file's name, with the generator when the report compares several."""
    return f"{Path(path).name} [{item.generator}]" if several else Path(path).name


def markdown(items: list[EvalItem]) -> str:
    several = len({i.generator for i in items}) > 1
    lines = ["# retarget eval", ""]
    selfs = [i for i in items if i.kind == "self"]
    crosses = [i for i in items if i.kind == "cross"]
    if selfs:
        lines += ["## Self-reenactment (first frame as the still target, the clip as driver; aligned 256x256 crop)",
                  "", "Lower is better for L1, AKD and AU MAE; higher for PSNR and SSIM. "
                  "Baseline = the still repeated (no motion).", "",
                  "| clip | frames | L1 | baseline | PSNR | baseline | SSIM | baseline | AKD px | baseline "
                  "| AU MAE | baseline |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for i in selfs:
            if i.error:
                lines.append(f"| {_name(i, i.drive, several)} | failed: {i.error} |" + " |" * 10)
                continue
            m, b = i.metrics, i.baseline
            lines.append(f"| {_name(i, i.drive, several)} | {int(m['frames'])} | {_fmt(m['l1'])} | {_fmt(b['l1'])} "
                         f"| {_fmt(m['psnr'], 2)} | {_fmt(b['psnr'], 2)} | {_fmt(m['ssim'])} | {_fmt(b['ssim'])} "
                         f"| {_fmt(m['akd'], 2)} | {_fmt(b['akd'], 2)} | {_fmt(m['au_mae'])} | {_fmt(b['au_mae'])} |")
        ok = [i for i in selfs if not i.error]
        if ok:
            mean = {k: float(np.mean([i.metrics[k] for i in ok])) for k in ("l1", "psnr", "ssim", "akd", "au_mae")}
            base = {k: float(np.mean([i.baseline[k] for i in ok])) for k in ("l1", "psnr", "ssim", "akd", "au_mae")}
            lines.append(f"| **mean** | | {_fmt(mean['l1'])} | {_fmt(base['l1'])} | {_fmt(mean['psnr'], 2)} "
                         f"| {_fmt(base['psnr'], 2)} | {_fmt(mean['ssim'])} | {_fmt(base['ssim'])} "
                         f"| {_fmt(mean['akd'], 2)} | {_fmt(base['akd'], 2)} | {_fmt(mean['au_mae'])} "
                         f"| {_fmt(base['au_mae'])} |")
            lines += ["", "Against the baseline: "
                      + ", ".join(f"{k} {'-' if mean[k] < base[k] else '+'}{abs(mean[k] - base[k]):.3f}"
                                  for k in ("l1", "akd", "au_mae"))
                      + f", PSNR {mean['psnr'] - base['psnr']:+.2f} dB, SSIM {mean['ssim'] - base['ssim']:+.3f}."]
        lines.append("")
    if crosses:
        lines += ["## Cross-reenactment (driver A -> target B)", "",
                  "AU corr: mean correlation of the output's re-measured AUs with the driver's, over the AUs the "
                  "driver moves (std > 0.2); shape: target vs output neutral face, pose-normalised units; "
                  "background PSNR: pixels farther than 0.8 face sizes from the face.", "",
                  "| driver | target | AU corr | AU MAE | " + " | ".join(f"{a} r" for a in KEY_AUS)
                  + " | shape | background dB | jitter out / driver |",
                  "|---|---|---|---|" + "---|" * len(KEY_AUS) + "---|---|---|"]
        for i in crosses:
            if i.error:
                lines.append(f"| {_name(i, i.drive, several)} | {Path(i.target).name} | failed: {i.error} |"
                             + " |" * (len(KEY_AUS) + 4))
                continue
            m = i.metrics
            per = " | ".join(_fmt(i.per_au[a]["corr"], 2) for a in KEY_AUS)
            lines.append(f"| {_name(i, i.drive, several)} | {Path(i.target).name} | {_fmt(m['au_corr'], 2)} "
                         f"| {_fmt(m['au_mae'])} | {per} | {_fmt(m['shape_distance'], 4)} "
                         f"| {_fmt(m['background_psnr'], 1)} | {_fmt(m['jitter_output'], 4)} / "
                         f"{_fmt(m['jitter_drive'], 4)} |")
        lines.append("")
    failed = [i for i in items if i.error]
    if failed:
        lines += [f"{len(failed)} of {len(items)} items failed; see the tables.", ""]
    return "\n".join(lines)


def _frames_at(path: Path, fractions: tuple[float, ...], height: int) -> list[np.ndarray]:
    import cv2

    from .video import probe, read_frames, read_still

    info = probe(path)
    if info.is_still:
        image = read_still(path)
        return [cv2.resize(image, (max(1, round(image.shape[1] * height / image.shape[0])), height))] * len(fractions)
    picks = [int(f * max(0, info.frame_count - 1)) for f in fractions]
    out: dict[int, np.ndarray] = {}
    for frame in read_frames(path):
        if frame.index in picks:
            img = frame.image
            out[frame.index] = cv2.resize(img, (max(1, round(img.shape[1] * height / img.shape[0])), height))
        if frame.index >= max(picks):
            break
    last = next(iter(out.values())) if out else np.zeros((height, height, 3), np.uint8)
    return [out.get(p, last) for p in picks]


def contact_sheet(items: list[EvalItem], work: Path, path: Path, height: int = 160,
                  fractions: tuple[float, ...] = (0.25, 0.5, 0.75)) -> None:
    """One row per item: driver, target and result frames at a few times, side by side."""
    from PIL import Image, ImageDraw

    rows = []
    for item in items:
        if item.error or not item.output or not Path(item.output).exists():
            continue
        cells = []
        for fr in fractions:
            # a self-reenactment's target is the clip's first frame, shown as the still it was
            target_at = 0.0 if item.kind == "self" else fr
            trio = [_frames_at(Path(item.drive), (fr,), height)[0],
                    _frames_at(Path(item.target), (target_at,), height)[0],
                    _frames_at(Path(item.output), (fr,), height)[0]]
            cells.append(np.concatenate(trio, axis=1))
        rows.append((f"{item.kind}: {Path(item.drive).name} -> {Path(item.target).name}",
                     np.concatenate(cells, axis=1)))
    if not rows:
        Image.new("RGB", (320, 40), "white").save(path)
        return
    width = max(r.shape[1] for _, r in rows)
    sheet = Image.new("RGB", (width, sum(r.shape[0] + 18 for _, r in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for label, row in rows:
        draw.text((4, y + 3), label + "   (each time: driver | target | result)", fill="black")
        sheet.paste(Image.fromarray(row), (0, y + 18))
        y += row.shape[0] + 18
    sheet.save(path)


def au_plot(item: EvalItem, work: Path, path: Path) -> None:
    """Driver vs output trajectories of the key AUs, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array(item.traces.get("time", []))
    fig, axes = plt.subplots(len(KEY_AUS), 1, figsize=(8, 1.6 * len(KEY_AUS)), sharex=True)
    for ax, name in zip(axes, KEY_AUS):
        ax.plot(t, item.traces.get(f"{name}_reference", []), label="driver", color="tab:blue")
        ax.plot(t, item.traces.get(f"{name}_output", []), label="output", color="tab:orange")
        ax.set_ylabel(name)
        ax.set_ylim(-0.2, 5.2)
        ax.text(0.99, 0.8, f"r = {_fmt(item.per_au[name]['corr'], 2)}", transform=ax.transAxes, ha="right")
    axes[0].legend(loc="upper left", ncol=2)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(f"{Path(item.drive).name} -> {Path(item.target).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
