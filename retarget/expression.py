"""AU-related features: pose-normalised displacement from the person's own neutral, and 17 AU intensities.

Every measure is taken on pose-normalised landmarks (``face.estimate_pose``), whose unit is the RMS radius of
the person's rigid landmark set, so the numbers are comparable across people and face sizes. An AU intensity is
the change of one geometric measure from a reference, divided by the change that counts as a full-strength (5)
action, clipped to 0-5. The reference is the person's own neutral frame, or, with ``population_neutral``, the
typical resting value of the measure (``POPULATION_NEUTRAL``), counted only beyond the usual spread between
people (a still portrait is its own neutral and would otherwise read 0).

y points down the face; "height above" means smaller y. Brow heights are taken above the brow reference
(``brow_reference``: halfway between the nasion and the inner eye corners, at about the brows' depth) and
corrected for the lids (+ 0.06 x eye opening); the "lip centre" is the mean of the upper lip's top (0) and the
lower lip's bottom (17).

| AU | name | measure (``raw_measures``) | direction | full scale (5) |
|---|---|---|---|---|
| AU01 | inner brow raiser | height of the inner half of the brows (66, 107, 65, 55 and mirror) | up | 0.10 |
| AU02 | outer brow raiser | height of the outer half of the brows (70, 63, 105, 46, 53, 52 and mirror) | up | 0.08 |
| AU04 | brow lowerer | height of inner+middle brow (105, 66, 107, 52, 65, 55, mirror) + 0.25 brow gap | down | 0.06 |
| AU05 | upper lid raiser | height of the upper lid's middle (159, 386) above the eye-corner line | up | 0.05 |
| AU06 | cheek raiser | depth of the cheek points (118, 347) below the eye-corner line | up | 0.06 |
| AU07 | lid tightener | depth of the lower lid's middle (145, 374) below the eye-corner line | up | 0.04 |
| AU09 | nose wrinkler | alar base (129, 358) below the nasion (168) | shorter | 0.06 |
| AU10 | upper lip raiser | upper lip's top (0) below the subnasale (2) | shorter | 0.06 |
| AU12 | lip corner puller | corners' height above the subnasale, + 0.3 x inner-lip gap (jaw drop out) | up | 0.20 |
| AU14 | dimpler | corners' depth (z) behind the lip centre | deeper | 0.08 |
| AU15 | lip corner depressor | corners' height above the lip centre | down | 0.08 |
| AU17 | chin raiser | chin (152) below the lower lip's bottom, + 0.6 x inner-lip gap (jaw drop out) | shorter | 0.08 |
| AU20 | lip stretcher | distance between the mouth corners (61, 291) | wider | 0.20 |
| AU23 | lip tightener | upper plus lower lip thickness at the midline | thinner | 0.08 |
| AU25 | lips part | inner-lip gap (13 to 14) | wider | 0.30 |
| AU26 | jaw drop | chin below the subnasale | longer | 0.40 |
| AU45 | blink | mean lid-to-lid distance of both eyes, relative to the reference's | smaller | 100% |

Full scales were set from strong, clearly visible actions in the development clips of ../shared/media
(drv_lp_d0's broad smile, drv_lp_d9's raised brows and closed-mouth smile, drv_lp_d3's frowns, drv_lp_d18's
yawn, a full blink). A jaw drop pulls the mouth corners down and stretches the lower lip towards the chin;
the AU12 and AU17 measures add that share of the lip gap back, and AU14's depth is taken behind the lip centre,
which sinks with the corners, so a yawn reads as AU25/AU26 and not as a smile, dimple or chin raise.
The brows are measured from a reference at their own depth, not from the eye corners, and with the lids' pull
on mediapipe's mesh added back, so head pitch and blinks do not read as brow raises (``brow_reference``).
Event tests on those clips: tests/test_au_quality.py with windows in tests/data/au_events.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .types import AU_NAMES, Expression


def _y(shapes: np.ndarray, idx) -> np.ndarray:
    return shapes[:, idx, 1]


def _dist(shapes: np.ndarray, a, b) -> np.ndarray:
    return np.linalg.norm(shapes[:, a, :2] - shapes[:, b, :2], axis=-1)


# Brow points (upper and lower contour) per side, subject's right then left, for the three brow measures. The
# middle of the brow moves most in mediapipe's mesh, so the inner and the frown measures include it.
_INNER_BROW = ((66, 107, 65, 55), (296, 336, 295, 285))
_OUTER_BROW = ((70, 63, 105, 46, 53, 52), (300, 293, 334, 276, 283, 282))
_FROWN_BROW = ((105, 66, 107, 52, 65, 55), (334, 296, 336, 282, 295, 285))

# The brows' reference: this share of the nasion (168), the rest the middle of the inner eye corners (133, 362).
# Medians over the neutrals of the 14 development clips: the inner brow points lie at depth z -0.36, the outer
# ones at -0.16 and this reference at -0.23, where the line through all four eye corners (the reference before)
# lies at -0.05. A pitch error of the pose normalisation moves a height by the depth difference x the angle, so
# that line read a 3 degree error on the inner brows as 0.017 (0.8 AU01), this reference as 0.007.
_BROW_REFERENCE_NASION_SHARE = 0.5
# Mediapipe pulls the eye corners and the nasion down as the lids close (the brows much less), so a blink read as
# a brow raise: measured on the blinks of 9 development clips (drv_lp_d0, d3, d9, d13, d14, d18, vid_lp_s18, s20,
# s32), the brows rose above this reference by a median of about 0.06 of the lid opening lost. That share of the eye
# opening is added to every brow height.
_BROW_RISE_PER_LID_CLOSURE = 0.06

# How far the mouth corners follow a jaw drop, per unit of inner-lip gap (measured on the yawns of drv_lp_d18
# and drv_lp_d3's surprise: the corners sink about 0.3 of the gap relative to the nose, and the lower lip's
# bottom sinks about 0.6 of it towards the chin). Subtracting it keeps an open mouth from reading as a smile
# or a chin raise.
_CORNER_DROP_PER_GAP = 0.3
_CHIN_LIP_SHRINK_PER_GAP = 0.6


def eye_opening(shapes: np.ndarray) -> np.ndarray:
    """(T, 2) mean lid-to-lid distance of the subject's right and left eye."""
    right = (_y(shapes, lm.RIGHT_LID_PAIRS[:, 1]) - _y(shapes, lm.RIGHT_LID_PAIRS[:, 0]))[:, 2:5].mean(1)
    left = (_y(shapes, lm.LEFT_LID_PAIRS[:, 1]) - _y(shapes, lm.LEFT_LID_PAIRS[:, 0]))[:, 2:5].mean(1)
    return np.stack([right, left], 1)


