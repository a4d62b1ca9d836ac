"""The render plan: for every output frame, where the target's landmarks are and where they should go.

Built from the two clip analyses before any output frame is rendered, so the smoothing over the whole clip is
zero-phase while the frames themselves still stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from . import landmarks as lm
from .analysis import ClipAnalysis
from .aushape import AU_REGION, AUShapeModel
from .config import RetargetConfig
from .expression import au_intensities, frame_blocks
from .motion import DriveMotion
from .timeline import (
    drive_times,
    ease_after_end,
    gap_weights,
    hold_and_release,
    nearest_index,
    sample,
)
from .transfer import (
    REGION_AUS,
    eye_closure,
    landmark_gains,
    region_scales,
    region_weights,
    transfer,
    uncross_lids,
)
from .types import AU_NAMES, N_LANDMARKS, Expression, Track


@dataclass
class RenderPlan:
    times: np.ndarray  # (T,) output frame times, seconds
    source: np.ndarray  # (T, 478, 3) float32 target landmarks per output frame, pixels (NaN where lost)
    destination: np.ndarray  # (T, 478, 3) float32 where they should go, pixels
    weight: np.ndarray  # (T,) float effect strength (0 where the target's face is lost)
    drive_index: np.ndarray  # (T,) int driver frame nearest to the driver time shown
    drive_aus: np.ndarray  # (T, 17) AUs of the driver expression shown (eased to neutral after it ends or is lost)
    output_aus: np.ndarray  # (T, 17) AUs of the retargeted face relative to the target's neutral
    relative_aus: np.ndarray  # (T, 17) output AUs minus the target frame's own AUs
    # (T_drive, 478, 3) the driver video's landmarks per frame, pixels (None: no video)
    drive_landmarks: np.ndarray | None
    # (T,) int: for a frame whose narrowed target eye the edit opens, a nearby frame with both eyes open to take
    # the open eye from (``eye_references``: an earlier one, or a later one at the clip's start); -1: none (the
    # eye opens only as far as the warp stretches it)
    eye_reference: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.times)


# Makes an array of a shape and dtype to write into: ``np.empty``, or one on disk (``spill.empty``)
Allocate = Callable[[tuple[int, ...], type], np.ndarray]

# Output frames planned at once: a long clip's (T, 478, 3) temporaries (the target's own shapes, the driver's
# displacement, the transferred shapes) exist a block at a time, beside the one whole-clip destination (on
# disk in the main job). The plan's peak above its start on a 20160-frame target: 75 MiB with 512, 142 with 2048
PLAN_BLOCK = 512


def build_plan(drive: DriveMotion, target: ClipAnalysis, still_target: bool, config: RetargetConfig,
               out_times: np.ndarray | None = None, eyes_ahead: bool = True,
               allocate: Allocate = np.empty) -> RenderPlan:
    """Plan every output frame. ``out_times``: the output frame times (default: the target video's frame
    times, or the driver's for a still target). ``eyes_ahead``: frames at the clip's start may take an open eye
    from a later frame (``eye_references``). ``allocate(shape, dtype)`` makes the (T, 478, 3) array the
    destinations are written into, a block of frames at a time (the main job's is on disk: ``spill.empty``).

    Every step is frame by frame, but for the choice of the frames that lend an open eye, which reads only the
    target's eye openings over the whole clip; so the frames are planned ``PLAN_BLOCK`` at a time, and the plan
    is the same whatever the block.
    """
    d_times = drive.times
    if out_times is None:
        out_times = d_times.copy() if still_target else target.track.times.copy()
    t_expr, n = target.expression, len(out_times)
    t_index = np.zeros(n, int) if still_target else np.arange(n)
    at = drive_times(out_times, drive.end, config.loop)
    held = hold_and_release(drive.displacement, drive.found, drive.times, config.drive_release)
    blocks = frame_blocks(n, PLAN_BLOCK)
    own = lender = None
    if not still_target:
        # an eye narrower than open that the driver opens can take a nearby frame's open eye (the generator
        # decides whether it needs to); the others open only as far as the warp can stretch them
        own = np.concatenate([eye_openings(_own_shapes(t_expr, t_index[b]), t_expr.neutral) for b in blocks]
                             ) if n else np.zeros((0, 2))
        lender = lending_frames(own, t_expr.found[t_index], out_times, config.eye_borrow, eyes_ahead)
    if still_target:
        rot, trans, scale = still_head_motion(drive, target, at, config.pose, config.head_reach, config.head_turn)
    landmarks = target.track.landmarks
    destination = allocate((n,) + landmarks.shape[1:], np.float32)
    drive_aus, output_aus, relative_aus = (np.zeros((n, len(AU_NAMES)), np.float32) for _ in range(3))
    eye_reference = np.full(n, -1)
    for b in blocks:
        current = _own_shapes(t_expr, t_index[b])
        # 1. the driver's expression at each output time, easing to neutral where its face is lost or it has ended
        disp, drive_aus[b] = _drive_at(drive, held, at[b], config)
        # 2. transfer to the target's proportions, on the target's neutral, with the region and AU gains
        shapes = transfer_with_gains(disp, drive.neutral, t_expr.neutral, drive_aus[b], current, config)
        del disp
        if not still_target:
            opens = ((own[b] < EYE_OPEN) & (eye_openings(shapes, t_expr.neutral) > own[b])).any(1)
            eye_reference[b] = np.where(opens & (lender[b] >= 0), lender[b], -1)
            keep_own_closures(shapes, current, t_expr.neutral, skip=eye_reference[b] >= 0, inplace=True)
        # 3. into the frame: the change on the target's own landmarks, or for a still the driver's head motion too
        if still_target:
            destination[b] = scale[b, None, None] * shapes @ np.transpose(rot[b], (0, 2, 1)) + trans[b, None]
        else:
            p = target.pose
            change = np.subtract(shapes, current, dtype=np.float32)
            part = np.matmul(change, np.transpose(p.rotation[b], (0, 2, 1)).astype(np.float32))
            part *= p.scale[b].astype(np.float32)[:, None, None]
            part += landmarks[b]
            destination[b] = part
        output_aus[b] = au_intensities(shapes, t_expr.neutral)
        relative_aus[b] = output_aus[b] - au_intensities(current, t_expr.neutral)
    if still_target:
        # a still's one set of landmarks serves every output frame as a read-only view, not T copies
        source = np.broadcast_to(landmarks[0], (n,) + landmarks.shape[1:])
        weight = np.ones(n)
    else:
        source = landmarks
        weight = gap_weights(t_expr.found, out_times, config.gap_blend)
    return RenderPlan(
        times=out_times, source=source, destination=destination, weight=weight,
        drive_index=nearest_index(d_times, at), drive_aus=drive_aus, output_aus=output_aus,
        relative_aus=relative_aus, drive_landmarks=drive.landmarks, eye_reference=eye_reference,
    )


def _own_shapes(expression: Expression, frames: np.ndarray) -> np.ndarray:
    """(len(frames), 478, 3) float32: the target's own pose-normalised shapes in ``frames`` (indices), its
    neutral where its face was lost."""
    return np.where(expression.found[frames, None, None], expression.normalised[frames],
                    expression.neutral).astype(np.float32, copy=False)


def drive_expression(drive: DriveMotion, out_times: np.ndarray,
                     config: RetargetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The driver's expression at each output time (T,), easing to neutral where its face is lost or it has
    ended: the driver times shown (T,), the displacement from its neutral (T, 478, 3) and its AUs (T, 17)."""
    at = drive_times(out_times, drive.end, config.loop)
    held = hold_and_release(drive.displacement, drive.found, drive.times, config.drive_release)
    return (at, *_drive_at(drive, held, at, config))


def _drive_at(drive: DriveMotion, held: np.ndarray, at: np.ndarray,
              config: RetargetConfig) -> tuple[np.ndarray, np.ndarray]:
    """The driver's displacement from its neutral (T, 478, 3) at driver times ``at`` (T,), read from ``held``
    (``hold_and_release`` of its displacement) and eased to neutral after it ends, and its AUs (T, 17)."""
    disp = sample(held, drive.times, at)
    if not config.loop:
        disp *= ease_after_end(at, drive.end, config.drive_release)[:, None, None].astype(np.float32)
    return disp, au_intensities(drive.neutral[None] + disp, drive.neutral)


def build_shot_plan(drive: DriveMotion, shots: list[tuple[int, ClipAnalysis | None]], track: Track,
                    config: RetargetConfig, allocate: Allocate = np.empty) -> RenderPlan:
    """The plan of a target video cut into shots (``analysis.shot_analyses``; ``track``: the whole video's
    smoothed track, whose views the shots hold): each shot planned as a clip of its own, on its own neutral,
    with open eyes and gap blends from within it. A later shot's first frames take no open eye from after them
    (only the video's start reads frames ahead). A shot without a face passes through.

    The whole track's landmarks are the plan's ``source`` as they are (a shot's are a view of them, and NaN
    where a shot has no face), and each shot's destination goes straight into one (T, 478, 3) array
    (``allocate``, as ``build_plan`` takes it): a long clip's plan holds no second copy of either.
    """
    times = track.times
    stops = [start for start, _ in shots[1:]] + [len(times)]
    destination = allocate((len(times), N_LANDMARKS, 3), np.float32)
    parts = []
    for (start, clip), stop in zip(shots, stops):
        if clip is None:
            part = _passing_plan(drive, times[start:stop], config)
            destination[start:stop] = np.nan
        else:
            part = build_plan(drive, clip, False, config, eyes_ahead=start == 0,
                              allocate=lambda shape, dtype, a=start: destination[a:a + shape[0]])
            part.eye_reference = np.where(part.eye_reference >= 0, part.eye_reference + start, -1)
        part.source = part.destination = None  # (T_shot, 478, 3) each: kept once, above
        parts.append(part)
    per_frame = {f.name: np.concatenate([getattr(p, f.name) for p in parts])
                 for f in fields(RenderPlan) if f.name not in ("drive_landmarks", "source", "destination")}
    return RenderPlan(**per_frame, source=track.landmarks, destination=destination,
                      drive_landmarks=drive.landmarks)


def _passing_plan(drive: DriveMotion, times: np.ndarray, config: RetargetConfig) -> RenderPlan:
    """A shot without the target's face: its frames pass through unchanged (weight 0)."""
    at, _, drive_aus = drive_expression(drive, times, config)
    lost = np.broadcast_to(np.float32(np.nan), (len(times), N_LANDMARKS, 3))  # a read-only view, not T copies
    none = np.zeros_like(drive_aus)
    return RenderPlan(times=times, source=lost, destination=lost, weight=np.zeros(len(times)),
                      drive_index=nearest_index(drive.times, at), drive_aus=drive_aus, output_aus=none,
                      relative_aus=none, drive_landmarks=drive.landmarks, eye_reference=np.full(len(times), -1))


def transfer_with_gains(disp: np.ndarray, drive_neutral: np.ndarray, target_neutral: np.ndarray,
                        drive_aus: np.ndarray, current: np.ndarray, config: RetargetConfig) -> np.ndarray:
    """(T, 478, 3) target shapes: the driver's displacement ``disp`` (T, 478, 3), scaled per region and per AU,
    transferred onto the target's neutral; regions with gain 0 keep the target's own expression ``current``.

    Region gains scale the driver's displacement landmark by landmark before the transfer (a soft partition,
    ``transfer.region_weights``). An AU gain adds ``(gain - 1)`` times that AU's share, as the AU-to-shape model
    on the target's neutral draws it, so ``--gain AU12=0`` takes the smile out and leaves the jaw drop.
    """
    regions, au_gain = resolve_gains(config)
    weights = region_weights(target_neutral)
    per_landmark = landmark_gains(region_weights(drive_neutral), regions) * config.intensity
    scaled = disp * per_landmark[None, :, None].astype(np.float32)
    shapes = transfer(scaled, drive_neutral, target_neutral, region_scales(drive_neutral, target_neutral))
    del scaled
    extra = (au_gain - 1.0) * np.array([regions[AU_REGION[a]] for a in AU_NAMES]) * config.intensity
    if np.any(extra != 0):
        model = AUShapeModel.build(target_neutral)
        w = drive_aus * extra[None] / np.diag(model.response)[None]
        shapes = uncross_lids(shapes + model.displacement(w).astype(np.float32))
    kept = landmark_gains(weights, {r: float(g == 0) for r, g in regions.items()})
    if np.any(kept > 0):
        shapes = kept[None, :, None] * current + (1 - kept[None, :, None]) * shapes
    return shapes.astype(np.float32, copy=False)


def resolve_gains(config: RetargetConfig) -> tuple[dict[str, float], np.ndarray]:
    """Per-region gains (brows, eyes, mouth) and per-AU gains (17,) from ``gains``, ``only`` and ``exclude``."""
    regions = {r: float(config.gains.get(r, 1.0)) for r in REGION_AUS}
    for r in regions:
        if (config.only and r not in config.only) or r in config.exclude:
            regions[r] = 0.0
    au_gain = np.array([float(config.gains.get(a, 1.0)) for a in AU_NAMES])
    return regions, au_gain


# How open both of a target's eyes must be, as a share of their neutral opening, for its frame to lend them
EYE_OPEN = 0.85


def eye_openings(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 2) the right and left eye's mean lid gap in ``shapes`` (T, 478, 3), as a share of ``neutral``'s."""
    return 1.0 - eye_closure(shapes, neutral)


# How far the warp may open a target eye beyond its own opening in the frame, as a factor: it stretches the
# eyeball it can see, so a narrowed (laughing) eye can open back to about its neutral. A shut eye shows no eyeball
# to stretch: below ``EYE_SHUT`` of its neutral opening it keeps its own lids, and the factor ramps up to
# ``EYE_STRETCH`` by twice that.
EYE_STRETCH = 1.5
EYE_SHUT = 0.25


def keep_own_closures(shapes: np.ndarray, current: np.ndarray, neutral: np.ndarray,
                      skip: np.ndarray | None = None, inplace: bool = False) -> np.ndarray:
    """Open the target's eyes no further than the warp can: lids (T, 478, 3) of ``shapes`` that open an eye more
    than ``EYE_STRETCH`` times its own opening in ``current`` (T, 478, 3) are moved back towards its own lids.

    A warp cannot open an eye that is closed in the target frame (there is no eyeball to show), so the target's
    own blinks stay and the driver's are added. A narrowed eye opens as far as its visible eyeball stretches
    well. ``neutral`` (478, 3) is the target's neutral, whose opening tells a narrowed eye from a shut one.
    Frames where ``skip`` (T,) bool is set are left as they are; with ``inplace`` ``shapes`` itself is changed.
    """
    out = shapes if inplace else shapes.copy()
    owns, news = eye_openings(current, neutral), eye_openings(shapes, neutral)  # (T, 2) shares of the neutral's
    for k, pairs in enumerate((lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS)):
        own, new = owns[:, k], news[:, k]
        awake = np.clip((own - EYE_SHUT) / EYE_SHUT, 0.0, 1.0)  # 0: shut, 1: open enough to stretch fully
        allowed = np.maximum(own, 0.0) * (1.0 + (EYE_STRETCH - 1.0) * awake)
        limited = np.flatnonzero((new > allowed) & (True if skip is None else ~skip))
        share = np.clip((allowed[limited] - own[limited]) / (new[limited] - own[limited]), 0.0, 1.0)
        idx = pairs.ravel()
        kept = current[limited][:, idx]
        out[limited[:, None], idx[None, :]] = kept + share[:, None, None] * (out[limited][:, idx] - kept)
    return out


def eye_references(current: np.ndarray, neutral: np.ndarray, found: np.ndarray, times: np.ndarray,
                   seconds: float, ahead: bool = True) -> np.ndarray:
    """(T,) for each frame between two frames with both of the target's eyes open (``EYE_OPEN``, face found) at
    most ``seconds`` apart, the earlier of the two (a streaming renderer has seen it); -1 elsewhere (and see
    the clip's ends, below).

    So an eye that blinks or narrows briefly can take its open eye from just before; one narrowed for longer
    (a laugh) never does, and does not jump between a borrowed eye and its own when the borrowing ends. The
    clip's ends count as the other side: frames before the first open one take it, when it comes at most
    ``seconds`` after the clip starts (a clip that starts in a blink; not with ``ahead=False``), and frames
    after the last open one take that, when the clip ends at most ``seconds`` later.
    ``current`` (T, 478, 3) are the target's own pose-normalised shapes, ``neutral`` (478, 3).
    """
    return lending_frames(eye_openings(current, neutral), found, times, seconds, ahead)


def lending_frames(openings: np.ndarray, found: np.ndarray, times: np.ndarray, seconds: float,
                   ahead: bool = True) -> np.ndarray:
    """``eye_references`` from the target's eye openings (T, 2) (``eye_openings``) rather than its shapes."""
    lender = found & (openings.min(1) >= EYE_OPEN)
    n = len(times)
    if n == 0 or not lender.any():
        return np.full(n, -1)
    index = np.arange(n)
    before = np.maximum.accumulate(np.where(lender, index, -1))  # latest lender at or before each frame
    after = np.minimum.accumulate(np.where(lender, index, n)[::-1])[::-1]  # earliest at or after
    prev = np.concatenate([[-1], before[:-1]])
    start = np.where(prev >= 0, times[np.maximum(prev, 0)], times[0])  # the run's open frame or the clip's start
    end = np.where(after < n, times[np.minimum(after, n - 1)], times[-1])  # likewise its end
    lent = np.where(prev >= 0, prev, after)  # the earlier open frame, or at the clip's start the later one
    return np.where(~lender & (end - start <= seconds) & ((prev >= 0) | ahead), lent, -1)


def still_head_motion(drive: DriveMotion, target: ClipAnalysis, at: np.ndarray, follow: bool,
                      reach: float = 0.0, turn: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output frame (rotation (T,3,3), translation (T,3), scale (T,)) for a still target.

    With ``follow``, the driver's head motion relative to its neutral frame (rotation about the face centre,
    translation in normalised units, scale ratio) is applied on top of the target's own pose, its translation held
    softly within ``reach`` face sizes and its turn out of the image plane within ``turn`` degrees (0: not
    held).
    """
    n = len(at)
    r_t, t_t, s_t = target.pose.rotation[0], target.pose.translation[0], target.pose.scale[0]
    if not follow or drive.head is None:
        return np.tile(r_t, (n, 1, 1)), np.tile(t_t, (n, 1)), np.full(n, s_t)
    head, times = drive.head, drive.times
    u, _, vt = np.linalg.svd(sample(head.rotation, times, at))
    rel = soft_limit_rotation(u @ vt, np.radians(turn))
    oval = target.expression.neutral[lm.FACE_OVAL, :2]  # normalised units, as the shift is
    shift = soft_limit(sample(head.shift, times, at), reach * float(np.ptp(oval, axis=0).max()))
    return rel @ r_t, t_t + s_t * shift, s_t * sample(head.ratio, times, at)


def soft_limit(vectors: np.ndarray, limit: float) -> np.ndarray:
    """``vectors`` (T, D) with each length L mapped to ``limit * tanh(L / limit)``: small moves pass almost as
    they are (a move of half the limit loses 8%), large ones approach the limit smoothly. 0: unchanged.

    A still's head that follows a driver walking about the frame moved 0.7 face sizes and more
    (`drv_lp_d12` -> `img_lp_s42`), and the warp stretched the background it uncovered into waves."""
    if limit <= 0:
        return vectors
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors * (limit * np.tanh(length / limit) / np.maximum(length, 1e-12))


def soft_limit_rotation(rotations: np.ndarray, limit: float) -> np.ndarray:
    """(T, 3, 3) rotations whose turn out of the image plane (the x and y parts of the rotation vector: nodding
    and shaking) is held softly within ``limit`` radians. The roll in the image plane is left as it is: the warp
    moves the head through it as a whole, while a turn has to be drawn by bending the face's 2D mesh."""
    if limit <= 0:
        return rotations
    from scipy.spatial.transform import Rotation

    vectors = Rotation.from_matrix(rotations).as_rotvec()
    vectors[:, :2] = soft_limit(vectors[:, :2], limit)
    return Rotation.from_rotvec(vectors).as_matrix()
