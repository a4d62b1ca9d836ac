"""The render plan: for every output frame, where the target's landmarks are and where they should go.

Built from the two clip analyses before any output frame is rendered, so the smoothing over the whole clip is
zero-phase while the frames themselves still stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as lm
from .analysis import ClipAnalysis
from .config import RetargetConfig
from .expression import au_intensities
from .timeline import drive_times, ease_after_end, gap_weights, hold_and_release, nearest_index, sample
from .transfer import region_scales, transfer


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
    drive_landmarks: np.ndarray  # (T_drive, 478, 3) the driver's landmarks per driver frame, pixels

    def __len__(self) -> int:
        return len(self.times)


def build_plan(drive: ClipAnalysis, target: ClipAnalysis, still_target: bool, config: RetargetConfig) -> RenderPlan:
    d_times = drive.track.times
    drive_end = float(d_times[-1]) + 1.0 / max(drive.fps, 1e-6)
    out_times = d_times.copy() if still_target else target.track.times.copy()
    at = drive_times(out_times, drive_end, config.loop)
    # 1. the driver's expression at each output time, easing to neutral where its face is lost or it has ended
    held = hold_and_release(drive.expression.displacement, drive.expression.found, d_times, config.drive_release)
    disp = sample(held, d_times, at)
    if not config.loop:
        disp *= ease_after_end(at, drive_end, config.drive_release)[:, None, None].astype(np.float32)
    # 2. transfer to the target's proportions, on the target's neutral
    t_expr = target.expression
    d_neutral = drive.expression.neutral
    shapes = transfer(disp, d_neutral, t_expr.neutral, region_scales(d_neutral, t_expr.neutral), config.intensity)
    t_index = np.zeros(len(out_times), int) if still_target else np.arange(len(out_times))
    current = np.where(t_expr.found[t_index, None, None], t_expr.normalised[t_index], t_expr.neutral).astype(np.float32)
    if not still_target:
        shapes = keep_own_closures(shapes, current)
    # 3. into the frame: the target's own head pose, or for a still the driver's head motion on top of it
    if still_target:
        rot, trans, scale = still_head_motion(drive, target, at, config.pose)
    else:
        p = target.pose
        rot, trans, scale = p.rotation, p.translation, p.scale
    destination = (scale[:, None, None] * shapes @ np.transpose(rot, (0, 2, 1)) + trans[:, None]).astype(np.float32)
    # a still's one set of landmarks serves every output frame as a read-only view, not T copies
    landmarks = target.track.landmarks
    source = np.broadcast_to(landmarks[0], (len(out_times),) + landmarks.shape[1:]) if still_target else landmarks
    weight = np.ones(len(out_times)) if still_target else gap_weights(t_expr.found, out_times, config.gap_blend)
    output_aus = au_intensities(shapes, t_expr.neutral)
    return RenderPlan(
        times=out_times, source=source, destination=destination, weight=weight,
        drive_index=nearest_index(d_times, at), drive_aus=au_intensities(d_neutral[None] + disp, d_neutral),
        output_aus=output_aus, relative_aus=output_aus - au_intensities(current, t_expr.neutral),
        drive_landmarks=drive.track.landmarks,
    )


def keep_own_closures(shapes: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Where the target's own eye is more closed than the transferred one, keep its own lids.

    A warp cannot open an eye that is closed in the target frame (there is no eyeball to show), so the target's
    own blinks stay and the driver's are added.
    """
    out = shapes.copy()
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        own = current[:, pairs[:, 1], 1] - current[:, pairs[:, 0], 1]
        new = out[:, pairs[:, 1], 1] - out[:, pairs[:, 0], 1]
        closer = (own < new).mean(1) > 0.5  # (T,) the target's own eye is the more closed one
        for col in (0, 1):
            idx = pairs[:, col]
            out[:, idx] = np.where(closer[:, None, None], current[:, idx], out[:, idx])
    return out


def still_head_motion(drive: ClipAnalysis, target: ClipAnalysis, at: np.ndarray,
                      follow: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output frame (rotation (T,3,3), translation (T,3), scale (T,)) for a still target.

    With ``follow``, the driver's head motion relative to its neutral frame (rotation about the face centre,
    translation in face sizes, scale ratio) is applied on top of the target's own pose.
    """
    n = len(at)
    r_t, t_t, s_t = target.pose.rotation[0], target.pose.translation[0], target.pose.scale[0]
    if not follow:
        return np.tile(r_t, (n, 1, 1)), np.tile(t_t, (n, 1)), np.full(n, s_t)
    dp, k = drive.pose, drive.expression.neutral_index
    times = drive.track.times
    r_d = sample(dp.rotation, times, at)
    u, _, vt = np.linalg.svd(r_d)
    r_d = u @ vt
    rel = r_d @ dp.rotation[k].T
    shift = (sample(dp.translation, times, at) - dp.translation[k]) / dp.scale[k]
    ratio = sample(dp.scale, times, at) / dp.scale[k]
    return rel @ r_t, t_t + s_t * shift, s_t * ratio
