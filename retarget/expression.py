"""AU-related features: pose-normalised displacement from the person's own neutral, and 17 AU intensities.

Every measure is taken on pose-normalised landmarks (``face.estimate_pose``), whose unit is the RMS radius of
the person's rigid landmark set, so the numbers are comparable across people and face sizes. An AU intensity is
the change of one geometric measure from the person's neutral reference, divided by the change that counts as a
full-strength (5) action, clipped to 0-5. The table ``AU_MEASURES`` documents each one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .types import AU_NAMES, Expression


def _y(shapes: np.ndarray, idx) -> np.ndarray:
    return shapes[:, idx, 1]


def _dist(shapes: np.ndarray, a, b) -> np.ndarray:
    return np.linalg.norm(shapes[:, a, :2] - shapes[:, b, :2], axis=-1)


def eye_opening(shapes: np.ndarray) -> np.ndarray:
    """(T, 2) mean lid-to-lid distance of the subject's right and left eye."""
    right = (_y(shapes, lm.RIGHT_LID_PAIRS[:, 1]) - _y(shapes, lm.RIGHT_LID_PAIRS[:, 0]))[:, 2:5].mean(1)
    left = (_y(shapes, lm.LEFT_LID_PAIRS[:, 1]) - _y(shapes, lm.LEFT_LID_PAIRS[:, 0]))[:, 2:5].mean(1)
    return np.stack([right, left], 1)


def _eye_line(shapes: np.ndarray) -> np.ndarray:
    """(T, 2) y of the line through each eye's corners."""
    r = (_y(shapes, lm.RIGHT_EYE_CORNERS[0]) + _y(shapes, lm.RIGHT_EYE_CORNERS[1])) / 2
    l = (_y(shapes, lm.LEFT_EYE_CORNERS[0]) + _y(shapes, lm.LEFT_EYE_CORNERS[1])) / 2
    return np.stack([r, l], 1)


def raw_measures(shapes: np.ndarray) -> dict[str, np.ndarray]:
    """Geometric measures per frame, each (T,), from pose-normalised shapes (T, 478, 3); bigger = more."""
    eye_line = _eye_line(shapes)
    eye_open = eye_opening(shapes)
    inner_brow = eye_line - np.stack([_y(shapes, lm.RIGHT_BROW_INNER).mean(1),
                                      _y(shapes, lm.LEFT_BROW_INNER).mean(1)], 1)
    outer_brow = eye_line - np.stack([_y(shapes, lm.RIGHT_BROW_OUTER).mean(1),
                                      _y(shapes, lm.LEFT_BROW_OUTER).mean(1)], 1)
    upper_lid = eye_line - np.stack([_y(shapes, 159), _y(shapes, 386)], 1)
    lower_lid = np.stack([_y(shapes, 145), _y(shapes, 374)], 1) - eye_line
    cheek = np.stack([_y(shapes, lm.CHEEKS[0]), _y(shapes, lm.CHEEKS[1])], 1) - eye_line
    lip_mid = (_y(shapes, lm.UPPER_LIP_TOP) + _y(shapes, lm.LOWER_LIP_BOTTOM)) / 2
    corner_y = (_y(shapes, lm.MOUTH_CORNERS[0]) + _y(shapes, lm.MOUTH_CORNERS[1])) / 2
    corner_z = (shapes[:, lm.MOUTH_CORNERS[0], 2] + shapes[:, lm.MOUTH_CORNERS[1], 2]) / 2
    return {
        "inner_brow_height": inner_brow.mean(1),
        "outer_brow_height": outer_brow.mean(1),
        "brow_gap": _dist(shapes, lm.RIGHT_BROW_INNER[1], lm.LEFT_BROW_INNER[1]),
        "upper_lid_height": upper_lid.mean(1),
        "lower_lid_height": lower_lid.mean(1),
        "cheek_height": cheek.mean(1),
        "eye_opening": eye_open.mean(1),
        "nose_length": _y(shapes, lm.NOSE_ALAR).mean(1) - _y(shapes, lm.NASION),
        "upper_lip_gap": _y(shapes, lm.UPPER_LIP_TOP) - _y(shapes, lm.SUBNASALE),
        "corner_height": lip_mid - corner_y,
        "corner_depth": corner_z - shapes[:, lm.NOSE_TIP, 2],
        "mouth_width": _dist(shapes, *lm.MOUTH_CORNERS),
        "lip_gap": _y(shapes, lm.LOWER_LIP_INNER) - _y(shapes, lm.UPPER_LIP_INNER),
        "lip_thickness": (_y(shapes, lm.UPPER_LIP_INNER) - _y(shapes, lm.UPPER_LIP_TOP))
        + (_y(shapes, lm.LOWER_LIP_BOTTOM) - _y(shapes, lm.LOWER_LIP_INNER)),
        "chin_to_lip": _y(shapes, lm.CHIN) - _y(shapes, lm.LOWER_LIP_BOTTOM),
        "jaw_length": _y(shapes, lm.CHIN) - _y(shapes, lm.SUBNASALE),
    }


@dataclass(frozen=True)
class AUMeasure:
    """AU intensity = clip(sign * (measure - neutral measure) / full_scale * 5, 0, 5) (minus ``minus``)."""

    measure: str
    sign: float
    full_scale: float  # change in normalised units that reads as intensity 5
    relative: bool = False  # divide the change by the neutral value (for eye opening)


