"""Which face is tracked when a frame holds several: the largest, then the one nearest the previous."""

import numpy as np
import pytest
from PIL import Image

from retarget.face import track_frames
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
