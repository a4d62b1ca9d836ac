"""retarget.generators.eyelids and the warp round a closing eye: no eyeball along the closed lids, and a lash line
that stays a line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _helpers import close_eyes, polygon_mask

from retarget import landmarks as lm
from retarget.compose import paste
from retarget.generators import FaceEdit
from retarget.generators.eyelids import keep_lash_lines, lid_stretch
from retarget.generators.warp import BORROW_BEYOND, WarpGenerator, WarpSettings, face_triangles
from retarget.transfer import lid_gap

NO_AUS = np.zeros(17, np.float32)


@pytest.fixture(scope="module")
def large(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut twice as large (face ~430 px, about a 1080p close-up), so the warp's 256-cell grid is
    coarse next to her eyes (3-4 pixels a cell), and her landmarks scaled with it."""
    image = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    points = astronaut_landmarks.copy()
    points[:, :2] = (points[:, :2] + 0.5) * 2 - 0.5
    return image, points


def warped(image: np.ndarray, source: np.ndarray, destination: np.ndarray) -> np.ndarray:
    face = WarpGenerator(WarpSettings()).generate(FaceEdit(image=image, source=source.astype(np.float32),
                                                           destination=destination.astype(np.float32),
                                                           relative_aus=NO_AUS))
    return paste(image, face).astype(int)


def test_an_unchanged_face_stretches_no_lid(astronaut_landmarks: np.ndarray) -> None:
    lids = lid_stretch(astronaut_landmarks[:, :2], astronaut_landmarks[:, :2])
    np.testing.assert_allclose(lids.stretch, 1.0)
    assert lids.opening == pytest.approx((1.0, 1.0)) and lids.closing() == []
    bary = np.random.default_rng(0).dirichlet(np.ones(3), 50).T.astype(np.float32)
    ids = np.random.default_rng(1).integers(0, len(face_triangles()), 50)
    assert keep_lash_lines(bary, ids, face_triangles(), lids) is bary


def test_closed_eyes_are_closing_and_their_bands_stretched(astronaut_landmarks: np.ndarray) -> None:
    points = astronaut_landmarks[:, :2]
    lids = lid_stretch(points, close_eyes(astronaut_landmarks)[:, :2])
    assert [len(eye) for eye in lids.closing()] == [16, 16]
    assert max(lids.opening) < 0.35  # the lids meet in y; their points still sit apart in x
    upper = np.concatenate([lm.RIGHT_LID_PAIRS[:, 0], lm.LEFT_LID_PAIRS[:, 0]])
    assert (lids.stretch[upper] > 1.2).all() and 0 < lids.lash[upper].min() <= lids.lash[upper].max() <= 0.5
    assert np.delete(lids.stretch, upper) == pytest.approx(1.0)


def test_lash_line_map_is_continuous_at_the_vertices(astronaut_landmarks: np.ndarray) -> None:
    """At a triangle's corners (on the lid, on the ring above) the map is unchanged, so neighbours agree; inside,
    the coordinates stay a partition of one."""
    lids = lid_stretch(astronaut_landmarks[:, :2], close_eyes(astronaut_landmarks)[:, :2])
    triangles = face_triangles()
    ids = np.repeat(np.arange(len(triangles)), 3)
    corners = np.tile(np.eye(3, dtype=np.float32), len(triangles))  # (3, 3K): each triangle's three corners
    np.testing.assert_allclose(keep_lash_lines(corners, ids, triangles, lids), corners, atol=1e-6)
    bary = np.random.default_rng(0).dirichlet(np.ones(3), len(triangles)).T.astype(np.float32)
    changed = keep_lash_lines(bary, np.arange(len(triangles)), triangles, lids)
    assert (changed >= -1e-6).all() and np.allclose(changed.sum(0), 1.0, atol=1e-5)
    assert np.abs(changed - bary).max() > 0.05  # and the bands above the closed lids did change


def test_closed_lids_show_no_eyeball(large: tuple[np.ndarray, np.ndarray]) -> None:
    """The eye openings are painted green: once the lids meet, none of it shows. Upsampled from the grid, the
    map read the eyeball along the closed lids (117 green pixels here)."""
    image, points = large
    painted = image.copy()
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        inside = cv2.erode(polygon_mask(image.shape[:2], points[eye, :2]).astype(np.uint8), np.ones((5, 5), np.uint8))
        painted[inside > 0] = (0, 255, 0)
    for x_too in (False, True):
        out = warped(painted, points, close_eyes(points, x_too=x_too))
        assert ((out[..., 1] - np.maximum(out[..., 0], out[..., 2])) > 60).sum() == 0


