"""``retarget eval``: self- and cross-reenactment measured the way the field does (../shared/FIELD.md).

- Self-reenactment (FOMM / LivePortrait protocol): the first frame of a clip is the still target and the clip
  itself drives it. Every output frame is compared with the real frame on the same aligned 256x256 face crop
  (L1, PSNR, SSIM, AKD) and on AUs, beside the no-motion baseline (the still repeated).
- Cross-reenactment (driver A -> target B): the output's re-measured AU trajectories against the driver's (each
  relative to its own neutral), shape preservation, background PSNR outside the face, and temporal jitter.

Every run writes ``report.json``, ``report.md``, ``contact.png`` and one AU plot per pair into the output folder;
a failing item is reported and the rest go on.
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .analysis import ClipAnalysis, analyse_clip
from .face import track_frames
from .quiet import native_stderr_silenced
from .types import AU_NAMES, Track
from .video import probe, read_frames, read_still

# AUs reported in the plots and the Markdown summary (the ones the clean drivers exercise)
KEY_AUS = ("AU01", "AU04", "AU12", "AU25", "AU26", "AU45")


@dataclass
class EvalItem:
    kind: str  # "self" or "cross"
    drive: str
    target: str
    generator: str = "warp"
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)  # self-reenactment: the no-motion baseline
    per_au: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    output: str | None = None  # the rendered video (in the run's scratch folder)
    traces: dict[str, list[float]] = field(default_factory=dict)  # time and KEY_AUS, reference vs output


def _track(path: Path) -> tuple[Track, float]:
    info = probe(path)
    if info.is_still:
        image = read_still(path)
        from .types import Frame

        return track_frames([Frame(0, 0.0, image)], image.shape[1], image.shape[0], still=True), 0.0
    return track_frames(read_frames(path), info.width, info.height), float(info.fps)


def _analyse(track: Track, fps: float) -> ClipAnalysis:
    return analyse_clip(track, fps or 30.0, None, 0.2, 0.33)


def _au_agreement(reference: ClipAnalysis, output: ClipAnalysis, at: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-AU MAE and correlation of ``output``'s AUs (at its own frames) against ``reference``'s, sampled at ``at``."""
    from .timeline import sample

    ref = sample(reference.expression.aus, reference.track.times, at)
    out = output.expression.aus
    ok = output.track.found
    result: dict[str, dict[str, float]] = {}
    for k, name in enumerate(AU_NAMES):
        result[name] = {"mae": float(np.abs(ref[ok, k] - out[ok, k]).mean()),
                        "corr": metrics.correlation(ref[ok, k], out[ok, k]),
                        "reference_std": float(ref[ok, k].std())}
    return result


