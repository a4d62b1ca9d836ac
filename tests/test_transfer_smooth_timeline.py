"""retarget.transfer, retarget.smooth, retarget.timeline and the render plan that combines them."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import close_eyes, open_mouth

from retarget import landmarks as lm
from retarget.analysis import analyse_clip
from retarget.config import RetargetConfig
from retarget.motion import from_clip
from retarget.plan import (EYE_SHUT, EYE_STRETCH, build_plan, eye_references, keep_own_closures, soft_limit,
                           soft_limit_rotation)
from retarget.smooth import fill_gaps, savgol, smooth, window_frames
from retarget.timeline import (drive_times, ease_after_end, gap_weights, hold_and_release, nearest_index,
                               sample)
from retarget.mesh import mesh_triangles
from retarget.transfer import (CLOSURE_NOISE, CLOSURE_SHUT, REGIONS, DeformationTransfer, eye_closure,
                               region_scales, transfer, uncross_lids)
from retarget.types import Track

# ------------------------------------------------------------------------------------------------ transfer


def with_eyes_scaled(shape: np.ndarray, factor: float) -> np.ndarray:
    """Copy of ``shape`` with each eye (contour and iris) stretched vertically by ``factor`` about its centre."""
    out = shape.copy()
    for name in ("right_eye", "left_eye"):
        idx = REGIONS[name]
        centre = shape[idx, 1].mean()
        out[idx, 1] = centre + factor * (shape[idx, 1] - centre)
    return out


@pytest.mark.parametrize("factor", [2.0, 0.6])
def test_eye_closure_closes_a_differently_sized_target_eye_exactly(astronaut_neutral: np.ndarray,
                                                                  factor: float) -> None:
    drive_neutral = astronaut_neutral
    blink = close_eyes(drive_neutral)  # the driver's lids meet
    target_neutral = with_eyes_scaled(drive_neutral, factor)
    scales = region_scales(drive_neutral, target_neutral)
    assert np.allclose(scales[REGIONS["right_eye"], 1], factor, rtol=1e-6)
    out = transfer((blink - drive_neutral)[None], drive_neutral, target_neutral, scales)[0]
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        np.testing.assert_allclose(out[pairs[:, 0], 1], out[pairs[:, 1], 1], atol=1e-3)
        # the lower lids stay where the target's are (the driver's lower lids did not move)
        np.testing.assert_allclose(out[pairs[:, 1]], target_neutral[pairs[:, 1]], atol=1e-6)
    # nothing away from the eyes moves (deformation transfer lets the lid skin stretch a little)
    eyes = np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE])
    dist = np.linalg.norm(target_neutral[:, None, :2] - target_neutral[None, eyes, :2], axis=2).min(1)
    far = dist > 0.25
    assert far.sum() > 300
    np.testing.assert_allclose(out[far], target_neutral[far], atol=2e-3)


@pytest.mark.parametrize("factor", [2.0, 0.6])
def test_partial_eye_closure_is_the_same_fraction_of_any_eye(astronaut_neutral: np.ndarray, factor: float) -> None:
    """A half-closed driver eye leaves the same (calibrated) fraction of the target's own opening."""
    drive_neutral = astronaut_neutral
    target_neutral = with_eyes_scaled(drive_neutral, factor)
    scales = region_scales(drive_neutral, target_neutral)
    closures = np.array([0.0, 0.05, 0.3, 0.5, 0.8, 1.0])
    frames = np.stack([drive_neutral + c * (close_eyes(drive_neutral) - drive_neutral) for c in closures])
    out = transfer(frames - drive_neutral, drive_neutral, target_neutral, scales)
    measured = eye_closure(frames, drive_neutral)
    np.testing.assert_allclose(measured, closures[:, None].repeat(2, 1), atol=1e-6)
    opening = 1.0 - eye_closure(out, target_neutral)  # fraction of the target's own neutral opening
    expected = 1.0 - np.clip((closures - CLOSURE_NOISE) / (CLOSURE_SHUT - CLOSURE_NOISE), 0, 1)
    small = closures <= CLOSURE_NOISE  # tracking noise: the lids just follow the scaled displacement
    expected[small] = 1.0 - closures[small]
    np.testing.assert_allclose(opening, expected[:, None].repeat(2, 1), atol=1e-3)
    assert np.all(np.diff(opening[:, 0]) <= 1e-9)  # more closure never opens the eye