def test_closing_lids_keep_their_lash_line_thin(large: tuple[np.ndarray, np.ndarray]) -> None:
    """A 3-pixel blue line painted along each upper lid's edge: as the lids close it stays about as thin (it grew
    to 2.3 times its area when the whole band above the lid was stretched evenly; 1.13 now)."""
    image, points = large
    painted = image.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        upper = points[pairs[:, 0], :2]
        painted[polygon_mask(image.shape[:2], np.concatenate([upper, upper[::-1] - [0, 3]]))] = (0, 0, 255)

    def blue(pixels: np.ndarray) -> int:
        pixels = pixels.astype(int)
        return int(((pixels[..., 2] - np.maximum(pixels[..., 0], pixels[..., 1])) > 80).sum())

    before = blue(painted)
    assert before > 300
    assert blue(warped(painted, points, close_eyes(points))) < 1.6 * before


def test_a_shut_eye_is_opened_from_the_reference_frame(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    """The target's own blink, opened by the edit: the eye comes from the reference frame (its openings painted
    blue here), not from stretching the shut lid. Without a reference, or opened within BORROW_BEYOND of its
    own opening, nothing of the reference shows."""
    open_points = astronaut_landmarks.astype(np.float32)
    shut_points = close_eyes(open_points)
    reference = astronaut.copy()
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        reference[polygon_mask(astronaut.shape[:2], open_points[eye, :2])] = (0, 0, 255)
    generator = WarpGenerator(WarpSettings(head=0.0))

    def render(destination: np.ndarray, lend: bool) -> np.ndarray:
        edit = FaceEdit(image=astronaut.copy(), source=shut_points, destination=destination.astype(np.float32),
                        relative_aus=NO_AUS, reference_image=reference if lend else None,
                        reference_landmarks=open_points if lend else None)
        return paste(astronaut.copy(), generator.generate(edit)).astype(int)

    def blue_share(image: np.ndarray) -> float:
        inside = np.zeros(image.shape[:2], bool)
        for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
            core = cv2.erode(polygon_mask(image.shape[:2], open_points[eye, :2]).astype(np.uint8),
                             np.ones((3, 3), np.uint8))
            inside |= core > 0
        blue = (image[..., 2] - np.maximum(image[..., 0], image[..., 1])) > 100
        return float(blue[inside].mean())

    assert blue_share(render(open_points, lend=True)) > 0.8
    assert blue_share(render(open_points, lend=False)) == 0.0
    # a narrowed eye opened within BORROW_BEYOND of its own opening is stretched, not borrowed
    half = shut_points + 0.5 * (open_points - shut_points)
    wider = shut_points + 0.6 * (open_points - shut_points)
    assert lid_gap(wider, lm.RIGHT_LID_PAIRS) < BORROW_BEYOND * lid_gap(half, lm.RIGHT_LID_PAIRS)
    edit = FaceEdit(image=astronaut.copy(), source=half, destination=wider, relative_aus=NO_AUS,
                    reference_image=reference, reference_landmarks=open_points)
    assert blue_share(paste(astronaut.copy(), generator.generate(edit)).astype(int)) == 0.0


def test_an_eye_lent_by_a_brighter_frame_takes_this_frames_light(astronaut: np.ndarray,
                                                                   astronaut_landmarks: np.ndarray) -> None:
    """In a fade from black the frame that lends an open eye is brighter than the frame it opens: the lent eye
    is scaled to the light of the skin around it, so it does not glow in the darkened face."""
    open_points = astronaut_landmarks.astype(np.float32)
    shut_points = close_eyes(open_points)
    dark = (astronaut * 0.3).astype(np.uint8)  # this frame, a third of the way into the fade
    edit = FaceEdit(image=dark, source=shut_points, destination=open_points, relative_aus=NO_AUS,
                    reference_image=astronaut, reference_landmarks=open_points)
    out = paste(dark.copy(), WarpGenerator(WarpSettings(head=0.0)).generate(edit)).astype(float)
    eyes = np.zeros(astronaut.shape[:2], bool)
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        eyes |= cv2.erode(polygon_mask(astronaut.shape[:2], open_points[eye, :2]).astype(np.uint8),
                          np.ones((3, 3), np.uint8)) > 0
    lent = astronaut[eyes].astype(float).mean(0)
    assert out[eyes].mean(0) == pytest.approx(0.3 * lent, rel=0.15)

