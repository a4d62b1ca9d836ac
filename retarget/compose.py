"""Paste-back: blend a generated region into the full-resolution frame."""

from __future__ import annotations

import cv2
import numpy as np

from .generators.base import GeneratedFace


def paste(frame: np.ndarray, face: GeneratedFace, weight: float = 1.0, inplace: bool = False) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``face`` blended in by ``face.alpha * weight``.

    Returns a new array unless ``inplace``. Only the generated box is touched, and where the generator left
    pixels unchanged the result equals the input exactly, so nothing outside the edit shifts in colour.
    """
    out = frame if inplace else frame.copy()
    x0, y0, x1, y1 = face.box
    alpha = face.alpha * float(np.clip(weight, 0.0, 1.0))
    if x1 <= x0 or y1 <= y0 or alpha.max() <= 0:
        return out
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = cv2.blendLinear(face.image, region, alpha, 1.0 - alpha)
    return out