def self_reenactment(clip: Path, work: Path, options: dict[str, Any]) -> EvalItem:
    """Drive the clip's first frame (as a still) with the clip; compare with the real frames."""
    import retarget

    item = EvalItem("self", str(clip), str(clip))
    still = work / f"{clip.stem}_first.png"
    first = next(iter(read_frames(clip)))
    _write_png(still, first.image)
    info = probe(clip)
    output = work / f"self_{clip.stem}.mp4"
    retarget.retarget(clip, still, output, audio="none", max_size=max(info.width, info.height), **options)
    real, fps = _track(clip)
    made, _ = _track(output)
    n = min(len(real), len(made))
    scores: dict[str, list[float]] = {k: [] for k in ("l1", "psnr", "ssim", "akd")}
    base: dict[str, list[float]] = {k: [] for k in ("l1", "psnr", "ssim", "akd")}
    first_points = real.landmarks[0]
    for t, (truth, result) in enumerate(zip(read_frames(clip), read_frames(output))):
        if t >= n or not (real.found[t] and made.found[t]):
            continue
        m = metrics.alignment(real.landmarks[t])
        crop_true, crop_out = metrics.align_face(truth.image, m), metrics.align_face(result.image, m)
        crop_still = metrics.align_face(first.image, m)
        true_pts = metrics.transform_points(real.landmarks[t], m)
        for store, crop, pts in ((scores, crop_out, made.landmarks[t]), (base, crop_still, first_points)):
            store["l1"].append(metrics.l1(crop, crop_true))
            store["psnr"].append(min(metrics.psnr(crop, crop_true), 100.0))
            store["ssim"].append(metrics.ssim(crop, crop_true))
            store["akd"].append(metrics.akd(metrics.transform_points(pts, m), true_pts))
    item.metrics = {k: float(np.mean(v)) for k, v in scores.items()}
    item.baseline = {k: float(np.mean(v)) for k, v in base.items()}
    real_a, made_a = _analyse(real, fps), _analyse(made, fps)
    item.per_au = _au_agreement(real_a, made_a, made_a.track.times)
    item.metrics["au_mae"] = float(np.mean([v["mae"] for v in item.per_au.values()]))
    # the no-motion baseline shows frame 0 throughout: its AUs are the clip's AUs at frame 0
    real_aus = real_a.expression.aus
    item.baseline["au_mae"] = float(np.abs(real_aus[real.found] - real_aus[0]).mean())
    item.metrics["frames"] = float(len(scores["l1"]))
    item.output, item.traces = str(output), _traces(real_a, made_a)
    return item


def _traces(reference: ClipAnalysis, output: ClipAnalysis) -> dict[str, list[float]]:
    from .timeline import sample

    at = output.track.times
    ref = sample(reference.expression.aus, reference.track.times, at)
    traces = {"time": at.round(4).tolist()}
    for name in KEY_AUS:
        k = AU_NAMES.index(name)
        traces[f"{name}_reference"] = ref[:, k].round(3).tolist()
        traces[f"{name}_output"] = output.expression.aus[:, k].round(3).tolist()
    return traces


def cross_reenactment(drive: Path, target: Path, work: Path, options: dict[str, Any]) -> EvalItem:
    """Drive ``target`` with ``drive``; measure expression fidelity, shape, background and jitter."""
    import retarget

    item = EvalItem("cross", str(drive), str(target))
    output = work / f"cross_{drive.stem}__{target.stem}.mp4"
    retarget.retarget(drive, target, output, **options)
    d_track, d_fps = _track(drive)
    t_track, t_fps = _track(target)
    o_track, o_fps = _track(output)
    d, t, o = _analyse(d_track, d_fps), _analyse(t_track, t_fps), _analyse(o_track, o_fps)
    item.per_au = _au_agreement(d, o, o.track.times)
    moving = [v for v in item.per_au.values() if v["reference_std"] > 0.2]  # AUs the driver actually uses
    item.metrics["au_corr"] = float(np.nanmean([v["corr"] for v in moving])) if moving else float("nan")
    item.metrics["au_mae"] = float(np.mean([v["mae"] for v in item.per_au.values()]))
    item.metrics["shape_distance"] = float(np.linalg.norm(t.expression.neutral[:, :2] - o.expression.neutral[:, :2],
                                                          axis=-1).mean())
    item.metrics["background_psnr"] = _background_psnr(target, output, t_track)
    item.metrics["jitter_output"] = metrics.jitter(o.expression.normalised[o.track.found][:, :, :2])
    item.metrics["jitter_drive"] = metrics.jitter(d.expression.normalised[d.track.found][:, :, :2])
    item.output, item.traces = str(output), _traces(d, o)
    return item


