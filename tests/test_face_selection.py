"""Which face is tracked when a frame holds several: the largest, then the one nearest the previous."""

import numpy as np
import pytest
from PIL import Image

from retarget.face import FaceChoice, NoFaceThere, track_frames
from retarget.types import Frame


@pytest.fixture(scope="module")
def two_faces() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    face = data.astronaut()[0:300, 100:400]
    canvas = np.full((300, 520, 3), 128, np.uint8)
    canvas[:, 220:520] = face  # large face on the right
    canvas[60:260, 0:200] = np.asarray(Image.fromarray(face).resize((200, 200)))  # small face on the left
    return canvas


def test_video_tracks_the_largest_face(two_faces):
    track = track_frames([Frame(i, i / 25, two_faces) for i in range(4)], 520, 300)
    assert track.found.all()
    assert (track.landmarks[:, :, 0].mean(1) > 220).all()  # every frame on the large face


def test_still_picks_the_largest_face(two_faces):
    track = track_frames([Frame(0, 0.0, two_faces)], 520, 300, still=True)
    assert track.found.all() and track.landmarks[0, :, 0].mean() > 220


def test_track_does_not_jump_to_a_bigger_face_that_appears(two_faces):
    only_small = two_faces.copy()
    only_small[:, 220:520] = 128
    frames = [Frame(0, 0.0, only_small)] + [Frame(i, i / 25, two_faces) for i in range(1, 4)]
    track = track_frames(frames, 520, 300)
    assert track.found[0]
    assert track.landmarks[0, :, 0].mean() < 200
    # the small face stays the track even though a larger one appears later
    assert (track.landmarks[1:, :, 0].mean(1)[track.found[1:]] < 200).all()


# --- choosing another face: --target-face / --drive-face


@pytest.mark.parametrize("text, rule, point", [
    ("largest", "largest", None), ("LEFT", "left", None), (" right ", "right", None),
    ("120,80.5", "point", (120, 80.5)),
])
def test_face_choice_parses_the_rules_and_points(text, rule, point):
    choice = FaceChoice.parse(text)
    assert (choice.rule, choice.point) == (rule, point)


@pytest.mark.parametrize("text", ["biggest", "12", "1,2,3", "a,b", "-5,10", "nan,3", ""])
def test_face_choice_refuses_anything_else(text):
    with pytest.raises(ValueError):
        FaceChoice.parse(text)


def test_a_point_scales_with_the_frame():
    assert FaceChoice.parse("100,40").scaled(0.5).point == (50, 20)
    assert FaceChoice.parse("left").scaled(0.5) == FaceChoice("left")


def centre_x(track) -> np.ndarray:
    return track.landmarks[:, :, 0].mean(1)


@pytest.mark.parametrize("text, on_left", [("left", True), ("right", False), ("100,160", True), ("370,150", False)])
def test_still_takes_the_chosen_face(two_faces, text, on_left):
    track = track_frames([Frame(0, 0.0, two_faces)], 520, 300, still=True, choice=FaceChoice.parse(text))
    assert track.found.all()
    assert (centre_x(track)[0] < 200) == on_left


def test_a_point_beside_every_face_says_where_the_faces_are(two_faces):
    with pytest.raises(NoFaceThere) as caught:
        track_frames([Frame(0, 0.0, two_faces)], 520, 300, still=True, choice=FaceChoice.parse("210,5"))
    boxes = sorted(caught.value.boxes)
    assert len(boxes) == 2
    assert boxes[0][2] < 200 < boxes[1][0]  # the small face on the left, the large one on the right
    assert "210,5" in str(caught.value)


def test_video_follows_the_chosen_smaller_face(two_faces):
    track = track_frames([Frame(i, i / 25, two_faces) for i in range(4)], 520, 300, choice=FaceChoice("left"))
    assert track.found.all()
    assert (centre_x(track) < 200).all()


def test_video_chooses_on_the_first_frame_with_faces(two_faces):
    """A clip that opens on an empty frame: the choice is made among the faces of the first frame that has any."""
    empty = np.full_like(two_faces, 128)
    frames = [Frame(0, 0.0, empty)] + [Frame(i, i / 25, two_faces) for i in range(1, 4)]
    track = track_frames(frames, 520, 300, choice=FaceChoice("left"))
    assert not track.found[0] and track.found[1:].all()
    assert (centre_x(track)[1:] < 200).all()
