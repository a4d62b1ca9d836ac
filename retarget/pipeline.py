"""The main job, as numbered steps: check, track, analyse, plan, render, report.

Frames stream twice through the target (once to track, once to render) and never sit in memory together; only
landmarks (478 x 3 floats a frame) are kept for the whole clip, which is what zero-phase smoothing needs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import heap
from .analysis import ClipAnalysis, analyse_clip, first_shot, shot_analyses
from .aushape import AUShapeModel
from .compose import paste
from .config import RetargetConfig, generator_settings
from .errors import RetargetError
from .expression import restless
from .face import FaceChoice, NoFaceThere, face_box, track_frames
from .generators import FaceEdit, GeneratedFace, Generator, make_generator
from .motion import DriveMotion, envelope, from_clip, from_curves, from_edit
from .plan import RenderPlan, build_plan, build_shot_plan
from .progress import Progress
from .quiet import native_stderr_silenced
from .spill import FrameRows, FrameStore
from .threads import BackgroundCalls, prefetch
from .types import AU_NAMES, Frame, MediaInfo, RetargetResult, StageTimes, Track
from .video import SourceEdit, VideoWriter, probe, read_frames, read_still

OUTPUT_SUFFIXES = (".mp4", ".mov", ".m4v")


@dataclass
class Inputs:
    drive: MediaInfo | None  # None when AU curves or edits drive the target
    target: MediaInfo
    output: Path
    preview: Path | None
    curves: Path | None = None  # an AU curve CSV that drives the target


@dataclass
class OutputTiming:
    fps: Fraction
    time_base: Fraction


def is_au_csv(path: Path) -> bool:
    return Path(path).suffix.lower() == ".csv"


@heap.trimming
def run(drive: Path, target: Path, output: Path, config: RetargetConfig, preview: Path | None = None,
        show_progress: bool = True) -> RetargetResult:
    """The main job: a driver video (or an AU curve CSV) drives the target video or still."""
    timings = StageTimes()
    progress = Progress(enabled=show_progress)
    # 1. check inputs before any work
    inputs = check_inputs(drive, target, output, preview)
    check_face_choices(inputs, config)
    # a video target's whole-clip landmarks, and the plan's, wait on disk beside the output (``FrameStore``)
    with FrameStore(inputs.output.parent) as store:
        return _track_analyse_plan_render(inputs, config, progress, timings, store)


def _track_analyse_plan_render(inputs: Inputs, config: RetargetConfig, progress: Progress, timings: StageTimes,
                               store: FrameStore) -> RetargetResult:
    target_store = None if inputs.target.is_still else store  # a still's one frame stays in memory
    # 2. track the faces (two threads: mediapipe runs outside the GIL), its native log lines kept quiet
    with _timed(timings, "track"), native_stderr_silenced() as stderr:
        drive_track, target_track = track_inputs(inputs, config, progress, stderr, target_store)
    # 3. analyse: smoothed landmarks, head pose, expression relative to each face's neutral
    with _timed(timings, "analyse"):
        target_clip = _analyse(target_track, inputs.target, config.target_neutral, config, "target", target_store)
        drive_neutrals = None
        if drive_track is not None:
            drive_clip = _analyse(drive_track, inputs.drive, config.drive_neutral, config, "driver")
            drive_shots = shot_analyses(drive_clip, config.drive_neutral) if len(drive_clip.track.cuts) else None
            motion = from_clip(drive_clip, drive_shots)
            drive_neutrals = shot_neutrals(drive_clip, drive_shots, config.drive_neutral)
            del drive_clip, drive_shots
        else:
            motion = _curve_motion(inputs.curves, target_clip, inputs.target.is_still, config)
        del drive_track, target_track  # the smoothed copies in the analyses are all that is needed now
        # an edited target video: each shot on its own neutral (perhaps another person's face)
        shots = shot_analyses(target_clip, config.target_neutral) if len(target_clip.track.cuts) else None
        notes = neutral_notes(drive_neutrals, None if inputs.target.is_still
                              else shot_neutrals(target_clip, shots, config.target_neutral))
    return _plan_render_report(inputs, motion, target_clip, config, progress, timings, store, shots=shots,
                               notes=notes)


def _plan_render_report(inputs: Inputs, motion: DriveMotion, target_clip: ClipAnalysis, config: RetargetConfig,
                        progress: Progress, timings: StageTimes, store: FrameStore, image_output: bool = False,
                        shots: list[tuple[int, ClipAnalysis | None]] | None = None,
                        notes: tuple[str, ...] = ()) -> RetargetResult:
    # 4. plan every output frame: transfer, gains, smoothing, timing
    with _timed(timings, "plan"):
        if shots is not None:
            plan = build_shot_plan(motion, shots, target_clip.track, config, store.empty)
        else:
            plan = build_plan(motion, target_clip, inputs.target.is_still, config, allocate=store.empty)
        release_normalised(motion, target_clip, shots)
        spill_frames(plan, motion, target_clip, shots, store)
        heap.trim()  # the plan's whole-clip temporaries, before the generator and the render's frames come
        settings = generator_settings(config)
        if config.generator == "warp" and not (inputs.target.is_still and config.pose):
            settings.setdefault("head", 0.0)  # only a still target's head moves as a whole
        generator = make_generator(config.generator, **settings)
        with progress.note_if_slow("compiling the warp generator's loops (once after an install: about 15 s)"):
            generator.prepare(target_clip.expression.neutral)
    # 5. render: decode, generate, paste back, encode with the audio
    if image_output:
        written = render_image(inputs, plan, generator, config, timings)
    else:
        written = render(inputs, plan, generator, config, progress, timings, _output_timing(inputs, motion))
    # 6. report: the resolved configuration and the AU trajectories used, next to the output
    sidecar = write_report(inputs, config, plan, motion, target_clip, timings, shots, notes)
    return RetargetResult(
        output=inputs.output, frames_written=written,
        drive_frames_without_face=int((~motion.found).sum()),
        target_frames_without_face=int((~target_clip.track.found).sum()),
        drive_neutral_time=motion.neutral_time, target_neutral_time=first_shot(target_clip, shots).neutral_time,
        timings=dict(timings.seconds), config_path=sidecar, notes=notes,
    )


_RESTLESS_WORDS = {"AU12": "smiles", "AU25": "parts its lips"}


def release_normalised(motion: DriveMotion, target: ClipAnalysis,
                       shots: list[tuple[int, ClipAnalysis | None]] | None = None) -> None:
    """Drop the whole-clip pose-normalised shapes (T, 478, 3) of the driver's ``motion``, the ``target`` and its
    ``shots`` once the plan is built (set to None, in place): the render and the report read the plan, the
    neutrals and the tracked landmarks, and a long clip need not hold two more arrays of every frame while it
    renders (README, very long clips)."""
    motion.normalised = None
    for clip in [target] + [shot for _, shot in shots or [] if shot is not None]:
        clip.expression.normalised = None


def spill_frames(plan: RenderPlan, motion: DriveMotion, target: ClipAnalysis,
                 shots: list[tuple[int, ClipAnalysis | None]] | None, store: FrameStore) -> None:
    """Move the plan's whole-clip landmark arrays (T, 478, 3) into ``store`` (``FrameStore.keep``: temporary
    files beside the output in the main job), in place: its ``source`` (the target's tracked landmarks, as
    ``target`` and its ``shots`` hold them too), ``destination`` and ``drive_landmarks`` (the driver's, as
    ``motion`` holds them); those already there stay. The render and the report read them a frame at a time,
    so the job's memory while it renders does not grow with the clip's length (README, speed and memory)."""
    source = plan.source
    if isinstance(source, FrameRows) or source.strides[0] != 0:  # a still's one row broadcast: nothing to move
        plan.source = store.keep(source)
        if source is target.track.landmarks and plan.source is not source:
            target.track.landmarks = plan.source
            for start, shot in shots or []:
                if shot is not None:
                    shot.track.landmarks = plan.source[start:start + len(shot.track)]
    if isinstance(plan.destination, FrameRows) or plan.destination.strides[0] != 0:
        plan.destination = store.keep(plan.destination)
    if plan.drive_landmarks is not None:
        drive = plan.drive_landmarks
        plan.drive_landmarks = store.keep(drive)
        if motion.landmarks is drive:
            motion.landmarks = plan.drive_landmarks


@dataclass
class ShotNeutral:
    """The neutral one shot of a clip (or a whole uncut clip) is taken relative to, for the notes on it."""

    start: float  # seconds: the shot's first frame
    stop: float  # seconds: its last frame
    neutral: np.ndarray  # (478, 3) pose-normalised neutral shape
    time: float  # seconds: where the neutral was taken
    chosen: bool  # set by the user (--drive-neutral / --target-neutral), not picked as the calmest frame


def shot_neutrals(clip: ClipAnalysis, shots: list[tuple[int, ClipAnalysis | None]] | None,
                  chosen_time: float | None) -> list[ShotNeutral]:
    """The neutral of each shot with a face of ``clip`` cut into ``shots`` (``shot_analyses``), or of the whole
    clip when it is not cut. ``chosen_time``: seconds the user set a neutral at; it sets the neutral of the shot
    it falls in (from the shot's first frame to the next shot's), as ``shot_analyses`` reads it."""
    parts = shots if shots is not None else [(0, clip)]
    starts = [float(clip.track.times[a]) for a, _ in parts] + [np.inf]
    neutrals = []
    for k, (_, part) in enumerate(parts):
        if part is None:
            continue
        times = part.track.times
        chosen = chosen_time is not None and (shots is None or starts[k] - 1e-6 <= chosen_time < starts[k + 1])
        neutrals.append(ShotNeutral(float(times[0]), float(times[-1]), part.expression.neutral, part.neutral_time,
                                    chosen))
    return neutrals


def _restless_note(role: str, shot: ShotNeutral, cut: bool, shown: dict[str, float], flag: str,
                   consequence: str) -> str:
    what = " and ".join(_RESTLESS_WORDS[name] for name in shown)
    values = ", ".join(f"{name} {value:.1f}" for name, value in shown.items())
    where = f" in its shot at {shot.start:.2f}-{shot.stop:.2f} s" if cut else ""
    elsewhere = "elsewhere in that shot" if cut else "elsewhere"
    return (f"the {role}'s calmest frame{where} ({shot.time:.2f} s) still {what} ({values} against a typical "
            f"resting face), so {consequence}; if its face rests {elsewhere}, pass {flag} SECONDS")


def neutral_notes(drive: list[ShotNeutral] | None, target: list[ShotNeutral] | None) -> tuple[str, ...]:
    """Notes for the user where a video's automatically picked neutral is not at rest (``expression.restless``),
    one for each shot of an edited clip where it is so: a target that smiles at its calmest keeps that smile
    where the driver rests, and a driver's smile at its calmest passes for rest. ``drive`` and ``target``: the
    clips' shot neutrals (``shot_neutrals``); None for no driver video, and for a still target (a portrait is
    its own neutral). Not for a neutral set by flag."""
    notes = []
    for role, shots, flag, consequence in (
            ("driver", drive, "--drive-neutral", "that much of its expressions is not transferred"),
            ("target", target, "--target-neutral", "it keeps that expression where the driver rests")):
        for shot in shots or []:
            shown = {} if shot.chosen else restless(shot.neutral)
            if shown:
                notes.append(_restless_note(role, shot, len(shots) > 1, shown, flag, consequence))
    return tuple(notes)


def _output_timing(inputs: Inputs, motion: DriveMotion) -> OutputTiming:
    if not inputs.target.is_still:
        return OutputTiming(inputs.target.fps, inputs.target.time_base)
    if inputs.drive is not None:
        return OutputTiming(inputs.drive.fps, inputs.drive.time_base)
    step = float(np.median(np.diff(motion.times))) if len(motion.times) > 1 else 1 / 25
    fps = Fraction(1 / step).limit_denominator(1001)
    return OutputTiming(fps, Fraction(1, 1) / fps)


def _curve_fps(times: np.ndarray, config: RetargetConfig) -> float:
    """Frame rate for AU curves on a still: --fps, else the rows' own rate when they are dense, else 25."""
    if config.fps:
        return float(config.fps)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return 1.0 / step if step <= 0.1 else 25.0


