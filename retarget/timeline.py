"""Time: which driver moment each output frame shows, and how lost faces are bridged.

The output follows the target's timestamps (a still target: the driver's). The driver is sampled by time, not
by frame index, with linear interpolation between its frames, so a 25 fps driver drives a 30 fps target at the
right speed. A driver shorter than the target rests on its neutral after its end (or loops); a longer one is cut.
"""

from __future__ import annotations

import numpy as np


def drive_times(out_times: np.ndarray, drive_duration: float, loop: bool) -> np.ndarray:
    """(T_out,) the driver time shown at each output time (looped when ``loop``)."""
    if loop and drive_duration > 0:
        return np.mod(out_times, drive_duration)
    return out_times.copy()


def sample(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (T, ...) given at ``times`` (T,) to ``at`` (N,); edges hold."""
    flat = values.reshape(len(values), -1)
    pos = np.interp(at, times, np.arange(len(times)))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(times) - 1)
    frac = (pos - lo)[:, None].astype(values.dtype if values.dtype.kind == "f" else np.float64)
    # in the values' own precision and in place: a long clip's (N, 478, 3) float64 temporaries were several
    # hundred MiB (README, very long clips)
    out = flat[lo].astype(frac.dtype, copy=False)  # indexing made a copy already
    out *= 1 - frac
    upper = flat[hi].astype(frac.dtype, copy=False)
    upper *= frac
    out += upper
    del upper
    return out.reshape((len(at),) + values.shape[1:]).astype(values.dtype, copy=False)


def nearest_index(times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(N,) index of the frame in ``times`` nearest to each of ``at``."""
    idx = np.clip(np.searchsorted(times, at), 1, max(1, len(times) - 1))
    left = times[idx - 1]
    right = times[np.minimum(idx, len(times) - 1)]
    return np.where(np.abs(at - left) <= np.abs(right - at), idx - 1, idx).clip(0, len(times) - 1)


def ease_after_end(at: np.ndarray, drive_end: float, release: float) -> np.ndarray:
    """(N,) weight on the driver's expression: 1 while the driver runs, then easing to 0 (its neutral)."""
    over = np.maximum(0.0, at - drive_end)
    return np.exp(-over / release) if release > 0 else (over <= 0).astype(float)


def hold_and_release(values: np.ndarray, found: np.ndarray, times: np.ndarray, release: float) -> np.ndarray:
    """Where the driver's face is lost, hold its last good value and ease it back to zero (its neutral).

    Args:
        values: (T, ...) displacement from neutral, zero where not found.
        found: (T,) bool.
    """
    out = values.copy()
    last, last_t = None, 0.0
    for t in range(len(values)):
        if found[t]:
            last, last_t = values[t], times[t]
        elif last is not None:
            k = np.exp(-(times[t] - last_t) / release) if release > 0 else 0.0
            out[t] = last * k
    return out


def gap_weights(found: np.ndarray, times: np.ndarray, blend: float) -> np.ndarray:
    """(T,) effect strength for a video target: 0 where its face is lost, ramping to 1 over ``blend`` seconds."""
    if found.all():
        return np.ones(len(found))
    if not found.any():
        return np.zeros(len(found))
    lost_t = times[~found]
    dist = np.abs(times[:, None] - lost_t[None]).min(1)
    if blend <= 0:
        return found.astype(float)
    return np.clip(dist / blend, 0.0, 1.0) * found
