"""Relative transfer: the driver's change from its own neutral, carried onto the target's neutral.

Two steps, both relative to each face's own neutral:

1. Displacement transfer. The driver's landmark displacement, scaled per facial region (each eye, each
   brow, the lips, the rest) and per axis by the ratio of that region's spread in the two neutral faces.
2. Deformation transfer (Sumner and Popovic 2004), in the image plane. Each mesh triangle of the target
   undergoes the same local deformation (stretch, shear, rotation) as the driver's matching triangle. The
   vertex positions are found by sparse least squares, with a weak pull towards step 1, which fixes
   translation and carries the iris points and depth; the inner lips, which carry the mouth opening, are
   pulled strongly, so the mouth opens by the driver's opening measured in the target's face height.
   Absolute displacements from step 1 alone fold the mesh where the two faces' local spacing differs (a
   driver's lower lip rolling down past skin that sits closer to the lip on the target). Local
   deformations keep the target's own proportions.

Eye closure is then set from the driver's calibrated closure, so a blink closes any target eye exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .mesh import mesh_triangles

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


def lid_gap(points: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Mean height of an eye's opening, lower minus upper lid over its lid ``pairs`` (P, 2) (``landmarks``), for
    landmarks ``points`` (..., 478, >=2): shape (...), in the points' units."""
    return (points[..., pairs[:, 1], 1] - points[..., pairs[:, 0], 1]).mean(-1)


def _eye_height(shape: np.ndarray, name: str) -> float:
    return float(lid_gap(shape, lm.RIGHT_LID_PAIRS if name == "right_eye" else lm.LEFT_LID_PAIRS))


# Mediapipe's eye contour rarely closes fully on a closed eye: a measured closure (1 - opening / neutral opening)
# of about 0.6 already looks shut in the frame, and small values are tracking noise.
CLOSURE_NOISE = 0.1
CLOSURE_SHUT = 0.6


