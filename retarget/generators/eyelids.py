"""Closing eyelids in the warp: the lash line stays a line.

A blink moves each upper lid's contour down while the ring of mesh points above it (at the lid's crease) moves
less, so the band of triangles between them grows taller. Stretched evenly, the band's bottom, the dark line of
the lashes and the lid's edge, became a dark smeared band over the closed eye. Here the band's lash line keeps
its thickness and the skin above it stretches instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import landmarks as lm
from ..mesh import neighbour_table

# How thick the lash line (the lashes and the lid's edge) is, in eye widths.
LASH_LINE = 0.08
# An eye is closing when its lids are less than this share as far apart as in the source.
CLOSING = 0.6

_EYES = ((lm.RIGHT_EYE, lm.RIGHT_EYE_CORNERS, lm.RIGHT_LID_PAIRS[:, 0]),
         (lm.LEFT_EYE, lm.LEFT_EYE_CORNERS, lm.LEFT_LID_PAIRS[:, 0]))


@dataclass(frozen=True)
class LidStretch:
    """How the bands above the upper lids changed in one edit; per landmark, (478,) each."""

    stretch: np.ndarray  # how many times taller the band above each upper-lid point got (>= 1; 1 elsewhere)
    lash: np.ndarray  # the share of that point's band in the source that its lash line takes (0 elsewhere)
    opening: tuple[float, float]  # the right and left eyes' mean lid gap after the edit over before

    def closing(self) -> list[np.ndarray]:
        """The loops (16,) of the eyes whose lids close to under ``CLOSING`` of their gap in the source."""
        return [eye for (eye, _, _), share in zip(_EYES, self.opening) if share < CLOSING]


@functools.lru_cache(maxsize=1)
def _lid_rings() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The upper lids' points (U,) (corners excluded), the mesh neighbours of each on the ring above (U, R)
    padded with the point itself, and (U,) how many there are."""
    table, count = neighbour_table()
    on_loop = _on_eye_loops()
    upper = np.concatenate([pts for _, _, pts in _EYES])
    rings = [[n for n in table[v, :count[v]] if not on_loop[n]] for v in upper]
    width = max(len(r) for r in rings)
    padded = np.array([r + [v] * (width - len(r)) for v, r in zip(upper, rings)], np.int64)
    return upper, padded, np.array([max(1, len(r)) for r in rings])


def _on_eye_loops() -> np.ndarray:
    on_loop = np.zeros(478, bool)
    on_loop[np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, [lm.RIGHT_IRIS_CENTRE, lm.LEFT_IRIS_CENTRE]])] = True
    return on_loop


def lid_stretch(src: np.ndarray, dst: np.ndarray) -> LidStretch:
    """From landmarks (478, 2) before and after the edit."""
    upper, rings, count = _lid_rings()
    before = np.linalg.norm(src[rings] - src[upper][:, None], axis=2).sum(1) / count  # mean distance to the ring
    after = np.linalg.norm(dst[rings] - dst[upper][:, None], axis=2).sum(1) / count
    width = np.concatenate([np.full(len(pts), np.linalg.norm(src[corners[0]] - src[corners[1]]))
                            for _, corners, pts in _EYES])
    stretch, lash = np.ones(478), np.zeros(478)
    stretch[upper] = np.maximum(1.0, after / np.maximum(before, 1e-6))
    lash[upper] = np.minimum(0.5, LASH_LINE * width / np.maximum(before, 1e-6))
    opening = tuple(_lid_gap(dst, pairs) / max(_lid_gap(src, pairs), 1e-6)
                    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS))
    return LidStretch(stretch, lash, opening)


def _lid_gap(points: np.ndarray, pairs: np.ndarray) -> float:
    """Mean distance (pixels) between the (upper, lower) lid points ``pairs`` (P, 2) of ``points`` (478, 2)."""
    return float(np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1).mean())


def keep_lash_lines(bary: np.ndarray, ids: np.ndarray, triangles: np.ndarray, lids: LidStretch) -> np.ndarray:
    """Barycentric coordinates (3, N) of cells in triangles ``ids`` (N,) of ``triangles`` (K, 3), changed in
    the bands above the upper lids so that a stretched band keeps its lash line as thick as it was.

    Across a band, t runs from 0 on the lid's contour to 1 on the ring above; a cell at t reads from t' in
    the source: t' = k t over the lash line (the bottom share lambda of the source band, now lambda / k of the
    output's), then linearly up to 1, with k how many times taller the band got. k and lambda are the contour
    points' own, interpolated along the lid (1 and 0 at the eye corners), so the map stays continuous across
    the band's edges and between its triangles. Unstretched bands are returned as they were.
    """
    if lids.stretch.max() <= 1.0 + 1e-3:
        return bary
    on_contour = np.zeros(478, bool)  # the upper lids' contours, corners included
    on_contour[[c for _, corners, upper in _EYES for c in (*corners, *upper)]] = True
    band = on_contour[triangles].any(1) & (~_on_eye_loops()[triangles]).any(1)  # (K,) above an upper lid
    rows = np.flatnonzero(band[ids])
    if len(rows) == 0:
        return bary
    corner = triangles[ids[rows]]  # (n, 3)
    on_lid = on_contour[corner]
    w = np.clip(bary[:, rows].T.astype(np.float64), 0.0, None)  # (n, 3)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-9)
    lid_weight = (w * on_lid).sum(1)
    share = np.maximum(lid_weight, 1e-9)
    k = np.where(lid_weight > 1e-9, (w * on_lid * lids.stretch[corner]).sum(1) / share, 1.0)
    lam = (w * on_lid * lids.lash[corner]).sum(1) / share
    t = 1.0 - lid_weight
    knee = lam / k
    t_src = np.where(t <= knee, k * t, lam + (t - knee) * (1 - lam) / np.maximum(1 - knee, 1e-9))
    to_lid = (1 - t_src) / np.maximum(1 - t, 1e-9)
    to_ring = np.where(t > 1e-9, t_src / np.maximum(t, 1e-9), 0.0)
    changed = np.where(on_lid, w * to_lid[:, None], w * to_ring[:, None])
    keep = (k <= 1.0 + 1e-3) | (lid_weight <= 1e-9)  # not stretched, or on the ring: as it was
    out = bary.copy()
    out[:, rows] = np.where(keep[:, None], bary[:, rows].T, changed).T.astype(bary.dtype)
    return out
