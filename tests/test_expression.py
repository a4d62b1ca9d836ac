"""retarget.expression: AU intensities from landmark geometry and the choice of the neutral frame."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import close_eyes, open_mouth, raise_corners

from retarget import landmarks as lm
from retarget.analysis import analyse_clip
from retarget.expression import analyse, au_intensities, eye_opening, pick_neutral, raw_measures, restless
from retarget.types import AU_NAMES, Track

AU = {name: k for k, name in enumerate(AU_NAMES)}


def aus_of(shape: np.ndarray, neutral: np.ndarray) -> dict[str, float]:
    values = au_intensities(shape[None], neutral)[0]
    return {name: float(values[k]) for name, k in AU.items()}


def test_neutral_has_no_action(astronaut_neutral: np.ndarray) -> None:
    aus = au_intensities(np.stack([astronaut_neutral] * 3), astronaut_neutral)
    assert aus.shape == (3, 17) and aus.dtype == np.float32
    np.testing.assert_allclose(aus, 0.0, atol=1e-5)


def test_jaw_drop_raises_au25_au26_not_au12(astronaut_neutral: np.ndarray) -> None:
    aus = aus_of(open_mouth(astronaut_neutral, 0.2), astronaut_neutral)
    assert aus["AU25"] > 2.0  # lips part
    assert aus["AU26"] > 2.0  # jaw drops
    assert aus["AU12"] < 0.25 and aus["AU15"] < 0.25  # the corners stay on the lips' midline: no smile
    assert aus["AU14"] < 0.25 and aus["AU17"] < 0.25  # nor a dimple or a chin raise (a yawn read as both)
    for name in ("AU01", "AU02", "AU04", "AU05", "AU07", "AU45"):  # nothing happens around the eyes
        assert aus[name] == pytest.approx(0.0, abs=1e-4), name
    # a wider opening reads stronger (until the scale saturates at 5)
    assert aus_of(open_mouth(astronaut_neutral, 0.1), astronaut_neutral)["AU25"] < aus["AU25"]


def test_closed_eyes_give_au45_near_5(astronaut_neutral: np.ndarray) -> None:
    closed = close_eyes(astronaut_neutral)
    np.testing.assert_allclose(eye_opening(closed[None]), 0.0, atol=1e-9)
    aus = aus_of(closed, astronaut_neutral)
    assert aus["AU45"] >= 4.5
    assert aus["AU25"] == 0 and aus["AU26"] == 0 and aus["AU12"] == 0
    # half closed reads about half
    half = astronaut_neutral + 0.5 * (closed - astronaut_neutral)
    assert 2.0 < aus_of(half, astronaut_neutral)["AU45"] < 3.0


def test_raised_mouth_corners_raise_au12(astronaut_neutral: np.ndarray) -> None:
    aus = aus_of(raise_corners(astronaut_neutral, 0.1), astronaut_neutral)
    assert aus["AU12"] > 2.0
    assert aus["AU15"] == 0.0  # the opposite action stays off
    assert aus["AU25"] < 0.5 and aus["AU26"] == 0.0 and aus["AU45"] == 0.0
    # lowered corners are AU15, not AU12
    down = aus_of(raise_corners(astronaut_neutral, -0.06), astronaut_neutral)
    assert down["AU15"] > 2.0 and down["AU12"] == 0.0


def move_brows(points: np.ndarray, down: float, inwards: float = 0.0) -> np.ndarray:
    """Copy of ``points`` with every brow point moved down by ``down`` and towards the midline by ``inwards``."""
    out = np.array(points, copy=True)
    for brow, side in ((lm.RIGHT_BROW, -1.0), (lm.LEFT_BROW, 1.0)):  # the subject's right brow has the smaller x
        out[brow, 1] += down
        out[brow, 0] -= side * inwards
    return out


def test_lowered_brows_raise_au04_raised_brows_au01_au02(astronaut_neutral: np.ndarray) -> None:
    frown = aus_of(move_brows(astronaut_neutral, 0.03, inwards=0.01), astronaut_neutral)
    assert frown["AU04"] > 2.0
    assert frown["AU01"] == 0.0 and frown["AU02"] == 0.0
    raised = aus_of(move_brows(astronaut_neutral, -0.05), astronaut_neutral)
    assert raised["AU01"] > 2.0 and raised["AU02"] > 2.0 and raised["AU04"] == 0.0
    for name in ("AU12", "AU25", "AU26", "AU45"):  # nothing happens at the mouth or the lids
        assert frown[name] == 0.0 and raised[name] == 0.0, name


@pytest.mark.parametrize("degrees", [-3.0, 3.0])
def test_a_small_pitch_error_does_not_read_as_brow_action(astronaut_neutral: np.ndarray, degrees: float) -> None:
    """A pose normalisation a few degrees off in pitch (mediapipe's depth moves the pose fit that much on a jaw
    drop) turns depth into height. The brows are measured from a reference at about their own depth, so it reads as
    little brow action; from the line through the eye corners, 0.3 behind the inner brows, 3 degrees read as
    AU01 0.8 or AU04 1.3."""
    a = np.radians(degrees)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    aus = aus_of(astronaut_neutral @ pitch.T, astronaut_neutral)
    for name in ("AU01", "AU02", "AU04"):
        assert aus[name] < 0.6, f"{name} reads {aus[name]:.2f} at {degrees} degrees of pitch"


def test_population_neutral_ignores_the_persons_neutral(astronaut_neutral: np.ndarray) -> None:
    """Against the population neutral the reading depends on the face alone: the astronaut's smile shows."""
    face = astronaut_neutral[None]
    other = raise_corners(open_mouth(astronaut_neutral, 0.2), 0.05)
    plain = au_intensities(face, astronaut_neutral, population_neutral=True)
    np.testing.assert_array_equal(plain, au_intensities(face, other, population_neutral=True))
    # the photo smiles broadly with parted lips; measured against herself it would read 0
    assert plain[0, AU["AU12"]] > 2.0 and plain[0, AU["AU06"]] > 1.0 and plain[0, AU["AU25"]] > 1.0
    assert plain[0, AU["AU04"]] == 0.0 and plain[0, AU["AU45"]] == 0.0
    frown = au_intensities(move_brows(astronaut_neutral, 0.06, inwards=0.01)[None], other, population_neutral=True)
    assert frown[0, AU["AU04"]] > 1.0


