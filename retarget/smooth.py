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
    fitted = _fitted(window, order)
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


def _fitted(window: int, order: int) -> np.ndarray:
    """(window, window): a window's values -> the values of the polynomial of degree ``order`` fitted to them."""
    half = window // 2
    basis = np.vander(np.arange(-half, half + 1, dtype=np.float64), order + 1, increasing=True)
    return basis @ np.linalg.pinv(basis)


def _columns(out: np.ndarray) -> np.ndarray:
    """``out`` (T, ...) as a (T, columns) view to write results into; never a copy, which would lose them."""
    if not out.flags.c_contiguous:
        raise ValueError("the output of a smoothing must be C-contiguous")
    return out.reshape(len(out), -1)


ROW_BLOCK = 512  # frames smoothed at once by ``smooth_rows``


def smooth_rows(rows, fps: float, seconds: float, out, order: int = 2, valid: np.ndarray | None = None,
                cuts: np.ndarray | None = None, block: int = ROW_BLOCK):
    """``smooth`` of ``rows`` (T, ...) float32 read ``block`` frames at a time (rows on disk, ``spill.FrameRows``,
    or an array), written into ``out`` (as writable, same shape and dtype): the same numbers, bit for bit,
    without the whole clip in memory. Each block reads the frames the filter's window reaches past it, and the
    gaps are bridged from the nearest frames with a face on either side."""
    n = window_frames(fps, seconds) if seconds > 0 else 0
    for a, b in shot_spans(len(rows), cuts if cuts is not None else np.zeros(0, int)):
        shot = _ShotRows(rows, a, b, None if valid is None else valid[a:b])
        for s in range(0, b - a, block):
            e = min(b - a, s + block)
            if n == 0 or b - a < n or n <= order:
                out[a + s:a + e] = shot.filled(s, e)
            else:
                out[a + s:a + e] = _savgol_block(shot, s, e, n, order).astype(out.dtype)
    return out


class _ShotRows:
    """Frames ``a:b`` of ``rows``, read by range with their gaps bridged as ``fill_gaps`` bridges them."""

    def __init__(self, rows, a: int, b: int, valid: np.ndarray | None) -> None:
        self.rows, self.a, self.length = rows, a, b - a
        self.valid = np.ones(b - a, bool) if valid is None else valid
        self.good = np.flatnonzero(self.valid)

    def filled(self, s: int, e: int) -> np.ndarray:
        """(e - s, ...) frames ``s:e`` of the shot, float32, gaps bridged (all NaN where the shot has no face)."""
        raw = np.array(self.rows[self.a + s:self.a + e])
        if self.valid[s:e].all() or len(self.good) == 0:
            return raw
        # the frames with a face in s:e, and the nearest one on either side: every gap's two ends
        inside = self.good[(self.good >= s) & (self.good < e)]
        before, after = self.good[self.good < s], self.good[self.good >= e]
        points = np.concatenate([before[-1:], inside, after[:1]])
        values = np.concatenate([self._row(before[-1:]), raw[inside - s], self._row(after[:1])])
        flat, target, t = values.reshape(len(values), -1), raw.reshape(len(raw), -1), np.arange(s, e)
        for k in range(flat.shape[1]):
            target[:, k] = np.interp(t, points, flat[:, k])
        return raw

    def _row(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0,) + tuple(self.rows.shape[1:]), self.rows.dtype)
        return np.asarray(self.rows[self.a + frames])


def _savgol_block(shot: _ShotRows, s: int, e: int, window: int, order: int) -> np.ndarray:
    """Frames ``s:e`` of ``savgol(shot filled, window, order)``, float64: the same operations on the same
    numbers as ``savgol`` makes for them, column chunk by column chunk."""
    half, length = window // 2, shot.length
    fitted = _fitted(window, order)
    lo, hi = max(0, s - half), min(length, e + half)
    near = shot.filled(lo, hi).reshape(hi - lo, -1)
    first = shot.filled(0, window).reshape(window, -1) if s < half else None
    last = shot.filled(length - window, length).reshape(window, -1) if e > length - half else None
    out = np.empty((e - s, near.shape[1]), np.float64)
    t0, t1 = max(s, half), min(e, length - half)  # frames with a whole window around them
    for c0 in range(0, near.shape[1], COLUMNS):
        cols = slice(c0, c0 + COLUMNS)
        if t1 > t0:
            part = near[:, cols].astype(np.float64)
            start = t0 - half - lo
            out[t0 - s:t1 - s, cols] = sum(c * part[start + k:start + k + t1 - t0] for k, c in enumerate(fitted[half]))
        if first is not None:
            out[:min(e, half) - s, cols] = (fitted[:half] @ first[:, cols].astype(np.float64))[s:min(e, half)]
        if last is not None:
            edge = fitted[half + 1:] @ last[:, cols].astype(np.float64)  # frames length - half .. length - 1
            a = max(s, length - half)
            out[a - s:e - s, cols] = edge[a - (length - half):e - (length - half)]
    return out.reshape((e - s,) + tuple(shot.rows.shape[1:]))