def _curve_motion(path: Path, target: ClipAnalysis, still: bool, config: RetargetConfig) -> DriveMotion:
    from .aucsv import read_au_csv

    curves = read_au_csv(path)
    fps = _curve_fps(curves.times, config) if still else float(target.fps)
    rotation = None
    if curves.pose is not None:
        from scipy.spatial.transform import Rotation

        rotation = Rotation.from_euler("XYZ", curves.pose[:, 3:6]).as_matrix()
    try:
        return from_curves(curves.times, curves.aus, curves.success, AUShapeModel.build(target.expression.neutral),
                           fps, rotation)
    except ValueError as exc:
        raise RetargetError(f"{path}: {exc}") from None


@heap.trimming
def run_edit(target: Path, output: Path, config: RetargetConfig, deltas: dict[str, float],
             start: float | None = None, stop: float | None = None, ramp: float = 0.0,
             duration: float | None = None, show_progress: bool = True) -> RetargetResult:
    """Relative AU edits on a target video or still (the papers' relative-AU editing, without a driver)."""
    timings = StageTimes()
    progress = Progress(enabled=show_progress)
    # 1. check inputs before any work
    inputs, image_output = check_edit_inputs(target, output, deltas, duration)
    check_face_choices(inputs, config)
    # 2. track the target
    with _timed(timings, "track"), native_stderr_silenced() as stderr:
        track = _track_target(inputs, config, progress, stderr)
    # 3. analyse, and add the edits to its own expression in every frame
    with _timed(timings, "analyse"):
        clip = _analyse(track, inputs.target, config.target_neutral, config, "target")
        times = _edit_times(clip, inputs.target.is_still, duration, config)
        if not inputs.target.is_still and not 0 <= (start or 0) <= times[-1]:
            raise RetargetError(f"--from {start} s is outside the target's 0-{times[-1]:.2f} s")
        change = np.array([deltas.get(a, 0.0) for a in AU_NAMES])
        strength = envelope(times, start, stop, ramp)
        motion = from_edit(clip, AUShapeModel.build(clip.expression.neutral), change, times, strength)
    # the plan's whole-clip arrays wait on disk beside a video output (``FrameStore``)
    with FrameStore(None if image_output else inputs.output.parent) as store:
        return _plan_render_report(inputs, motion, clip, config, progress, timings, store, image_output)