def test_analyse_population_neutral_changes_only_the_aus(astronaut_neutral: np.ndarray) -> None:
    shapes, found, times, _ = smiling_clip(astronaut_neutral)
    own = analyse(shapes.astype(np.float32), found, times)
    population = analyse(shapes.astype(np.float32), found, times, population_neutral=True)
    assert population.neutral_index == own.neutral_index
    np.testing.assert_array_equal(population.neutral, own.neutral)
    assert not np.allclose(population.aus, own.aus)


def test_a_smiling_neutral_is_restless_and_a_calm_one_is_not(astronaut_neutral: np.ndarray) -> None:
    """The astronaut smiles broadly with parted lips: as a clip's neutral, that smile would pass for rest. The same
    face with the smile and the parting taken out by the AU-to-shape model reads at rest."""
    from retarget.aushape import AUShapeModel

    shown = restless(astronaut_neutral)
    assert set(shown) == {"AU12", "AU25"} and shown["AU12"] > 3.0 and shown["AU25"] >= 2.0
    model = AUShapeModel.build(astronaut_neutral)
    weights = np.zeros((1, len(AU_NAMES)))
    for name, amount in (("AU12", -4.0), ("AU20", -4.0), ("AU25", -2.5)):
        weights[0, AU[name]] = amount / model.response[AU[name], AU[name]]
    calm = astronaut_neutral + model.displacement(weights)[0]
    assert restless(calm) == {}


def test_aus_are_clipped_to_0_5(astronaut_neutral: np.ndarray) -> None:
    aus = au_intensities(open_mouth(astronaut_neutral, 3.0)[None], astronaut_neutral)
    assert aus.min() >= 0.0 and aus.max() <= 5.0
    assert aus[0, AU["AU25"]] == 5.0


