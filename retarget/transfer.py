"""Relative transfer: the driver's change from its own neutral, scaled to the target's face, on the target's neutral.

Scaling is per facial region (each eye, each brow, the lips, the rest) and per axis, from the ratio of the
spread of that region's points in the two neutral faces. An eye that closes in the driver therefore closes
exactly in a target with bigger or smaller eyes, and a mouth that opens by half the driver's mouth width
opens by half the target's.
"""

from __future__ import annotations

import numpy as np

from . import landmarks as lm

REGIONS: dict[str, np.ndarray] = {
    "right_eye": np.concatenate([lm.RIGHT_EYE, lm.RIGHT_IRIS]),
    "left_eye": np.concatenate([lm.LEFT_EYE, lm.LEFT_IRIS]),
    "right_brow": lm.RIGHT_BROW,
    "left_brow": lm.LEFT_BROW,
    "lips": lm.LIPS,
}


def region_scales(drive_neutral: np.ndarray, target_neutral: np.ndarray,
                  limits: tuple[float, float] = (0.5, 2.0)) -> np.ndarray:
    """(478, 3) per-landmark, per-axis scale factors from driver to target proportions."""
    def spread(shape: np.ndarray) -> np.ndarray:
        return shape.std(0) + 1e-6

    overall = np.clip(spread(target_neutral) / spread(drive_neutral), *limits)
    scales = np.tile(overall, (drive_neutral.shape[0], 1))
    for name, idx in REGIONS.items():
        ratio = spread(target_neutral[idx]) / spread(drive_neutral[idx])
        if name == "lips":
            # vertical lip spread is mostly lip thickness; mouth opening follows the face's height instead
            ratio[1] = overall[1]
        if name.endswith("eye"):
            # lid travel scales with the eye's opening, which the eye contour's vertical spread measures
            ratio[1] = _eye_height(target_neutral, name) / max(_eye_height(drive_neutral, name), 1e-6)
        scales[idx] = np.clip(ratio, *limits)
    return scales


def _eye_height(shape: np.ndarray, name: str) -> float:
    pairs = lm.RIGHT_LID_PAIRS if name == "right_eye" else lm.LEFT_LID_PAIRS
    return float((shape[pairs[:, 1], 1] - shape[pairs[:, 0], 1]).mean())


# Mediapipe's eye contour rarely closes fully on a closed eye: a measured closure (1 - opening / neutral opening)
# of about 0.6 already looks shut in the frame, and small values are tracking noise.
CLOSURE_NOISE = 0.1
CLOSURE_SHUT = 0.6


def eye_closure(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 2) closure of the right and left eye: 0 = as open as the neutral, 1 = shut, negative = wider."""
    out = []
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        gap = (shapes[:, pairs[:, 1], 1] - shapes[:, pairs[:, 0], 1]).mean(1)
        ref = float((neutral[pairs[:, 1], 1] - neutral[pairs[:, 0], 1]).mean())
        out.append(1.0 - gap / max(ref, 1e-6))
    return np.stack(out, 1)


def apply_closure(shapes: np.ndarray, closure: np.ndarray, target_neutral: np.ndarray) -> np.ndarray:
    """Set each closing eye's lid gap to ``(1 - calibrated closure)`` of the target's neutral gap.

    Args:
        shapes: (T, 478, 3) transferred shapes; closure: (T, 2) the driver's measured closure.
    """
    out = shapes.copy()
    calibrated = np.clip((closure - CLOSURE_NOISE) / (CLOSURE_SHUT - CLOSURE_NOISE), 0.0, 1.0)
    for k, pairs in enumerate((lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS)):
        closing = closure[:, k] > CLOSURE_NOISE
        gap = target_neutral[pairs[:, 1], 1] - target_neutral[pairs[:, 0], 1]  # (P,)
        upper = out[:, pairs[:, 1], 1] - (1.0 - calibrated[:, k, None]) * gap[None]
        out[:, pairs[:, 0], 1] = np.where(closing[:, None], upper, out[:, pairs[:, 0], 1])
    return out


def transfer(drive_displacement: np.ndarray, drive_neutral: np.ndarray, target_neutral: np.ndarray,
             scales: np.ndarray, intensity: float = 1.0) -> np.ndarray:
    """Retargeted pose-normalised target shapes.

    Args:
        drive_displacement: (T, 478, 3) driver shape minus driver neutral.
        drive_neutral, target_neutral: (478, 3).
        scales: (478, 3) from ``region_scales``.
        intensity: overall gain on the expression change (1 = as the driver, 0 = the target's neutral).
    Returns:
        (T, 478, 3) float32 target shapes; a closing eye closes by the driver's calibrated closure, and
        eyelids never cross.
    """
    shapes = target_neutral[None] + intensity * drive_displacement * scales[None]
    closure = intensity * eye_closure(drive_neutral[None] + drive_displacement, drive_neutral)
    shapes = apply_closure(shapes, closure, target_neutral)
    return uncross_lids(shapes).astype(np.float32)


def uncross_lids(shapes: np.ndarray) -> np.ndarray:
    """Where an upper lid point would pass below its lower partner, put both on their midpoint (closed)."""
    out = shapes.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        up, lo = out[:, pairs[:, 0], 1], out[:, pairs[:, 1], 1]
        crossed = up > lo
        mid = (up + lo) / 2
        out[:, pairs[:, 0], 1] = np.where(crossed, mid, up)
        out[:, pairs[:, 1], 1] = np.where(crossed, mid, lo)
    return out