def eye_closure(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 2) closure of the right and left eye: 0 = as open as the neutral, 1 = shut, negative = wider."""
    out = []
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        out.append(1.0 - lid_gap(shapes, pairs) / max(float(lid_gap(neutral, pairs)), 1e-6))
    return np.stack(out, 1)


def apply_closure(shapes: np.ndarray, closure: np.ndarray, target_neutral: np.ndarray,
                  inplace: bool = False) -> np.ndarray:
    """Set each closing eye's lid gap to ``(1 - calibrated closure)`` of the target's neutral gap.

    Args:
        shapes: (T, 478, 3) transferred shapes (changed in place with ``inplace``); closure: (T, 2) the driver's
            measured closure.
    """
    out = shapes if inplace else shapes.copy()
    calibrated = np.clip((closure - CLOSURE_NOISE) / (CLOSURE_SHUT - CLOSURE_NOISE), 0.0, 1.0)
    for k, pairs in enumerate((lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS)):
        closing = closure[:, k] > CLOSURE_NOISE
        gap = target_neutral[pairs[:, 1], 1] - target_neutral[pairs[:, 0], 1]  # (P,)
        upper = out[:, pairs[:, 1], 1] - (1.0 - calibrated[:, k, None]) * gap[None]
        out[:, pairs[:, 0], 1] = np.where(closing[:, None], upper, out[:, pairs[:, 0], 1])
    return out


@dataclass
class DeformationTransfer:
    """Least-squares deformation transfer between two neutral faces; build once per driver/target pair."""

    drive_neutral: np.ndarray  # (478, 3)
    target_neutral: np.ndarray  # (478, 3)
    anchor_weight: float = 0.2  # pull of each vertex towards the displacement-transfer result
    lip_anchor_weight: float = 3.0  # the inner lips carry the mouth opening: they follow it closely

    def __post_init__(self) -> None:
        tris = mesh_triangles()
        n = len(self.target_neutral)
        self._tris = tris
        self._drive_inv, cond = _edge_inverse(self.drive_neutral[:, :2], tris)
        self._target_edges = _edges(self.target_neutral[:, :2], tris)  # (K, 2, 2), columns are edges
        # well-shaped triangles speak with full weight, slivers (unstable gradients) hardly at all; triangles
        # on the lids do not speak: the closure model sets the lids, and a blink's strong stretch of the lid
        # skin would otherwise leak across the whole solve
        on_lids = np.isin(tris, np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE])).any(1)
        self._row_weight = np.repeat(np.where(on_lids, 0.0, np.clip(cond / 0.1, 0.0, 1.0)), 2)
        # the edge operator, one row per edge (e1, e2 of each triangle): +1 at its far corner, -1 at the first
        self._heads = tris[:, 1:].ravel()  # (2K,)
        self._tails = np.repeat(tris[:, 0], 2)  # (2K,)
        self._anchor_w2 = np.full(n, self.anchor_weight ** 2)
        self._anchor_w2[lm.INNER_LIP_LOOP] = self.lip_anchor_weight ** 2
        # the normal equations' matrix (edges' weighted Gram matrix plus the anchors), dense: 478 x 478 is small,
        # and numpy's inverse saves importing scipy.sparse (0.15 s a run); it is symmetric positive definite
        # and well conditioned (every vertex is anchored)
        w2 = self._row_weight ** 2
        normal = np.diag(self._anchor_w2)
        np.add.at(normal, (self._heads, self._heads), w2)
        np.add.at(normal, (self._tails, self._tails), w2)
        np.add.at(normal, (self._heads, self._tails), -w2)
        np.add.at(normal, (self._tails, self._heads), -w2)
        self._inverse = np.linalg.inv(normal)

    def __call__(self, drive_shapes: np.ndarray, anchors: np.ndarray, intensity: float = 1.0) -> np.ndarray:
        """(T, 478, 3) target shapes from driver shapes (T, 478, 3) and displacement-transfer anchors (T, 478, 3)."""
        t = len(drive_shapes)
        grads = _edges(drive_shapes[:, :, :2].reshape(-1, 2), _frame_triangles(self._tris, t, drive_shapes.shape[1]))
        grads = _times(grads.reshape(t, -1, 2, 2), self._drive_inv[None])  # (T, K, 2, 2) deformation gradients
        grads = np.eye(2) + intensity * (grads - np.eye(2))
        edges = _times(grads, self._target_edges[None])  # (T, K, 2, 2): columns e1, e2 of each target triangle
        # right-hand side per coordinate: edge targets (rows e1, e2 per triangle) and the anchors
        targets = np.transpose(edges, (0, 1, 3, 2)).reshape(t, -1, 2)  # (T, 2K, 2)
        weighted = targets * (self._row_weight ** 2)[None, :, None]
        n = len(self.target_neutral)
        by_edge = np.transpose(weighted, (1, 0, 2)).reshape(weighted.shape[1], 2 * t)  # (2K, 2T)
        rhs = self._anchor_w2[:, None] * np.transpose(anchors[:, :, :2], (1, 0, 2)).reshape(n, 2 * t)
        np.add.at(rhs, self._heads, by_edge)  # the edge operator's transpose, applied
        np.add.at(rhs, self._tails, -by_edge)
        solved = self._inverse @ rhs
        out = anchors.astype(np.float64).copy()
        out[:, :, :2] = np.transpose(solved.reshape(n, t, 2), (1, 0, 2))
        return out


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks of 2 x 2 matrices (..., 2, 2), written out: numpy's matmul pays a call's overhead
    for each of these tiny products (it was a third of the transfer's time)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    for i in range(2):
        for j in range(2):
            out[..., i, j] = a[..., i, 0] * b[..., 0, j] + a[..., i, 1] * b[..., 1, j]
    return out


def _edges(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(K, 2, 2) edge matrices [b - a, c - a] (as columns) of triangles ``tris`` over ``points`` (N, 2)."""
    a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
    return np.stack([b - a, c - a], 2).astype(np.float64)