def _edit_times(clip: ClipAnalysis, still: bool, duration: float | None, config: RetargetConfig) -> np.ndarray:
    if not still:
        return clip.track.times.copy()
    if duration is None:
        return np.zeros(1)
    fps = float(config.fps or 25.0)
    return np.arange(max(1, round(duration * fps))) / fps


@contextmanager
def _timed(timings: StageTimes, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings.add(stage, time.perf_counter() - start)


def check_inputs(drive: Path, target: Path, output: Path, preview: Path | None) -> Inputs:
    curves = Path(drive) if is_au_csv(drive) else None
    if curves is not None and not curves.is_file():
        raise RetargetError(f"{curves} not found")
    drive_info = None if curves is not None else probe(drive)
    target_info = probe(target)
    if drive_info is not None and drive_info.is_still:
        raise RetargetError(f"the driver must be a video or an AU curve CSV, and {drive} is a still image")
    if curves is not None and preview is not None:
        raise RetargetError("--preview shows the driver video; AU curves have none")
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise RetargetError(f"output must end in {', '.join(OUTPUT_SUFFIXES)}: {output}")
    for out in [output] + ([Path(preview)] if preview else []):
        for given in (drive, target):
            if out.resolve() == Path(given).resolve() or (out.exists() and os.path.samefile(out, given)):
                raise RetargetError(f"output {out} would overwrite the input {given}")
    if preview is not None and Path(preview).resolve() == output.resolve():
        raise RetargetError("the preview and the output must be different files")
    return Inputs(drive_info, target_info, output, Path(preview) if preview else None, curves)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def check_edit_inputs(target: Path, output: Path, deltas: dict[str, float],
                      duration: float | None) -> tuple[Inputs, bool]:
    """Inputs of an edit, and whether the output is an image (a still target without ``duration``)."""
    if not deltas:
        raise RetargetError("nothing to edit: give at least one --au AUxx=CHANGE")
    bad = [a for a in deltas if a not in AU_NAMES]
    if bad:
        raise RetargetError(f"unknown AU(s) {', '.join(bad)}; known: {' '.join(AU_NAMES)}")
    info = probe(target)
    output = Path(output)
    image_output = output.suffix.lower() in IMAGE_SUFFIXES
    if image_output and (not info.is_still or duration is not None):
        raise RetargetError(f"{output} is an image; a video target or --duration makes a video "
                            f"({', '.join(OUTPUT_SUFFIXES)})")
    if not image_output and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise RetargetError(f"output must end in {', '.join(OUTPUT_SUFFIXES + IMAGE_SUFFIXES)}: {output}")
    if not image_output and info.is_still and duration is None:
        raise RetargetError("a still target makes an image; give --duration SECONDS for a video")
    if duration is not None and not 0 < duration <= 600:
        raise RetargetError(f"--duration must be between 0 and 600 seconds, not {duration}")
    if output.resolve() == Path(target).resolve() or (output.exists() and os.path.samefile(output, target)):
        raise RetargetError(f"output {output} would overwrite the input {target}")
    return Inputs(None, info, output, None), image_output


def _target_frames(info: MediaInfo, config: RetargetConfig) -> Iterator[Frame]:
    if info.is_still:
        yield Frame(0, 0.0, read_still(info.path, config.max_size))
    else:
        yield from read_frames(info.path)


def _frame_size(info: MediaInfo, config: RetargetConfig) -> tuple[int, int]:
    scale = _frame_scale(info, config)
    if scale == 1.0:
        return info.width, info.height
    return max(1, round(info.width * scale)), max(1, round(info.height * scale))


def _frame_scale(info: MediaInfo, config: RetargetConfig) -> float:
    """How much the frames are resized for tracking and rendering: a still is capped by ``max_size``."""
    return min(1.0, config.max_size / max(info.width, info.height)) if info.is_still else 1.0


def _face_option(config: RetargetConfig, role: str) -> str:
    return config.drive_face if role == "drive" else config.target_face


def face_choice(config: RetargetConfig, role: str, info: MediaInfo, flag: str | None = None) -> FaceChoice:
    """The ``role``'s ("drive" or "target") choice of face, on its frames as tracked; a point must lie in the
    frame (pixels of the video, or of the still before ``max_size``). ``flag`` names it in errors (default
    ``--ROLE-face``)."""
    choice = FaceChoice.parse(_face_option(config, role))
    if choice.point is not None and (choice.point[0] >= info.width or choice.point[1] >= info.height):
        raise RetargetError(f"{flag or f'--{role}-face'} {choice} is outside {info.path}'s "
                            f"{info.width}x{info.height} frame")
    return choice.scaled(_frame_scale(info, config))


def check_face_choices(inputs: Inputs, config: RetargetConfig) -> None:
    """Before any work: each choice of face names a point inside its clip's frame, and a driver's choice has a
    driver video to choose in."""
    face_choice(config, "target", inputs.target)
    if inputs.drive is not None:
        face_choice(config, "drive", inputs.drive)
    elif FaceChoice.parse(config.drive_face) != FaceChoice():
        source = "AU curves have" if inputs.curves is not None else "an edit has"
        raise RetargetError(f"--drive-face chooses a face in a driver video; {source} none")


def track_chosen_face(frames: Iterable[Frame], info: MediaInfo, config: RetargetConfig, role: str,
                      on_frame=None, flag: str | None = None, store: FrameStore | None = None) -> Track:
    """Track the face ``config`` chooses (``role``: "drive" or "target") through the clip's ``frames`` (a still
    at ``max_size``); ``flag`` names the choice in errors (default ``--ROLE-face``). With a ``store``, the
    landmarks are written there as they are tracked (``track_frames``)."""
    flag = flag or f"--{role}-face"
    w, h = _frame_size(info, config)
    choice = face_choice(config, role, info, flag)
    try:
        return track_frames(frames, w, h, still=info.is_still, on_frame=on_frame, choice=choice, store=store)
    except NoFaceThere as exc:
        scale = _frame_scale(info, config)
        where = "; ".join(f"x {round(x0 / scale)}-{round(x1 / scale)}, y {round(y0 / scale)}-{round(y1 / scale)}"
                          for x0, y0, x1, y1 in exc.boxes)
        frame = str(info.path) if info.is_still else f"{info.path}'s first frame with a face"
        raise RetargetError(f"{flag} {_face_option(config, role)}: no face there in {frame} (faces: {where})") \
            from None


def _track_target(inputs: Inputs, config: RetargetConfig, progress: Progress, stream=None,
                  store: FrameStore | None = None) -> Track:
    bar = progress.bar("tracking the face", 1 if inputs.target.is_still else inputs.target.frame_count, stream)
    try:
        return track_chosen_face(_target_frames(inputs.target, config), inputs.target, config, "target", bar.update,
                                 store=store)
    finally:
        bar.close()


def track_inputs(inputs: Inputs, config: RetargetConfig, progress: Progress,
                 stream=None, store: FrameStore | None = None) -> tuple[Track | None, Track]:
    """The driver's track (None for AU curves) and the target's, tracked at once; with a ``store``, the
    target's landmarks are written there as they are tracked."""
    if inputs.drive is None:
        return None, _track_target(inputs, config, progress, stream, store)
    total = inputs.drive.frame_count + (1 if inputs.target.is_still else inputs.target.frame_count)
    bar = progress.bar("tracking faces", total, stream)
    result: dict[str, Track] = {}
    failure: list[BaseException] = []

    def track_drive() -> None:
        try:
            result["drive"] = track_chosen_face(prefetch(read_frames(inputs.drive.path)), inputs.drive, config,
                                                "drive", bar.update)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=track_drive, name="track-driver", daemon=True)
    worker.start()
    try:
        # decoding runs ahead on its own thread, so mediapipe never waits for a frame
        target_track = track_chosen_face(prefetch(_target_frames(inputs.target, config)), inputs.target, config,
                                         "target", bar.update, store=store)
    finally:
        worker.join()
        bar.close()
    if failure:
        raise failure[0]
    return result["drive"], target_track