# Full-scale changes were set from strong, clearly visible actions in the development clips
# (a wide smile, a yawn, a hard frown, a full blink); see the README's "Action units" section.
AU_MEASURES: dict[str, AUMeasure] = {
    "AU01": AUMeasure("inner_brow_height", +1, 0.12),
    "AU02": AUMeasure("outer_brow_height", +1, 0.12),
    "AU04": AUMeasure("brow_gap", -1, 0.08),
    "AU05": AUMeasure("upper_lid_height", +1, 0.05),
    "AU06": AUMeasure("cheek_height", -1, 0.06),
    "AU07": AUMeasure("lower_lid_height", -1, 0.04),
    "AU09": AUMeasure("nose_length", -1, 0.06),
    "AU10": AUMeasure("upper_lip_gap", -1, 0.06),
    "AU12": AUMeasure("corner_height", +1, 0.10),
    "AU14": AUMeasure("corner_depth", +1, 0.08),
    "AU15": AUMeasure("corner_height", -1, 0.08),
    "AU17": AUMeasure("chin_to_lip", -1, 0.08),
    "AU20": AUMeasure("mouth_width", +1, 0.20),
    "AU23": AUMeasure("lip_thickness", -1, 0.08),
    "AU25": AUMeasure("lip_gap", +1, 0.30),
    "AU26": AUMeasure("jaw_length", +1, 0.40),
    "AU45": AUMeasure("eye_opening", -1, 1.0, relative=True),
}


def au_intensities(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 17) float32 intensities 0-5 of ``shapes`` (T, 478, 3) relative to ``neutral`` (478, 3)."""
    now = raw_measures(shapes)
    ref = raw_measures(neutral[None])
    out = np.zeros((shapes.shape[0], len(AU_NAMES)), np.float32)
    for k, name in enumerate(AU_NAMES):
        m = AU_MEASURES[name]
        change = now[m.measure] - ref[m.measure][0]
        if m.relative:
            change = change / max(abs(float(ref[m.measure][0])), 1e-6)
        out[:, k] = np.clip(m.sign * change / m.full_scale * 5.0, 0.0, 5.0)
    return np.nan_to_num(out)


def expressiveness(shapes: np.ndarray) -> np.ndarray:
    """(T,) how far each frame is from a resting face, without knowing the neutral yet.

    A resting face has its lips closed and its eyes open, even in a clip that smiles, talks or blinks most of
    the time, so the resting values of all measures are taken from the frames that look like that (closed
    mouth, open eyes); each frame scores its distance from them in units of the AU full scales.
    """
    meas = raw_measures(shapes)
    lip_gap, eye_open = meas["lip_gap"], meas["eye_opening"]
    # closed lips are the smallest gaps; a low percentile still finds them when few frames have them (a clip
    # that smiles or talks 90% of the time), where the 20th percentile would already count open mouths
    resting = (lip_gap <= np.nanpercentile(lip_gap, 5) + 0.02) & (eye_open >= 0.85 * np.nanpercentile(eye_open, 75))
    if resting.sum() < 1:
        resting = np.ones(len(lip_gap), bool)
    score = np.zeros(shapes.shape[0])
    for name in {m.measure for m in AU_MEASURES.values()}:
        m = next(a for a in AU_MEASURES.values() if a.measure == name)
        x = meas[name]
        rest = np.nanmedian(x[resting])
        dev = np.abs(x - rest) / (max(abs(rest), 1e-6) if m.relative else 1.0)
        score += dev / m.full_scale
    return score


def pick_neutral(shapes: np.ndarray, found: np.ndarray, times: np.ndarray,
                 at_time: float | None = None, window: int = 2) -> tuple[int, np.ndarray]:
    """Choose the neutral reference: the least expressive frame, or the frame nearest ``at_time`` seconds.

    Returns ``(index, neutral_shape)`` where the shape (478, 3) is the median over found frames within
    ``window`` frames of the index, which damps tracking noise in the reference.
    """
    good = np.flatnonzero(found)
    if len(good) == 0:
        raise ValueError("no frame with a face")
    if at_time is not None:
        idx = int(good[np.argmin(np.abs(times[good] - at_time))])
    else:
        score = expressiveness(shapes[good])
        # a resting face lasts: prefer frames whose neighbours are also calm
        kernel = np.ones(2 * window + 1) / (2 * window + 1)
        calm = np.convolve(np.pad(score, window, mode="edge"), kernel, mode="valid")
        idx = int(good[np.argmin(calm)])
    near = good[np.abs(good - idx) <= window]
    return idx, np.median(shapes[near], axis=0)


def analyse(normalised: np.ndarray, found: np.ndarray, times: np.ndarray,
            neutral_time: float | None = None) -> Expression:
    """The Expression of a clip from its pose-normalised landmarks (T, 478, 3)."""
    idx, neutral = pick_neutral(normalised, found, times, neutral_time)
    aus = au_intensities(np.where(found[:, None, None], normalised, neutral), neutral)
    return Expression(normalised=normalised, neutral=neutral.astype(np.float32), neutral_index=idx,
                      aus=aus, found=found.copy())