def test_deformation_transfer_solves_its_least_squares_problem(astronaut_neutral: np.ndarray) -> None:
    """The solve's result zeroes the gradient of its objective, written out here triangle by triangle: each
    target edge (e1 = b - a, e2 = c - a) pulled towards the driver's deformation gradient applied to the target's
    neutral edge, with the triangle's weight, and each vertex towards its anchor."""
    rng = np.random.default_rng(3)
    drive_neutral = astronaut_neutral.astype(np.float64)
    target_neutral = drive_neutral * [1.1, 0.95, 1.0] + [0.02, -0.01, 0.0]
    driven = open_mouth(drive_neutral, 0.08) + rng.normal(0, 0.002, drive_neutral.shape)
    anchors = target_neutral + rng.normal(0, 0.01, target_neutral.shape)
    deform = DeformationTransfer(drive_neutral, target_neutral)
    x = deform(driven[None], anchors[None])[0][:, :2]

    def edges(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
        a, b, c = points[tri, :2]
        return np.column_stack([b - a, c - a])  # columns e1, e2

    grad = 2 * deform._anchor_w2[:, None] * (x - anchors[:, :2])
    for k, tri in enumerate(mesh_triangles()):
        gradient = edges(driven, tri) @ np.linalg.inv(edges(drive_neutral, tri))
        want = gradient @ edges(target_neutral, tri)
        got = edges(x, tri)
        for e in range(2):
            w2 = deform._row_weight[2 * k + e] ** 2
            residual = w2 * (got[:, e] - want[:, e])
            grad[tri[e + 1]] += 2 * residual
            grad[tri[0]] -= 2 * residual
    assert np.abs(grad).max() < 1e-9
    assert np.abs(x - anchors[:, :2]).max() > 1e-3  # the edges pulled the shape off its anchors


def test_the_transfer_runs_without_scipy() -> None:
    """scipy.sparse's import cost 0.15 s a run for a 478-vertex solve."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from retarget.transfer import DeformationTransfer\n"
            "from retarget.mesh import mesh_triangles\n"
            "shape = np.random.default_rng(0).normal(size=(478, 3))\n"
            "DeformationTransfer(shape, shape)(shape[None], shape[None])\n"
            "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_transfer_intensity(astronaut_neutral: np.ndarray) -> None:
    drive_neutral = astronaut_neutral
    target_neutral = drive_neutral * [1.1, 0.9, 1.0] + [0.05, -0.02, 0.0]
    disp = (open_mouth(drive_neutral, 0.2) - drive_neutral)[None]
    scales = region_scales(drive_neutral, target_neutral)
    zero = transfer(disp, drive_neutral, target_neutral, scales, intensity=0.0)
    np.testing.assert_allclose(zero[0], target_neutral, atol=1e-6)
    assert zero.dtype == np.float32
    full = transfer(disp, drive_neutral, target_neutral, scales, intensity=1.0)[0]
    half = transfer(disp, drive_neutral, target_neutral, scales, intensity=0.5)[0]
    np.testing.assert_allclose(half, (full + target_neutral) / 2, atol=1e-5)
    # the mouth opens by the driver's opening measured in the target's face height (within 3%: the
    # deformation-transfer solve pulls the inner lips towards that opening, it does not pin them)
    gap = lambda s: s[lm.LOWER_LIP_INNER, 1] - s[lm.UPPER_LIP_INNER, 1]  # noqa: E731
    assert gap(full) - gap(target_neutral) == pytest.approx(0.2 * scales[lm.LOWER_LIP_INNER, 1], rel=0.03)
    # a blink at intensity 0 leaves the target's eyes open too
    blink = (close_eyes(drive_neutral) - drive_neutral)[None]
    np.testing.assert_allclose(transfer(blink, drive_neutral, target_neutral, scales, 0.0)[0], target_neutral,
                               atol=1e-6)


def test_region_scales_of_a_uniformly_bigger_face(astronaut_neutral: np.ndarray) -> None:
    np.testing.assert_allclose(region_scales(astronaut_neutral, 1.5 * astronaut_neutral), 1.5, rtol=1e-5)
    # limits keep a wild ratio in range
    assert region_scales(astronaut_neutral, 10 * astronaut_neutral).max() == pytest.approx(2.0)
    assert region_scales(astronaut_neutral, 0.1 * astronaut_neutral).min() == pytest.approx(0.5)


def test_uncross_lids(astronaut_neutral: np.ndarray) -> None:
    shapes = np.stack([astronaut_neutral, astronaut_neutral]).copy()
    up, lo = lm.LEFT_LID_PAIRS[3]
    shapes[1, up, 1] = shapes[1, lo, 1] + 0.04  # the upper lid passed below the lower one
    before = shapes.copy()
    out = uncross_lids(shapes)
    np.testing.assert_array_equal(shapes, before)  # input untouched
    inplace = before.copy()
    assert uncross_lids(inplace, inplace=True) is inplace  # the transfer's way: no whole-clip copy
    np.testing.assert_array_equal(inplace, out)
    mid = (before[1, up, 1] + before[1, lo, 1]) / 2
    assert out[1, up, 1] == pytest.approx(mid) and out[1, lo, 1] == pytest.approx(mid)
    # everything else is unchanged, including the other frame and the uncrossed pairs
    changed = np.argwhere(out != before)
    assert {tuple(c) for c in changed} <= {(1, up, 1), (1, lo, 1)}
    np.testing.assert_array_equal(out[0], before[0])


# -------------------------------------------------------------------------------------------------- smooth


def test_window_frames() -> None:
    assert window_frames(30, 0.2) == 7
    assert window_frames(25, 0.2) == 5
    assert window_frames(30, 0.01) == 3
    for fps in (12, 24, 25, 29.97, 30, 50, 60):
        for seconds in (0.1, 0.2, 0.33, 0.5):
            n = window_frames(fps, seconds)
            assert n % 2 == 1 and n >= 3 and abs(n - max(3.0, seconds * fps)) <= 1.5


def test_smoothing_keeps_a_blink_and_removes_jitter() -> None:
    fps, n = 30, 120
    rng = np.random.default_rng(0)
    clean = np.ones(n)
    clean[60:64] = 0.0  # a 4-frame full blink (eye opening 1 -> 0)
    noise = rng.normal(0, 0.05, n)
    out = smooth(clean + noise, fps=fps, seconds=0.2)
    depth = 1.0 - out[58:66].min()
    assert depth >= 0.8
    residual = (out - clean)[np.r_[0:50, 74:n]]  # away from the blink
    assert residual.std() <= 0.7 * noise[np.r_[0:50, 74:n]].std()


def test_smoothing_is_zero_phase_and_keeps_shapes() -> None:
    t = np.arange(90) / 30.0
    quad = np.stack([1 + 2 * t - 0.5 * t ** 2, -t], 1)[:, None, :].repeat(5, 1).astype(np.float32)  # (T, 5, 2)
    out = smooth(quad, fps=30, seconds=0.33)
    assert out.shape == quad.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, quad, atol=1e-4)  # no lag, no shrink: a 2nd-order fit keeps a parabola
    same = smooth(quad, fps=30, seconds=0)
    np.testing.assert_array_equal(same, quad)
    assert same is not quad
    short = np.arange(4, dtype=float)
    np.testing.assert_array_equal(smooth(short, fps=30, seconds=0.5), short)


@pytest.mark.parametrize("window,order,length", [(3, 2, 3), (5, 2, 40), (7, 2, 9), (9, 3, 50), (11, 1, 30)])
def test_savgol_matches_scipy(window: int, order: int, length: int) -> None:
    """Our Savitzky-Golay filter (kept in numpy to save scipy.signal's import) is scipy's, edges included."""
    from scipy.signal import savgol_filter

    values = np.random.default_rng(window).normal(size=(length, 4, 3))
    np.testing.assert_allclose(savgol(values, window, order),
                               savgol_filter(values, window, order, axis=0, mode="interp"), atol=1e-9)


def test_fill_gaps_interpolates_and_holds_edges() -> None:
    values = np.array([[np.nan, 0], [1.0, 10], [np.nan, 0], [np.nan, 0], [4.0, 40], [np.nan, 0]])
    valid = np.array([False, True, False, False, True, False])
    out = fill_gaps(values, valid)
    np.testing.assert_allclose(out[:, 0], [1, 1, 2, 3, 4, 4])
    np.testing.assert_allclose(out[:, 1], [10, 10, 20, 30, 40, 40])
    assert np.isnan(values[0, 0])  # input untouched
    # smoothing with a validity mask bridges the gaps instead of spreading NaN
    ramp = np.linspace(0, 1, 60)
    holes = ramp.copy()
    holes[20:25] = np.nan
    ok = np.isfinite(holes)
    np.testing.assert_allclose(smooth(holes, 30, 0.2, valid=ok), ramp, atol=1e-9)


# ------------------------------------------------------------------------------------------------ timeline


def test_25fps_driver_on_a_30fps_target_is_sampled_by_time() -> None:
    d_times = np.arange(50) / 25.0  # 2 s at 25 fps
    ramp = np.stack([3.0 + 2.0 * d_times, -d_times], 1).astype(np.float32)  # (T, 2)
    out_times = np.arange(58) / 30.0  # up to 1.9 s at 30 fps
    at = drive_times(out_times, 2.0, loop=False)
    np.testing.assert_array_equal(at, out_times)
    got = sample(ramp, d_times, at)
    np.testing.assert_allclose(got[:, 0], 3.0 + 2.0 * out_times, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], -out_times, atol=1e-5)
    # past the driver's last frame the value holds; before its first too
    past = sample(ramp, d_times, np.array([-1.0, 5.0]))
    np.testing.assert_allclose(past, ramp[[0, -1]])
    # (T, 478, 3)-shaped values keep their shape
    assert sample(np.zeros((50, 478, 3), np.float32), d_times, at).shape == (58, 478, 3)


def test_drive_times_loop() -> None:
    out = np.array([0.0, 1.0, 2.5, 3.2, 7.0])
    np.testing.assert_allclose(drive_times(out, 3.0, loop=True), [0.0, 1.0, 2.5, 0.2, 1.0])
    np.testing.assert_allclose(drive_times(out, 3.0, loop=False), out)


def test_ease_after_end() -> None:
    at = np.array([0.0, 1.0, 2.0, 2.3, 2.6, 5.0])
    w = ease_after_end(at, drive_end=2.0, release=0.3)
    np.testing.assert_allclose(w[:3], 1.0)
    assert w[3] == pytest.approx(np.exp(-1.0)) and w[4] == pytest.approx(np.exp(-2.0))
    assert np.all(np.diff(w) <= 0) and w[-1] < 1e-4
    np.testing.assert_array_equal(ease_after_end(at, 2.0, 0.0), [1, 1, 1, 0, 0, 0])


def test_hold_and_release() -> None:
    times = np.arange(8) / 10.0
    values = np.array([[0.0], [0.0], [1.0], [2.0], [0.0], [0.0], [0.0], [5.0]])
    found = np.array([False, True, True, True, False, False, False, True])
    out = hold_and_release(values, found, times, release=0.1)
    np.testing.assert_array_equal(out[found], values[found])  # found frames untouched
    np.testing.assert_allclose(out[4:7, 0], 2.0 * np.exp(-np.array([1, 2, 3])), rtol=1e-9)  # held, then decays
    assert 0 < out[6, 0] < out[5, 0] < out[4, 0] < 2.0
    assert out[0, 0] == 0.0  # nothing to hold before the first face
    np.testing.assert_array_equal(hold_and_release(values, found, times, 0.0)[4:7], 0.0)
    assert values[4, 0] == 0.0  # input untouched


def test_gap_weights() -> None:
    times = np.arange(20) / 10.0
    found = np.ones(20, bool)
    found[8:10] = False
    w = gap_weights(found, times, blend=0.3)
    np.testing.assert_array_equal(w[8:10], 0.0)
    np.testing.assert_allclose(w[5:8], [1.0, 2 / 3, 1 / 3])  # ramps over 0.3 s towards the gap
    np.testing.assert_allclose(w[10:13], [1 / 3, 2 / 3, 1.0])
    np.testing.assert_array_equal(w[:5], 1.0)
    np.testing.assert_array_equal(w[13:], 1.0)
    np.testing.assert_array_equal(gap_weights(np.ones(5, bool), times[:5], 0.3), 1.0)
    np.testing.assert_array_equal(gap_weights(np.zeros(5, bool), times[:5], 0.3), 0.0)
    np.testing.assert_array_equal(gap_weights(found, times, 0.0), found.astype(float))


def test_nearest_index_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    times = np.sort(rng.uniform(0, 10, 37))
    at = rng.uniform(-2, 12, 500)
    expected = np.abs(times[None] - at[:, None]).argmin(1)
    np.testing.assert_array_equal(nearest_index(times, at), expected)
    np.testing.assert_array_equal(nearest_index(np.array([0.5]), np.array([0.0, 0.5, 9.0])), [0, 0, 0])
    # a 25 fps driver at 30 fps output times
    d_times = np.arange(25) / 25.0
    np.testing.assert_array_equal(nearest_index(d_times, np.array([0.0, 1 / 30, 2 / 30, 0.5])), [0, 1, 2, 12])


# ------------------------------------------------------------------------------------------------------ plan


def keep_lids(shape: np.ndarray, source: np.ndarray) -> np.ndarray:
    out = shape.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        out[pairs.ravel()] = source[pairs.ravel()]
    return out


def test_keep_own_closures(astronaut_neutral: np.ndarray) -> None:
    neutral = astronaut_neutral.astype(np.float32)
    own_blink = close_eyes(neutral)
    transferred = np.stack([neutral, neutral, close_eyes(neutral)])
    current = np.stack([neutral, own_blink, neutral])
    out = keep_own_closures(transferred, current, neutral)
    np.testing.assert_array_equal(out[0], neutral)
    np.testing.assert_array_equal(out[1], keep_lids(neutral, own_blink))  # the target's own blink stays
    np.testing.assert_array_equal(out[2], transferred[2])  # the driver's blink is added
    # the plan's way, without a whole-clip copy: in place, leaving the frames that borrow an eye as they are
    skipped = transferred.copy()
    same = keep_own_closures(skipped, current, neutral, skip=np.array([False, True, False]), inplace=True)
    assert same is skipped
    np.testing.assert_array_equal(skipped[1], transferred[1])  # skipped: the driver's open eye stays
    np.testing.assert_array_equal(skipped[[0, 2]], out[[0, 2]])


def test_sampling_float32_landmarks_matches_float64() -> None:
    """``sample`` interpolates float32 landmarks in float32 (a long clip's (N, 478, 3) float64 copies were
    hundreds of MiB): the result is float32 and within 1e-4 px of the float64 interpolation, edges held."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 478, 3)).astype(np.float32) * 100
    times, at = np.arange(40) / 25.0, np.linspace(-0.1, 1.7, 97)
    got = sample(values, times, at)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, sample(values.astype(np.float64), times, at), rtol=0, atol=1e-4)


def eye_opened(neutral: np.ndarray, share: float) -> np.ndarray:
    """``neutral`` with both eyes open ``share`` of its own opening (the upper lids moved)."""
    return neutral + (1.0 - share) * (close_eyes(neutral) - neutral)


def openings(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 2) each eye's mean lid gap in ``shapes`` (T, 478, 3), as a share of ``neutral``'s."""
    gap = [(shapes[:, p[:, 1], 1] - shapes[:, p[:, 0], 1]).mean(1)
           / (neutral[p[:, 1], 1] - neutral[p[:, 0], 1]).mean() for p in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS)]
    return np.stack(gap, 1)


def test_a_narrowed_target_eye_opens_as_far_as_it_stretches(astronaut_neutral: np.ndarray) -> None:
    """A laughing target's narrowed eye takes the driver's opening up to EYE_STRETCH times its own; a nearly shut
    one hardly opens (a shut one not at all, above)."""
    neutral = astronaut_neutral.astype(np.float32)
    own = [0.7, 0.5, 0.3, 0.9]
    wanted = [1.0, 1.2, 1.0, 0.6]  # the last closes further: the driver's closing always comes through
    current = np.stack([eye_opened(neutral, s) for s in own])
    transferred = np.stack([eye_opened(neutral, s) for s in wanted])
    out = openings(keep_own_closures(transferred, current, neutral), neutral)
    awake = np.clip((np.array(own) - EYE_SHUT) / EYE_SHUT, 0, 1)
    expected = np.minimum(wanted, np.array(own) * (1 + (EYE_STRETCH - 1) * awake))
    np.testing.assert_allclose(out, np.repeat(expected[:, None], 2, 1), atol=1e-4)
    assert out[0, 0] == pytest.approx(1.0, abs=1e-4)  # a 70% eye opens back to its neutral
    assert out[1, 0] == pytest.approx(0.75, abs=1e-4)  # a 50% eye opens half as far again, not to 120%
    assert out[2, 0] < 0.35  # a 30% eye, nearly shut, opens little


def test_a_shut_target_eye_borrows_an_earlier_open_one(astronaut_landmarks: np.ndarray) -> None:
    """A video target that blinks (frames 6-9) under a driver whose eyes stay open: those frames get the latest
    earlier frame with open eyes as their reference and the driver's open lids; without borrowing (eye_borrow 0)
    or with no open frame before (a clip that starts shut) they keep their own shut lids."""
    face = astronaut_landmarks.astype(np.float64)
    drive = analyse_clip(pixel_track([face] * 16, 30.0), 30.0, None, 0, 0)
    shut = close_eyes(face)
    frames = [face] * 6 + [shut] * 4 + [face] * 6
    target = analyse_clip(pixel_track(frames, 30.0), 30.0, None, 0, 0)
    config = RetargetConfig(smooth_expression=0, smooth_pose=0)
    plan = build_plan(from_clip(drive), target, still_target=False, config=config)
    np.testing.assert_array_equal(plan.eye_reference, [-1] * 6 + [5] * 4 + [-1] * 6)
    gap = openings(plan.destination, face.astype(np.float32))
    assert (gap[6:10] > 0.9).all()  # the driver's open eyes, not the target's blink
    np.testing.assert_allclose(gap[:6], 1.0, atol=0.05)

    off = build_plan(from_clip(drive), target, still_target=False, config=RetargetConfig(
        smooth_expression=0, smooth_pose=0, eye_borrow=0))
    np.testing.assert_array_equal(off.eye_reference, -1)
    assert (openings(off.destination, face.astype(np.float32))[6:10] < 0.1).all()  # its own blink stays

    # a clip that starts in the blink takes the first open frame after it, if that comes soon enough
    starts_shut = analyse_clip(pixel_track([shut] * 4 + [face] * 12, 30.0), 30.0, None, 0, 0)
    early = build_plan(from_clip(drive), starts_shut, still_target=False, config=config)
    np.testing.assert_array_equal(early.eye_reference, [4] * 4 + [-1] * 12)
    assert (openings(early.destination, face.astype(np.float32))[:4] > 0.9).all()
    late = build_plan(from_clip(drive), starts_shut, still_target=False, config=RetargetConfig(
        smooth_expression=0, smooth_pose=0, eye_borrow=0.1))  # the open frame comes 0.133 s in: too late
    np.testing.assert_array_equal(late.eye_reference, -1)


def test_eye_references_only_bridge_short_closures() -> None:
    neutral = np.zeros((478, 3), np.float32)
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        neutral[pairs[:, 1], 1] = 1.0  # lower lids one unit below the upper ones
    shut = neutral.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        shut[pairs[:, 1], 1] = 0.0
    eyes = [neutral, shut, shut, neutral, shut, shut, shut, shut, neutral, shut]  # open at 0, 3 and 8
    current, times, found = np.stack(eyes), np.arange(10) * 0.1, np.ones(10, bool)
    # frames 1-2 lie between open frames 0.3 s apart and borrow from 0; frames 4-7 (0.5 s) keep their own at
    # 0.35 s; frame 9 (the clip ends 0.1 s after the open frame 8) borrows from 8
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.35),
                                  [-1, 0, 0, -1, -1, -1, -1, -1, -1, 8])
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.5),
                                  [-1, 0, 0, -1, 3, 3, 3, 3, -1, 8])
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.05), [-1] * 10)
    found[3] = False  # a frame whose face was not found lends nothing: 1-7 now span 0.8 s
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.5), [-1] * 9 + [8])


def test_eye_references_at_the_clip_start_look_ahead() -> None:
    """A clip that starts with the eyes shut takes the first open frame after, when it comes within the time;
    a clip with no open frame at all lends nothing."""
    neutral = np.zeros((478, 3), np.float32)
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        neutral[pairs[:, 1], 1] = 1.0
    shut = neutral.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        shut[pairs[:, 1], 1] = 0.0
    current, times, found = np.stack([shut, shut, shut, neutral, neutral]), np.arange(5) * 0.1, np.ones(5, bool)
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.31), [3, 3, 3, -1, -1])
    np.testing.assert_array_equal(eye_references(current, neutral, found, times, 0.29), [-1] * 5)
    np.testing.assert_array_equal(eye_references(np.stack([shut] * 3), neutral, found[:3], times[:3], 1.0),
                                  [-1] * 3)
    np.testing.assert_array_equal(eye_references(current[:0], neutral, found[:0], times[:0], 1.0), [])


def pixel_track(frames: list[np.ndarray], fps: float) -> Track:
    landmarks = np.stack(frames).astype(np.float32)
    return Track(np.arange(len(frames)) / fps, landmarks, np.ones(len(frames), bool), 512, 512)


def test_plan_for_a_still_target(astronaut_landmarks: np.ndarray) -> None:
    """Driver: the astronaut (25 fps) opening her mouth; target: the same face, smaller and elsewhere."""
    face = astronaut_landmarks.astype(np.float64)
    height = float(np.ptp(face[lm.FACE_OVAL, 1]))
    opening = [0.0] * 10 + [0.05, 0.1, 0.15, 0.15, 0.1, 0.05] + [0.0] * 9
    drive = analyse_clip(pixel_track([open_mouth(face, a * height) for a in opening], 25.0), 25.0, None, 0, 0)
    small = 0.5 * face + [40.0, 60.0, 0.0]
    target = analyse_clip(pixel_track([small], 1.0), 25.0, None, 0, 0)
    config = RetargetConfig(smooth_expression=0, smooth_pose=0)
    plan = build_plan(from_clip(drive), target, still_target=True, config=config)
    assert len(plan) == len(opening)
    np.testing.assert_allclose(plan.times, drive.track.times)
    np.testing.assert_array_equal(plan.weight, 1.0)
    np.testing.assert_array_equal(plan.drive_index, np.arange(len(opening)))
    # at rest the target stays where it is
    np.testing.assert_allclose(plan.destination[0, :, :2], small[:, :2], atol=0.3)
    np.testing.assert_allclose(plan.source[5], small.astype(np.float32))
    # at the widest opening the target's mouth opens by the driver's opening in the target's pixels (half)
    gap = plan.destination[12, lm.LOWER_LIP_INNER, 1] - plan.destination[12, lm.UPPER_LIP_INNER, 1]
    own = small[lm.LOWER_LIP_INNER, 1] - small[lm.UPPER_LIP_INNER, 1]
    assert gap - own == pytest.approx(0.5 * 0.15 * height, rel=0.05)
    au = list(plan.drive_aus[12])
    assert plan.output_aus[12, 14] > 1.0 and au[14] > 1.0  # AU25 in both
    np.testing.assert_allclose(plan.output_aus[12], plan.drive_aus[12], atol=0.25)


def test_plan_for_a_video_target_follows_its_pose_and_gaps(astronaut_landmarks: np.ndarray) -> None:
    from scipy.spatial.transform import Rotation

    face = astronaut_landmarks.astype(np.float64)
    height = float(np.ptp(face[lm.FACE_OVAL, 1]))
    drive_frames = [open_mouth(face, a * height) for a in [0.0] * 8 + [0.12] * 8 + [0.0] * 8]
    drive = analyse_clip(pixel_track(drive_frames, 30.0), 30.0, None, 0, 0)
    centre = face.mean(0)
    target_frames = [(Rotation.from_euler("z", 2 * k, degrees=True).as_matrix() @ (face - centre).T).T + centre
                     + [3.0 * k, 0, 0] for k in range(24)]
    track = pixel_track(target_frames, 30.0)
    track.found[20] = False
    track.landmarks[20] = np.nan
    target = analyse_clip(track, 30.0, None, 0, 0)
    plan = build_plan(from_clip(drive), target, still_target=False, config=RetargetConfig(gap_blend=0.1))
    np.testing.assert_allclose(plan.times, track.times)
    assert plan.weight[20] == 0.0 and plan.weight[10] == 1.0 and 0 < plan.weight[19] < 1
    # a neutral driver frame leaves each target frame where it is, whatever its pose
    for t in (2, 5):
        np.testing.assert_allclose(plan.destination[t, :, :2], target_frames[t][:, :2], atol=0.3)
    # an open-mouth driver frame opens the target's mouth along its own (rotated) face
    t = 12
    d = plan.destination[t]
    src = target_frames[t]
    opened = np.linalg.norm(d[lm.LOWER_LIP_INNER, :2] - d[lm.UPPER_LIP_INNER, :2])
    closed = np.linalg.norm(src[lm.LOWER_LIP_INNER, :2] - src[lm.UPPER_LIP_INNER, :2])
    assert opened - closed == pytest.approx(0.12 * height, rel=0.1)
    down = d[lm.LOWER_LIP_INNER, :2] - src[lm.LOWER_LIP_INNER, :2]
    angle = np.degrees(np.arctan2(-down[0], down[1]))  # 0 when straight down the image
    assert angle == pytest.approx(2 * t, abs=3)


@pytest.mark.parametrize("follow", [True, False])
def test_still_target_follows_the_driver_head_motion(astronaut_landmarks: np.ndarray, follow: bool) -> None:
    """The driver turns its head (roll 12 degrees, moves right) without changing expression."""
    from scipy.spatial.transform import Rotation

    face = astronaut_landmarks.astype(np.float64)
    centre = face.mean(0)
    roll = [0.0] * 10 + [12.0] * 10
    frames = [(Rotation.from_euler("z", a, degrees=True).as_matrix() @ (face - centre).T).T + centre
              + [a * 2.0, 0.0, 0.0] for a in roll]
    drive = analyse_clip(pixel_track(frames, 25.0), 25.0, 0.0, 0, 0)  # neutral: frame 0, upright
    small = 0.5 * face + [40.0, 60.0, 0.0]
    target = analyse_clip(pixel_track([small], 1.0), 25.0, None, 0, 0)
    # followed in full (``head_reach=0``); how far a still's head may move is the next tests' subject
    plan = build_plan(from_clip(drive), target, still_target=True,
                      config=RetargetConfig(pose=follow, head_reach=0.0))
    np.testing.assert_allclose(plan.destination[5, :, :2], small[:, :2], atol=0.3)  # at rest: where it is
    d = plan.destination[15, :, :2]
    eye_line = d[lm.LEFT_EYE_CORNERS[0]] - d[lm.RIGHT_EYE_CORNERS[0]]
    own = small[lm.LEFT_EYE_CORNERS[0], :2] - small[lm.RIGHT_EYE_CORNERS[0], :2]
    turned = np.degrees(np.arctan2(eye_line[1], eye_line[0]) - np.arctan2(own[1], own[0]))
    shift = d.mean(0) - small[:, :2].mean(0)
    if follow:
        assert turned == pytest.approx(12.0, abs=0.5)
        assert shift[0] == pytest.approx(0.5 * 24.0, abs=1.5)  # the driver's 24 px, in the half-size target
    else:
        assert turned == pytest.approx(0.0, abs=0.2) and np.abs(shift).max() < 0.5
    # and the expression stays neutral either way
    assert plan.output_aus[15].max() < 0.2


def test_soft_limit_passes_small_moves_and_holds_large_ones() -> None:
    moves = np.array([[0.01, 0.0, 0.0], [0.0, 0.15, 0.0], [0.3, 0.0, 0.0], [0.0, 3.0, 4.0]])
    held = soft_limit(moves, 0.3)
    length, before = np.linalg.norm(held, axis=1), np.linalg.norm(moves, axis=1)
    assert length[0] == pytest.approx(0.01, rel=1e-3)  # a small move passes as it is
    assert length[1] == pytest.approx(0.15 * 0.924, rel=1e-2)  # half the limit loses about 8%
    assert (length < 0.3).all() and length[3] == pytest.approx(0.3, rel=1e-6)  # never past it
    assert np.all(np.diff(length) > 0)  # the longer move stays the longer
    np.testing.assert_allclose(held / length[:, None], moves / before[:, None], atol=1e-9)  # same directions
    np.testing.assert_array_equal(soft_limit(moves, 0.0), moves)  # 0: no limit


def test_soft_limit_rotation_keeps_the_axis_and_holds_the_angle() -> None:
    from scipy.spatial.transform import Rotation

    turns = Rotation.from_rotvec(np.radians([[0.0, 2.0, 0.0], [0.0, 60.0, 0.0], [30.0, 30.0, 0.0],
                                             [0.0, 0.0, 40.0]]))
    held = Rotation.from_matrix(soft_limit_rotation(turns.as_matrix(), np.radians(20)))
    angles = np.degrees(held.magnitude())
    assert angles[0] == pytest.approx(2.0, rel=1e-2) and angles[1] < 20.0 and angles[2] < 20.0
    np.testing.assert_allclose(held.as_rotvec()[2] / np.linalg.norm(held.as_rotvec()[2]), [0.7071, 0.7071, 0],
                               atol=1e-3)
    assert angles[3] == pytest.approx(40.0)  # a roll in the image plane is the warp's easy case: not held


def test_a_still_head_is_held_near_its_place(astronaut_landmarks: np.ndarray) -> None:
    """A driver whose head wanders 1.5 face sizes away and turns 45 degrees: the still's head follows, within
    the configured reach and turn, and not at all with the limits off it goes the whole way."""
    from types import SimpleNamespace

    from scipy.spatial.transform import Rotation

    from retarget.plan import still_head_motion

    times = np.linspace(0, 1, 11)
    head = SimpleNamespace(rotation=Rotation.from_rotvec(np.outer(times, [0, np.radians(45), 0])).as_matrix(),
                           shift=np.outer(times, [1.5, 0, 0]), ratio=np.ones(11))
    drive = SimpleNamespace(head=head, times=times)
    pose = SimpleNamespace(rotation=np.eye(3)[None], translation=np.zeros((1, 3)), scale=np.ones(1))
    neutral = np.zeros((478, 3))
    neutral[lm.FACE_OVAL, 0] = np.linspace(0, 1, len(lm.FACE_OVAL))  # a face one normalised unit across
    target = SimpleNamespace(pose=pose, expression=SimpleNamespace(neutral=neutral))
    rot, trans, _ = still_head_motion(drive, target, times, True, 0.3, 20.0)
    assert 0.25 < trans[-1, 0] < 0.3 and trans[1, 0] == pytest.approx(0.3 * np.tanh(0.5), rel=1e-3)
    assert 15 < np.degrees(Rotation.from_matrix(rot[-1]).magnitude()) < 20
    rot, trans, _ = still_head_motion(drive, target, times, True, 0.0, 0.0)
    assert trans[-1, 0] == pytest.approx(1.5) and np.degrees(Rotation.from_matrix(rot[-1]).magnitude()) == \
        pytest.approx(45)


def test_savgol_in_column_chunks_is_the_whole_filter(monkeypatch) -> None:
    """``savgol`` filters a clip's landmarks ``COLUMNS`` coordinates at a time (bounded float64 copies): the
    same numbers as all at once, and as scipy's, on a (T, 478, 3) clip."""
    from scipy.signal import savgol_filter

    import retarget.smooth as smooth_module

    values = np.random.default_rng(2).normal(size=(50, 478, 3)).astype(np.float32)
    chunked = savgol(values, 7, 2)
    monkeypatch.setattr(smooth_module, "COLUMNS", 478 * 3)
    np.testing.assert_array_equal(chunked, savgol(values, 7, 2))
    np.testing.assert_allclose(chunked, savgol_filter(values.astype(np.float64), 7, 2, axis=0, mode="interp"),
                               atol=1e-9)
    # stored as float32 (a clip's landmarks): the float64 result rounded, without a whole float64 copy
    np.testing.assert_array_equal(savgol(values, 7, 2, dtype=np.float32), chunked.astype(np.float32))


def test_smoothing_in_place_gives_the_same_numbers() -> None:
    """A long clip's landmarks are smoothed in their own array (``out=values``), gaps and shots included: the
    same numbers as into a new array, and nothing is lost when the output is not one block of memory."""
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=(90, 478, 3)), axis=0).astype(np.float32)
    valid = np.ones(90, bool)
    valid[[0, 1, 20, 21, 22, 60, 89]] = False
    values[~valid] = np.nan
    cuts = np.array([40, 41, 70])  # one shot of a single frame, one shorter than the window
    expected = smooth(values, 30, 0.2, valid=valid, cuts=cuts)
    inplace = values.copy()
    assert smooth(inplace, 30, 0.2, valid=valid, cuts=cuts, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)
    assert np.isfinite(inplace).all() and not np.isfinite(values).all()  # gaps bridged; the input kept apart
    filled = values[:, :5].copy()
    np.testing.assert_array_equal(fill_gaps(filled, valid, filled), fill_gaps(values[:, :5], valid))
    with pytest.raises(ValueError, match="contiguous"):
        smooth(values, 30, 0.2, valid=valid, out=np.empty((478, 90, 3), np.float32).transpose(1, 0, 2))


def test_the_main_jobs_analysis_smooths_its_track_in_place(astronaut_landmarks: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    points = (np.asarray(astronaut_landmarks, np.float32)[None] + rng.normal(0, 0.5, (60, 478, 3))).astype(np.float32)
    found = np.ones(60, bool)
    found[30:33] = False
    points[~found] = np.nan
    kept = analyse_clip(Track(np.arange(60) / 30, points.copy(), found, 512, 512), 30, None, 0.2, 0.33)
    track = Track(np.arange(60) / 30, points.copy(), found, 512, 512)
    raw = track.landmarks
    used = analyse_clip(track, 30, None, 0.2, 0.33, consume=True)
    assert used.track.landmarks is raw  # the one whole-clip copy, smoothed where it was
    np.testing.assert_array_equal(used.track.landmarks, kept.track.landmarks)
    np.testing.assert_array_equal(used.expression.normalised, kept.expression.normalised)
    np.testing.assert_array_equal(used.pose.rotation, kept.pose.rotation)
