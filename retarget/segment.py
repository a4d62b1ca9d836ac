"""Person segmentation of a still target: where its person (head, hair, body) is, so a head move carries the hair
and leaves the background. Mediapipe's selfie segmentation, bundled in the same wheel as the face mesh."""

from __future__ import annotations

import numpy as np


def person_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how surely each pixel of ``image`` (H, W, 3) uint8 RGB shows the person."""
    from .mediapipe_import import import_solution

    segmentation = import_solution("selfie_segmentation")  # imported only when needed

    with segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        result = segmenter.process(np.ascontiguousarray(image))
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