def test_raw_measures_follow_the_edit(astronaut_neutral: np.ndarray) -> None:
    before = raw_measures(astronaut_neutral[None])
    after = raw_measures(open_mouth(astronaut_neutral, 0.2)[None])
    assert after["lip_gap"][0] - before["lip_gap"][0] == pytest.approx(0.2, abs=1e-6)
    assert after["jaw_length"][0] - before["jaw_length"][0] == pytest.approx(0.2, abs=1e-6)
    assert after["eye_opening"][0] == pytest.approx(before["eye_opening"][0])


# ---------------------------------------------------------------------------------------------- neutral


def smiling_clip(neutral: np.ndarray, seed: int = 0, calm_frames: int = 7,
                 blink: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, range]:
    """40 frames at 30 fps: an open-mouthed smile, a blink with the mouth closed, one calm stretch."""
    rng = np.random.default_rng(seed)
    shapes = []
    calm = range(21, 21 + calm_frames)
    for t in range(40):
        if t in calm:
            shape = neutral.copy()
        elif blink and t in (16, 17, 18):  # a blink with the mouth closed: not a resting face either
            shape = close_eyes(neutral)
        else:
            shape = raise_corners(open_mouth(neutral, 0.08 + 0.1 * rng.random()), 0.04 + 0.02 * rng.random())
        shapes.append(shape + rng.normal(0, 0.002, shape.shape))
    return np.stack(shapes), np.ones(40, bool), np.arange(40) / 30.0, calm


@pytest.mark.parametrize("calm_frames, blink", [(7, True), (4, False)], ids=["75%-smiling", "90%-smiling"])
def test_pick_neutral_finds_the_calm_frame_in_a_smiling_clip(astronaut_neutral: np.ndarray, calm_frames: int,
                                                             blink: bool) -> None:
    shapes, found, times, calm = smiling_clip(astronaut_neutral, calm_frames=calm_frames, blink=blink)
    neutral = pick_neutral(shapes, found, times)
    idx, shape = neutral.index, neutral.shape
    assert idx in calm
    assert np.abs(shape - astronaut_neutral).max() < 0.01
    # the chosen reference is a resting face: mouth closed, eyes open
    aus = aus_of(shape, astronaut_neutral)
    assert aus["AU25"] < 0.2 and aus["AU45"] < 0.2 and aus["AU12"] < 0.2


def test_pick_neutral_ignores_lost_frames(astronaut_neutral: np.ndarray) -> None:
    shapes, found, times, calm = smiling_clip(astronaut_neutral, seed=3)
    lost = [calm[2], 5, 30]
    found[lost] = False
    shapes[lost] = np.nan
    neutral = pick_neutral(shapes, found, times)
    idx, shape = neutral.index, neutral.shape
    assert idx in calm and idx not in lost
    assert np.isfinite(shape).all()


def raise_brows(points: np.ndarray, amount: float) -> np.ndarray:
    out = np.array(points, copy=True)
    out[np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW]), 1] -= amount
    return out


def test_pick_neutral_takes_the_brows_and_the_mouth_from_their_own_calm_frames(
        astronaut_neutral: np.ndarray) -> None:
    """A talker (drv_lp_d10) who closes her lips only while she raises her brows: the one calmest frame has
    raised brows. The neutral takes its mouth from there and its brows and eyes from where they usually are."""
    rng = np.random.default_rng(5)
    shapes = []
    for t in range(60):
        if t in range(40, 46):  # lips closed, brows raised high
            shape = raise_brows(astronaut_neutral, 0.06)
        else:  # talking: the mouth open by varying amounts, the brows at rest
            shape = open_mouth(astronaut_neutral, 0.05 + 0.1 * rng.random())
        shapes.append(shape + rng.normal(0, 0.002, shape.shape))
    shapes = np.stack(shapes)
    neutral = pick_neutral(shapes, np.ones(60, bool), np.arange(60) / 30.0)
    assert neutral.index in range(40, 46)  # the mouth's: lips closed
    assert neutral.upper_index not in range(40, 46)  # the brows': at rest
    aus = aus_of(neutral.shape, astronaut_neutral)
    assert aus["AU01"] < 0.3 and aus["AU02"] < 0.3  # one frame would have read about 3
    assert aus["AU25"] < 0.2 and aus["AU26"] < 0.2
    # the mouth comes from the closed-lip frames, the eyes from the others
    lips, eyes = lm.INNER_LIP_LOOP, np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE])
    def around(k: int) -> np.ndarray:
        return np.median(shapes[max(0, k - 2):k + 3], 0)

    np.testing.assert_allclose(neutral.shape[lips], around(neutral.index)[lips])
    np.testing.assert_allclose(neutral.shape[eyes], around(neutral.upper_index)[eyes])
    # the AUs measured against it: brows at rest read no raise, the raised ones do
    expression = analyse(shapes, np.ones(60, bool), np.arange(60) / 30.0)
    assert np.median(expression.aus[:40, AU["AU01"]]) < 0.3 and expression.aus[42, AU["AU01"]] > 2.0
    assert expression.upper_neutral_index == neutral.upper_index