def _eye_line(shapes: np.ndarray) -> np.ndarray:
    """(T, 2) y of the line through each eye's corners."""
    r = (_y(shapes, lm.RIGHT_EYE_CORNERS[0]) + _y(shapes, lm.RIGHT_EYE_CORNERS[1])) / 2
    l = (_y(shapes, lm.LEFT_EYE_CORNERS[0]) + _y(shapes, lm.LEFT_EYE_CORNERS[1])) / 2
    return np.stack([r, l], 1)


def brow_reference(shapes: np.ndarray) -> np.ndarray:
    """(T,) y of the point the brows are measured from, in shapes (T, 478, 3): halfway between the nasion and the
    middle of the inner eye corners.

    It lies at about the brows' depth, so a head pitch left in (or put in) by the pose normalisation hardly mixes
    depth into the brows' heights, and mediapipe drags it less with the lids than the outer eye corners.
    """
    share = _BROW_REFERENCE_NASION_SHARE
    corners = (_y(shapes, lm.RIGHT_EYE_CORNERS[1]) + _y(shapes, lm.LEFT_EYE_CORNERS[1])) / 2
    return share * _y(shapes, lm.NASION) + (1 - share) * corners


def _brow_height(shapes: np.ndarray, points: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    """(T,) mean height of the brow ``points`` (right side, left side) above ``brow_reference``, plus the lids'
    pull (``_BROW_RISE_PER_LID_CLOSURE`` x eye opening), in normalised units."""
    brow = (_y(shapes, list(points[0])).mean(1) + _y(shapes, list(points[1])).mean(1)) / 2
    lids = _BROW_RISE_PER_LID_CLOSURE * eye_opening(shapes).mean(1)
    return brow_reference(shapes) - brow + lids


def _mouth_corners(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,) mean y and (T,) mean z of the two outer mouth corners."""
    a, b = lm.MOUTH_CORNERS
    return (shapes[:, a, 1] + shapes[:, b, 1]) / 2, (shapes[:, a, 2] + shapes[:, b, 2]) / 2


def _brow_measures(shapes: np.ndarray) -> dict[str, np.ndarray]:
    """Brow measures, each (T,), of pose-normalised shapes (T, 478, 3)."""
    gap = _dist(shapes, lm.RIGHT_BROW_INNER[1], lm.LEFT_BROW_INNER[1])
    return {
        "inner_brow_height": _brow_height(shapes, _INNER_BROW),
        "outer_brow_height": _brow_height(shapes, _OUTER_BROW),
        "brow_gap": gap,
        # a frown lowers the inner half of the brows towards the eyes and draws them together
        "brow_frown_height": _brow_height(shapes, _FROWN_BROW) + 0.25 * gap,
    }


def _eye_measures(shapes: np.ndarray) -> dict[str, np.ndarray]:
    """Lid, cheek and eye-opening measures, each (T,), of pose-normalised shapes (T, 478, 3)."""
    eye_line = _eye_line(shapes)
    upper_lid = eye_line - np.stack([_y(shapes, 159), _y(shapes, 386)], 1)
    lower_lid = np.stack([_y(shapes, 145), _y(shapes, 374)], 1) - eye_line
    cheek = np.stack([_y(shapes, lm.CHEEKS[0]), _y(shapes, lm.CHEEKS[1])], 1) - eye_line
    return {
        "upper_lid_height": upper_lid.mean(1),
        "lower_lid_height": lower_lid.mean(1),
        "cheek_height": cheek.mean(1),
        "eye_opening": eye_opening(shapes).mean(1),
    }


def _mouth_measures(shapes: np.ndarray) -> dict[str, np.ndarray]:
    """Nose, lip, mouth-corner and jaw measures, each (T,), of pose-normalised shapes (T, 478, 3)."""
    lip_gap = _y(shapes, lm.LOWER_LIP_INNER) - _y(shapes, lm.UPPER_LIP_INNER)
    lip_mid_y = (_y(shapes, lm.UPPER_LIP_TOP) + _y(shapes, lm.LOWER_LIP_BOTTOM)) / 2
    lip_mid_z = (shapes[:, lm.UPPER_LIP_TOP, 2] + shapes[:, lm.LOWER_LIP_BOTTOM, 2]) / 2
    corner_y, corner_z = _mouth_corners(shapes)
    return {
        "nose_length": _y(shapes, lm.NOSE_ALAR).mean(1) - _y(shapes, lm.NASION),
        "upper_lip_gap": _y(shapes, lm.UPPER_LIP_TOP) - _y(shapes, lm.SUBNASALE),
        "corner_height": lip_mid_y - corner_y,
        "corner_lift": _y(shapes, lm.SUBNASALE) - corner_y + _CORNER_DROP_PER_GAP * lip_gap,
        "corner_depth": corner_z - lip_mid_z,
        "mouth_width": _dist(shapes, *lm.MOUTH_CORNERS),
        "lip_gap": lip_gap,
        "lip_thickness": (_y(shapes, lm.UPPER_LIP_INNER) - _y(shapes, lm.UPPER_LIP_TOP))
        + (_y(shapes, lm.LOWER_LIP_BOTTOM) - _y(shapes, lm.LOWER_LIP_INNER)),
        "chin_to_lip": _y(shapes, lm.CHIN) - _y(shapes, lm.LOWER_LIP_BOTTOM) + _CHIN_LIP_SHRINK_PER_GAP * lip_gap,
        "jaw_length": _y(shapes, lm.CHIN) - _y(shapes, lm.SUBNASALE),
    }


def raw_measures(shapes: np.ndarray) -> dict[str, np.ndarray]:
    """Geometric measures per frame, each (T,), from pose-normalised shapes (T, 478, 3).

    Units are those of the pose-normalised frame (the RMS radius of the rigid landmark set); ``AU_MEASURES``
    says which measure each AU reads and in which direction.
    """
    return {**_brow_measures(shapes), **_eye_measures(shapes), **_mouth_measures(shapes)}


@dataclass(frozen=True)
class AUMeasure:
    """AU intensity = clip(sign * (measure - reference measure) / full_scale * 5, 0, 5)."""

    measure: str
    sign: float
    full_scale: float  # change in normalised units that reads as intensity 5
    relative: bool = False  # divide the change by the reference value (for eye opening)


# Full-scale changes were set from strong, clearly visible actions in the development clips in ../shared/media
# (drv_lp_d0's broad smile, drv_lp_d18's yawn and closed eyes, drv_lp_d3's frowns and surprise, drv_lp_d9's
# raised brows and closed-mouth smile, a full blink); see the module docstring.
AU_MEASURES: dict[str, AUMeasure] = {
    "AU01": AUMeasure("inner_brow_height", +1, 0.10),
    "AU02": AUMeasure("outer_brow_height", +1, 0.08),
    "AU04": AUMeasure("brow_frown_height", -1, 0.06),
    "AU05": AUMeasure("upper_lid_height", +1, 0.05),
    "AU06": AUMeasure("cheek_height", -1, 0.06),
    "AU07": AUMeasure("lower_lid_height", -1, 0.04),
    "AU09": AUMeasure("nose_length", -1, 0.06),
    "AU10": AUMeasure("upper_lip_gap", -1, 0.06),
    "AU12": AUMeasure("corner_lift", +1, 0.20),
    "AU14": AUMeasure("corner_depth", +1, 0.08),
    "AU15": AUMeasure("corner_height", -1, 0.08),
    "AU17": AUMeasure("chin_to_lip", -1, 0.08),
    "AU20": AUMeasure("mouth_width", +1, 0.20),
    "AU23": AUMeasure("lip_thickness", -1, 0.08),
    "AU25": AUMeasure("lip_gap", +1, 0.30),
    "AU26": AUMeasure("jaw_length", +1, 0.40),
    "AU45": AUMeasure("eye_opening", -1, 1.0, relative=True),
}


# Typical resting values of each measure and their spread between people, for ``population_neutral``: the
# median and standard deviation of the measures at the neutral frame that ``pick_neutral`` chose in 14 of the
# development clips in ../shared/media (drv_lp_d0, d3, d6, d9, d10, d12, d13, d14, d18, d19, vid_lp_s18, s20,
# s32, vid_vx_RD_Radio10_0_clip_0; vid_lp_s29 is left out: it laughs throughout, so it has no resting frame).
# No still portrait was used. Constants only: (typical value, spread), in normalised units. The three brow
# measures were re-derived the same way when they moved to ``brow_reference`` (the others did not change).
POPULATION_NEUTRAL: dict[str, tuple[float, float]] = {
    "inner_brow_height": (0.322, 0.063),
    "outer_brow_height": (0.307, 0.061),
    "brow_frown_height": (0.442, 0.069),
    "upper_lid_height": (0.097, 0.028),
    "lower_lid_height": (0.062, 0.015),
    "cheek_height": (0.318, 0.019),
    "eye_opening": (0.144, 0.034),
    "nose_length": (0.693, 0.038),
    "upper_lip_gap": (0.250, 0.032),
    "corner_lift": (-0.323, 0.035),
    "corner_depth": (0.264, 0.016),
    "corner_height": (0.051, 0.028),
    "chin_to_lip": (0.472, 0.059),
    "mouth_width": (0.806, 0.040),
    "lip_thickness": (0.261, 0.045),
    "lip_gap": (0.002, 0.024),
    "jaw_length": (1.000, 0.066),
}


def _references(neutral: np.ndarray, population_neutral: bool) -> dict[str, tuple[float, float]]:
    """(reference value, dead zone) per raw measure: the person's ``neutral`` (478, 3) with no dead zone, or
    the population's typical value with its spread between people as the dead zone."""
    if population_neutral:
        return POPULATION_NEUTRAL
    return {name: (float(v[0]), 0.0) for name, v in raw_measures(neutral[None]).items()}


def au_intensities(shapes: np.ndarray, neutral: np.ndarray, population_neutral: bool = False) -> np.ndarray:
    """(T, 17) float32 intensities 0-5 of ``shapes`` (T, 478, 3) relative to ``neutral`` (478, 3).

    With ``population_neutral`` the reference is a typical resting face (``POPULATION_NEUTRAL``) instead of
    ``neutral``, and a change counts only beyond the usual spread between people's resting faces.
    """
    now = raw_measures(shapes)
    refs = _references(neutral, population_neutral)
    out = np.zeros((shapes.shape[0], len(AU_NAMES)), np.float32)
    for k, name in enumerate(AU_NAMES):
        m = AU_MEASURES[name]
        ref, dead_zone = refs[m.measure]
        change = m.sign * (now[m.measure] - ref)
        if m.relative:
            scale = max(abs(ref), 1e-6)
            change, dead_zone = change / scale, dead_zone / scale
        out[:, k] = np.clip((change - dead_zone) / m.full_scale * 5.0, 0.0, 5.0)
    return np.nan_to_num(out)


# The measures the upper face sets (brows, lids and cheeks: every landmark they read lies where ``upper_share`` is
# 1); the rest move with the mouth. A clip's resting mouth (lips closed) and resting brows need not come in the
# same frame: drv_lp_d10 talks throughout and closes her lips mostly while she raises her brows and widens her
# eyes, so the one calmest frame had brows 5 AU above her usual ones, and every output frowned and squinted.
UPPER_MEASURES = frozenset({"inner_brow_height", "outer_brow_height", "brow_frown_height", "upper_lid_height",
                            "lower_lid_height", "cheek_height", "eye_opening"})
# The cheeks rise with a smile, so in a clip that smiles most of the time their median is a smile's: their resting
# value comes from the closed-lip frames, as the mouth's does.
_CHEEK_MEASURES = frozenset({"cheek_height"})
# Added to the score of a frame whose lips are apart, so the mouth's frame has closed lips wherever the clip has any.
_NOT_CLOSED = 100.0
# A frame whose eyes are open less than this share of the clip's median opening is a blink, not a resting face.
_AWAKE_SHARE = 0.7


def _closed_lips(lip_gap: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames whose ``lip_gap`` (T,) is among the clip's smallest. A low percentile still finds
    closed lips when few frames have them (a clip that smiles or talks 90% of the time), where the 20th
    percentile would already count open mouths."""
    return lip_gap <= np.nanpercentile(lip_gap, 5) + 0.02


def measures_by_block(shapes: np.ndarray, frames: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``raw_measures`` of ``shapes`` (T, 478, 3; an array, or rows on disk) read ``frame_blocks`` at a time, of
    the ``frames`` (indices, increasing) only when given: the same numbers without a whole-clip copy."""
    parts = []
    for b in frame_blocks(len(shapes)):
        block = np.asarray(shapes[b])
        if frames is not None:
            block = block[frames[(frames >= b.start) & (frames < b.stop)] - b.start]
        parts.append(raw_measures(block))
    if not parts:
        return raw_measures(np.zeros((0,) + tuple(shapes.shape[1:]), np.float32))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def expressiveness(shapes: np.ndarray, frames: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """(T,) upper-face and (T,) lower-face distance of each frame from a resting face, in units of the AU full
    scales, without knowing the neutral yet, and (T,) bool: which frames have closed lips (``_closed_lips``).
    ``frames``: only these frames of ``shapes`` (indices, increasing; T of them), as ``expressiveness(shapes[
    frames])`` but read a block at a time.

    The brows and lids rest where they spend most of their time: their measures are compared with their medians
    over the frames with open eyes. A resting mouth has its lips closed, even in a clip that smiles or talks
    most of the time, so the mouth's and the cheeks' resting values are taken from the frames that look like
    that (closed lips, open eyes).
    """
    meas = measures_by_block(shapes, frames)
    lip_gap, eye_open = meas["lip_gap"], meas["eye_opening"]
    awake = eye_open >= _AWAKE_SHARE * np.nanmedian(eye_open)
    closed = _closed_lips(lip_gap)
    resting = closed & (eye_open >= 0.85 * np.nanpercentile(eye_open, 75))
    scores = {True: np.zeros(len(lip_gap)), False: np.zeros(len(lip_gap))}
    for name in sorted({m.measure for m in AU_MEASURES.values()}):
        m = next(a for a in AU_MEASURES.values() if a.measure == name)
        upper = name in UPPER_MEASURES
        frames = awake if upper and name not in _CHEEK_MEASURES else resting
        x = meas[name]
        rest = np.nanmedian(x[frames] if frames.any() else x)
        scores[upper] += np.abs(x - rest) / (max(abs(rest), 1e-6) if m.relative else 1.0) / m.full_scale
    return scores[True], scores[False], closed


def upper_share(shape: np.ndarray) -> np.ndarray:
    """(478,) how far each landmark of a pose-normalised ``shape`` (478, 3) belongs to the upper face: 1 down to
    a third of the way from the eye corners to the mouth corners, 0 from two thirds of the way, smooth between."""
    eyes = shape[list(lm.RIGHT_EYE_CORNERS + lm.LEFT_EYE_CORNERS), 1].mean()
    mouth = shape[list(lm.MOUTH_CORNERS), 1].mean()
    t = np.clip((shape[:, 1] - eyes) / max(float(mouth - eyes), 1e-6) * 3.0 - 1.0, 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Neutral:
    """A clip's neutral reference: its mouth from around frame ``index``, its brows, eyes and cheeks from around
    ``upper_index`` (the same frame when a time was given), blended over the nose (``upper_share``)."""

    index: int
    upper_index: int
    shape: np.ndarray  # (478, 3) pose-normalised


def _calmest(score: np.ndarray, window: int) -> int:
    """Index of the lowest ``score`` (T,) averaged over ``window`` frames either side: a resting face lasts."""
    kernel = np.ones(2 * window + 1) / (2 * window + 1)
    return int(np.argmin(np.convolve(np.pad(score, window, mode="edge"), kernel, mode="valid")))


def pick_neutral(shapes: np.ndarray, found: np.ndarray, times: np.ndarray,
                 at_time: float | None = None, window: int = 2) -> Neutral:
    """Choose the neutral reference: the least expressive face, or the frame nearest ``at_time`` seconds.

    Without a time, the mouth comes from the frame with closed lips that is calmest over the whole face, the
    brows and eyes from the frame calmest over the upper face (``expressiveness``), and the two are joined
    (``upper_share``). The mouth's frame is ``index``: a still target's head follows the driver's pose from
    there. Each part is the median over found frames within ``window`` frames of its index, which damps
    tracking noise in the reference.
    """
    good = np.flatnonzero(found)
    if len(good) == 0:
        raise ValueError("no frame with a face")
    if at_time is not None:
        idx = upper_idx = int(good[np.argmin(np.abs(times[good] - at_time))])
    else:
        upper, lower, closed = expressiveness(shapes, None if len(good) == len(shapes) else good)
        # the mouth's frame has closed lips where the clip has any, and is the calmest of those over the face
        idx = int(good[_calmest(lower + upper + np.where(closed, 0.0, _NOT_CLOSED), window)])
        upper_idx = int(good[_calmest(upper, window)])

    def around(index: int) -> np.ndarray:
        return np.median(shapes[good[np.abs(good - index) <= window]], axis=0)

    shape = around(idx)
    if upper_idx != idx:
        share = upper_share(shape)[:, None]
        shape = share * around(upper_idx) + (1.0 - share) * shape
    return Neutral(idx, upper_idx, shape)


def analyse(normalised: np.ndarray, found: np.ndarray, times: np.ndarray,
            neutral_time: float | None = None, population_neutral: bool = False) -> Expression:
    """The Expression of a clip from its pose-normalised landmarks (T, 478, 3).

    The neutral shape is always the person's own (``pick_neutral``). The AUs are measured from it, or, with
    ``population_neutral``, from a typical resting face (for a still, which is its own neutral otherwise).
    """
    neutral = pick_neutral(normalised, found, times, neutral_time)
    # a block of frames at a time: a long clip's whole (T, 478, 3) float64 copy is not needed
    aus = np.concatenate([au_intensities(np.where(found[b, None, None], normalised[b], neutral.shape), neutral.shape,
                                         population_neutral) for b in frame_blocks(len(normalised))]
                         ) if len(normalised) else np.zeros((0, len(AU_NAMES)), np.float32)
    return Expression(normalised=normalised, neutral=neutral.shape.astype(np.float32), neutral_index=neutral.index,
                      aus=aus, found=found.copy(), upper_neutral_index=neutral.upper_index)


def frame_blocks(n: int, size: int = 2048) -> list[slice]:
    """Slices of ``size`` frames covering ``n``."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


# A neutral that shows this much of a smile (AU12) or of parted lips (AU25) or more against a typical resting
# face (``POPULATION_NEUTRAL``) is not at rest. Of the 15 development clips, only vid_lp_s29, which laughs
# throughout, reads above it at its calmest frame (AU12 3.6, AU25 3.0); the other 14 read AU12 0.06 and AU25
# 0.62 at most. These are the clips ``POPULATION_NEUTRAL`` was measured on, so the separation is in-sample. The
# smile and the lips' gap are the two measures that read alike across people's resting faces; the others
# (nose wrinkle, chin, brows) read up to 5 on a calm face with glasses or a long chin.
RESTLESS = 2.0
RESTLESS_AUS = ("AU12", "AU25")


def restless(neutral: np.ndarray) -> dict[str, float]:
    """{AU name: intensity} of the smile (AU12) and the lips' parting (AU25) that a clip's ``neutral`` (478, 3)
    pose-normalised shows at ``RESTLESS`` or more against a typical resting face; empty for a face at rest.

    The clip's expressions are measured from its neutral, so whatever the neutral shows passes for rest: a face
    that smiles at its calmest keeps that smile under a driver at rest, and a driver that does passes on none
    of its smile."""
    aus = au_intensities(np.asarray(neutral)[None], np.asarray(neutral), population_neutral=True)[0]
    return {name: round(float(aus[AU_NAMES.index(name)]), 2) for name in RESTLESS_AUS
            if aus[AU_NAMES.index(name)] >= RESTLESS}