def _edge_inverse(points: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2, 2) inverses of the edge matrices and (K,) conditioning (|det| / squared edge lengths)."""
    e = _edges(points, tris)
    det = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
    cond = np.abs(det) / ((e ** 2).sum((1, 2)) + 1e-12)
    safe = np.where(np.abs(det) < 1e-12, 1e-12, det)
    inv = np.stack([np.stack([e[:, 1, 1], -e[:, 0, 1]], 1), np.stack([-e[:, 1, 0], e[:, 0, 0]], 1)], 1)
    return inv / safe[:, None, None], cond


def _frame_triangles(tris: np.ndarray, frames: int, n: int) -> np.ndarray:
    """Triangle indices repeated for ``frames`` stacked shapes of ``n`` points each."""
    return (tris[None] + (np.arange(frames) * n)[:, None, None]).reshape(-1, 3)


_EYES = np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, lm.RIGHT_IRIS, lm.LEFT_IRIS])


def transfer(drive_displacement: np.ndarray, drive_neutral: np.ndarray, target_neutral: np.ndarray,
             scales: np.ndarray, intensity: float = 1.0, chunk: int = 256) -> np.ndarray:
    """Retargeted pose-normalised target shapes.

    Args:
        drive_displacement: (T, 478, 3) driver shape minus driver neutral.
        drive_neutral, target_neutral: (478, 3).
        scales: (478, 3) from ``region_scales`` (the displacement transfer that anchors the solve).
        intensity: overall gain on the expression change (1 = as the driver, 0 = the target's neutral).
    Returns:
        (T, 478, 3) float32 target shapes: the driver's local deformations on the target's triangles; a
        closing eye closes by the driver's calibrated closure, and eyelids never cross.
    """
    # float32 whole-clip arrays, each made once: a long clip's (T, 478, 3) float64 temporaries were the job's
    # largest allocations (README, very long clips); the solve itself runs in float64 a chunk at a time
    anchors = drive_displacement.astype(np.float32, copy=False) * (intensity * scales).astype(np.float32)[None]
    anchors += target_neutral.astype(np.float32)[None]
    deform = DeformationTransfer(drive_neutral, target_neutral)
    shapes = np.empty_like(anchors)
    closure = np.zeros((len(anchors), 2), np.result_type(drive_neutral, drive_displacement))
    for start in range(0, len(anchors), chunk):  # bounded memory for long clips
        part = slice(start, start + chunk)
        driven = drive_neutral[None] + drive_displacement[part]
        shapes[part] = deform(driven, anchors[part], intensity)
        closure[part] = intensity * eye_closure(driven, drive_neutral)
    # the eyes are holes in the mesh: lids and irises move as the displacement transfer says, and closing
    # lids are then set from the calibrated closure
    shapes[:, _EYES] = anchors[:, _EYES]
    del anchors
    apply_closure(shapes, closure, target_neutral, inplace=True)
    return uncross_lids(shapes, inplace=True)


def uncross_lids(shapes: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Where an upper lid point would pass below its lower partner, put both on their midpoint (closed); in
    ``shapes`` (T, 478, 3) itself with ``inplace``."""
    out = shapes if inplace else shapes.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        up, lo = out[:, pairs[:, 0], 1], out[:, pairs[:, 1], 1]
        crossed = up > lo
        mid = (up + lo) / 2
        out[:, pairs[:, 0], 1] = np.where(crossed, mid, up)
        out[:, pairs[:, 1], 1] = np.where(crossed, mid, lo)
    return out


# Regions for per-region gains: which AUs each covers (the landmarks are ``region_weights``).
REGION_AUS: dict[str, tuple[str, ...]] = {
    "brows": ("AU01", "AU02", "AU04"),
    "eyes": ("AU05", "AU06", "AU07", "AU45"),  # and gaze (the irises)
    "mouth": ("AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
}


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def region_weights(neutral: np.ndarray) -> dict[str, np.ndarray]:
    """Soft partition of the face into brows, eyes and mouth: (478,) weights per region, summing to 1.

    By height in the pose-normalised neutral: the brows and everything above them; the eyes, lids, irises and
    upper cheeks; the mouth, the nose below its bridge, the lower cheeks and the jaw. Between regions the
    weights cross over in a band (between the brows and the upper lids; between the lower lids and the nose
    wings), so a region's gain never leaves a seam. The features themselves belong wholly to their region.
    """
    y = neutral[:, 1]
    brow_low = float(neutral[np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW]), 1].max())
    lid_top = float(neutral[[159, 386], 1].min())
    lid_low = float(neutral[[145, 374], 1].max())
    wings = float(neutral[list(lm.NOSE_ALAR), 1].mean())
    brows = 1.0 - _smoothstep((y - brow_low) / max(lid_top - brow_low, 1e-6))
    mouth = _smoothstep((y - lid_low - 0.3 * (wings - lid_low)) / max(0.7 * (wings - lid_low), 1e-6))
    eyes = 1.0 - brows - mouth
    weights = {"brows": brows, "eyes": np.clip(eyes, 0, 1), "mouth": mouth}
    features = {"brows": np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW]),
                "eyes": np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, lm.RIGHT_IRIS, lm.LEFT_IRIS]),
                "mouth": lm.LIPS}
    for name, idx in features.items():
        for other in weights:
            weights[other][idx] = 1.0 if other == name else 0.0
    return weights


def landmark_gains(weights: dict[str, np.ndarray], gains: dict[str, float]) -> np.ndarray:
    """(478,) per-landmark gain from per-region gains (missing regions: 1)."""
    return sum(weights[r] * gains.get(r, 1.0) for r in weights)
