"""The AU-to-shape model: action-unit intensities -> landmark displacements in the pose-normalised frame.

Built from anatomy, not from data. Each AU names the landmarks its muscle moves and how far, at full strength
(intensity 5), in normalised units (the face's rigid-set RMS radius, so the model scales with the face):

=====  ==========================  ================================================================
AU     action                      handles (moved at intensity 5)
=====  ==========================  ================================================================
AU01   inner brow raiser           inner brow points up 0.12, the middle of the brow up half that
AU02   outer brow raiser           outer brow points up 0.12, the middle up half that
AU04   brow lowerer                inner brow points down 0.05 and 0.04 towards the midline each
AU05   upper lid raiser            upper lids up 0.05
AU06   cheek raiser                cheeks up 0.06, lower lids up 0.02
AU07   lid tightener               lower lids up 0.04
AU09   nose wrinkler               nose wings up 0.06, upper lip up 0.02
AU10   upper lip raiser            upper lip up 0.06
AU12   lip corner puller           corners up 0.10 and out 0.05
AU14   dimpler                     corners back 0.08 and in 0.02
AU15   lip corner depressor        corners down 0.08
AU17   chin raiser                 chin and lower lip up 0.08
AU20   lip stretcher               corners out 0.10 each, down 0.02
AU23   lip tightener               lip outlines towards the lip line 0.04 each (thinner lips)
AU25   lips part                   lower lip down 0.26, chin down 0.06
AU26   jaw drop                    chin and jaw line down 0.40, lower lip with it, corners down 0.08
AU45   blink                       upper lids down to the lower lids (both meet at 80/20 of the gap)
=====  ==========================  ================================================================

Every other landmark follows by harmonic interpolation over the face mesh (inverse-edge-length weights on the
target's own neutral), with the expression-stable points (``landmarks.RIGID``) and the other regions' features
held still, so a jaw drop stretches the cheeks but leaves the brows alone. The mouth AUs also hold the base of
the nose (the subnasale): else a raised upper lip drags it up and lengthens the chin-to-nose distance that AU26
reads. Only AU25 and AU26 open the lips: where the other fields together would lift the upper lip off the lower
one, the lower lip follows (``seal``), and where the jaw does not drop, the fit weighs the lip gap (AU25) at
``GAP_WEIGHT`` times the other readings.

The handle sizes only give each AU its direction. The weights are then calibrated on the target's neutral by
measuring what each AU's displacement reads as with ``expression.au_intensities``: a requested set of
intensities is reached by a few regularised Gauss-Newton steps, so a shape made for AU25=3 and AU26=3 reads
back as about 3 and 3 (a jaw drop alone already parts the lips; the two are not simply added).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .expression import au_intensities
from .mesh import mesh_triangles
from .types import AU_NAMES

# landmark groups the handles use (subject's right first, then left)
_INNER_BROW = np.array([107, 66, 55, 65, 336, 296, 285, 295])
_MID_BROW = np.array([105, 52, 334, 282])
_OUTER_BROW = np.array([70, 63, 46, 53, 300, 293, 276, 283])
_UPPER_LIDS = np.concatenate([lm.RIGHT_LID_PAIRS[:, 0], lm.LEFT_LID_PAIRS[:, 0]])
_LOWER_LIDS = np.concatenate([lm.RIGHT_LID_PAIRS[:, 1], lm.LEFT_LID_PAIRS[:, 1]])
_CHEEKS = np.array([118, 117, 119, 100, 50, 101, 347, 346, 348, 329, 280, 330])
_NOSE_WINGS = np.array([129, 64, 98, 102, 49, 358, 294, 327, 331, 279])
_UPPER_LIP = np.array([0, 37, 39, 40, 185, 267, 269, 270, 409, 13, 82, 81, 80, 191, 312, 311, 310, 415,
                       11, 12, 72, 73, 302, 303, 38, 41, 268, 271])
_LOWER_LIP = np.array([17, 84, 181, 91, 146, 314, 405, 321, 375, 14, 87, 178, 88, 95, 317, 402, 318, 324,
                       16, 15, 85, 86, 315, 316, 180, 179, 404, 403, 90, 89, 320, 319])
_LOWER_INNER_LIP = np.array([14, 87, 178, 88, 95, 317, 402, 318, 324, 15, 86, 179, 89, 316, 403, 319, 96, 325])
_UPPER_INNER_LIP = np.array([13, 82, 81, 80, 191, 312, 311, 310, 415])
_RIGHT_CORNER = np.array([61, 76, 62, 78, 146, 185])
_LEFT_CORNER = np.array([291, 306, 292, 308, 375, 409])
_CHIN = np.array([152, 148, 176, 149, 377, 400, 378, 175, 199, 200, 171, 396, 208, 428, 32, 262])
_JAW = np.array([150, 136, 379, 365, 172, 397])

_EYE_FEATURES = np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, lm.RIGHT_IRIS, lm.LEFT_IRIS])
_BROWS = np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW])
_HOLD = {  # what each region's AUs must leave where it is
    "brows": np.concatenate([lm.RIGID, _EYE_FEATURES, lm.LIPS]),
    "eyes": np.concatenate([lm.RIGID, _BROWS, lm.LIPS, lm.RIGHT_IRIS, lm.LEFT_IRIS]),
    "mouth": np.concatenate([lm.RIGID, _EYE_FEATURES, _BROWS, [lm.SUBNASALE]]),  # the nose's base stays
}
AU_REGION: dict[str, str] = {
    "AU01": "brows", "AU02": "brows", "AU04": "brows",
    "AU05": "eyes", "AU06": "eyes", "AU07": "eyes", "AU45": "eyes",
    "AU09": "mouth", "AU10": "mouth", "AU12": "mouth", "AU14": "mouth", "AU15": "mouth", "AU17": "mouth",
    "AU20": "mouth", "AU23": "mouth", "AU25": "mouth", "AU26": "mouth",
}


def _handles(au: str, neutral: np.ndarray) -> dict[int, np.ndarray]:
    """Landmark index -> (3,) displacement at intensity 5 for one AU (x right in the image, y down)."""
    out: dict[int, np.ndarray] = {}

    def move(idx, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, mirror: bool = False) -> None:
        for i in np.atleast_1d(idx):
            side = np.sign(neutral[int(i), 0] - _midline(neutral)) if mirror else 1.0
            out[int(i)] = out.get(int(i), np.zeros(3)) + np.array([side * dx, dy, dz])

    if au == "AU01":
        move(_INNER_BROW, dy=-0.12), move(_MID_BROW, dy=-0.06)
    elif au == "AU02":
        move(_OUTER_BROW, dy=-0.12), move(_MID_BROW, dy=-0.06)
    elif au == "AU04":
        move(_INNER_BROW, dx=-0.04, dy=0.05, mirror=True), move(_MID_BROW, dy=0.02)
    elif au == "AU05":
        move(_UPPER_LIDS, dy=-0.05)
    elif au == "AU06":
        move(_CHEEKS, dy=-0.06), move(_LOWER_LIDS, dy=-0.01)
    elif au == "AU07":
        move(_LOWER_LIDS, dy=-0.04)
    elif au == "AU09":
        move(_NOSE_WINGS, dy=-0.06), move(_UPPER_LIP, dy=-0.02)
    elif au == "AU10":
        move(_UPPER_LIP, dy=-0.06)
    elif au == "AU12":
        move(np.concatenate([_RIGHT_CORNER, _LEFT_CORNER]), dx=0.03, dy=-0.10, mirror=True)
    elif au == "AU14":
        move(np.concatenate([_RIGHT_CORNER, _LEFT_CORNER]), dx=-0.02, dz=0.08, mirror=True)
    elif au == "AU15":
        move(np.concatenate([_RIGHT_CORNER, _LEFT_CORNER]), dy=0.08)
    elif au == "AU17":
        move(_CHIN, dy=-0.08), move(_LOWER_LIP, dy=-0.02)
    elif au == "AU20":
        move(np.concatenate([_RIGHT_CORNER, _LEFT_CORNER]), dx=0.10, dy=0.02, mirror=True)
    elif au == "AU23":
        move(_UPPER_LIP[:9], dy=0.04), move(_LOWER_LIP[:9], dy=-0.04)
    elif au == "AU25":
        move(_LOWER_LIP, dy=0.26), move(_CHIN, dy=0.06)
    elif au == "AU26":
        move(np.concatenate([_CHIN, _JAW]), dy=0.40), move(_LOWER_LIP, dy=0.32)
        move(np.concatenate([_RIGHT_CORNER, _LEFT_CORNER]), dy=0.08)
    elif au == "AU45":
        for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
            gap = neutral[pairs[:, 1], 1] - neutral[pairs[:, 0], 1]
            for (up, lo), g in zip(pairs, gap):
                out[int(up)] = np.array([0.0, 0.9 * g, 0.0])
                out[int(lo)] = np.array([0.0, -0.1 * g, 0.0])
    else:
        raise ValueError(f"unknown AU {au}")
    return out


def _midline(neutral: np.ndarray) -> float:
    return float(neutral[[lm.NOSE_TIP, lm.NASION, lm.CHIN], 0].mean())


def harmonic_fill(neutral: np.ndarray, fixed: dict[int, np.ndarray], hold: np.ndarray) -> np.ndarray:
    """(478, 3) displacement equal to ``fixed`` at its landmarks, 0 at ``hold``, harmonic elsewhere on the mesh."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    n = len(neutral)
    edges = _mesh_edges()
    length = np.linalg.norm(neutral[edges[:, 0], :2] - neutral[edges[:, 1], :2], axis=1)
    w = 1.0 / np.maximum(length, 1e-3)
    lap = sparse.coo_matrix((np.concatenate([w, w]), (np.concatenate([edges[:, 0], edges[:, 1]]),
                                                      np.concatenate([edges[:, 1], edges[:, 0]]))), shape=(n, n))
    lap = (sparse.diags(np.asarray(lap.sum(1)).ravel()) - lap).tocsr()
    known = np.zeros(n, bool)
    values = np.zeros((n, 3))
    known[hold] = True
    for i, d in fixed.items():
        known[i], values[i] = True, d
    known[np.asarray(lap.sum(1)).ravel() == 0] = True  # points on no triangle (irises) stay unless handled
    free = ~known
    # nothing in the mesh reaches some free point: rows with no link stay put
    a = lap[free][:, free].tocsc() + sparse.identity(int(free.sum())) * 1e-9
    rhs = -(lap[free][:, known] @ values[known])
    values[free] = np.asarray(spsolve(a, rhs)).reshape(-1, 3)
    return values


