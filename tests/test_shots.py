"""Shots of an edited video: its cuts are found, and each shot is tracked, smoothed and planned as a clip of its
own (its own neutral face), so nothing of one shot leaks into the other."""

from __future__ import annotations

import av
import numpy as np
import pytest
from _helpers import open_mouth

from retarget import landmarks as lm
from retarget.analysis import analyse_clip, shot_analyses
from retarget.config import RetargetConfig
from retarget.face import track_frames
from retarget.motion import from_clip
from retarget.plan import build_plan, build_shot_plan
from retarget.shots import CUT_CHANGE, JUMP, CutScorer, face_jumps, find_cuts, shot_spans
from retarget.smooth import smooth
from retarget.types import Frame, Track

FPS = 30.0


def _times(n: int) -> np.ndarray:
    return np.arange(n) / FPS


def _steady(n: int, level: float = 2.0, seed: int = 0) -> np.ndarray:
    scores = level + np.random.default_rng(seed).uniform(-0.5, 0.5, n)
    scores[0] = 0.0
    return scores


def test_a_jump_in_change_is_a_cut():
    scores = _steady(100)
    scores[40] = 16.0  # two men before the same grey wall scored 15.9
    assert find_cuts(scores, _times(100)).tolist() == [40]


def test_fast_motion_is_no_cut():
    scores = _steady(100, level=15.0)  # a head moving fast near the camera changes every frame this much
    scores[40] = 40.0  # a jolt, but less than the ratio over what is usual here
    assert find_cuts(scores, _times(100)).tolist() == []


def test_a_small_change_is_no_cut_even_on_a_still_picture():
    scores = _steady(100, level=0.2)
    scores[40] = CUT_CHANGE - 1.0  # many times the usual change, but too small for a new shot
    assert find_cuts(scores, _times(100)).tolist() == []


def test_cuts_closer_than_a_shot_keep_the_stronger_and_frame_0_never_cuts():
    scores = _steady(100)
    scores[0] = 50.0
    scores[40], scores[45] = 30.0, 40.0  # 5 frames apart: a flash, or a cut and a flash
    scores[80] = 30.0
    assert find_cuts(scores, _times(100)).tolist() == [45, 80]
    assert shot_spans(100, np.array([45, 80])) == [(0, 45), (45, 80), (80, 100)]


def test_the_scorer_sees_a_new_picture_and_not_noise(astronaut):
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photos")
    import cv2

    other = cv2.resize(data.coffee(), (512, 512))
    noise = np.random.default_rng(1).integers(-3, 4, astronaut.shape)
    frames = [astronaut, np.clip(astronaut + noise, 0, 255).astype(np.uint8), astronaut, other, other]
    scorer, likely = CutScorer(), []
    for image in frames:
        scorer(image)
        likely.append(scorer.likely_cut())
    assert scorer.scores[1] < CUT_CHANGE and scorer.scores[3] > 4 * CUT_CHANGE
    assert likely == [False, False, False, True, False]


def _two_shot_track(first: np.ndarray, second: np.ndarray, n: int = 30) -> Track:
    """2n frames: ``first`` (478, 3) landmarks held for n, then ``second`` for n, cut at n."""
    points = np.concatenate([np.repeat(first[None], n, 0), np.repeat(second[None], n, 0)]).astype(np.float32)
    return Track(_times(2 * n), points, np.ones(2 * n, bool), 1280, 720, np.array([n]))


def _elsewhere(points: np.ndarray) -> np.ndarray:
    """The same face 300 px to the right, 40 px down and 20% larger: the next shot's framing."""
    centre = points[:, :2].mean(0)
    moved = points.copy()
    moved[:, :2] = (points[:, :2] - centre) * 1.2 + centre + [300.0, 40.0]
    moved[:, 2] *= 1.2
    return moved


def _moving_track(first: np.ndarray, step: float, n: int = 40) -> Track:
    """``first`` (478, 3) moving right by ``step`` face sizes a frame for n frames, found throughout."""
    size = float(np.ptp(first[:, 0]))
    points = np.repeat(first[None], n, 0).astype(np.float32)
    points[:, :, 0] += (np.arange(n) * step * size)[:, None]
    return Track(_times(n), points, np.ones(n, bool), 4000, 720)


