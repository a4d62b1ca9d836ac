"""The training-free generator: a piecewise-affine warp of the face mesh plus a synthesised mouth interior.

1. The triangles are mediapipe's own face-mesh tessellation, whose holes (the mouth and the eyes) are closed with
   a strip between the inner lips and a fan around each iris centre. An eye whose lids meet collapses its fan
   to nothing, so the eye closes fully; an iris centre that moves carries the eye's texture with it (gaze);
   an opening mouth stretches only the strip, which step 3 then fills.
2. Per frame the backward map (for each output pixel, where to read the input) is rasterised on a low-resolution
   grid: inside the mesh it is each destination triangle's affine map back to its source triangle; outside it is
   the mesh border's displacement, extended by normalised convolution and faded out with distance, so hair,
   neck and background do not tear. The grid is upsampled and applied with ``cv2.remap``. The per-cell and
   per-landmark loops (rasterising, untangling, the outline distances) run compiled by numba (``kernels``).
3. When the mouth opens wider than in the target frame, the lips alone would be stretched over the gap. The
   driver's mouth interior (teeth, tongue, shadow) is mapped into the destination inner-lip outline by an
   affine fit on the inner-lip points, colour-matched to the target's brightness (and a share of its tint), and blended
   in with a feathered mask whose strength grows with the extra opening (the approach of "Bringing Portraits
   to Life", Averbuch-Elor et al. 2017).
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from .. import landmarks as lm
from ..face import similarity_fit
from ..mesh import mesh_triangles, neighbour_table
from ..transfer import lid_gap
from .base import FaceEdit, GeneratedFace
from .eyelids import LidStretch, keep_lash_lines, lid_stretch


@functools.lru_cache(maxsize=1)
def _kernels():
    """The compiled loops: the module built ahead of time (``aot``; built here on first use after an install,
    about 13 s), so a run does not import numba; where it cannot be built, numba's JIT kernels (``kernels``)."""
    from . import aot

    built = aot.load()
    if built is None and aot.unbuildable() is None:
        built = aot.build()
    return _JitFallback(built) if built is not None else _jit_kernels()


class _JitFallback:
    """The built module's kernels; a call its signatures (``aot.SIGNATURES``) do not take goes to the JIT's kernel
    instead (the same bits, once numba has loaded): the built module would read the arrays as the wrong type."""

    def __init__(self, module) -> None:
        self._module = module

    def __getattr__(self, name: str):
        from .aot import accepts

        built = getattr(self._module, name)

        def call(*args):
            if accepts(name, args):
                return built(*args)
            return getattr(_jit_kernels(), name)(*args)

        setattr(self, name, call)
        return call


@functools.lru_cache(maxsize=1)
def _jit_kernels():
    """The ``kernels`` module, compiled by numba's JIT on first use and cached.

    numba caches them beside their source, else in the user's cache folder. Where neither is writable (a
    read-only install and no home, as in some containers) it refuses to import them at all; they are then
    cached in a temporary folder instead, compiled again whenever that folder is emptied.
    """
    try:
        from . import kernels
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        import numba

        numba.config.CACHE_LOCATOR_CLASSES = ""  # numba's own list, led by the folder set here
        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"retarget-numba-{os.getuid()}")
        from . import kernels
    return kernels


@dataclass(frozen=True)
class WarpSettings:
    grid: int = 192  # long side of the deformation grid, in cells (256: 2.5 dB closer to a full-resolution
    # field, 6 ms a 720p frame slower, no visible difference; README, speed)
    margin: float = 0.5  # crop margin around the face, in face sizes (the falloff has faded to ~2% there)
    falloff: float = 0.25  # reach of the deformation outside the face mesh, in face sizes
    mouth_interior: bool = True
    feather: float = 0.06  # width of the paste-back feather at the crop border, in crop sizes
    head: float = 0.6  # reach of a move of the whole head (a still target following the driver's pose) beyond
    #                    the face, in face sizes: hair and ears go with the head, the background further out less;
    #                    0 turns it off (the pipeline does so for video targets, which keep their own pose)


