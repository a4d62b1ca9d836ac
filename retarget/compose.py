"""Paste-back: blend a generated region into the full-resolution frame."""

from __future__ import annotations

import numpy as np

from .generators.base import GeneratedFace


def paste(frame: np.ndarray, face: GeneratedFace, weight: float = 1.0) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``face`` blended in by ``face.alpha * weight``; returns a new array.

    Where the generator left pixels unchanged the result equals the input exactly, so nothing outside the
    edited region shifts in colour.
    """
    out = frame.copy()
    x0, y0, x1, y1 = face.box
    alpha = (face.alpha * float(np.clip(weight, 0.0, 1.0)))[..., None]
    if alpha.max() <= 0:
        return out
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + (face.image.astype(np.float32) - region) * alpha
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