def _analyse(track: Track, info: MediaInfo, neutral: float | None, config: RetargetConfig,
             role: str, store: FrameStore | None = None) -> ClipAnalysis:
    """The clip's analysis (``analyse_clip``), its raw track smoothed in place; with a ``store``, its landmarks
    and pose-normalised shapes are kept there once measured (``analyse_clip``'s ``store``)."""
    if len(track) == 0:
        raise RetargetError(f"{info.path} has no decodable video frames")
    if not track.found.any():
        raise RetargetError(f"no face found in the {role} {info.path}")
    if neutral is not None and not info.is_still and not 0 <= neutral <= track.times[-1] + 1e-6:
        raise RetargetError(f"--{'drive' if role == 'driver' else 'target'}-neutral {neutral} s is outside "
                            f"the {role}'s 0-{track.times[-1]:.2f} s")
    fps = float(info.fps) if info.fps else 25.0
    return analyse_clip(track, fps, neutral, config.smooth_expression, config.smooth_pose, consume=True,
                        store=store)


def _audio_source(inputs: Inputs, config: RetargetConfig) -> Path | None:
    choice = config.audio
    if choice == "auto":
        choice = "drive" if inputs.target.is_still else "target"
    if choice == "none":
        return None
    info = inputs.drive if choice == "drive" else inputs.target
    return info.path if info is not None and info.audio_codec else None