class WarpGenerator:
    name = "warp"

    def __init__(self, settings: WarpSettings | None = None) -> None:
        self.settings = settings or WarpSettings()

    def prepare(self, target_neutral: np.ndarray) -> None:
        """Build the cached mesh and load (the first run after an install: compile) the compiled loops
        (``kernels``), by warping a small face of ``target_neutral``'s shape (478, >=2, any scale) once, before
        the first frame."""
        face_triangles()
        shape = np.asarray(target_neutral, np.float64)[:, :2]
        size = face_size(shape)
        if not (np.isfinite(shape).all() and size > 0):
            return  # not a face's shape: the first frame loads them instead
        source = ((shape - shape.mean(0)) * (100.0 / size) + 100.0).astype(np.float32)  # a 100-pixel face
        source = np.concatenate([source, np.zeros((len(source), 1), np.float32)], 1)
        destination = source + np.float32(0.5)
        self.generate(FaceEdit(image=np.zeros((200, 200, 3), np.uint8), source=source, destination=destination,
                               relative_aus=np.zeros(17, np.float32)))

    def generate(self, edit: FaceEdit) -> GeneratedFace:
        s = self.settings
        field = warp_field(edit.source, edit.destination, edit.image.shape, s, edit.person)
        x0, y0, x1, y1 = field.box
        crop = edit.image[y0:y1, x0:x1]
        out = cv2.remap(crop, field.map_x, field.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = borrow_eyes(out, field, edit, s)
        if s.mouth_interior:
            has_driver = edit.drive_image is not None and edit.drive_landmarks is not None
            out = fill_mouth(out, crop, field.source, field.destination, edit.drive_image if has_driver else None,
                             edit.drive_landmarks[:, :2] if has_driver else None)
        return GeneratedFace(field.box, out, border_feather(crop.shape[:2], s.feather),
                             opaque_box(crop.shape[:2], s.feather))


# An eye that the edit opens more than this many times its own opening in the frame is taken from the reference
# frame the edit carries (``FaceEdit.reference_image``), not stretched. The plan hands one over only where
# stretching falls short (``plan.EYE_STRETCH``), so this is the generator's own, lower, bar for using it.
BORROW_BEYOND = 1.25


def borrow_eyes(out: np.ndarray, field: WarpField, edit: FaceEdit, settings: WarpSettings) -> np.ndarray:
    """``out`` (the crop ``field`` warped) with each eye the edit opens beyond ``BORROW_BEYOND`` times its own
    opening taken from the edit's reference frame instead: the reference is warped from its landmarks to the
    field's destination over a box around the eyes, scaled to the light of the skin around the eyes in ``out``
    (``_in_light_of``), and an ellipse around each such eye (1.6 eye widths by 1.1, feathered) is blended in (in
    place where it applies).

    A video target's own blink, under a driver whose eyes are open, has no eyeball to stretch; a frame a moment
    earlier (or, at the clip's start, later), with the same light and nearly the same pose, has the open eye.
    """
    ref_image, ref_points = edit.reference_image, edit.reference_landmarks
    if ref_image is None or ref_points is None or not np.isfinite(ref_points).all():
        return out
    dst = field.destination  # crop pixels
    eyes = [loop for loop, pairs in ((lm.RIGHT_EYE, lm.RIGHT_LID_PAIRS), (lm.LEFT_EYE, lm.LEFT_LID_PAIRS))
            if lid_gap(dst, pairs) > BORROW_BEYOND * max(float(lid_gap(field.source, pairs)), 0.0) + 0.5]
    if not eyes:
        return out
    ellipses = []
    for loop in eyes:
        a, b = dst[loop[0]], dst[loop[8]]  # the eye's corners
        width = float(np.linalg.norm(b - a))
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        ellipses.append((dst[loop].mean(0), width, angle))
    feather = max(1.0, 0.12 * max(w for _, w, _ in ellipses))
    reach = np.array([max(0.8 * w for _, w, _ in ellipses) + 3 * feather] * 2)
    centres = np.stack([c for c, _, _ in ellipses])
    h, w = out.shape[:2]
    x0, y0 = np.maximum(np.floor(centres.min(0) - reach).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(centres.max(0) + reach).astype(int), [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    # the reference's face mapped onto the destination over the eyes' box, read from the whole reference frame
    offset = np.array([x0, y0], np.float32)
    crop_origin = np.array(field.box[:2], np.float32)
    src = clamp_iris(ref_points[:, :2]) - crop_origin - offset
    depth = edit.destination[:, 2] if edit.destination.shape[1] > 2 else np.zeros(len(dst), np.float32)
    size = (y1 - y0, x1 - x0)
    map_x, map_y = backward_map(src, dst - offset, depth, face_triangles(), size, max(size),
                                settings.falloff * face_size(ref_points))
    borrowed = cv2.remap(ref_image, map_x + (x0 + crop_origin[0]), map_y + (y0 + crop_origin[1]), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    mask = np.zeros(size, np.float32)
    for centre, width, angle in ellipses:
        cx, cy = (centre - offset).tolist()
        cv2.ellipse(mask, (round(cx), round(cy)), (max(1, round(0.8 * width)), max(1, round(0.55 * width))), angle,
                    0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), feather)
    here = out[y0:y1, x0:x1]
    borrowed = _in_light_of(borrowed, here, mask < 0.02)
    here[:] = np.clip(here + mask[..., None] * (borrowed - here) + 0.5, 0, 255).astype(np.uint8)
    return out


def _in_light_of(lent: np.ndarray, here: np.ndarray, around: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32: the ``lent`` pixels (h, w, 3) scaled per channel so that their mean over ``around``
    (h, w) bool, the skin around the eyes, matches ``here`` (h, w, 3) there.

    The reference frame is usually a moment away under the same light (a gain of about 1), but in a fade from
    or to black it is not: eyes lent by a brighter frame glowed in the darkened face."""
    lent = lent.astype(np.float32)
    if np.count_nonzero(around) < 16:
        return lent
    gain = (np.array(cv2.mean(here, around.view(np.uint8))[:3], np.float32) + 1.0) / (
        np.array(cv2.mean(lent, around.view(np.uint8))[:3], np.float32) + 1.0)
    return lent * np.clip(gain, 0.05, 4.0)


@dataclass
class WarpField:
    """The deformation of one frame, in the coordinates of its crop."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the crop in frame pixels
    source: np.ndarray  # (478, 2) landmarks before the edit, crop pixels (iris centres inside the eyes)
    destination: np.ndarray  # (478, 2) after the edit, untangled, crop pixels
    map_x: np.ndarray  # (h, w) float32: output pixel (y, x) reads input (map_y, map_x)
    map_y: np.ndarray


def warp_field(source: np.ndarray, destination: np.ndarray, frame_shape: tuple[int, ...],
               settings: WarpSettings, person: np.ndarray | None = None) -> WarpField:
    """Crop, iris clamping, untangling and the backward map for landmarks (478, >=2) in frame pixels.

    ``person`` (H, W) float32 0-1, where the target's person is, confines a head move to the person.
    """
    face = face_size(source)
    head = HeadMove.fit(source[:, :2], destination[:, :2]) if settings.head > 0 else None
    margin, grid = settings.margin, settings.grid
    if head is None or head.largest_shift(source[lm.FACE_OVAL, :2]) < 1.0:
        head = None  # the head keeps its place (a video target keeps its own pose)
    else:  # room for the head move to fade out inside the crop, at the face's usual grid resolution
        margin = max(margin, 2.0 * settings.head)
        grid = round(grid * (1 + 2 * margin) / (1 + 2 * settings.margin))
    box = crop_box(source, destination, margin * face, frame_shape)
    offset = np.array(box[:2], np.float32)
    src = clamp_iris(source[:, :2]) - offset
    dst = untangle(src, keep_inside_outline(src, clamp_iris(destination[:, :2]) - offset))
    depth = destination[:, 2] if destination.shape[1] > 2 else np.zeros(len(destination), np.float32)
    map_x, map_y = backward_map(src, dst, depth, face_triangles(), (box[3] - box[1], box[2] - box[0]),
                                grid, settings.falloff * face,
                                None if head is None else (head.in_crop(offset), settings.head * face),
                                None if person is None else person[box[1]:box[3], box[0]:box[2]])
    return WarpField(box, src, dst, map_x, map_y)


@dataclass(frozen=True)
class HeadMove:
    """The similarity ``destination = scale * rotation @ source + shift`` of the face's expression-stable points:
    the part of an edit that moves the whole head."""

    scale: float
    rotation: np.ndarray  # (2, 2)
    shift: np.ndarray  # (2,)

    @staticmethod
    def fit(source: np.ndarray, destination: np.ndarray) -> HeadMove:
        """From landmarks (478, 2) before and after the edit (least squares on ``landmarks.RIGID``)."""
        scale, rotation, shift = similarity_fit(source[lm.RIGID].astype(np.float64),
                                                destination[lm.RIGID].astype(np.float64))
        return HeadMove(scale, rotation, shift)

    def backward(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) where the head move takes ``points`` (N, 2) from: the inverse map."""
        return ((points - self.shift) @ self.rotation) / self.scale

    def backward_shift(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(h, w, 2) float32 ``backward(p) - p`` on the grid of points p = (``x`` (1, w), ``y`` (h, 1))."""
        inverse = self.rotation.T / self.scale  # backward(p) = inverse @ (p - shift)
        origin = -inverse @ self.shift
        a, b, c, d = (np.float32(v) for v in (inverse[0, 0] - 1, inverse[0, 1], inverse[1, 0], inverse[1, 1] - 1))
        return np.stack(np.broadcast_arrays(a * x + b * y + np.float32(origin[0]),
                                            c * x + d * y + np.float32(origin[1])), -1)

    def largest_shift(self, points: np.ndarray) -> float:
        """The largest distance the move takes any of ``points`` (N, 2), pixels."""
        moved = self.scale * points @ self.rotation.T + self.shift
        return float(np.linalg.norm(moved - points, axis=1).max())

    def in_crop(self, offset: np.ndarray) -> HeadMove:
        """The same move in coordinates with ``offset`` (2,) subtracted."""
        return HeadMove(self.scale, self.rotation, self.scale * self.rotation @ offset + self.shift - offset)


@functools.lru_cache(maxsize=1)
def hole_triangles() -> np.ndarray:
    """(K, 3) the mouth strip between the inner lips and the fan around each iris centre."""
    up, lo = lm.INNER_LIP_UPPER, lm.INNER_LIP_LOWER
    tris = [(up[i], up[i + 1], lo[i + 1]) for i in range(len(up) - 1)]
    tris += [(up[i], lo[i + 1], lo[i]) for i in range(len(up) - 1)]
    tris += [(centre, loop[i], loop[(i + 1) % len(loop)])
             for centre, loop in ((lm.RIGHT_IRIS_CENTRE, lm.RIGHT_EYE), (lm.LEFT_IRIS_CENTRE, lm.LEFT_EYE))
             for i in range(len(loop))]
    return np.array([t for t in tris if len(set(t)) == 3], np.int32)


@functools.lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """(K, 3) every triangle the warp draws: the mesh, then the hole fillers."""
    return np.concatenate([mesh_triangles(), hole_triangles()])


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


# Contours that carry the expression itself: untangling moves the skin around them rather than them. Lids
# never move (a blink must close the eye fully); the inner lips may move slowly.
_LIDS = np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, [lm.RIGHT_IRIS_CENTRE, lm.LEFT_IRIS_CENTRE]])


@functools.lru_cache(maxsize=1)
def _incidence_table() -> np.ndarray:
    """(478, D) indices of the mesh triangles touching each vertex, padded with -1."""
    touching: list[list[int]] = [[] for _ in range(478)]
    for k, tri in enumerate(mesh_triangles().tolist()):
        for v in tri:
            touching[v].append(k)
    width = max(len(t) for t in touching)
    return np.array([t + [-1] * (width - len(t)) for t in touching], np.int64)


def untangle(src: np.ndarray, dst: np.ndarray, iterations: int = 40, damping: float = 0.5,
             patience: int = 15) -> np.ndarray:
    """Destination (478, 2) with as few mesh triangles folded over (relative to the source) as it can manage.

    A displacement transferred from another face can push one contour past the next (a full upper lip
    rising past the skin below the nose of a face with a short philtrum). The vertices of folded triangles
    move part of the way (``damping``) towards the mean displacement of their mesh neighbours. The contours
    that carry the expression hold: the lids do not move at all (a blink must close the eye fully) and the
    inner lips move three times more slowly, so mostly the skin around them gives way. The state with the
    fewest folded triangles (then the smallest folded area) is returned, so the result is never worse than
    the input; it stops after ``patience`` rounds without improvement. Eye and mouth fillers may collapse and
    are not checked; slivers under half a square pixel are ignored.

    A folded triangle that a small move of one vertex mends (at most ``PUSH_LIMIT`` face sizes, less for the
    slower inner lips) gets that move instead: the vertex crosses the opposite edge until the triangle has
    ``PUSH_SHARE`` of its area at rest back. A sliver at the mouth corner folds under a jaw drop by a pixel or
    two, and such a push mends it where relaxing towards the neighbours (dragged down with the lower lip)
    folded it further. The rounds run compiled (``kernels.untangle_displacement``).
    """
    kernels = _kernels()

    tris = mesh_triangles()
    table, count = neighbour_table()
    ref = signed_areas(src, tris)
    rate = np.full(len(src), damping)
    rate[lm.INNER_LIP_LOOP] = 0.3 * damping
    rate[_LIDS] = 0.0
    disp = (dst - src).astype(np.float64)
    push_limit = PUSH_LIMIT * float(np.ptp(src[lm.FACE_OVAL], axis=0).max())
    reach = float(np.linalg.norm(disp, axis=1).max())
    best = kernels.untangle_displacement(np.ascontiguousarray(src), disp, tris, ref, np.abs(ref) > 1.0, rate, table,
                                         count.astype(np.int64), _incidence_table(), push_limit, reach, iterations,
                                         patience, PUSH_SHARE)
    return (src + best).astype(np.float32)


PUSH_LIMIT = 0.015  # the largest push that mends a folded triangle, in face sizes (more: relax instead)
PUSH_SHARE = 0.25  # the share of its area at rest a push gives a folded triangle back


def outline_distance(points: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of ``points`` (N, 2) to the closed polygon ``outline`` (M, 2), positive inside, and the
    nearest point on it (N, 2)."""
    kernels = _kernels()

    return kernels.outline_distance(np.ascontiguousarray(points, np.float64), np.ascontiguousarray(outline, np.float64))


KEEP_INSIDE = 0.5  # share of its distance to the face outline a landmark keeps at least


def keep_inside_outline(src: np.ndarray, dst: np.ndarray, keep: float = KEEP_INSIDE, rounds: int = 3) -> np.ndarray:
    """Destination (478, 2) in which no landmark comes nearer the face outline than ``keep`` times its distance
    in the source: those that would are moved back inwards (``rounds`` times, as the nearest edge can change).

    A mouth opened wider than the target face has room for (a shout on a face turned a little away) pushes the
    lip corner and the lower lip up to the outline, where the warp folds and pulls a tab of skin out over the hair
    or background beside the jaw. The outline itself and the lids do not move.
    """
    outline = lm.FACE_OVAL
    before, _ = outline_distance(src, src[outline])
    movable = before > 0
    movable[outline] = False
    movable[_LIDS] = False
    out = dst.astype(np.float32).copy()
    centre = out[outline].mean(0)
    candidates = np.flatnonzero(movable)
    for _ in range(rounds):  # only the points found too near are measured again
        after, near = outline_distance(out[candidates], out[outline])
        short = keep * before[candidates] - after
        keep_on = short > 1e-3
        if not keep_on.any():
            break
        bad, after, near, short = candidates[keep_on], after[keep_on], near[keep_on], short[keep_on]
        away = out[bad] - near
        away = np.where((after >= 0)[:, None], away, -away)  # from the outline, into the face
        length = np.linalg.norm(away, axis=1, keepdims=True)
        towards = (centre - out[bad]) / np.maximum(np.linalg.norm(centre - out[bad], axis=1, keepdims=True), 1e-6)
        out[bad] += np.where(length > 1e-6, away / np.maximum(length, 1e-6), towards) * short[:, None]
        candidates = bad
    return out


def clamp_iris(points: np.ndarray) -> np.ndarray:
    """Copy of ``points`` (478, >=2) with each iris centre moved inside its eye opening (the fan's hub)."""
    out = points.copy()
    for centre, pairs, corners in ((lm.RIGHT_IRIS_CENTRE, lm.RIGHT_LID_PAIRS, lm.RIGHT_EYE_CORNERS),
                                   (lm.LEFT_IRIS_CENTRE, lm.LEFT_LID_PAIRS, lm.LEFT_EYE_CORNERS)):
        xs = points[list(corners), 0]
        x = np.clip(points[centre, 0], xs.min() + 1e-3, xs.max() - 1e-3)
        order = np.argsort(points[pairs[:, 0], 0])
        upper = np.interp(x, points[pairs[order, 0], 0], points[pairs[order, 0], 1])
        order = np.argsort(points[pairs[:, 1], 0])
        lower = np.interp(x, points[pairs[order, 1], 0], points[pairs[order, 1], 1])
        gap = lower - upper
        y = (upper + lower) / 2 if gap <= 0.2 else np.clip(points[centre, 1], upper + 0.1 * gap, lower - 0.1 * gap)
        out[centre, 0], out[centre, 1] = x, y
    return out


def face_size(points: np.ndarray) -> float:
    """Longer side of the face oval's bounding box, pixels."""
    oval = points[lm.FACE_OVAL, :2]
    return float((oval.max(0) - oval.min(0)).max())


def crop_box(src: np.ndarray, dst: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    both = np.concatenate([src[:, :2], dst[:, :2]])
    lo = np.floor(both.min(0) - margin).astype(int)
    hi = np.ceil(both.max(0) + margin).astype(int)
    h, w = shape[:2]
    return max(0, lo[0]), max(0, lo[1]), min(w, hi[0]), min(h, hi[1])


def backward_map(src: np.ndarray, dst: np.ndarray, depth: np.ndarray, triangles: np.ndarray,
                 size: tuple[int, int], grid: int, falloff: float,
                 head: tuple[HeadMove, float] | None = None,
                 person: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution remap tables for a crop of ``size`` (h, w).

    Args:
        src, dst: (478, 2) landmark positions in crop pixels before and after the edit.
        depth: (478,) destination z (smaller = nearer); nearer triangles win where the mesh folds.
        triangles: (K, 3) indices.
        grid: cells along the crop's longer side for the low-resolution field.
        falloff: pixels over which the deformation fades outside the mesh.
        head: the edit's head move (crop pixels) and its reach beyond the face (pixels), or None. Outside
            the mesh the head move then carries on, fading with distance over the reach (and within a quarter of
            it below the chin, so the shoulders stay), and only the rest of the edit fades over ``falloff``.
        person: (h, w) float32 0-1 over the crop, where the person is: a cell takes the head move only as far as
            it shows the person, or reads the person from where the move takes it (so the head can move over the
            background and uncover it); the background elsewhere stays.
    Returns:
        ``(map_x, map_y)``, each (h, w) float32: output pixel (y, x) reads input (map_y, map_x).
    """
    kernels = _kernels()

    h, w = size
    gw, gh = _grid_shape(w, h, grid)
    sx, sy = gw / w, gh / h
    scale = np.array([sx, sy], np.float32)
    fillers = len(hole_triangles()) if len(triangles) == len(face_triangles()) else 0
    order_key = depth[triangles].mean(1) + np.where(np.arange(len(triangles)) >= len(triangles) - fillers, 1e9, 0.0)
    mesh = _GridMesh((dst + 0.5) * scale - 0.5, triangles)
    tri_id, weights = _rasterise(mesh, order_key, (gh, gw))
    inside = tri_id >= 0
    disp = np.zeros((gh, gw, 2), np.float32)
    rows, cols = np.nonzero(inside)
    bary, ids = weights[:, rows, cols], tri_id[rows, cols]
    lids = lid_stretch(src, dst) if fillers else None  # the eyes' fans are among the triangles
    if lids is not None:
        bary = keep_lash_lines(bary, ids, triangles, lids)
    # cells a little outside their triangle continue its map, which near a steep change (the jaw's edge under a
    # jaw drop) can overshoot: no cell reads farther than the edit moved any landmark
    farthest = float(np.linalg.norm(dst - src, axis=1).max())
    kernels.place_moves(_read_points(bary, ids, mesh.conditioning, src, triangles), rows, cols, sx, sy, farthest,
                        disp)
    if head is None:
        disp = _extend_outside(disp, inside, falloff * float(min(sx, sy)), float(min(sx, sy)))
    else:
        move, reach = head
        gx = ((np.arange(gw, dtype=np.float32) + 0.5) / sx - 0.5)[None, :]
        gy = ((np.arange(gh, dtype=np.float32) + 0.5) / sy - 0.5)[:, None]
        rigid = move.backward_shift(gx, gy)
        rest = _extend_outside(np.where(inside[..., None], disp - rigid, 0.0), inside, falloff * float(min(sx, sy)),
                               float(min(sx, sy)))
        weight = _head_weight(inside, np.broadcast_to(gy, (gh, gw)), float(dst[lm.CHIN, 1]), reach,
                              float(min(sx, sy)))
        if person is not None:
            reads = rigid + np.stack(np.broadcast_arrays(gx, gy), -1)
            on = _on_person(person, (gw, gh), reads, (sx, sy))
            # softened over a sixth of the reach: where the head uncovers the background, it stretches rather
            # than tears
            weight *= _wide_blur(on, max(1.0, reach * float(min(sx, sy)) / 6))
        disp = np.where(inside[..., None], disp, rest + weight[..., None] * rigid)
    disp = _smooth_outline(disp, inside, EDGE_SMOOTHING * face_cells(dst, (sx, sy)))
    full = cv2.resize(disp, (w, h), interpolation=cv2.INTER_LINEAR)
    map_x = full[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    map_y = full[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    for eye in lids.closing() if lids is not None else []:
        _exact_around(eye, map_x, map_y, src, dst, triangles, order_key, lids)
    return map_x, map_y


def _exact_around(eye: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, src: np.ndarray, dst: np.ndarray,
                  triangles: np.ndarray, order_key: np.ndarray, lids: LidStretch) -> None:
    """Overwrite the remap tables (h, w) around a closing ``eye`` (its loop's indices) with the mesh's map
    rasterised at full resolution (in place).

    Around a closing eye the map is far from smooth: across the line where the lids meet it jumps over the
    source's eye opening, and over the lid it keeps the lash line thin (``keep_lash_lines``). Upsampled from
    the grid, the jump read the white of the eye along the line in grid-cell steps (a dotted pale line through
    a closed eye) and the lash line smeared. Elsewhere the two maps agree to a fraction of a pixel.
    """
    h, w = map_x.shape
    pad = 0.25 * float(np.linalg.norm(dst[eye[0]] - dst[eye[len(eye) // 2]]))  # a quarter of the eye's width
    x0, y0 = np.maximum(np.floor(dst[eye].min(0) - pad).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(dst[eye].max(0) + pad).astype(int) + 1, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    offset = np.array([x0, y0], np.float32)
    mesh = _GridMesh(dst - offset, triangles)
    ids, weights = _rasterise(mesh, order_key, (y1 - y0, x1 - x0))
    rows, cols = np.nonzero(ids >= 0)
    bary = keep_lash_lines(weights[:, rows, cols], ids[rows, cols], triangles, lids)
    reads = _read_points(bary, ids[rows, cols], mesh.conditioning, src, triangles)
    map_x[rows + y0, cols + x0] = reads[:, 0]
    map_y[rows + y0, cols + x0] = reads[:, 1]


# How far each side of the face's outline the field is smoothed, in face sizes (see ``_smooth_outline``).
EDGE_SMOOTHING = 0.02


def face_cells(points: np.ndarray, scale: tuple[float, float]) -> float:
    """The face size of ``points`` (478, 2) pixels, in grid cells (``scale``: cells per pixel, x and y)."""
    return face_size(points) * float(min(scale))


def _smooth_outline(disp: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """``disp`` (gh, gw, 2) with a band along the mesh's outer edge (``inside`` (gh, gw) bool) replaced by its
    Gaussian blur (``sigma`` cells), fully on the edge and fading out over two sigmas each side.

    Each triangle along the face's outline has its own affine map. When a still's head turns, those maps differ
    a lot from one triangle to the next, and hair lying over the cheek at the outline came out as a dashed line
    of short, offset pieces (`drv_lp_d12` -> `img_lp_s42`). The outline runs through cheek, jaw and forehead,
    away from the features, so smoothing there costs the expression nothing.
    """
    if sigma < 0.5 or not inside.any() or inside.all():
        return disp
    edge = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3) + cv2.distanceTransform(
        (~inside).astype(np.uint8), cv2.DIST_L2, 3)  # distance to the outline from either side, in cells
    blend = np.exp(-((edge / (2.0 * sigma)) ** 2))[..., None].astype(np.float32)
    return disp + blend * (cv2.GaussianBlur(disp, (0, 0), sigma) - disp)


def _head_weight(inside: np.ndarray, y: np.ndarray, chin: float, reach: float, cells_per_pixel: float) -> np.ndarray:
    """(gh, gw) share of the head move each cell takes: 1 on the mesh (``inside``), a Gaussian of the distance
    from it over ``reach`` pixels outside, cut within a quarter of the reach below the ``chin`` (y, pixels);
    ``y`` (gh, gw) is each cell's y in pixels."""
    dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3) / cells_per_pixel
    weight = np.exp(-((dist / reach) ** 2))
    below = np.maximum(y - chin, 0.0) / (0.25 * reach)
    return (weight * np.exp(-(below ** 2))).astype(np.float32)


def _wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(image, (0, 0), sigma)`` for a float32 (h, w) image. A wide blur (sigma of 8 cells or
    more) runs on the image shrunk by the whole factor floor(sigma / 4) (at most an eighth of its size) and is
    upsampled again: a ~75-tap kernel over a still's enlarged grid cost 28 ms a frame, and the blurred mask is
    smooth at that scale. Within 2% of the full blur, 5% within sigma of the image's edge."""
    h, w = image.shape
    step = int(min(sigma / 4, h / 8, w / 8))
    if step < 2:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    small = cv2.resize(image, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma / step)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def _on_person(person: np.ndarray, grid_size: tuple[int, int], reads: np.ndarray,
               scale: tuple[float, float]) -> np.ndarray:
    """(gh, gw) per cell: the larger of the ``person`` mask (h, w) at the cell and where it reads (``reads``,
    (gh, gw, 2) crop pixels), ``scale`` (sx, sy) grid cells per pixel."""
    small = cv2.resize(person, grid_size, interpolation=cv2.INTER_AREA)
    at = np.ascontiguousarray(((reads + 0.5) * np.asarray(scale, np.float32) - 0.5).astype(np.float32))
    there = cv2.remap(small, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.maximum(small, there)


def _grid_shape(w: int, h: int, grid: int) -> tuple[int, int]:
    f = min(1.0, grid / max(w, h))
    return max(2, int(round(w * f))), max(2, int(round(h * f)))


class _GridMesh:
    """The destination mesh on the grid, with what every cell lookup needs computed once per frame.

    Attributes:
        points: (478, 2) destination landmarks in grid coordinates (cell centres at integers).
        triangles: (K, 3) indices.
        conditioning: (K,) about the sine of each triangle's smallest angle: near 0 for a collapsed sliver.
        coefficients: (6, K) float32: u = c0 x + c1 y + c2 and v = c3 x + c4 y + c5 are the barycentric
            coordinates (1 - u - v, u, v) of a point (x, y) in each triangle.
        heights: (3, K) float32: each vertex's distance from the opposite edge, in cells (a barycentric
            coordinate times it is the distance from that edge).
    """

    def __init__(self, points: np.ndarray, triangles: np.ndarray) -> None:
        kernels = _kernels()

        self.points, self.triangles = points, triangles
        self.conditioning, self.coefficients, self.heights = kernels.triangle_geometry(np.ascontiguousarray(points),
                                                                                       triangles)


# How far outside a triangle's edges its cells reach, in cells (a scan converter fills edge pixels too): where
# triangles meet at a sharp change of the map (the lids of a closed eye) the winner's map then continues a
# little past the edge, so the upsampled field does not blend the two sides' reads (the eyeball between them).
_FRINGE = 0.7


def _rasterise(mesh: _GridMesh, order_key: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The triangle containing each cell centre, and the centre's barycentric coordinates in it.

    Every cell in a triangle's bounding box is tested against it (``kernels.rasterise_cells``). A triangle covers the
    cells whose centre lies inside it or less than ``_FRINGE`` cells outside (as a scan converter fills edge
    pixels), but never more than 0.2 outside in its own barycentric coordinates (a thin triangle's edge cells
    can lie far outside it in its own coordinates). Where triangles overlap (a fold, or the half-cell fringes), the one
    with the smaller ``order_key`` (K,) wins (the nearer in depth, and the mesh before the eye and mouth fillers,
    so a nearly shut lid covers the eyeball). Collapsed slivers are skipped; the cells inside the face outline
    that no triangle covers are then given the neighbouring cell's triangle that contains them best, or left
    outside when none is close.

    Returns:
        ``ids`` (gh, gw) int32, -1 outside the mesh, and ``weights`` (3, gh, gw) float32, the barycentric
        coordinates of each inside cell's centre in its triangle (0 outside).
    """
    kernels = _kernels()

    gh, gw = shape
    points, triangles = mesh.points, mesh.triangles
    drawn = np.flatnonzero(mesh.conditioning >= 0.02)
    drawn = drawn[np.argsort(order_key[drawn], kind="stable")].astype(np.int32)  # rank 0 wins
    ids, weights = kernels.rasterise_cells(mesh.coefficients, mesh.heights, points[triangles[drawn]], drawn, gh, gw,
                                           np.float32(_FRINGE))
    ids, weights = ids.reshape(shape), weights.reshape(3, gh, gw)
    hull = np.zeros(shape, np.uint8)
    cv2.fillPoly(hull, [np.round(points[lm.FACE_OVAL] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    holes = (hull > 0) & (ids < 0)
    if holes.any():
        _fill_holes(ids, weights, holes, mesh)
    return ids, weights


def _fill_holes(ids: np.ndarray, weights: np.ndarray, holes: np.ndarray, mesh: _GridMesh) -> None:
    """Give each ``holes`` cell the triangle, among its 3x3 neighbours', that contains its centre best, with
    its barycentric ``weights``; a cell too far outside even that one is beyond the mesh's edge and is left to
    the extension (in place)."""
    kernels = _kernels()

    kernels.fill_holes(ids, weights, holes, mesh.coefficients, mesh.conditioning)


def _read_points(weights: np.ndarray, ids: np.ndarray, conditioning: np.ndarray, src: np.ndarray,
                 triangles: np.ndarray) -> np.ndarray:
    """(N, 2) float32 source positions of cells with barycentric ``weights`` (3, N) float32 in destination
    triangles ``ids`` (N,).

    The barycentric coordinates applied to the source triangle: the exact affine map, which also continues to
    cells a little outside the triangle. How far it may continue shrinks with the triangle's ``conditioning``
    (K,) (coordinates floored at ``-0.5 * min(1, 10 * conditioning)``), so a cell beside a thin triangle never
    reads from far away through its near-singular map.
    """
    kernels = _kernels()

    return kernels.read_points(np.ascontiguousarray(weights, np.float32), np.ascontiguousarray(ids, np.int32),
                               conditioning, np.ascontiguousarray(src, np.float32), triangles)


# Outside the mesh, the border's own displacement gives way to the smooth extension over at least this many
# pixels per pixel of difference between the two (see ``_extend_outside``).
NEAR_SLOPE = 2.0


def _extend_outside(disp: np.ndarray, inside: np.ndarray, falloff: float, cells_per_pixel: float) -> np.ndarray:
    """Continue the mesh's displacement ``disp`` (gh, gw, 2) pixels, which is 0 outside ``inside`` (gh, gw),
    beyond the mesh, fading to zero over ``falloff`` cells (``cells_per_pixel``: the grid's cells per pixel).

    Next to the mesh the value is that of the nearest mesh cell, so the field is continuous at the face's
    outline (no seam); further out it blends into a smooth normalised-convolution extension. The outside
    field is smooth, so it is built on a 2x coarser grid (the smooth part on a 4x coarser one) and upsampled.

    The border's value gives way to the smooth one over ``NEAR_SLOPE`` pixels per pixel of their difference
    (1.5 cells at least), so the field changes by at most half a pixel a pixel there and the map does not fold.
    A still's head turned 20 degrees narrows the side turning away by ~20 px more than the head's rigid move;
    over a fixed 1.5 cells, that difference folded the map beside the jaw into a strip of pale and dark blocks
    (`drv_lp_d3` -> `img_lp_s42`).
    """
    kernels = _kernels()

    if not inside.any():
        return disp
    gh, gw = inside.shape
    half = (max(2, gw // 2), max(2, gh // 2))
    quarter = (max(2, gw // 4), max(2, gh // 4))
    mask4 = cv2.resize(inside.astype(np.float32), quarter, interpolation=cv2.INTER_AREA)
    num4 = cv2.resize(disp, quarter, interpolation=cv2.INTER_AREA)  # disp is 0 outside
    sigma = max(1.0, 0.125 * falloff)
    den4 = cv2.GaussianBlur(mask4, (0, 0), sigma)
    smooth = cv2.resize(cv2.GaussianBlur(num4, (0, 0), sigma) / np.maximum(den4, 1e-3)[..., None], half,
                        interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(den4, half, interpolation=cv2.INTER_LINEAR)
    inside2 = cv2.resize(inside.astype(np.uint8), half, interpolation=cv2.INTER_NEAREST) > 0
    disp2 = cv2.resize(disp, half, interpolation=cv2.INTER_NEAREST)
    dist, labels = cv2.distanceTransformWithLabels((~inside2).astype(np.uint8), cv2.DIST_L2, 3,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    nearest, mismatch = kernels.nearest_inside(labels, inside2, disp2, smooth)
    length = np.maximum(1.5, NEAR_SLOPE * mismatch * (0.5 * cells_per_pixel))
    near_weight = np.exp(-np.maximum(dist - 1.0, 0.0) / length)  # 1 on the cells touching the mesh: no seam
    fade = np.exp(-((dist * 2 / max(falloff, 1e-3)) ** 2)) * np.minimum(1.0, den / 1e-2 + near_weight)
    near = near_weight[..., None]
    outside = (smooth + near * (nearest - smooth)) * fade[..., None]
    out = cv2.resize(outside, (gw, gh), interpolation=cv2.INTER_LINEAR)
    return cv2.copyTo(disp, inside.view(np.uint8), out)


@functools.lru_cache(maxsize=8)
def border_feather(size: tuple[int, int], width: float) -> np.ndarray:
    """(h, w) float32 alpha, read-only: 1 inside, ramping to 0 over ``width`` of the crop's smaller side at its
    border. Cached: consecutive frames mostly share a crop size."""
    h, w = size
    n = max(1.0, width * min(h, w))
    ramp_x = np.clip(np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / n, 0, 1).astype(np.float32)
    ramp_y = np.clip(np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / n, 0, 1).astype(np.float32)
    alpha = ramp_y[:, None] * ramp_x[None, :]  # float32 throughout: a crop's size changes from frame to frame
    alpha.setflags(write=False)
    return alpha


@functools.lru_cache(maxsize=8)
def opaque_box(size: tuple[int, int], width: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the rectangle of a crop of ``size`` (h, w) where ``border_feather`` is exactly 1."""
    alpha = border_feather(size, width)
    h, w = size
    cols, rows = np.flatnonzero(alpha[h // 2] == 1.0), np.flatnonzero(alpha[:, w // 2] == 1.0)
    if not len(cols) or not len(rows):
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def fill_mouth(warped: np.ndarray, crop: np.ndarray, src: np.ndarray, dst: np.ndarray,
               drive_image: np.ndarray | None = None, drive_points: np.ndarray | None = None) -> np.ndarray:
    """Blend a mouth interior into the destination inner-lip outline where the mouth opens further than before
    (its inner lips further apart: a mouth that only widens keeps its own, stretched, interior).

    The interior is the driver's, colour-matched, when there is a driver frame; otherwise (AU curves or AU
    edits) a shaded cavity in the target's own darkened lip colour.

    Args:
        warped: (h, w, 3) uint8 warped crop; crop: the crop before warping.
        src, dst: (478, 2) landmarks in crop pixels before and after the edit.
        drive_image: (H, W, 3) uint8 driver frame; drive_points: (478, 2) its landmarks in pixels.
    """
    loop = lm.INNER_LIP_LOOP
    gap_dst, gap_src = lip_gap(dst), lip_gap(src)
    extra = (gap_dst - 1.1 * gap_src) / max(gap_dst, 1e-6)
    strength = float(np.clip(extra / 0.3, 0.0, 1.0))
    has_driver = drive_image is not None and drive_points is not None
    if strength <= 0 or (has_driver and polygon_area(drive_points[loop]) < 4.0):
        return warped
    x0, y0 = np.floor(dst[loop].min(0)).astype(int) - 3
    x1, y1 = np.ceil(dst[loop].max(0)).astype(int) + 4
    h, w = warped.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return warped
    outline = dst[loop] - [x0, y0]
    if has_driver:
        interior = _driver_interior(outline, (y1 - y0, x1 - x0), drive_image, drive_points, crop, src)
    else:
        interior = _with_own_interior(_cavity(outline, (y1 - y0, x1 - x0), crop, src), crop, src, dst, (x0, y0))
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    # a soft edge, three quarters strong on the outline itself, so the stretched lips inside it do not show
    mask = np.clip(2.0 * cv2.GaussianBlur(mask, (0, 0), 1.0) - MOUTH_EDGE, 0.0, 1.0) * strength
    out = warped.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + (interior - region) * mask[..., None], 0, 255).astype(np.uint8)
    return out


def lip_gap(points: np.ndarray) -> float:
    """Mean height (pixels) of the mouth opening of ``points`` (478, 2): the inner-lip outline's area over the
    distance between its corners. How far the mouth is open, whatever its width (a closed-mouth smile widens
    the mouth, it does not open it)."""
    width = float(np.linalg.norm(points[lm.INNER_MOUTH_CORNERS[0], :2] - points[lm.INNER_MOUTH_CORNERS[1], :2]))
    return polygon_area(points[lm.INNER_LIP_LOOP, :2]) / max(width, 1.0)


def _driver_interior(outline: np.ndarray, size: tuple[int, int], drive_image: np.ndarray,
                     drive_points: np.ndarray, crop: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32: the driver's mouth interior put into ``outline`` (20, 2), the inner-lip loop in the
    output's pixels (``anchored_map``), colour-matched. The driver's loop is first drawn a little inwards
    (``_LIP_RIM``), so neither the driver's lips nor the target's stretched ones show as a rim. Where the
    target's mouth opens further than the driver's teeth reach, it darkens towards the interior's shadows."""
    loop = drive_points[lm.INNER_LIP_LOOP].astype(np.float64)
    centre = loop.mean(0)
    rim = _LIP_RIM * face_size(drive_points)
    inward = loop - centre
    loop = loop - inward * np.minimum(1.0, rim / np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-6))
    map_x, map_y, dark = anchored_map(*_lip_lines(outline), *_lip_lines(loop), size)
    interior = cv2.remap(drive_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    interior = _match_colour(interior, drive_image, drive_points, crop, src)
    # the interior's shadows (throat, tongue's back), no lighter than a mouth's own shadow in the target's lip
    # colour: a smile's teeth that meet, or lips that barely part, have no shadow of their own, and their lip and
    # teeth colours spread flat over the gap read as a pale plate
    shadow = np.percentile(interior.reshape(-1, 3), 25, axis=0)
    shadow = np.minimum(shadow[None, None], _SHADOW_LIFT * _cavity(outline, size, crop, src))
    # softened over a few pixels: a thin gap between teeth reads as a shadow line, not a black crack
    dark = cv2.GaussianBlur(dark, (0, 0), max(0.5, _GAP_SOFTNESS * float(np.ptp(outline[:, 0]))))
    return interior + (shadow - interior) * dark[..., None]


# The driver interior's shadows are no lighter than this many times the shaded cavity (``_cavity``) in the
# target's lip colour: a mouth seen open in daylight is dark red-brown, not black.
_SHADOW_LIFT = 1.8
# The blur of the darkening between the teeth rows, in mouth widths.
_GAP_SOFTNESS = 0.015
MOUTH_EDGE = 0.25  # the mouth mask is 2 * blurred polygon - this: 1 - this on the outline

# How far inside its inner-lip landmarks the driver's mouth interior starts, in face sizes: the landmarks lie on
# the wet inside of the lips, so the ring just inside them is lip, which showed as a pale rim in the target.
_LIP_RIM = 0.012
# The height of the band of teeth under each lip, in mouth widths (an incisor shows about a fifth of the width).
_TEETH = 0.18
# Where a mouth opens further than the driver's teeth reach: the output pixels over which the teeth give way to
# the dark gap between them, and how far the driver's middle band must stretch beyond 1x for that gap to be fully
# dark (at 1 + this times; a smile's teeth that meet have no middle at all, so any stretch darkens fully).
_GAP_RAMP = 2.0
_DARK_STRETCH = 2.0


def _lip_lines(loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner-lip loop (20, 2) in ``INNER_LIP_LOOP`` order, as its upper and lower lines (11, 2) each, from
    the same mouth corner to the other."""
    n = len(lm.INNER_LIP_UPPER)
    return loop[:n], np.concatenate([loop[:1], loop[n:][::-1], loop[n - 1:n]])


class MouthAxes(NamedTuple):
    """A mouth's own frame, in pixels."""

    origin: np.ndarray  # (2,) the first corner
    along: np.ndarray  # (2,) unit vector from that corner to the other
    across: np.ndarray  # (2,) unit vector from the upper lip towards the lower
    width: float  # corner to corner


def _mouth_axes(upper: np.ndarray, lower: np.ndarray) -> MouthAxes:
    """A mouth's own frame from its lip lines (N, 2), corner to corner."""
    origin, end = (upper[0] + lower[0]) / 2, (upper[-1] + lower[-1]) / 2
    width = max(float(np.linalg.norm(end - origin)), 1e-6)
    along = (end - origin) / width
    across = np.array([-along[1], along[0]])
    if (lower.mean(0) - upper.mean(0)) @ across < 0:
        across = -across
    return MouthAxes(origin, along, across, width)


def _lip_profile(line: np.ndarray, axes: MouthAxes, share: np.ndarray) -> np.ndarray:
    """How far across the mouth (pixels along ``axes.across``) the lip ``line`` (N, 2) lies at each ``share``
    (any shape, 0-1) of the mouth's width."""
    rel = line - axes.origin
    at, depth = rel @ axes.along / axes.width, rel @ axes.across
    order = np.argsort(at)
    return np.interp(share, at[order], depth[order]).astype(np.float32)


def anchored_map(upper: np.ndarray, lower: np.ndarray, other_upper: np.ndarray, other_lower: np.ndarray,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remap tables (h, w) float32 that put another mouth's interior, between its lip lines ``other_upper`` and
    ``other_lower`` (N, 2, corner to corner), into this mouth's (``upper``, ``lower``), and (h, w) float32 0-1:
    how dark each pixel should be, as the gap between teeth that the other mouth does not show.

    Teeth do not stretch: the upper teeth hang from the upper lip, the lower ones stand on the lower lip. Each
    column across the mouth reads the same share of the other's width. Where this mouth opens further than
    the other at the scale of their widths, the band under each lip as tall as the other's teeth
    (``_TEETH`` of its width, at most half its opening) keeps that scale, and only the middle stretches: the
    tongue and throat of an open mouth. Where the other's middle is thin (teeth that meet, in a smile), it
    would stretch into streaks, so it darkens instead, as the stretch grows. Where this mouth opens less, the
    whole column is squeezed evenly. A pixel outside the lips reads the other's interior at its lip.
    """
    h, w = size
    axes, other = _mouth_axes(upper, lower), _mouth_axes(other_upper, other_lower)
    scale = np.float32(axes.width / other.width)
    along_x, along_y, across_x, across_y = (np.float32(v) for v in (*axes.along, *axes.across))
    x = np.arange(w, dtype=np.float32)[None, :] - np.float32(axes.origin[0])
    y = np.arange(h, dtype=np.float32)[:, None] - np.float32(axes.origin[1])
    share = np.clip((x * along_x + y * along_y) / np.float32(axes.width), 0.0, 1.0)
    depth = x * across_x + y * across_y
    top, bottom = _lip_profile(upper, axes, share), _lip_profile(lower, axes, share)
    other_top, other_bottom = _lip_profile(other_upper, other, share), _lip_profile(other_lower, other, share)
    opening, other_opening = np.maximum(bottom - top, 1e-3), np.maximum(other_bottom - other_top, 0.0)
    teeth = np.minimum(other_opening / 2, np.float32(_TEETH * other.width))  # the other's, its pixels
    middle, other_middle = opening - 2 * scale * teeth, other_opening - 2 * teeth
    wider = middle >= scale * other_middle  # this mouth opens further than the other at their scale
    inside = np.clip(depth - top, 0.0, opening)  # pixels below this mouth's upper lip, within its opening
    squeezed = other_top + inside * other_opening / opening
    in_middle = np.clip(inside - scale * teeth, 0.0, np.maximum(middle, 0.0))
    anchored = np.where(inside < scale * teeth, other_top + inside / scale,
                        np.where(opening - inside < scale * teeth, other_bottom - (opening - inside) / scale,
                                 other_top + teeth + in_middle * other_middle / np.maximum(middle, 1e-3)))
    other_depth = np.where(wider, anchored, squeezed)
    stretch = np.maximum(middle, 0.0) / np.maximum(scale * other_middle, 1e-3)
    band = np.clip(np.minimum(inside - scale * teeth, opening - scale * teeth - inside) / _GAP_RAMP + 0.5, 0.0, 1.0)
    dark = np.where(wider, np.clip((stretch - 1.0) / _DARK_STRETCH, 0.0, 1.0) * band, 0.0)
    along = share * np.float32(other.width)
    map_x = other.origin[0] + along * other.along[0] + other_depth * other.across[0]
    map_y = other.origin[1] + along * other.along[1] + other_depth * other.across[1]
    return map_x.astype(np.float32), map_y.astype(np.float32), dark.astype(np.float32)


def _cavity(outline: np.ndarray, size: tuple[int, int], crop: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 shaded mouth cavity inside ``outline``: the target's lip colour darkened, darkest in
    the middle and towards the back (lower half), as a mouth's own shadow looks."""
    lips = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(src[lm.OUTER_LIP_LOOP, :2]).astype(np.int32)], 1)
    cv2.fillPoly(lips, [np.round(src[lm.INNER_LIP_LOOP, :2]).astype(np.int32)], 0)
    lip = np.array(cv2.mean(crop, lips)[:3], np.float32) if lips.any() else np.array([150, 70, 70], np.float32)
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    centre = outline.mean(0)
    half = np.maximum((outline.max(0) - outline.min(0)) / 2, 1.0)
    r = np.sqrt(((xx - centre[0]) / half[0]) ** 2 + ((yy - centre[1]) / half[1]) ** 2)
    shade = 0.12 + 0.22 * np.clip(r, 0, 1)  # the middle is darkest
    return lip[None, None] * shade[..., None]


def _with_own_interior(cavity: np.ndarray, crop: np.ndarray, src: np.ndarray, dst: np.ndarray,
                       origin: tuple[int, int]) -> np.ndarray:
    """``cavity`` (h, w, 3) float32 at ``origin`` (x, y) in the crop, with the target's own mouth interior (what
    its parted lips showed before the edit) carried over it. Parted lips at rest mostly show the upper teeth, so
    the interior stays under the upper lip and stretches to the mouth's new width; the lower lip uncovers the
    cavity as it drops. A closed mouth shows nothing and leaves the cavity as it is."""
    loop = lm.INNER_LIP_LOOP
    inner = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(src[loop] * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    inner = cv2.erode(inner, np.ones((3, 3), np.uint8))  # not the lips' own edge
    if cv2.countNonZero(inner) < 12:
        return cavity
    corners = list(lm.INNER_MOUTH_CORNERS)
    scale = float(np.ptp(dst[corners, 0]) / max(float(np.ptp(src[corners, 0])), 1.0))
    centre_src, centre_dst = float(src[corners, 0].mean()), float(dst[corners, 0].mean())
    h, w = cavity.shape[:2]
    x = np.arange(w, dtype=np.float32) + origin[0]  # output columns, crop pixels
    upper = lm.INNER_LIP_UPPER
    order = np.argsort(dst[upper, 0])
    drop = np.interp(x, dst[upper, 0][order], (dst[upper, 1] - src[upper, 1])[order])  # the upper lip's move
    map_x = np.broadcast_to(centre_src + (x - centre_dst) / scale, (h, w)).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + origin[1] - drop[None, :]).astype(np.float32)
    alpha = cv2.remap(inner, map_x, map_y, cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255.0
    pixels = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cavity + (pixels.astype(np.float32) - cavity) * alpha[..., None]


def _face_mean(image: np.ndarray, points: np.ndarray, step: int = 4) -> np.ndarray:
    """(3,) mean colour inside the face oval, from every ``step``-th pixel (a mean needs no more)."""
    small = image[::step, ::step]
    mask = np.zeros(small.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[lm.FACE_OVAL, :2] / step).astype(np.int32)], 1)
    return np.array(cv2.mean(small, mask)[:3], np.float32) + 1.0


# Only part of two faces' colour difference is their lighting; the rest is skin tone, which the inside of a mouth
# does not share. A full per-channel match turned a warm-lit tan driver's tongue lavender on a pale target, so
# the brightness follows the target fully and the tint only by this share.
_TINT_SHARE = 0.3
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# A face with less than this share of the driver face's colourfulness (a black-and-white photograph, a grey-toned
# print) gets a mouth interior drained of colour in proportion: the tint share alone left a red mouth in a grey
# face (`drv_lp_d18` -> the black-and-white `img_lp_s2`). Skin in a colour picture, however pale, stays well
# above it (`img_lp_s42` has 0.44 of `drv_lp_d12`'s).
_GREY_SHARE = 0.3
# The driver's interior is scaled by at most these factors. The lower one lets a face darkened by the scene
# (a fade to black) darken the mouth with it: at 0.4, teeth showed as a white stroke in a nearly black frame.
_GAIN_RANGE = (0.05, 2.5)


def _match_colour(interior: np.ndarray, drive_image: np.ndarray, drive_points: np.ndarray,
                  crop: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Scale the driver pixels (h, w, 3) to the target's lighting: by the ratio of the two faces' mean
    brightness, times ``_TINT_SHARE`` of the ratio of their mean tints (per channel, in log terms). A target face
    with little colour (``_GREY_SHARE``) also takes the interior's colour away."""
    target, driver = _face_mean(crop, src), _face_mean(drive_image, drive_points)
    brightness = float(target @ _LUMA) / float(driver @ _LUMA)
    tint = (target / driver) / brightness
    gain = np.clip(brightness * tint ** _TINT_SHARE, *_GAIN_RANGE)
    out = interior.astype(np.float32) * gain
    keep = min(1.0, _chroma(target) / max(_GREY_SHARE * _chroma(driver), 1e-6))
    if keep < 1.0:
        luma = (out @ _LUMA)[..., None]
        out = luma + keep * (out - luma)
    return out


def _chroma(colour: np.ndarray) -> float:
    """How far an RGB ``colour`` (3,) lies from the grey of its own brightness."""
    return float(np.linalg.norm(colour - colour @ _LUMA))