def _background_psnr(target: Path, output: Path, target_track: Track, frames: int = 5) -> float:
    """PSNR against the target over pixels farther than 0.8 face sizes from its face, on a few frames.

    A still target larger than the output (``max_size``) is compared at the output's size.
    """
    import cv2

    from .generators.warp import face_size

    info = probe(target)
    still = read_still(target) if info.is_still else None
    sources = None if info.is_still else read_frames(target)
    n = probe(output).frame_count
    picks = set(np.linspace(0, max(0, n - 1), frames).astype(int).tolist())
    values = []
    for k, out in enumerate(read_frames(output)):
        source = still if still is not None else next(sources, None)
        if source is None:
            break
        if k not in picks:
            continue
        src = source if still is not None else source.image
        points = target_track.landmarks[0 if still is not None else min(k, len(target_track) - 1)][:, :2]
        if not np.isfinite(points).all():
            continue
        if still is not None and max(src.shape[:2]) > max(out.image.shape[:2]):  # the output was capped
            scale = max(out.image.shape[:2]) / max(src.shape[:2])
            points = points * scale
            src = cv2.resize(src, (round(src.shape[1] * scale), round(src.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        # the output may carry one padded row or column (odd sizes): compare the common area
        h, w = min(src.shape[0], out.image.shape[0]), min(src.shape[1], out.image.shape[1])
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(points[_hull(points)]).astype(np.int32)], 1)
        far = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3) > 0.8 * face_size(points)
        if far.any():
            values.append(min(metrics.psnr(out.image[:h, :w][far], src[:h, :w][far]), 100.0))
    return float(np.mean(values)) if values else float("nan")


def _hull(points: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.convexHull(points[:, :2].astype(np.float32), returnPoints=False).ravel()


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def run_eval(selfs: list[Path], crosses: list[tuple[Path, Path]], out_dir: Path, options: dict[str, Any],
             progress: bool = True, debug: bool = False, generators: tuple[str, ...] = ("warp",)) -> list[EvalItem]:
    """Run every item with every generator, continuing past failures, and write the reports into ``out_dir``."""
    from .progress import Progress

    out_dir.mkdir(parents=True, exist_ok=True)
    items: list[EvalItem] = []
    with native_stderr_silenced() as stderr, tempfile.TemporaryDirectory(prefix="retarget-eval-") as tmp:
        for generator in generators:
            (Path(tmp) / generator).mkdir()
        bar = Progress(progress).bar("evaluating", (len(selfs) + len(crosses)) * len(generators), stderr, unit="item")
        work = Path(tmp)
        jobs = [("self", c, None) for c in selfs] + [("cross", d, t) for d, t in crosses]
        for generator in generators:
            run_options = {**options, "generator": generator}
            if generator != "neural":  # the learned generator's settings mean nothing to the others
                run_options = {k: v for k, v in run_options.items() if k not in ("checkpoint", "device")}
            for kind, a, b in jobs:
                start = time.perf_counter()
                try:
                    if kind == "self":
                        item = self_reenactment(a, work / generator, run_options)
                    else:
                        item = cross_reenactment(a, b, work / generator, run_options)
                except Exception as exc:  # reported in the tables, the other items go on
                    item = EvalItem(kind, str(a), str(b if b is not None else a),
                                    error=f"{type(exc).__name__}: {exc}".splitlines()[0])
                    if debug:
                        traceback.print_exc(file=stderr)
                item.generator, item.seconds = generator, time.perf_counter() - start
                items.append(item)
                bar.update()
        bar.close()
        write_reports(items, out_dir, work, options)
    return items


def write_reports(items: list[EvalItem], out_dir: Path, work: Path, options: dict[str, Any]) -> None:
    from . import eval_report

    (out_dir / "report.json").write_text(json.dumps({
        "options": options, "au_names": list(AU_NAMES),
        "items": [item.__dict__ for item in items]}, indent=1, default=float))
    (out_dir / "report.md").write_text(eval_report.markdown(items))
    eval_report.contact_sheet(items, work, out_dir / "contact.png")
    for item in items:
        if item.error is None and item.kind == "cross":
            suffix = "" if item.generator == "warp" else f"__{item.generator}"
            name = f"aus_{Path(item.drive).stem}__{Path(item.target).stem}{suffix}.png"
            eval_report.au_plot(item, work, out_dir / name)
