"""Temporal smoothing of trajectories, zero-phase (files are processed offline).

A Savitzky-Golay filter fits a low-order polynomial in a short sliding window: it removes tracking jitter but,
unlike a moving average or a low-pass of the same width, keeps the depth of fast events such as a blink or a
lip closure that last a few frames. Gaps (frames without a face) are bridged by linear interpolation before
filtering and are reported back as gaps by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter


def window_frames(fps: float, seconds: float) -> int:
    """Odd window length in frames covering about ``seconds`` at ``fps`` (at least 3)."""
    n = int(round(seconds * fps))
    n = max(3, n)
    return n if n % 2 else n + 1


def fill_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over invalid frames along axis 0 (edges hold the nearest valid value).

    Args:
        values: (T, ...) array.
        valid: (T,) bool.
    """
    if valid.all() or not valid.any():
        return values.copy()
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    out = np.empty_like(flat)
    for k in range(flat.shape[1]):
        out[:, k] = np.interp(t, t[valid], flat[valid, k])
    return out.reshape(values.shape)


def smooth(values: np.ndarray, fps: float, seconds: float = 0.2, order: int = 2,
           valid: np.ndarray | None = None) -> np.ndarray:
    """Zero-phase Savitzky-Golay smoothing of ``values`` (T, ...) along time.

    ``seconds`` is the window; 0 disables smoothing. Clips shorter than the window are returned unchanged.
    """
    if valid is not None:
        values = fill_gaps(values, valid)
    n = window_frames(fps, seconds) if seconds > 0 else 0
    if n == 0 or len(values) < n or n <= order:
        return values.copy()
    return savgol_filter(values, n, order, axis=0, mode="interp").astype(values.dtype)