@functools.lru_cache(maxsize=1)
def _mesh_edges() -> np.ndarray:
    tris = mesh_triangles()
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    return np.unique(np.sort(e, 1), axis=0)


SIDE_WEIGHT = 0.2  # weight of the unrequested AUs' readings in the fit
GAP_WEIGHT = 4.0  # weight of the lip gap (AU25) where the jaw does not drop: an open mouth shows most
_PARTING = ("AU25", "AU26")  # the AUs that open the lips
_LIPS_PART, _JAW_DROP = AU_NAMES.index("AU25"), AU_NAMES.index("AU26")
_GAP_PAIRS = np.array([[13, 14], [82, 87], [312, 317], [81, 178], [311, 402]])  # central inner-lip pairs


@dataclass
class AUShapeModel:
    """Per-AU displacement fields on one neutral face, calibrated so that shapes read back as asked.

    ``basis`` (17, 478, 3): each AU's displacement at nominal intensity 5; ``response`` (17, 17): the AU
    intensities each basis field reads as (column j = basis j), with which requests are solved.
    """

    neutral: np.ndarray  # (478, 3) pose-normalised
    basis: np.ndarray  # (17, 478, 3)
    response: np.ndarray  # (17, 17)
    seal: np.ndarray  # (478, 3) the lower lip lifted by 1 (normalised units), the rest following harmonically
    gap_opening: np.ndarray  # (17,) how far each basis field opens the lips (central inner-lip gap); 0 for AU25/26

    @classmethod
    def build(cls, neutral: np.ndarray) -> AUShapeModel:
        neutral = np.asarray(neutral, np.float64)
        basis = np.stack([harmonic_fill(neutral, _handles(au, neutral), _hold_for(au, neutral))
                          for au in AU_NAMES])
        # slopes measured at 40% of each field, where no reading is clipped at 5 yet, then scaled to the full field
        probe = 0.4
        response = au_intensities(neutral[None] + probe * basis, neutral).T.astype(np.float64) / probe
        seal = harmonic_fill(neutral, {int(i): np.array([0.0, -1.0, 0.0]) for i in _LOWER_LIP},
                             np.setdiff1d(_HOLD["mouth"], _LOWER_LIP))
        opening = _lip_gap(basis)
        opening[[AU_NAMES.index(a) for a in _PARTING]] = 0.0
        return cls(neutral, basis, response, seal, opening)

    def displacement(self, weights: np.ndarray) -> np.ndarray:
        """(T, 478, 3) displacement for basis weights (T, 17) (1 = the basis field at nominal intensity 5).

        Only lips part (AU25) and jaw drop (AU26) open the lips: where the other fields together would open
        them (an upper lip raised off a closed mouth, AU10), the lower lip follows (``seal``). They may close them.
        """
        weights = np.asarray(weights, np.float64)
        lift = np.maximum(weights @ self.gap_opening, 0.0)
        return np.einsum("tk,knd->tnd", weights, self.basis) + lift[:, None, None] * self.seal[None]

    def weights_for(self, aus: np.ndarray, steps: int = 2, reg: float = 0.05) -> np.ndarray:
        """(T, 17) basis weights whose shapes read as ``aus`` (T, 17) intensities 0-5 on this neutral.

        Per frame, a bounded least-squares fit of the linearised readings to the request (weights from 0 to what
        reads as 5), kept near each AU's nominal weight, then ``steps`` corrections for the measures' curvature.
        """
        from scipy.optimize import lsq_linear

        target = np.clip(np.asarray(aus, np.float64), 0.0, 5.0)
        m = self.response
        gain = np.maximum(np.diag(m), 0.5)
        most = 5.0 / gain  # a weight past what reads as 5 (lids crossing) is not anatomy
        prior = target / gain
        w = np.zeros_like(target)
        offset = np.zeros_like(target)  # measured minus linearised reading, from the last step
        for step in range(steps + 1):
            for t in np.flatnonzero(target.any(1)):
                # the requested AUs count fully; the side readings of other AUs (a jaw drop parts the lips,
                # a blink lifts the lower lid) are kept small but may not cancel the request
                rows = np.where(target[t] > 0, 1.0, SIDE_WEIGHT)[:, None]
                if not target[t, _JAW_DROP]:  # the lips part as asked (no further) unless the jaw drops
                    rows[_LIPS_PART] = GAP_WEIGHT
                a = np.vstack([rows * m, np.sqrt(reg) * np.diag(gain)])
                b = np.concatenate([rows[:, 0] * (target[t] - offset[t]), np.sqrt(reg) * gain * prior[t]])
                w[t] = lsq_linear(a, b, bounds=(0.0, most)).x
            if step < steps:
                now = au_intensities(self.neutral[None] + self.displacement(w), self.neutral).astype(np.float64)
                offset = now - w @ m.T
        return w

    def shapes(self, aus: np.ndarray) -> np.ndarray:
        """(T, 478, 3) float32 pose-normalised shapes whose AU intensities are ``aus`` (T, 17)."""
        return (self.neutral[None] + self.displacement(self.weights_for(aus))).astype(np.float32)


def _lip_gap(displacement: np.ndarray) -> np.ndarray:
    """(...) change of the central inner-lip gap (lower minus upper, y down) of displacements (..., 478, 3)."""
    d = displacement[..., _GAP_PAIRS[:, 1], 1] - displacement[..., _GAP_PAIRS[:, 0], 1]
    return d.mean(-1)


def _hold_for(au: str, neutral: np.ndarray) -> np.ndarray:
    hold = _HOLD[AU_REGION[au]]
    moved = np.array(sorted(_handles(au, neutral)), int)
    return np.setdiff1d(hold, moved)