def test_a_face_found_elsewhere_after_a_loss_starts_a_shot(astronaut_landmarks):
    """A dissolve: the fading face is lost for two frames and the next shot's face is found in another place."""
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(first), 30)
    track.found[28:30] = False
    track.landmarks[28:30] = np.nan
    assert face_jumps(track.landmarks, track.found, track.times, np.zeros(0, int)).tolist() == [30]
    # the same face, found again where it was, goes on in the same shot
    same = _two_shot_track(first, first, 30)
    same.found[28:30] = False
    same.landmarks[28:30] = np.nan
    assert face_jumps(same.landmarks, same.found, same.times, np.zeros(0, int)).tolist() == []


def test_fast_head_motion_is_no_jump_but_a_face_farther_than_the_jump_is(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    fast = _moving_track(first, 0.3)  # faster than any shared clip (0.25 face sizes a frame at most)
    assert face_jumps(fast.landmarks, fast.found, fast.times, np.zeros(0, int)).tolist() == []
    far = _moving_track(first, 0.0)
    far.landmarks[25:, :, 0] += 1.2 * JUMP * float(np.ptp(first[lm.FACE_OVAL, :2], axis=0).max())
    assert face_jumps(far.landmarks, far.found, far.times, np.zeros(0, int)).tolist() == [25]


def test_a_face_that_grows_at_once_starts_a_shot(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    centre = first[:, :2].mean(0)
    for scale, cuts in ((1.2, []), (1.6, [20])):
        track = _moving_track(first, 0.0)
        track.landmarks[20:, :, :2] = (first[:, :2] - centre) * scale + centre
        assert face_jumps(track.landmarks, track.found, track.times, np.zeros(0, int)).tolist() == cuts


def test_jumps_over_a_cut_or_soon_after_another_add_nothing(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(first), 30)
    assert face_jumps(track.landmarks, track.found, track.times, np.array([30])).tolist() == [30]
    # the face was lost at the cut and found two frames later: still the cut's jump
    track.found[30:32] = False
    track.landmarks[30:32] = np.nan
    assert face_jumps(track.landmarks, track.found, track.times, np.array([30])).tolist() == [30]
    # there and back within half a second: one new shot, not two
    flip = _two_shot_track(first, _elsewhere(first), 30)
    flip.landmarks[35:] = first
    assert face_jumps(flip.landmarks, flip.found, flip.times, np.zeros(0, int)).tolist() == [30]


def test_smoothing_stops_at_a_cut(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(first))
    clip = analyse_clip(track, FPS, None, 0.2, 0.33)
    assert np.abs(clip.track.landmarks[29] - first).max() < 1e-3  # the last frame before the cut stays put
    assert np.abs(clip.track.landmarks[30] - _elsewhere(first)).max() < 1e-3
    assert np.array_equal(clip.track.cuts, [30])
    one_shot = Track(track.times, track.landmarks, track.found, track.width, track.height)
    blended = analyse_clip(one_shot, FPS, None, 0.2, 0.33).track.landmarks[29]
    assert np.abs(blended - first).max() > 20  # smoothed across the cut it would move towards the next shot
    values = np.repeat([0.0, 10.0], 30)
    assert np.allclose(smooth(values, FPS, 0.2, cuts=np.array([30])), values, atol=1e-9)


def _other_person(points: np.ndarray) -> np.ndarray:
    """Someone with a face 15% wider and a mouth 10% lower: another identity, not an expression."""
    out = points.copy()
    centre = points[:, :2].mean(0)
    out[:, 0] = (points[:, 0] - centre[0]) * 1.15 + centre[0]
    below = points[:, 1] > centre[1]
    out[below, 1] = (points[below, 1] - centre[1]) * 1.1 + centre[1]
    return out


def _still_driver(points: np.ndarray, n: int = 60):
    """A driver holding one face still: no expression to transfer."""
    track = Track(_times(n), np.repeat(points[None], n, 0).astype(np.float32), np.ones(n, bool), 512, 512)
    return from_clip(analyse_clip(track, FPS, None, 0.2, 0.33))


def test_each_shot_keeps_its_own_face(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    second = _elsewhere(_other_person(first))
    clip = analyse_clip(_two_shot_track(first, second), FPS, None, 0.2, 0.33)
    shots = shot_analyses(clip, None)
    assert [start for start, _ in shots] == [0, 30]
    config = RetargetConfig()
    drive = _still_driver(first)
    plan = build_shot_plan(drive, shots, clip.track, config)
    # a driver without expression leaves both people as they are
    assert np.abs(plan.destination - plan.source).max() < 0.5
    assert np.allclose(plan.weight, 1.0)
    # one neutral for the whole clip would give the second person the first one's face shape
    whole = build_plan(drive, clip, False, config)
    assert np.abs(whole.destination[30:] - whole.source[30:]).max() > 4


def test_a_shot_plan_holds_one_copy_of_the_landmarks_and_each_shot_as_planned_alone(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(_other_person(first)))
    track.found[35:40] = False  # a gap inside the second shot
    track.landmarks[35:40] = np.nan
    clip = analyse_clip(track, FPS, None, 0.2, 0.33)
    shots = shot_analyses(clip, None)
    drive, config = _talking_driver(first), RetargetConfig()
    plan = build_shot_plan(drive, shots, clip.track, config)
    assert plan.source is clip.track.landmarks  # the whole track as it is, not a concatenated copy
    for (start, shot), stop in zip(shots, [30, 60]):
        alone = build_plan(drive, shot, False, config, eyes_ahead=start == 0)
        assert np.array_equal(plan.source[start:stop], alone.source, equal_nan=True)
        assert np.array_equal(plan.destination[start:stop], alone.destination, equal_nan=True)
        assert np.array_equal(plan.weight[start:stop], alone.weight)
    assert np.isnan(plan.destination[35:40]).all() and not np.isnan(plan.destination[:35]).any()


def _talking_driver(points: np.ndarray, n: int = 60, cut: int | None = None,
                    first: np.ndarray | None = None):
    """A driver whose face ``points`` opens its mouth over frames 40-49 of ``n``; with ``cut``, the frames
    before it show ``first`` instead, held still (another shot, of another person)."""
    frames = np.repeat(points[None], n, 0).astype(np.float32)
    frames[40:50] = open_mouth(points, 0.6 * float(np.ptp(points[:, 1])) / 8)
    if cut is not None:
        frames[:cut] = first
    track = Track(_times(n), frames, np.ones(n, bool), 512, 512, np.zeros(0, int) if cut is None else np.array([cut]))
    clip = analyse_clip(track, FPS, None, 0.2, 0.33)
    return from_clip(clip, shot_analyses(clip, None))


def test_a_driver_shot_of_another_person_drives_as_it_would_alone(astronaut_landmarks):
    """The first shot's face stands for a cut driver in the transfer. A later shot of someone with other
    proportions (a face 15% wider whose lower half is 40% longer) has its changes scaled from that person's
    proportions to the first's, so it opens the target's mouth as far as it would as a driver of its own
    (carried over unscaled, with the first face's proportions, it came out 11% wider)."""
    first = np.asarray(astronaut_landmarks, np.float32)
    other = _other_person(first)
    centre = first[:, 1].mean()
    below = other[:, 1] > centre
    other[below, 1] = (other[below, 1] - centre) * 1.4 / 1.1 + centre
    target = analyse_clip(Track(_times(60), np.repeat(first[None], 60, 0), np.ones(60, bool), 512, 512), FPS, None,
                          0.2, 0.33)
    config = RetargetConfig()
    alone = build_plan(_talking_driver(other), target, False, config)
    cut = build_plan(_talking_driver(other, cut=30, first=first), target, False, config)
    lower = lm.INNER_LIP_LOWER
    opened = (alone.destination[38:52] - alone.source[38:52])[:, lower, 1].mean(1)
    assert opened.max() > 5  # the mouth opens, in the target's pixels
    cut_opened = (cut.destination[38:52] - cut.source[38:52])[:, lower, 1].mean(1)
    np.testing.assert_allclose(cut_opened, opened, atol=0.02 * opened.max())


def test_the_neutral_time_given_sets_its_own_shot_only(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    points = np.concatenate([np.repeat(first[None], 30, 0), np.repeat(_other_person(first)[None], 30, 0)])
    points[40:45] = open_mouth(_other_person(first), 0.5)
    track = Track(_times(60), points.astype(np.float32), np.ones(60, bool), 512, 512, np.array([30]))
    shots = shot_analyses(analyse_clip(track, FPS, None, 0.2, 0.33), 42 / FPS)
    assert shots[1][1].expression.neutral_index == 12  # frame 42, the second shot's 13th
    assert 0 <= shots[0][1].expression.neutral_index < 30  # the first shot picks its own


def test_a_shot_without_a_face_passes_through(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, first)
    track.found[30:] = False
    track.landmarks[30:] = np.nan
    clip = analyse_clip(track, FPS, None, 0.2, 0.33)
    shots = shot_analyses(clip, None)
    assert shots[1] == (30, None)
    plan = build_shot_plan(_still_driver(first), shots, clip.track, RetargetConfig())
    assert len(plan) == 60 and np.all(plan.weight[30:] == 0) and np.all(plan.weight[:30] == 1)


def _write_cut_clip(path, sources, frames_each: int) -> None:
    """The first ``frames_each`` frames of each source clip, one after the other, as an H.264 file."""
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
    for source in sources:
        with av.open(str(source)) as clip:
            for i, frame in enumerate(clip.decode(video=0)):
                if i == frames_each:
                    break
                image = frame.to_ndarray(format="rgb24")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    out.mux(stream.encode())
    out.close()


@pytest.mark.media
def test_a_cut_between_two_people_is_tracked_and_planned_as_two_shots(media_dir, tmp_path):
    from retarget import retarget

    clip = tmp_path / "cut.mp4"
    _write_cut_clip(clip, [media_dir / "vid_lp_s18.mp4", media_dir / "vid_lp_s32.mp4"], 40)
    frames = (Frame(i, float(f.time), f.to_ndarray(format="rgb24")) for i, f in
              enumerate(av.open(str(clip)).decode(video=0)))
    track = track_frames(frames, 1280, 720)
    assert track.cuts.tolist() == [40]
    assert track.found.all()  # the tracker looked afresh at the cut and found the new face at once
    assert abs(track.landmarks[40, :, 0].mean() - track.landmarks[39, :, 0].mean()) > 100  # she sits elsewhere

    result = retarget(media_dir / "drv_lp_d18.mp4", clip, tmp_path / "out.mp4", progress=False)
    import json

    report = json.loads(result.config_path.read_text())
    shots = report["target_shots"]
    assert [s["start"] for s in shots] == pytest.approx([0.0, 40 / 30], abs=1e-3)
    assert 0 <= shots[0]["neutral_time"] < 40 / 30 <= shots[1]["neutral_time"] < 80 / 30
    assert report["target_frames_without_face"] == 0


def _write_dissolve_clip(path, first, second, before: int, blend: int, after: int) -> None:
    """``before`` frames of ``first``, a ``blend``-frame dissolve into ``second``, then ``after`` frames of it."""
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
    with av.open(str(first)) as a, av.open(str(second)) as b:
        pairs = zip(a.decode(video=0), b.decode(video=0))
        for i, (fa, fb) in enumerate(pairs):
            if i == before + blend + after:
                break
            alpha = min(1.0, max(0.0, (i - before + 1) / (blend + 1)))
            image = (1 - alpha) * fa.to_ndarray(format="rgb24") + alpha * fb.to_ndarray(format="rgb24")
            frame = av.VideoFrame.from_ndarray(image.round().astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
    out.mux(stream.encode())
    out.close()


@pytest.mark.media
def test_a_dissolve_to_another_person_starts_a_shot_where_her_face_is_found(media_dir, tmp_path):
    """No frame of a dissolve changes enough to score as a cut, but where the tracker finds the second woman's
    face, in her place, a new shot starts."""
    clip = tmp_path / "dissolve.mp4"
    _write_dissolve_clip(clip, media_dir / "vid_lp_s18.mp4", media_dir / "vid_lp_s32.mp4", 30, 20, 25)
    frames = (Frame(i, float(f.time), f.to_ndarray(format="rgb24")) for i, f in
              enumerate(av.open(str(clip)).decode(video=0)))
    track = track_frames(frames, 1280, 720)
    assert len(track.cuts) == 1 and 30 < track.cuts[0] <= 52
    cut = int(track.cuts[0])
    before = np.flatnonzero(track.found[:cut])[-1]
    assert abs(track.landmarks[cut, :, 0].mean() - track.landmarks[before, :, 0].mean()) > 100
    assert track.found[cut:].all()



def test_a_plan_is_the_same_however_many_frames_are_planned_at_once(astronaut_landmarks, monkeypatch):
    """``build_plan`` plans ``PLAN_BLOCK`` frames at a time (bounded memory on long clips); only the choice of
    the frames that lend an open eye spans the clip, so blocks of 10 frames give the whole-clip plan exactly,
    for a video target with a gap and a blinking eye that borrows across a block's edge, and for a still."""
    from _helpers import close_eyes

    import retarget.plan as plan_module

    points = np.asarray(astronaut_landmarks, np.float32)
    frames = np.repeat(points[None], 45, 0)
    frames[10:13] = close_eyes(points)  # a blink: its frames borrow the open eye of frame 9
    frames[20:30] = open_mouth(points, 0.05 * float(np.ptp(points[:, 1])))
    track = Track(_times(45), frames, np.ones(45, bool), 512, 512)
    track.found[33:36] = False
    track.landmarks[33:36] = np.nan
    target = analyse_clip(track, FPS, None, 0.2, 0.33)
    drive, config = _talking_driver(points), RetargetConfig()
    still = analyse_clip(Track(_times(1), points[None], np.ones(1, bool), 512, 512), FPS, None, 0.0, 0.0)
    whole = [build_plan(drive, target, False, config), build_plan(drive, still, True, config)]
    monkeypatch.setattr(plan_module, "PLAN_BLOCK", 10)
    blocks = [build_plan(drive, target, False, config), build_plan(drive, still, True, config)]
    for one, other in zip(whole, blocks):
        for name in ("times", "source", "destination", "weight", "drive_index", "drive_aus", "output_aus",
                     "relative_aus", "eye_reference"):
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name)
    assert 0 <= whole[0].eye_reference[10] < 10  # the blink borrows an open eye from the block before
    assert np.abs(whole[0].destination[25] - whole[0].source[25]).max() > 1  # the driver's jaw drop is there


def test_each_shot_has_its_neutral_for_the_notes_and_the_flag_sets_its_own(astronaut_landmarks):
    """``pipeline.shot_neutrals``: one entry a shot, with its span and neutral; a neutral time given by flag
    belongs to the shot it falls in, up to the next shot's first frame (as ``shot_analyses`` reads it)."""
    from retarget.pipeline import shot_neutrals

    first = np.asarray(astronaut_landmarks, np.float32)
    clip = analyse_clip(_two_shot_track(first, _elsewhere(_other_person(first))), FPS, None, 0.2, 0.33)
    shots = shot_analyses(clip, None)
    parts = shot_neutrals(clip, shots, None)
    assert [(p.start, p.stop) for p in parts] == [(0.0, 29 / FPS), (1.0, 59 / FPS)]
    assert not any(p.chosen for p in parts)
    np.testing.assert_array_equal(parts[1].neutral, shots[1][1].expression.neutral)
    assert [p.chosen for p in shot_neutrals(clip, shots, 29.5 / FPS)] == [True, False]  # between the shots
    assert [p.chosen for p in shot_neutrals(clip, shots, 1.2)] == [False, True]
    whole = shot_neutrals(clip, None, 1.2)  # not cut: one neutral, the flag's
    assert len(whole) == 1 and whole[0].chosen and whole[0].neutral is clip.expression.neutral


def test_a_later_shot_that_never_rests_gets_its_own_note(astronaut_neutral):
    """The astronaut smiles with parted lips: as a shot's neutral that smile passes for rest. Each such shot of an
    edited clip gets a note naming its span; a shot whose neutral the user set gets none, nor a calm one."""
    from retarget.aushape import AUShapeModel
    from retarget.pipeline import ShotNeutral, neutral_notes
    from retarget.types import AU_NAMES

    model = AUShapeModel.build(astronaut_neutral)
    weights = np.zeros((1, len(AU_NAMES)))
    for name, amount in (("AU12", -4.0), ("AU20", -4.0), ("AU25", -2.5)):
        k = AU_NAMES.index(name)
        weights[0, k] = amount / model.response[k, k]
    calm = astronaut_neutral + model.displacement(weights)[0]
    smiling = np.asarray(astronaut_neutral)
    target = [ShotNeutral(0.0, 1.9, calm, 0.5, False), ShotNeutral(2.0, 4.0, smiling, 3.1, False),
              ShotNeutral(4.1, 6.0, smiling, 5.0, True)]
    notes = neutral_notes(None, target)
    assert len(notes) == 1
    assert notes[0].startswith("the target's calmest frame in its shot at 2.00-4.00 s (3.10 s) still smiles")
    assert notes[0].endswith("if its face rests elsewhere in that shot, pass --target-neutral SECONDS")
    alone = neutral_notes([ShotNeutral(0.0, 6.0, smiling, 2.5, False)], None)  # an uncut driver
    assert len(alone) == 1 and alone[0].startswith("the driver's calmest frame (2.50 s) still smiles")
    assert "shot" not in alone[0] and alone[0].endswith("if its face rests elsewhere, pass --drive-neutral SECONDS")
    assert neutral_notes([ShotNeutral(0.0, 6.0, smiling, 2.5, True)], [target[0]]) == ()