class DriveCursor:
    """Streams the driver's frames forward to whichever frame index is asked for (reopens to go back); they are
    decoded ahead on a thread of their own, off the thread that generates the output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._frames: Iterator[Frame] | None = None
        self._current: Frame | None = None

    def get(self, index: int) -> Frame | None:
        if self._current is None or index < self._current.index:
            self.close()
            self._frames = prefetch(read_frames(self.path))
            self._current = next(self._frames, None)
        while self._current is not None and self._current.index < index:
            nxt = next(self._frames, None)
            if nxt is None:
                break
            self._current = nxt
        return self._current

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
            self._frames = None


def render(inputs: Inputs, plan: RenderPlan, generator: Generator, config: RetargetConfig,
           progress: Progress, timings: StageTimes, timing: OutputTiming) -> int:
    w, h = _frame_size(inputs.target, config)
    still = inputs.target.is_still
    fps, time_base = timing.fps, timing.time_base
    cursor = DriveCursor(inputs.drive.path) if inputs.drive is not None else None
    bar = progress.bar("rendering", len(plan))
    writer = VideoWriter(inputs.output, w, h, fps, time_base=time_base, audio_from=_audio_source(inputs, config),
                         crf=config.crf, preset=config.x264_preset)
    preview = None
    # codec work runs beside generation: frames are decoded ahead, and pasted into and encoded behind, on threads
    # of their own
    encoder = BackgroundCalls(_finish_frame)
    try:
        if inputs.preview is not None:
            preview = PreviewWriter(inputs.preview, h, fps, time_base)
        # the decoded frames go to the writer too: it re-encodes only the box the face was pasted into
        image = read_still(inputs.target.path, config.max_size) if still else None
        frames = (_still_repeated(image, len(plan)) if image is not None
                  else read_frames(inputs.target.path, keep_source=True))
        person = _person(image, config)
        lenders = EyeLenders(plan, None if still else read_lenders_ahead(inputs.target.path, lenders_ahead(plan)))
        for t, frame in zip(range(len(plan)), _timed_iter(prefetch(frames), timings, "decode")):
            drive_frame = cursor.get(int(plan.drive_index[t])) if cursor is not None else None
            with _timed(timings, "generate"):
                reference = lenders.see(t, frame.image)
                face = _generate_face(frame.image, t, plan, generator, drive_frame, person, reference)
                original, result, edit = _pasted(frame, face, keep_original=preview is not None)
            with _timed(timings, "encode"):
                encoder.submit(writer, preview, drive_frame, original, result, edit, float(plan.times[t]))
            bar.update()
        with _timed(timings, "encode"):
            encoder.finish()
            count = writer.close()
            if preview is not None:
                preview.close()
    except BaseException:
        _finish_quietly(encoder)
        writer.abort()
        if preview is not None:
            preview.abort()
        raise
    finally:
        if cursor is not None:
            cursor.close()
        bar.close()
    return count


def render_image(inputs: Inputs, plan: RenderPlan, generator: Generator, config: RetargetConfig,
                 timings: StageTimes) -> int:
    """Render the one frame of an edited still and write it as an image, atomically."""
    from PIL import Image

    image = read_still(inputs.target.path, config.max_size)
    with _timed(timings, "generate"):
        out, _ = _render_frame(image, 0, plan, generator, None)
    with _timed(timings, "encode"):
        tmp = inputs.output.with_name(f".{inputs.output.name}.part{inputs.output.suffix}")
        try:
            Image.fromarray(out).save(tmp, quality=95)
            os.replace(tmp, inputs.output)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise RetargetError(f"cannot write {inputs.output}: {exc}") from exc
            raise
    return 1


def _pasted(frame: Frame, face: GeneratedFace | None,
            keep_original: bool) -> tuple[np.ndarray | None, np.ndarray, SourceEdit | None]:
    """``frame`` with ``face`` pasted in, as the writer takes it: a copy of the frame as decoded (for the
    preview's target panel) when ``keep_original``, else None; the pasted (H, W, 3) image; and the edit
    against the decoded source (None for a frame without one)."""
    original = frame.image.copy() if keep_original else None  # the paste may go in place
    result, change = _paste_face(frame.image, face, keep_before=frame.source is not None)
    return original, result, None if frame.source is None else SourceEdit(frame.source, *change)


def _finish_frame(writer: VideoWriter, preview: PreviewWriter | None, drive_frame: Frame | None,
                  original: np.ndarray | None, result: np.ndarray, edit: SourceEdit | None, when: float) -> None:
    """Encode the pasted frame ``result`` (H, W, 3) (and its preview panel, with the ``original`` frame), on the
    writer's thread, while the main thread generates the next face.

    The paste itself runs on the main thread: x264 and the conversion of the pasted box back to YUV keep this
    thread the busier of the two (2.0 CPU-s against 1.7 on the 720p benchmark), and the job waited on it."""
    writer.write(result, when, edit)
    if preview is not None and original is not None:
        preview.write(drive_frame, original, result, when)


def _finish_quietly(encoder: BackgroundCalls) -> None:
    try:
        encoder.finish()
    except BaseException:
        pass


def _timed_iter(frames: Iterator[Frame], timings: StageTimes, stage: str) -> Iterator[Frame]:
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        timings.add(stage, time.perf_counter() - start)
        if frame is None:
            return
        yield frame


def _still_repeated(image: np.ndarray, count: int) -> Iterator[Frame]:
    image.setflags(write=False)
    for i in range(count):
        yield Frame(i, 0.0, image)


def _person(still: np.ndarray | None, config: RetargetConfig) -> np.ndarray | None:
    """(H, W) float32 person mask of a ``still`` target (H, W, 3) whose head follows the driver's (for the
    warp); None for a video target or without a head move."""
    if still is None or not (config.pose and config.generator == "warp"):
        return None
    from .segment import person_mask

    with native_stderr_silenced():
        return person_mask(still)


class EyeLenders:
    """Keeps a copy of the frame the plan's next eye borrowing reads (``RenderPlan.eye_reference``) as frames
    stream past: one frame at a time, as the references go back no further than the latest lender. Frames that
    lend to earlier ones (at a clip's start, ``lenders_ahead``) are given as ``ahead``: index -> (H, W, 3) image,
    each dropped once the stream reaches it."""

    def __init__(self, plan: RenderPlan, ahead: dict[int, np.ndarray] | None = None) -> None:
        refs = plan.eye_reference if plan.eye_reference is not None else np.zeros(0, int)
        self._plan = plan
        self._wanted = set(int(r) for r in refs[refs >= 0])
        self._kept: tuple[int, np.ndarray] | None = None
        self._ahead = dict(ahead or {})

    def see(self, t: int, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Before frame ``t`` (``image``, as decoded) is rendered: the (image, landmarks) its eyes borrow from,
        or None."""
        ref = -1 if self._plan.eye_reference is None else int(self._plan.eye_reference[t])
        lent = None
        if ref in self._ahead:
            lent = (self._ahead[ref], self._plan.source[ref])
        elif ref >= 0 and self._kept is not None and self._kept[0] == ref:
            lent = (self._kept[1], self._plan.source[ref])
        self._ahead.pop(t, None)
        if t in self._wanted:
            self._kept = (t, image.copy())  # the render pastes into the decoded frame
        return lent


def lenders_ahead(plan: RenderPlan) -> list[int]:
    """Indices of the frames whose eyes frames before them borrow (``RenderPlan.eye_reference``), sorted."""
    if plan.eye_reference is None:
        return []
    refs = plan.eye_reference
    return sorted(set(int(r) for r in refs[refs > np.arange(len(refs))]))


def read_lenders_ahead(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The decoded images (H, W, 3) of the target video's frames ``indices`` (sorted), read from its start: they
    lie within ``eye_borrow`` seconds of it."""
    if not indices:
        return {}
    wanted, images = set(indices), {}
    frames = read_frames(path)
    try:
        for frame in frames:
            if frame.index in wanted:
                images[frame.index] = frame.image
            if frame.index >= indices[-1]:
                break
    finally:
        frames.close()
    return images


def _render_frame(image: np.ndarray, t: int, plan: RenderPlan, generator: Generator,
                  drive_frame: Frame | None, person: np.ndarray | None = None,
                  keep_before: bool = False, reference: tuple[np.ndarray, np.ndarray] | None = None,
                  ) -> tuple[np.ndarray, tuple[tuple[int, int, int, int] | None, np.ndarray | None]]:
    """Frame ``t`` (H, W, 3) rendered, and what changed (see ``_paste_face``)."""
    face = _generate_face(image, t, plan, generator, drive_frame, person, reference)
    return _paste_face(image, face, keep_before)


def _paste_face(image: np.ndarray, face: GeneratedFace | None, keep_before: bool = False,
                ) -> tuple[np.ndarray, tuple[tuple[int, int, int, int] | None, np.ndarray | None]]:
    """``image`` (H, W, 3) with ``face`` pasted in, and what changed: the box (x0, y0, x1, y1) and, with
    ``keep_before``, its pixels before the change ((y1 - y0, x1 - x0, 3) RGB); ``(None, None)`` when there is
    no face and the frame passes through unchanged."""
    if face is None:
        return image, (None, None)
    x0, y0, x1, y1 = face.box
    before = image[y0:y1, x0:x1].copy() if keep_before else None
    # decoded video frames are ours to modify; a still target's one image is shared by every frame
    return paste(image, face, inplace=image.flags.writeable), (face.box, before)


def _generate_face(image: np.ndarray, t: int, plan: RenderPlan, generator: Generator, drive_frame: Frame | None,
                   person: np.ndarray | None = None, reference: tuple[np.ndarray, np.ndarray] | None = None,
                   ) -> GeneratedFace | None:
    """The face the plan asks for in frame ``t`` (``image`` (H, W, 3), not modified), or None where the frame
    passes through unchanged (no target face, or a weight of 0). ``reference``: a nearby frame with open eyes
    and its landmarks (``EyeLenders``)."""
    weight = float(plan.weight[t])
    source = plan.source[t]
    if weight <= 0 or not np.isfinite(source).all():
        return None
    destination = source + weight * (plan.destination[t] - source)
    drive_points = None
    if drive_frame is not None:
        drive_points = _drive_landmarks(plan, drive_frame.index)
    edit = FaceEdit(image=image, source=source, destination=destination.astype(np.float32),
                    relative_aus=(plan.relative_aus[t] * weight).astype(np.float32),
                    drive_image=drive_frame.image if drive_points is not None else None,
                    drive_landmarks=drive_points, person=person,
                    reference_image=None if reference is None else reference[0],
                    reference_landmarks=None if reference is None else reference[1])
    return generator.generate(edit)


def _drive_landmarks(plan: RenderPlan, index: int) -> np.ndarray | None:
    if plan.drive_landmarks is None:
        return None
    points = plan.drive_landmarks[min(index, len(plan.drive_landmarks) - 1)]
    if not np.isfinite(points).all():
        return None
    return points


class PreviewWriter:
    """Side-by-side video: driver | target | result, each scaled to ``height`` pixels.

    Its frames are a whole number of 16-pixel macroblocks in both directions (the panels' height rounded down,
    black on the right up to the next multiple of 16): at 1080 x 360, x264's encoding of the last, partial
    macroblocks differed from run to run on the same frames (README, speed)."""

    def __init__(self, path: Path, height: int, fps: Fraction, time_base: Fraction, panel: int = 352) -> None:
        self.height = max(16, min(panel, height) // 16 * 16)
        self.path = path
        self._writer: VideoWriter | None = None
        self._fps, self._time_base = fps, time_base

    def write(self, drive: Frame | None, target: np.ndarray, result: np.ndarray, when: float) -> None:
        panels = [self._fit(drive.image if drive is not None else np.zeros_like(target)),
                  self._fit(target), self._fit(result)]
        row = np.concatenate(panels, axis=1)
        if row.shape[1] % 16:
            row = np.pad(row, ((0, 0), (0, -row.shape[1] % 16), (0, 0)))
        if self._writer is None:
            self._writer = VideoWriter(self.path, row.shape[1], row.shape[0], self._fps, time_base=self._time_base)
        self._writer.write(row, when)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        width = max(2, round(w * self.height / h) // 2 * 2)
        return cv2.resize(image, (width, self.height), interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def _write_json(path: Path, head: dict, key: str, items: Iterable[dict]) -> None:
    """Write ``head`` (not empty) with ``key``: the list of ``items``, one a line, as JSON, atomically: item by
    item, so a long clip's per-frame entries never sit in memory all at once, as objects or as text."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "w") as out:
            out.write(f"{json.dumps(head, indent=1)[:-2]},\n {json.dumps(key)}: [")  # without the closing "\n}"
            for k, item in enumerate(items):
                out.write(("\n  " if k == 0 else ",\n  ") + json.dumps(item))
            out.write("\n ]\n}\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _drive_name(inputs: Inputs) -> str | None:
    if inputs.curves is not None:
        return str(inputs.curves)
    return str(inputs.drive.path) if inputs.drive is not None else None


def report_path(output: Path) -> Path:
    return output.with_name(output.stem + ".retarget.json")


def _eyes_from(plan: RenderPlan, t: int) -> float | None:
    """Time of the nearby frame (earlier, or later at a clip's start) that frame ``t``'s target eyes may be taken
    from (``RenderPlan.eye_reference``)."""
    if plan.eye_reference is None or plan.eye_reference[t] < 0:
        return None
    return round(float(plan.times[plan.eye_reference[t]]), 4)


def _face_report(choice: str, times: np.ndarray, landmarks: np.ndarray | None, found: np.ndarray) -> dict | None:
    """The choice of face, and where the chosen face was on the first frame with it: its box (x0, y0, x1, y1,
    pixels of the frames as tracked) and time. None without tracked landmarks (AU curves drive)."""
    if landmarks is None or not found.any():
        return None
    first = int(np.argmax(found))
    return {"choice": choice, "time": round(float(times[first]), 4), "box": list(face_box(landmarks[first]))}


def _shots_report(clip: ClipAnalysis, shots: list[tuple[int, ClipAnalysis | None]] | None) -> list[dict]:
    """Each shot of the target: where it starts (seconds) and its neutral's times (None: no face in it)."""
    if shots is None:
        return [{"start": round(float(clip.track.times[0]), 4), "neutral_time": clip.neutral_time,
                 "neutral_upper_time": clip.upper_neutral_time}]
    times = clip.track.times
    return [{"start": round(float(times[start]), 4),
             "neutral_time": None if shot is None else shot.neutral_time,
             "neutral_upper_time": None if shot is None else shot.upper_neutral_time} for start, shot in shots]


def write_report(inputs: Inputs, config: RetargetConfig, plan: RenderPlan, drive: DriveMotion,
                 target: ClipAnalysis, timings: StageTimes,
                 shots: list[tuple[int, ClipAnalysis | None]] | None = None, notes: tuple[str, ...] = ()) -> Path:
    """The resolved configuration and per-frame AU trajectories, written atomically beside the output. For a
    target cut into shots, the neutral times are the first shot's with a face; ``target_shots`` has each's."""
    path = report_path(inputs.output)
    whole, target = target, first_shot(target, shots)
    report = {
        "drive": _drive_name(inputs), "target": str(inputs.target.path), "output": str(inputs.output),
        "config": config.to_dict(),
        "drive_neutral_time": drive.neutral_time, "target_neutral_time": target.neutral_time,
        "drive_neutral_upper_time": drive.upper_neutral_time, "target_neutral_upper_time": target.upper_neutral_time,
        "drive_frames_without_face": int((~drive.found).sum()),
        "target_frames_without_face": int((~whole.track.found).sum()),
        "target_shots": _shots_report(whole, shots),
        "notes": list(notes),
        "drive_face": _face_report(config.drive_face, drive.times, drive.landmarks, drive.found),
        "target_face": _face_report(config.target_face, whole.track.times, whole.track.landmarks,
                                    whole.track.found),
        "timings_seconds": {k: round(v, 3) for k, v in timings.seconds.items()},
        "au_names": list(AU_NAMES),
    }
    frames = ({"time": round(float(plan.times[t]), 4), "weight": round(float(plan.weight[t]), 3),
               # rounded in float64: a float32 0.2 would print as 0.20000000298023224
               "drive_aus": np.round(plan.drive_aus[t].astype(np.float64), 3).tolist(),
               "output_aus": np.round(plan.output_aus[t].astype(np.float64), 3).tolist(),
               "eyes_from": _eyes_from(plan, t)}
              for t in range(len(plan)))
    _write_json(path, report, "frames", frames)
    return path
