"""Temporal smoothing of trajectories, zero-phase (files are processed offline).

A Savitzky-Golay filter fits a low-order polynomial in a short sliding window: it removes tracking jitter but,
unlike a moving average or a low-pass of the same width, keeps the depth of fast events such as a blink or a
lip closure that last a few frames. Gaps (frames without a face) are bridged by linear interpolation before
filtering and are reported back as gaps by the caller.

The filter is scipy's ``savgol_filter(..., mode="interp")`` (the tests hold it to that), written out here in
numpy: importing ``scipy.signal`` takes 1.0-1.6 s on the 2-core machine, a tenth of a whole 10 s 720p job.
"""

from __future__ import annotations

import numpy as np

from .shots import shot_spans


def window_frames(fps: float, seconds: float) -> int:
    """Odd window length in frames covering about ``seconds`` at ``fps`` (at least 3)."""
    n = int(round(seconds * fps))
    n = max(3, n)
    return n if n % 2 else n + 1


def fill_gaps(values: np.ndarray, valid: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation over invalid frames along axis 0 (edges hold the nearest valid value).

    Args:
        values: (T, ...) array.
        valid: (T,) bool.
        out: where to write the result (same shape; may be ``values`` itself); default a new array.
    """
    out = np.empty(values.shape, values.dtype) if out is None else out
    if valid.all() or not valid.any():
        if out is not values:
            out[...] = values
        return out
    t = np.arange(len(values))
    flat, target = values.reshape(len(values), -1), _columns(out)
    for k in range(flat.shape[1]):
        target[:, k] = np.interp(t, t[valid], flat[valid, k])  # reads the column's valid values first
    return out


def smooth(values: np.ndarray, fps: float, seconds: float = 0.2, order: int = 2,
           valid: np.ndarray | None = None, cuts: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """Zero-phase Savitzky-Golay smoothing of ``values`` (T, ...) along time.

    ``seconds`` is the window; 0 disables smoothing. Clips shorter than the window are returned unchanged.
    ``cuts`` (K,) int: frames that start a new shot; each shot is smoothed (and its gaps bridged) on its own.
    ``out``: where to write the result (same shape and dtype; may be ``values`` itself, which a long clip's
    landmarks are smoothed in place with: no second whole-clip copy); default a new array.
    """
    out = np.empty(values.shape, values.dtype) if out is None else out
    if cuts is not None and len(cuts):
        for a, b in shot_spans(len(values), cuts):
            smooth(values[a:b], fps, seconds, order, None if valid is None else valid[a:b], out=out[a:b])
        return out
    if valid is not None and not valid.all():
        values = fill_gaps(values, valid, out)  # from here on ``values`` is ``out``: savgol reads columns first
    n = window_frames(fps, seconds) if seconds > 0 else 0
    if n == 0 or len(values) < n or n <= order:
        if out is not values:
            out[...] = values
        return out
    return savgol(values, n, order, out=out)


def savgol(values: np.ndarray, window: int, order: int, dtype: np.dtype | type = np.float64,
           out: np.ndarray | None = None) -> np.ndarray:
    """Savitzky-Golay filter of ``values`` (T, ...) along axis 0, as ``scipy.signal.savgol_filter`` with
    ``mode="interp"``: each frame takes the value at its centre of the polynomial of degree ``order``
    least-squares fitted to the ``window`` (odd, ``order < window <= T``) frames around it; the first and last
    ``window // 2`` frames take the polynomial fitted to the first / last window. Computed in float64, the
    result stored as ``dtype`` (float32 for landmarks: no whole-clip float64 array), or in ``out`` (``values``'
    shape; it may be ``values`` itself: a column is copied before its results are written).
    """
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    basis = np.vander(x, order + 1, increasing=True)  # (window, order + 1)
    fitted = basis @ np.linalg.pinv(basis)  # (window, window): a window's values -> its fitted values
    flat = values.reshape(len(values), -1)
    t = len(flat)
    out = np.empty(values.shape, dtype) if out is None else out
    target = _columns(out)
    # a few columns at a time: the float64 copies and the sum's terms of a long clip's landmarks (T, 1434) were
    # the analysis's largest allocations (README, very long clips); each column is filtered on its own anyway
    for c0 in range(0, flat.shape[1], COLUMNS):
        part = flat[:, c0:c0 + COLUMNS].astype(np.float64)
        target[half:t - half, c0:c0 + COLUMNS] = sum(c * part[k:t - window + 1 + k]
                                                     for k, c in enumerate(fitted[half]))
        target[:half, c0:c0 + COLUMNS] = fitted[:half] @ part[:window]
        target[t - half:, c0:c0 + COLUMNS] = fitted[half + 1:] @ part[t - window:]
    return out


COLUMNS = 64  # columns (coordinates) filtered at once by ``savgol``


def _columns(out: np.ndarray) -> np.ndarray:
    """``out`` (T, ...) as a (T, columns) view to write results into; never a copy, which would lose them."""
    if not out.flags.c_contiguous:
        raise ValueError("the output of a smoothing must be C-contiguous")
    return out.reshape(len(out), -1)