def test_pick_neutral_at_time_takes_the_nearest_found_frame(astronaut_neutral: np.ndarray) -> None:
    shapes, found, times, _ = smiling_clip(astronaut_neutral)
    neutral = pick_neutral(shapes, found, times, at_time=0.32)  # frames at 0.3 and 0.3333 s
    assert neutral.index == neutral.upper_index == 10  # a given time sets the whole face
    np.testing.assert_allclose(neutral.shape, np.median(shapes[8:13], axis=0))
    found[10] = False
    assert pick_neutral(shapes, found, times, at_time=0.33).index == 9  # 10 is lost: 9 (0.3 s) is nearer than 11
    assert pick_neutral(shapes, found, times, at_time=100.0).index == 39


def test_pick_neutral_without_face_raises(astronaut_neutral: np.ndarray) -> None:
    shapes, found, times, _ = smiling_clip(astronaut_neutral)
    with pytest.raises(ValueError):
        pick_neutral(shapes, np.zeros(40, bool), times)


def test_analyse_displacement_and_aus(astronaut_neutral: np.ndarray) -> None:
    shapes, found, times, calm = smiling_clip(astronaut_neutral)
    found[5] = False
    shapes[5] = np.nan
    expr = analyse(shapes.astype(np.float32), found, times)
    assert expr.neutral_index in calm
    assert np.all(expr.displacement[5] == 0) and np.all(expr.aus[5] == 0)
    assert np.isfinite(expr.aus).all() and np.isfinite(expr.displacement).all()
    np.testing.assert_allclose(expr.displacement[10], shapes[10] - expr.neutral, atol=1e-5)
    assert expr.aus[10, AU["AU25"]] > 1.0 and expr.aus[calm[2], AU["AU25"]] < 0.2
    assert expr.aus[17, AU["AU45"]] > 4.0


def test_aus_do_not_depend_on_face_size_or_head_pose(astronaut_landmarks: np.ndarray) -> None:
    """The same performance filmed small and tilted or large and upright reads as the same AUs."""
    from scipy.spatial.transform import Rotation

    face = astronaut_landmarks.astype(np.float64)
    size = float(np.ptp(face[:, 1]))
    performance = [face] * 8 + [open_mouth(face, a * size) for a in (0.05, 0.1, 0.15, 0.1, 0.05)] + [face] * 8
    rot = Rotation.from_euler("xyz", [0, 15, 20], degrees=True).as_matrix()
    centre = face.mean(0)
    tilted = [0.4 * (p - centre) @ rot.T + centre + [30, -20, 0] for p in performance]
    results = []
    for frames in (performance, tilted):
        landmarks = np.stack(frames).astype(np.float32)
        track = Track(np.arange(len(frames)) / 25.0, landmarks, np.ones(len(frames), bool), 512, 512)
        results.append(analyse_clip(track, 25.0, None, 0.0, 0.0).expression.aus)
    assert results[0][10, AU["AU26"]] > 1.0
    np.testing.assert_allclose(results[1], results[0], atol=0.05)
