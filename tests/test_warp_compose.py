"""retarget.generators.warp and retarget.compose on the astronaut photo with scripted landmark edits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _helpers import close_eyes, open_mouth, polygon_mask

from retarget import landmarks as lm
from retarget.compose import paste
from retarget.generators import FaceEdit, GeneratedFace, make_generator
from retarget.generators.warp import (
    HeadMove,
    WarpField,
    WarpGenerator,
    WarpSettings,
    _smooth_outline,
    _wide_blur,
    anchored_map,
    border_feather,
    clamp_iris,
    face_size,
    face_triangles,
    hole_triangles,
    keep_inside_outline,
    mesh_triangles,
    outline_distance,
    signed_areas,
    untangle,
    warp_field,
)

NO_AUS = np.zeros(17, np.float32)


def generate(image: np.ndarray, source: np.ndarray, destination: np.ndarray, **kwargs) -> GeneratedFace:
    drive_image = kwargs.pop("drive_image", None)
    drive_landmarks = kwargs.pop("drive_landmarks", None)
    generator = WarpGenerator(WarpSettings(**kwargs))
    edit = FaceEdit(image=image, source=source.astype(np.float32), destination=destination.astype(np.float32),
                    relative_aus=NO_AUS, drive_image=drive_image, drive_landmarks=drive_landmarks)
    return generator.generate(edit)


def crop_of(image: np.ndarray, face: GeneratedFace) -> np.ndarray:
    x0, y0, x1, y1 = face.box
    return image[y0:y1, x0:x1]


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)


def distance_from_face(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """(h, w) distance in pixels of each pixel from the face oval polygon (0 inside)."""
    inside = polygon_mask(shape, points[lm.FACE_OVAL, :2]).astype(np.uint8)
    return cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)


# ---------------------------------------------------------------------------------------------- identity


def test_identity_edit_changes_nothing(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    face = generate(astronaut, astronaut_landmarks, astronaut_landmarks.copy())
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert face.image.shape == (y1 - y0, x1 - x0, 3) and face.image.dtype == np.uint8
    assert face.alpha.shape == (y1 - y0, x1 - x0)
    diff = np.abs(face.image.astype(int) - crop_of(astronaut, face))
    assert diff.max() <= 1
    frame = astronaut.copy()
    np.testing.assert_array_equal(paste(frame, face), astronaut)
    np.testing.assert_array_equal(frame, astronaut)  # not pasted in place unless asked


# ------------------------------------------------------------------------------------------------- mouth


def test_opening_the_mouth_keeps_far_pixels(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    size = face_size(astronaut_landmarks)
    destination = open_mouth(astronaut_landmarks, 0.12 * size)
    face = generate(astronaut, astronaut_landmarks, destination)
    crop = crop_of(astronaut, face).astype(int)
    out = face.image.astype(int)
    # the crop's border ring (0.6 face sizes from the face) is as it was
    ring = np.ones(crop.shape[:2], bool)
    ring[4:-4, 4:-4] = False
    assert np.abs(out - crop)[ring].max() <= 2
    # the edit did happen: the chin region changed a lot
    chin = polygon_mask(crop.shape[:2], destination[[lm.CHIN, 148, 377], :2] - face.box[:2])
    assert np.abs(out - crop)[cv2.dilate(chin.astype(np.uint8), np.ones((15, 15))) > 0].mean() > 5
    # pasted back: nothing outside the box moved at all
    pasted = paste(astronaut, face)
    x0, y0, x1, y1 = face.box
    outside = np.ones((512, 512), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(pasted[outside], astronaut[outside])


def paint_mouth(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    cv2.fillPoly(out, [np.round(points[lm.INNER_LIP_LOOP, :2]).astype(np.int32)], colour)
    return out


def greenness(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(int)
    return p[..., 1] - np.maximum(p[..., 0], p[..., 2])


@pytest.mark.parametrize("interior", [True, False])
def test_mouth_interior_comes_from_the_driver(astronaut: np.ndarray, astronaut_landmarks: np.ndarray,
                                              interior: bool) -> None:
    """The driver's mouth, open as wide as the target's will be, is painted pure green: the opening target mouth
    shows it (only when enabled)."""
    assert greenness(astronaut).max() < 100  # no such green in the photo itself
    destination = open_mouth(astronaut_landmarks, 0.14 * face_size(astronaut_landmarks))
    driver = paint_mouth(astronaut, destination, (0, 255, 0))
    face = generate(astronaut, astronaut_landmarks, destination, mouth_interior=interior,
                    drive_image=driver, drive_landmarks=destination.copy())
    result = paste(astronaut, face)
    mouth = cv2.erode(polygon_mask((512, 512), destination[lm.INNER_LIP_LOOP, :2]).astype(np.uint8),
                      np.ones((5, 5), np.uint8)) > 0
    assert mouth.sum() > 500
    green = greenness(result[mouth]) > 80
    if interior:
        assert green.mean() > 0.7
    else:
        assert green.mean() == 0.0
    # never outside the (destination) mouth
    around = cv2.dilate(mouth.astype(np.uint8), np.ones((25, 25), np.uint8)) == 0
    assert (greenness(result[around]) > 80).sum() == 0


def lip_lines(x0: float, x1: float, top: float, bottom: float) -> tuple[np.ndarray, np.ndarray]:
    """Straight upper and lower lip lines (11, 2) from corner (x0) to corner (x1), at heights top and bottom."""
    x = np.linspace(x0, x1, 11)
    return np.stack([x, np.full(11, top)], 1), np.stack([x, np.full(11, bottom)], 1)


def test_anchored_map_keeps_the_teeth_at_the_mouths_scale() -> None:
    """The driver's mouth: 100 px wide, open 20 px. A target mouth as wide and open 60 px reads the top 10 px
    of the driver's opening under its upper lip and the bottom 10 under its lower lip, unstretched, and is dark
    between; twice as wide and open 80 px, it reads them at twice the size."""
    driver = lip_lines(10, 110, 20, 40)
    map_x, map_y, dark = anchored_map(*lip_lines(20, 120, 50, 110), *driver, (130, 140))
    col = 70  # the middle of both mouths: driver x 60
    assert map_x[55, col] == pytest.approx(60, abs=1e-3)
    assert map_y[55, col] == pytest.approx(25, abs=1e-3)  # 5 px under the upper lip: 5 px under the driver's
    assert map_y[105, col] == pytest.approx(35, abs=1e-3)  # 5 px over the lower lip, likewise
    assert dark[52, col] == 0 and dark[108, col] == 0
    assert dark[80, col] == 1  # the driver's teeth meet: nothing of it is stretched into the gap
    assert map_y[45, col] == pytest.approx(20) and map_y[115, col] == pytest.approx(40)  # outside: at its lips
    map_x, map_y, dark = anchored_map(*lip_lines(20, 220, 50, 130), *driver, (140, 240))
    assert map_y[60, 120] == pytest.approx(25, abs=1e-3)  # 10 px here is 5 px there
    assert map_x[60, 120] == pytest.approx(60, abs=1e-3)
    assert dark[60, 120] == 0 and dark[90, 120] == 1


def test_anchored_map_squeezes_a_smaller_opening_and_stretches_only_the_middle_of_a_larger() -> None:
    driver = lip_lines(10, 110, 20, 120)  # open 100 px: 18 px of teeth under each lip, a 64 px middle
    # a mouth as wide and open only 50 px: the whole column squeezed evenly, nothing dark
    map_x, map_y, dark = anchored_map(*lip_lines(20, 120, 50, 100), *driver, (130, 140))
    np.testing.assert_allclose(map_y[50:101, 70], 20 + 2 * np.arange(51), atol=1e-3)
    assert dark.max() == 0
    # open 132 px: the teeth bands unchanged, the 96 px middle reads the driver's 64 (stretched 1.5 times)
    map_x, map_y, dark = anchored_map(*lip_lines(20, 120, 50, 182), *driver, (200, 140))
    np.testing.assert_allclose(map_y[50:68, 70], 20 + np.arange(18), atol=1e-3)
    np.testing.assert_allclose(map_y[164:183, 70], 102 + np.arange(19), atol=1e-3)
    np.testing.assert_allclose(map_y[68:165:12, 70], 38 + np.arange(0, 97, 12) / 1.5, atol=1e-3)
    assert dark[116, 70] == pytest.approx(0.25)  # a tongue stretched 1.5 times darkens a little
    # exactly as open as the driver at scale: one even map whichever way it is read
    map_x, map_y, dark = anchored_map(*lip_lines(20, 120, 50, 150), *driver, (160, 140))
    np.testing.assert_allclose(map_y[50:151, 70], 20 + np.arange(101), atol=1e-3)
    assert dark.max() == 0


def test_the_gap_a_smile_never_showed_is_dark(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    """The driver's barely parted lips show only teeth (painted a pale grey): the target's mouth, opened far
    wider, keeps teeth under its lips and a softly shaded dark gap between them, not the teeth's grey spread
    over it (a pale plate, `drv_lp_d12` -> `img_lp_s1`)."""
    driver = paint_mouth(astronaut, astronaut_landmarks, (215, 210, 205))
    size = face_size(astronaut_landmarks)
    destination = open_mouth(astronaut_landmarks, 0.14 * size)
    face = generate(astronaut, astronaut_landmarks, destination, drive_image=driver,
                    drive_landmarks=astronaut_landmarks.copy())
    result = paste(astronaut, face).astype(np.float64)
    luma = result @ np.array([0.299, 0.587, 0.114])
    upper = destination[lm.INNER_LIP_UPPER[5], :2]
    lower = destination[lm.INNER_LIP_LOWER[5], :2]
    x = int(round((upper[0] + lower[0]) / 2))
    middle = luma[int(round(upper[1] + 0.4 * (lower[1] - upper[1]))):int(round(upper[1] + 0.6 * (lower[1] - upper[1]))),
                  x - 4:x + 5]
    teeth = luma[int(round(upper[1])) + 2:int(round(upper[1])) + 5, x - 4:x + 5]
    assert teeth.mean() > 150  # the driver's teeth under the upper lip
    assert middle.mean() < 80 and middle.mean() < 0.5 * teeth.mean()
    # the teeth give way to the gap over a few pixels, not at a hard edge (a black crack): 56 levels a pixel
    # at the steepest without the softening, 37 with it
    column = luma[int(round(upper[1])):int(np.ceil(lower[1])) + 1, x - 2:x + 3].mean(1)
    assert np.abs(np.diff(column)).max() < 46


def blueness(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(int)
    return p[..., 2] - np.maximum(p[..., 0], p[..., 1])


def test_the_drivers_lips_do_not_rim_the_mouth(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    """The ring just inside the driver's inner-lip landmarks is lip, painted blue here, its inside green: the
    target's opened mouth shows the green, and no blue inside its own inner lips."""
    size = face_size(astronaut_landmarks)
    destination = open_mouth(astronaut_landmarks, 0.14 * size)
    driver = paint_mouth(astronaut, destination, (0, 0, 255))
    shrunk = destination.copy()
    loop = destination[lm.INNER_LIP_LOOP, :2]
    centre = loop.mean(0)
    shrunk[lm.INNER_LIP_LOOP, :2] = loop - (loop - centre) * np.minimum(
        1.0, 0.006 * size / np.linalg.norm(loop - centre, axis=1, keepdims=True))  # a ring half the rim wide
    driver = paint_mouth(driver, shrunk, (0, 255, 0))
    assert blueness(astronaut[polygon_mask((512, 512), loop) > 0]).max() < 60
    face = generate(astronaut, astronaut_landmarks, destination, drive_image=driver,
                    drive_landmarks=destination.copy())
    result = paste(astronaut, face)
    inside = cv2.erode(polygon_mask((512, 512), loop).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert inside.sum() > 500
    assert (blueness(result[inside]) > 40).sum() == 0
    assert (greenness(result[inside]) > 80).mean() > 0.9


def test_mouth_interior_takes_the_targets_light_not_its_skin_tone(astronaut_landmarks: np.ndarray) -> None:
    """A warm-lit tan driver's pink mouth interior, put into a pale target: it brightens with the target's
    face, and stays pink (red above blue) rather than turning lavender, as a full per-channel match made it."""
    from retarget.generators.warp import _match_colour

    driver = np.empty((512, 512, 3), np.uint8)
    driver[:] = (200, 140, 90)
    target = np.empty((512, 512, 3), np.uint8)
    target[:] = (235, 215, 210)
    interior = np.empty((20, 30, 3), np.uint8)
    interior[:] = (170, 90, 100)
    out = _match_colour(interior, driver, astronaut_landmarks, target, astronaut_landmarks)[0, 0]
    luma = np.array([0.299, 0.587, 0.114])
    assert out @ luma / (interior[0, 0] @ luma) == pytest.approx((target[0, 0] @ luma) / (driver[0, 0] @ luma),
                                                                 rel=0.05)
    assert out[0] > out[2] + 20  # still pink
    full_match = interior[0, 0] * (target[0, 0] + 1.0) / (driver[0, 0] + 1.0)
    assert full_match[2] > full_match[0]  # what the per-channel ratio did


def test_mouth_interior_darkens_with_a_face_in_a_fade_to_black(astronaut_landmarks: np.ndarray) -> None:
    """A target frame near the end of a fade to black: the driver's interior (teeth) darkens with the face, as
    far as the face's brightness fell, rather than stopping at 0.4 of its own and showing as a white stroke."""
    from retarget.generators.warp import _match_colour

    driver = np.full((512, 512, 3), (200, 160, 140), np.uint8)
    faded = np.full((512, 512, 3), (24, 19, 17), np.uint8)  # the same face at about an eighth of its light
    teeth = np.full((20, 30, 3), (230, 225, 215), np.uint8)
    out = _match_colour(teeth, driver, astronaut_landmarks, faded, astronaut_landmarks)[0, 0]
    luma = np.array([0.299, 0.587, 0.114])
    assert out @ luma / (teeth[0, 0] @ luma) == pytest.approx((faded[0, 0] @ luma + 1) / (driver[0, 0] @ luma + 1),
                                                              rel=0.1)
    assert out @ luma < 40


def test_mouth_interior_only_when_the_mouth_opens(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    driver = paint_mouth(astronaut, astronaut_landmarks, (0, 255, 0))
    face = generate(astronaut, astronaut_landmarks, astronaut_landmarks.copy(), drive_image=driver,
                    drive_landmarks=astronaut_landmarks.copy())
    assert (greenness(face.image) > 80).sum() == 0


def test_a_mouth_that_only_widens_keeps_its_own_interior(astronaut: np.ndarray,
                                                         astronaut_landmarks: np.ndarray) -> None:
    # a closed-mouth smile stretches the mouth sideways without parting the lips: nothing is painted in
    driver = paint_mouth(astronaut, astronaut_landmarks, (0, 255, 0))
    wide = astronaut_landmarks.copy()
    centre = wide[lm.INNER_LIP_LOOP, 0].mean()
    mouth = np.unique(np.concatenate([lm.INNER_LIP_LOOP, lm.OUTER_LIP_LOOP]))
    wide[mouth, 0] = centre + 1.5 * (wide[mouth, 0] - centre)
    face = generate(astronaut, astronaut_landmarks, wide, drive_image=driver,
                    drive_landmarks=astronaut_landmarks.copy())
    assert (greenness(face.image) > 30).sum() == 0
    opened = open_mouth(astronaut_landmarks, 20.0)  # while parting the lips brings the driver's in
    face = generate(astronaut, astronaut_landmarks, opened, drive_image=driver,
                    drive_landmarks=astronaut_landmarks.copy())
    assert (greenness(face.image) > 80).sum() > 100


def test_without_a_driver_the_targets_own_teeth_stay_under_the_upper_lip(astronaut: np.ndarray,
                                                                        astronaut_landmarks: np.ndarray) -> None:
    # AU curves and edits have no driver mouth: the opening is a shaded cavity, but the teeth the target showed
    # stay under its upper lip (they used to vanish into the cavity)
    destination = open_mouth(astronaut_landmarks, 30.0)
    face = generate(astronaut, astronaut_landmarks, destination)
    local = destination[:, :2] - np.array(face.box[:2], np.float32)
    x, top = local[lm.UPPER_LIP_INNER]
    bottom = local[lm.LOWER_LIP_INNER, 1]
    out = grey(face.image)
    teeth = out[int(top) + 3:int(top) + 7, int(x) - 6:int(x) + 6].mean()
    cavity = out[int(bottom) - 9:int(bottom) - 5, int(x) - 6:int(x) + 6].mean()
    source_teeth = grey(astronaut)[int(astronaut_landmarks[lm.UPPER_LIP_INNER, 1]) + 3:
                                   int(astronaut_landmarks[lm.UPPER_LIP_INNER, 1]) + 7,
                                   int(astronaut_landmarks[lm.UPPER_LIP_INNER, 0]) - 6:
                                   int(astronaut_landmarks[lm.UPPER_LIP_INNER, 0]) + 6].mean()
    assert source_teeth > 150  # the astronaut smiles with her upper teeth showing
    assert teeth > 0.8 * source_teeth
    assert cavity < 80


def test_closing_the_mouth_keeps_the_surroundings(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    """A driver's closed lips on this open-mouthed target: the inner lips meet, hair and neck stay put."""
    destination = astronaut_landmarks.copy()
    destination[lm.INNER_LIP_LOWER[1:-1], :2] = astronaut_landmarks[lm.INNER_LIP_UPPER[1:-1], :2]
    face = generate(astronaut, astronaut_landmarks, destination)
    crop = crop_of(astronaut, face).astype(int)
    local = astronaut_landmarks[:, :2] - np.array(face.box[:2], np.float32)
    far = distance_from_face(crop.shape[:2], local) > 0.25 * face_size(astronaut_landmarks)
    assert np.abs(face.image.astype(int) - crop)[far].max() <= 3


# -------------------------------------------------------------------------------------------------- eyes


def eye_masks(points: np.ndarray, shape=(512, 512)) -> list[np.ndarray]:
    return [polygon_mask(shape, points[eye, :2]) for eye in (lm.RIGHT_EYE, lm.LEFT_EYE)]


def test_closing_the_eyes_hides_iris_and_sclera(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    destination = close_eyes(astronaut_landmarks)
    result = paste(astronaut, generate(astronaut, astronaut_landmarks, destination))
    before, after = grey(astronaut), grey(result)
    for mask in eye_masks(astronaut_landmarks):
        assert mask.sum() > 200
        # the open eye: a dark iris and white sclera, a high contrast; closed: lid skin
        assert after[mask].std() <= 0.7 * before[mask].std()
        assert (after[mask] > 170).sum() <= 0.2 * (before[mask] > 170).sum()  # sclera gone
        assert np.percentile(after[mask], 10) >= np.percentile(before[mask], 10) + 10  # darkest (pupil) gone
    # the rest of the face is not darkened or brightened overall
    skin = polygon_mask((512, 512), astronaut_landmarks[lm.FACE_OVAL, :2])
    for mask in eye_masks(astronaut_landmarks):
        skin &= ~cv2.dilate(mask.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    assert abs(after[skin].mean() - before[skin].mean()) < 1.0


def field_of(points: np.ndarray, destination: np.ndarray, grid: int = 256) -> WarpField:
    """The generator's own deformation for this edit of the 512x512 astronaut (margin as in the tests' crops)."""
    return warp_field(points, destination, (512, 512, 3), WarpSettings(grid=grid, margin=0.6))


def source_reads_inside_eyes(points: np.ndarray, destination: np.ndarray, grid: int) -> list[float]:
    """Fraction of each source eye opening's pixels whose backward map reads inside that opening."""
    field = field_of(points, destination, grid)
    x0, y0, x1, y1 = field.box
    offset = np.array([x0, y0], np.float32)
    map_x, map_y = field.map_x, field.map_y
    fractions = []
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        poly = (points[eye, :2] - offset).astype(np.float32)
        ys, xs = np.nonzero(polygon_mask((y1 - y0, x1 - x0), poly))
        depth = [cv2.pointPolygonTest(poly, (float(map_x[y, x]), float(map_y[y, x])), True) for y, x in zip(ys, xs)]
        fractions.append(float((np.array(depth) > 0.5).mean()))
    return fractions


def test_closed_eye_reads_skin_not_eyeball(astronaut_landmarks: np.ndarray) -> None:
    """Where the eye was open, a closed eye shows lid skin: the warp reads (almost) nothing from the eyeball."""
    closed = close_eyes(astronaut_landmarks)
    assert max(source_reads_inside_eyes(astronaut_landmarks, closed, grid=256)) < 0.1
    # upper lids onto lower lids in x as well: with a full-resolution field nothing at all is read from inside
    assert max(source_reads_inside_eyes(astronaut_landmarks, close_eyes(astronaut_landmarks, x_too=True),
                                        grid=2048)) == 0.0
    # (and an open eye, for contrast, reads itself)
    assert min(source_reads_inside_eyes(astronaut_landmarks, astronaut_landmarks.copy(), grid=256)) > 0.7


# --------------------------------------------------------------------------------------- map invariants


def map_displacement(points: np.ndarray, destination: np.ndarray, grid: int = 256) -> tuple[float, float]:
    """(largest landmark motion, largest backward-map displacement), pixels."""
    field = field_of(points, destination, grid)
    h, w = field.map_x.shape
    disp = np.hypot(field.map_x - np.arange(w)[None], field.map_y - np.arange(h)[:, None])
    return float(np.hypot(*(field.destination - field.source).T).max()), float(disp.max())


def _mouth_closed(p: np.ndarray) -> np.ndarray:
    out = p.copy()
    out[lm.INNER_LIP_LOWER[1:-1], :2] = p[lm.INNER_LIP_UPPER[1:-1], :2]
    return out


def _collapsed_triangle(p: np.ndarray) -> np.ndarray:
    out = p.copy()
    out[74, :2] = (p[40, :2] + p[185, :2]) / 2  # mesh triangle (40, 74, 185) at the mouth corner: zero area
    return out


def _jittered(p: np.ndarray) -> np.ndarray:
    out = p.copy()
    out[:, :2] += np.random.default_rng(3).normal(0, 2.0, (len(p), 2))
    return out


@pytest.mark.parametrize("edit", [
    pytest.param(lambda p: close_eyes(p), id="eyes-closed"),
    pytest.param(lambda p: open_mouth(p, 30.0), id="mouth-open"),
    pytest.param(_mouth_closed, id="mouth-closed"),
    pytest.param(_collapsed_triangle, id="collapsed-triangle"),
    pytest.param(_jittered, id="jittered"),
])
def test_backward_map_never_reads_farther_than_the_landmarks_moved(astronaut_landmarks: np.ndarray, edit) -> None:
    """A piecewise-affine map moves each pixel by a blend of its triangle's corner motions, and the outside
    extension only fades those: no pixel may read from farther away than the largest landmark motion."""
    motion, read = map_displacement(astronaut_landmarks, edit(astronaut_landmarks))
    assert read <= motion + 1.0


# ------------------------------------------------------------------------------------------------ untangle


def folded(src: np.ndarray, dst: np.ndarray) -> int:
    tris = mesh_triangles()
    ref = signed_areas(src, tris)
    return int(((np.sign(signed_areas(dst, tris)) != np.sign(ref)) & (np.abs(ref) > 1.0)).sum())


@pytest.mark.parametrize("vertex, shift", [
    (1, (0, 25)), (4, (30, 0)), (2, (0, 20)), (13, (0, -30)), (152, (0, -60)),
])
def test_untangle_unfolds(astronaut_landmarks: np.ndarray, vertex: int, shift: tuple[int, int]) -> None:
    src = astronaut_landmarks[:, :2].copy()
    dst = src.copy()
    dst[vertex] += shift
    assert folded(src, dst) > 0  # the edit does fold the mesh
    fixed = untangle(src, dst)
    assert folded(src, fixed) == 0
    # vertices far from the fold keep their destination
    far = np.linalg.norm(src - src[vertex], axis=1) > 0.3 * face_size(astronaut_landmarks)
    np.testing.assert_allclose(fixed[far], dst[far], atol=1e-4)


def test_untangle_leaves_an_unfolded_destination_alone(astronaut_landmarks: np.ndarray) -> None:
    src = astronaut_landmarks[:, :2].copy()
    a = np.deg2rad(10)
    dst = (1.1 * src @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [5.0, -7.0]).astype(np.float32)
    assert folded(src, dst) == 0  # a similarity folds nothing
    np.testing.assert_allclose(untangle(src, dst), dst, atol=1e-4)


def folded_area(src: np.ndarray, dst: np.ndarray) -> float:
    tris = mesh_triangles()
    ref, now = signed_areas(src, tris), signed_areas(dst, tris)
    bad = (np.sign(now) != np.sign(ref)) & (np.abs(ref) > 1.0)
    return float(np.abs(now[bad]).sum() / 2)


@pytest.mark.parametrize("drop", [10.0, 30.0, 50.0])
def test_untangle_unfolds_a_jaw_drop(astronaut_landmarks: np.ndarray, drop: float) -> None:
    src = astronaut_landmarks[:, :2].copy()
    dst = open_mouth(astronaut_landmarks, drop)[:, :2].astype(np.float32)
    assert folded(src, dst) > 0  # slivers at the mouth corners and the jaw fold a little
    fixed = untangle(src, dst)
    assert folded_area(src, fixed) <= folded_area(src, dst)  # never worse
    assert folded(src, fixed) == 0


def test_rasteriser_finds_the_containing_triangle(astronaut_landmarks: np.ndarray) -> None:
    """Every cell centre strictly inside one mesh triangle is given that triangle, and its barycentric weights
    rebuild the centre from the triangle's corners; where two triangles overlap, the one drawn nearer wins."""
    from retarget.generators.warp import _GridMesh, _rasterise

    points = astronaut_landmarks[:, :2] * 0.5 - 60  # a 2 px grid over the face
    tris = mesh_triangles()
    mesh = _GridMesh(points, tris)
    ids, weights = _rasterise(mesh, np.zeros(len(tris)), (140, 140))
    rows, cols = np.nonzero(ids >= 0)
    corners = points[tris[ids[rows, cols]]]  # (N, 3, 2)
    rebuilt = np.einsum("kn,nkd->nd", weights[:, rows, cols], corners)
    np.testing.assert_allclose(rebuilt, np.stack([cols, rows], 1), atol=1e-3)
    # brute force: a cell centre deeper inside a triangle than the fringe's reach belongs to it
    for k in np.random.default_rng(0).choice(len(tris), 60, replace=False):
        box = cv2.boundingRect(np.round(points[tris[k]]).astype(np.int32))
        for y in range(box[1], box[1] + box[3]):
            for x in range(box[0], box[0] + box[2]):
                if cv2.pointPolygonTest(points[tris[k]].astype(np.float32), (float(x), float(y)), True) > 0.75:
                    assert ids[y, x] == k, (k, x, y)
    # a fold: the same triangle drawn twice, shifted half over itself; the smaller key wins the overlap
    pts = np.zeros((478, 2), np.float32)
    pts[:3] = [[10, 10], [30, 10], [10, 30]]
    pts[3:6] = pts[:3] + [5, 5]
    pts[lm.FACE_OVAL] = [40, 40]  # an empty outline: no holes to fill
    folded = _GridMesh(pts, np.array([[0, 1, 2], [3, 4, 5]]))
    for near, far in ((0, 1), (1, 0)):
        key = np.zeros(2)
        key[far] = 1.0
        ids, _ = _rasterise(folded, key, (40, 40))
        assert ids[18, 18] == near  # inside both
        assert ids[12, 12] == 0 and ids[18, 28] == 1  # inside one only (row, column)
        assert ids[38, 38] == -1


def test_a_head_move_carries_the_hair_not_the_background(astronaut: np.ndarray,
                                                         astronaut_landmarks: np.ndarray) -> None:
    """A still target's whole head moves 12 px right: 'hair' 0.3 face sizes beside the face (on the person
    mask) moves with it, the background off the person stays; without the head move the hair barely moves."""
    points = astronaut_landmarks.copy()
    size = face_size(points)
    moved = points.copy()
    moved[:, 0] += 12.0
    oval = points[lm.FACE_OVAL, :2]
    person = np.zeros((512, 512), np.float32)
    cv2.fillPoly(person, [np.round((oval - oval.mean(0)) * 2.2 + oval.mean(0)).astype(np.int32)], 1.0)
    image = np.ascontiguousarray(astronaut)
    left = int(oval[:, 0].min())
    y = int(oval[:, 1].mean())
    hair = (y, left - int(0.3 * size))  # beside the face, on the person
    assert person[hair] == 1.0
    def render(head: float, mask: np.ndarray | None) -> np.ndarray:
        edit = FaceEdit(image=image, source=points, destination=moved.astype(np.float32), relative_aus=NO_AUS,
                        person=mask)
        return grey(paste(image, WarpGenerator(WarpSettings(head=head)).generate(edit)))

    def shift_at(out: np.ndarray, spot: tuple[int, int]) -> float:
        """How far the pattern of the row through ``spot`` moved right, pixels."""
        row = out[spot[0], spot[1] - 30:spot[1] + 31]
        ref = grey(image)[spot[0], spot[1] - 30:spot[1] + 31]
        errors = [np.abs(row[20:41] - ref[20 - d:41 - d]).mean() for d in range(0, 19)]
        return float(np.argmin(errors))

    with_head, without = render(0.6, person), render(0.0, person)
    assert shift_at(with_head, hair) >= 7  # 12 px, less its fade at 0.3 face sizes out (and the sampling's)
    assert shift_at(without, hair) <= 2
    # off the person, 0.6 face sizes out: it stays; without the mask the head move would drag it along
    spot = (y, int(oval[:, 0].min() - 0.6 * size))
    assert spot[1] >= 0 and person[spot] == 0.0

    def read_shift(mask: np.ndarray | None) -> float:
        field = warp_field(points, moved, (512, 512, 3), WarpSettings(head=0.6), mask)
        x0, y0 = field.box[:2]
        return float(spot[1] - x0 - field.map_x[spot[0] - y0, spot[1] - x0])

    assert abs(read_shift(person)) < 1.0  # just off the person: only the mask's softened edge reaches it
    assert read_shift(None) > 3.0


def _turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """``points`` (478, 3) with the head turned ``degrees`` about the vertical axis through the face's middle
    (mediapipe's z: smaller is nearer), as a still following a driver's head turn gets them."""
    centre = points[lm.FACE_OVAL].mean(0)
    a = np.radians(degrees)
    x, z = points[:, 0] - centre[0], points[:, 2] - centre[2]
    turned = points.copy()
    turned[:, 0] = centre[0] + x * np.cos(a) - z * np.sin(a)
    turned[:, 2] = centre[2] + x * np.sin(a) + z * np.cos(a)
    return turned.astype(np.float32)


def test_a_head_turn_does_not_fold_the_hair_beside_the_face(astronaut_landmarks: np.ndarray) -> None:
    """A still's head turned 20 degrees: the side turning away narrows well beyond the head's rigid move, and
    that difference at the outline used to fade within two grid cells outside it. There the map ran backwards
    (a fold): hair and skin beside the jaw came out as a strip of pale and dark blocks (`drv_lp_d3` ->
    `img_lp_s42`). Now it fades no faster than half a pixel a pixel, so beside the face (out to 0.3 face sizes)
    the map neither folds nor stretches anything more than fivefold."""
    points = astronaut_landmarks.copy()
    oval = points[lm.FACE_OVAL, :2]
    person = np.zeros((512, 512), np.float32)
    cv2.fillPoly(person, [np.round((oval - oval.mean(0)) * 2.2 + oval.mean(0)).astype(np.int32)], 1.0)
    field = warp_field(points, _turned(points, 20.0), (512, 512, 3), WarpSettings(head=0.6), person)
    mx, my = field.map_x.astype(np.float64), field.map_y.astype(np.float64)
    area = np.gradient(mx, axis=1) * np.gradient(my, axis=0) - np.gradient(mx, axis=0) * np.gradient(my, axis=1)
    beside = distance_from_face(area.shape, field.destination)
    band = (beside > 0) & (beside < 0.3 * face_size(points))
    assert area[band].min() > 0.0  # it was -0.6 (folded)
    assert (area[band] < 0.2).sum() <= 20  # 843 pixels before


# ------------------------------------------------------------------------------------------- mesh, helpers


def _corner_pushed_out(points: np.ndarray) -> np.ndarray:
    """(478, 2) destination: the subject's left mouth corner (291) and its neighbours pushed out past the outline."""
    dst = points[:, :2].astype(np.float32).copy()
    corner = dst[lm.MOUTH_CORNERS[1]]
    d, near = outline_distance(corner[None], dst[lm.FACE_OVAL])
    direction = (near[0] - corner) / np.linalg.norm(near[0] - corner)
    close = np.linalg.norm(dst - corner, axis=1) < 0.3 * d[0]
    close[lm.FACE_OVAL] = False
    dst[close] += direction * 1.2 * d[0]  # 20% beyond the outline
    return dst


def test_outline_distance_is_signed() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)
    d, near = outline_distance(np.array([[5, 2], [5, -3], [12, 5]], np.float32), square)
    np.testing.assert_allclose(d, [2, -3, -2], atol=1e-5)
    np.testing.assert_allclose(near, [[5, 0], [5, 0], [10, 5]], atol=1e-5)
    d_reversed, _ = outline_distance(np.array([[5, 2]], np.float32), square[::-1])
    assert d_reversed[0] == pytest.approx(2.0)  # either winding


def test_landmarks_stay_inside_the_face_outline(astronaut_landmarks: np.ndarray) -> None:
    src = astronaut_landmarks[:, :2].astype(np.float32)
    dst = _corner_pushed_out(astronaut_landmarks)
    before, _ = outline_distance(src, src[lm.FACE_OVAL])
    assert outline_distance(dst, dst[lm.FACE_OVAL])[0][lm.MOUTH_CORNERS[1]] < 0  # the input crosses it
    kept = keep_inside_outline(src, dst)
    after, _ = outline_distance(kept, kept[lm.FACE_OVAL])
    inside = before > 0
    assert np.all(after[inside] >= 0.5 * before[inside] - 1e-3)
    np.testing.assert_array_equal(kept[lm.FACE_OVAL], dst[lm.FACE_OVAL])  # the outline itself stays
    untouched = np.linalg.norm(dst - src, axis=1) == 0
    np.testing.assert_array_equal(kept[untouched], dst[untouched])  # far from the push nothing moves
    np.testing.assert_array_equal(keep_inside_outline(src, src), src)


def test_a_mouth_too_wide_for_the_face_stays_off_the_background(astronaut: np.ndarray,
                                                                 astronaut_landmarks: np.ndarray) -> None:
    # a lip corner pushed past the outline used to drag a tab of skin out over what lies beside the face
    dst = _corner_pushed_out(astronaut_landmarks)
    face = generate(astronaut, astronaut_landmarks, np.concatenate([dst, astronaut_landmarks[:, 2:]], 1))
    out = paste(astronaut.copy(), face)
    outside = distance_from_face(astronaut.shape[:2], astronaut_landmarks) > 4
    corner = astronaut_landmarks[lm.MOUTH_CORNERS[1], :2]
    yy, xx = np.mgrid[0:512, 0:512]
    beside = outside & (np.hypot(xx - corner[0], yy - corner[1]) < 0.25 * face_size(astronaut_landmarks))
    assert beside.sum() > 200
    change = np.abs(grey(out) - grey(astronaut))[beside]
    assert np.percentile(change, 95) < 10  # 6 with the outline kept, 15 without


def test_mesh_topology() -> None:
    tris = mesh_triangles()
    assert tris.shape[1] == 3 and len(tris) > 800
    assert set(np.unique(tris)) == set(range(468))  # every mesh point, no iris points
    edges: dict[tuple[int, int], int] = {}
    for t in face_triangles().tolist():
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            key = (min(a, b), max(a, b))
            edges[key] = edges.get(key, 0) + 1
    assert max(edges.values()) <= 2  # a manifold: no edge shared by three triangles
    # the eyes and the mouth are closed by the hole fillers: their outlines are interior edges
    for loop in (lm.RIGHT_EYE, lm.LEFT_EYE, lm.INNER_LIP_LOOP):
        for a, b in zip(loop, np.roll(loop, -1)):
            assert edges[(min(a, b), max(a, b))] == 2, (a, b)
    assert len(hole_triangles()) == len(face_triangles()) - len(tris)


def test_clamp_iris() -> None:
    points = np.zeros((478, 2), np.float32)
    for pairs, corners, centre, x0 in ((lm.RIGHT_LID_PAIRS, lm.RIGHT_EYE_CORNERS, lm.RIGHT_IRIS_CENTRE, 0.0),
                                       (lm.LEFT_LID_PAIRS, lm.LEFT_EYE_CORNERS, lm.LEFT_IRIS_CENTRE, 100.0)):
        xs = x0 + np.linspace(5, 35, len(pairs))
        points[pairs[:, 0]] = np.stack([xs, np.full(len(pairs), 40.0)], 1)
        points[pairs[:, 1]] = np.stack([xs, np.full(len(pairs), 50.0)], 1)
        points[list(corners)] = [[x0, 45.0], [x0 + 40, 45.0]]
        points[centre] = [x0 + 20, 80.0]  # far below the lower lid
    out = clamp_iris(points)
    assert 40 < out[lm.RIGHT_IRIS_CENTRE, 1] < 50 and out[lm.RIGHT_IRIS_CENTRE, 0] == pytest.approx(20)
    points[lm.LEFT_IRIS_CENTRE] = [500.0, 45.0]  # beyond the outer corner
    out = clamp_iris(points)
    assert 100 < out[lm.LEFT_IRIS_CENTRE, 0] < 140
    # a closed eye: the hub sits on the lid line
    points[lm.RIGHT_LID_PAIRS[:, 0], 1] = 50.0
    assert clamp_iris(points)[lm.RIGHT_IRIS_CENTRE, 1] == pytest.approx(50.0)
    assert points[lm.RIGHT_IRIS_CENTRE, 1] == 80.0  # input untouched


def test_border_feather() -> None:
    alpha = border_feather((100, 200), 0.1)  # ramps over 10 pixels
    assert alpha.shape == (100, 200) and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() == 1.0
    assert alpha[0, 0] < 0.01 and alpha[50, 0] == pytest.approx(0.05) and alpha[0, 100] == pytest.approx(0.05)
    np.testing.assert_array_equal(alpha[10:-10, 10:-10], 1.0)
    row = alpha[50, :11]
    assert np.all(np.diff(row) > 0)  # a ramp up from the border
    np.testing.assert_allclose(alpha, alpha[::-1, ::-1])  # symmetric


def test_paste_blends_by_alpha_and_weight() -> None:
    frame = np.full((20, 30, 3), 100, np.uint8)
    face = GeneratedFace((10, 5, 20, 15), np.full((10, 10, 3), 200, np.uint8), np.ones((10, 10), np.float32))
    full = paste(frame, face)
    assert (full[5:15, 10:20] == 200).all()
    untouched = np.ones((20, 30), bool)
    untouched[5:15, 10:20] = False
    assert (full[untouched] == 100).all()
    np.testing.assert_array_equal(paste(frame, face, weight=0.0), frame)
    half = paste(frame, face, weight=0.5)
    assert np.abs(half[5:15, 10:20].astype(int) - 150).max() <= 1
    face.alpha[:, :5] = 0.0
    part = paste(frame, face)
    assert (part[5:15, 10:15] == 100).all() and (part[5:15, 15:20] == 200).all()
    assert (frame == 100).all()  # a new array unless asked otherwise


def test_make_generator() -> None:
    generator = make_generator("warp", grid=64, mouth_interior=False)
    assert generator.name == "warp" and generator.settings.grid == 64 and not generator.settings.mouth_interior
    with pytest.raises(ValueError, match="unknown generator"):
        make_generator("nope")


def test_person_mask_covers_the_person(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    from retarget.segment import person_mask

    mask = person_mask(astronaut.copy())
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    face = polygon_mask((512, 512), astronaut_landmarks[lm.FACE_OVAL, :2])
    assert mask[face].mean() > 0.9
    assert mask[:40, :40].mean() < 0.2 and mask[:40, -40:].mean() < 0.2  # the flag and wall behind him


def test_head_move_shift_on_a_grid_is_the_backward_map() -> None:
    """The per-cell head move is ``backward(p) - p`` for every cell centre p."""
    angle = 0.2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    move = HeadMove(1.15, rotation, np.array([12.0, -7.0]))
    x = (np.arange(9, dtype=np.float32) * 3.5)[None, :]
    y = (np.arange(5, dtype=np.float32) * 4.0 - 2)[:, None]
    points = np.stack(np.broadcast_arrays(x, y), -1).reshape(-1, 2).astype(np.float64)
    expected = (move.backward(points) - points).reshape(5, 9, 2)
    got = move.backward_shift(x, y)
    assert got.shape == (5, 9, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize("sigma", [1.5, 6.0, 20.0])
def test_wide_blur_is_a_gaussian_blur(sigma: float) -> None:
    """The shrunk-grid blur of a person mask stays within 2% of OpenCV's full-size Gaussian blur more than
    sigma from the image's edge, and within 5% at it (the two reflect the border at different scales; the
    head move it weighs has faded there)."""
    mask = np.zeros((300, 240), np.float32)
    cv2.ellipse(mask, (120, 170), (70, 110), 0, 0, 360, 1.0, -1)
    expected = cv2.GaussianBlur(mask, (0, 0), sigma)
    got = _wide_blur(mask, sigma)
    assert got.shape == mask.shape and got.dtype == np.float32
    edge = int(sigma)
    assert np.abs(got - expected)[edge:-edge, edge:-edge].max() < 0.02
    assert np.abs(got - expected).max() < 0.05


def test_the_field_is_smoothed_along_the_outline_only() -> None:
    """Inside the mesh (left half) every other row is displaced by +-3 cells, the dashes that per-triangle maps
    along a turned face's outline made of hair lying over it: on the outline they are smoothed away, and far
    from it (more than four sigmas) nothing changes."""
    inside = np.zeros((80, 80), bool)
    inside[:, :40] = True
    disp = np.zeros((80, 80, 2), np.float32)
    disp[::2, :40, 0] = 3.0
    disp[1::2, :40, 0] = -3.0
    out = _smooth_outline(disp, inside, 2.0)
    assert np.abs(out[10:70, 39:41, 0]).max() < 0.5  # the cells on either side of the outline
    assert np.abs(out[10:70, 38, 0]).max() < 0.75  # a quarter of the dashes left two cells in
    np.testing.assert_allclose(out[:, :30], disp[:, :30], atol=0.02)  # 10 cells = 5 sigmas inside
    np.testing.assert_allclose(out[:, 50:], disp[:, 50:], atol=1e-3)
    flat = np.full((80, 80, 2), 1.5, np.float32)  # a field that is already smooth stays as it is
    np.testing.assert_allclose(_smooth_outline(flat, inside, 2.0), flat, atol=1e-5)


def test_mouth_interior_in_a_black_and_white_face_is_grey(astronaut_landmarks: np.ndarray) -> None:
    """A colour driver's red mouth interior, put into a black-and-white photograph's face, has no colour; in a
    pale colour face it keeps its own."""
    from retarget.generators.warp import _match_colour

    driver = np.empty((512, 512, 3), np.uint8)
    driver[:] = (167, 108, 97)
    interior = np.empty((20, 30, 3), np.uint8)
    interior[:] = (150, 50, 60)
    grey = np.full((512, 512, 3), 158, np.uint8)
    out = _match_colour(interior, driver, astronaut_landmarks, grey, astronaut_landmarks)[0, 0]
    assert np.ptp(out) < 1.0
    pale = np.empty((512, 512, 3), np.uint8)
    pale[:] = (182, 157, 151)  # img_lp_s42's mean face colour: pale, but a colour picture
    out = _match_colour(interior, driver, astronaut_landmarks, pale, astronaut_landmarks)[0, 0]
    assert out[0] > out[1] + 60


def test_paste_of_an_opaque_rectangle_equals_the_whole_blend() -> None:
    """The warp's faces say where their alpha is 1 (``GeneratedFace.opaque``); the paste copies that rectangle
    and blends only the rim, and must give the same pixels as blending the whole box."""
    from retarget.generators.warp import opaque_box

    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (120, 160, 3), np.uint8)
    image = rng.integers(0, 256, (70, 90, 3), np.uint8)
    alpha = border_feather((70, 90), 0.1)
    rim = GeneratedFace((30, 20, 120, 90), image, alpha, opaque_box((70, 90), 0.1))
    whole = GeneratedFace((30, 20, 120, 90), image, alpha)
    assert rim.opaque != (0, 0, 0, 0)
    np.testing.assert_array_equal(paste(frame, rim), paste(frame, whole))
    np.testing.assert_array_equal(paste(frame, rim)[20:90, 30:120][35, 45], image[35, 45])  # the face itself
    np.testing.assert_array_equal(paste(frame, rim, weight=0.5), paste(frame, whole, weight=0.5))
    assert not np.array_equal(paste(frame, rim, weight=0.5), paste(frame, whole))
