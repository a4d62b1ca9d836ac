"""Metrics the field reports for reenactment (see ../shared/FIELD.md), as plain functions on arrays.

Images are compared on the aligned face crop: ``align_face`` maps a frame so that the eyes and the mouth land on
fixed positions of a 256x256 crop, the convention of the FOMM / LivePortrait evaluations.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import landmarks as lm

CROP = 256
# where the eye centres and the mouth centre go in the aligned crop (fractions of the crop size)
_ALIGN_TARGETS = np.array([[0.35, 0.40], [0.65, 0.40], [0.50, 0.72]], np.float64)


def alignment(points: np.ndarray, size: int = CROP) -> np.ndarray:
    """(2, 3) similarity taking frame pixels to the aligned ``size`` x ``size`` face crop.

    Args:
        points: (478, >=2) landmarks in frame pixels.
    """
    anchors = np.stack([points[lm.RIGHT_EYE, :2].mean(0), points[lm.LEFT_EYE, :2].mean(0),
                        points[lm.INNER_LIP_LOOP, :2].mean(0)]).astype(np.float64)
    matrix, _ = cv2.estimateAffinePartial2D(anchors, _ALIGN_TARGETS * size)
    return matrix


def align_face(image: np.ndarray, matrix: np.ndarray, size: int = CROP) -> np.ndarray:
    """(size, size, 3) uint8 crop of ``image`` (H, W, 3) under ``matrix`` from ``alignment``."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 2) ``points`` (N, >=2) mapped by a (2, 3) affine ``matrix``."""
    return points[:, :2] @ matrix[:, :2].T + matrix[:, 2]


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, with pixels scaled to [0, 1]."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (or pixel sets); ``inf`` when identical."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two uint8 RGB images (scikit-image's, Gaussian-weighted, as in the papers)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def akd(a: np.ndarray, b: np.ndarray) -> float:
    """Average keypoint distance: mean Euclidean distance between corresponding points (N, >=2), pixels."""
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=-1).mean())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D signals; NaN when either is constant or too short."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def frame_offset(reference: np.ndarray, signal: np.ndarray, max_shift: int = 15) -> int:
    """The shift (frames) of ``signal`` against ``reference`` that correlates best: positive = ``signal`` lags.

    Used to check that an output is in sync with its driver (a lag shows as a non-zero offset).
    """
    best, best_r = 0, -np.inf
    n = min(len(reference), len(signal))
    for shift in range(-max_shift, max_shift + 1):
        lo, hi = max(0, shift), min(n, n + shift)
        if hi - lo < 3:
            continue
        r = correlation(reference[lo - shift:hi - shift], signal[lo:hi])
        if np.isfinite(r) and r > best_r:
            best, best_r = shift, r
    return best


def jitter(trajectory: np.ndarray) -> float:
    """Mean magnitude of the second time difference of a (T, N, D) trajectory (its frame-to-frame shake)."""
    if len(trajectory) < 3:
        return float("nan")
    second = trajectory[2:] - 2 * trajectory[1:-1] + trajectory[:-2]
    return float(np.nanmean(np.linalg.norm(second, axis=-1)))
