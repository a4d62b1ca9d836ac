"""Data that crosses stage boundaries. Array shapes and units are part of the contract.

Conventions: images are RGB ``uint8`` arrays ``(H, W, 3)``; landmark sets are mediapipe's 478-point face mesh
(468 mesh points + 10 iris points) as ``float32`` ``(478, 3)`` with ``x, y`` in pixels of the frame and ``z``
in the same pixel scale (mediapipe's relative depth multiplied by the frame width). Times are seconds from the
start of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

N_LANDMARKS = 478

AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)


@dataclass(frozen=True)
class MediaInfo:
    """What ``video.probe`` learns about an input without decoding it."""

    path: Path
    is_still: bool
    width: int  # display width in pixels (after EXIF orientation for stills)
    height: int
    fps: Fraction  # average frame rate; Fraction(0) for stills
    frame_count: int  # from the container where it says; an estimate otherwise; 1 for stills
    duration: float  # seconds; 0.0 for stills
    time_base: Fraction  # of the video stream; Fraction(1, 1000) for stills
    audio_codec: str | None  # codec name of the first audio stream, None when there is none


@dataclass
class Frame:
    """One decoded frame."""

    index: int  # 0-based decode order
    time: float  # presentation time in seconds from the stream start
    image: np.ndarray  # (H, W, 3) uint8 RGB
    # the decoded av.VideoFrame ``image`` was converted from, kept on request when the writer can reuse it
    # (8-bit 4:2:0, even size, not rotated or scaled; see video.read_frames)
    source: object | None = None


@dataclass
class Track:
    """The tracked face of one clip (or one still image, T=1)."""

    times: np.ndarray  # (T,) float64 seconds
    landmarks: np.ndarray  # (T, 478, 3) float32 pixels; NaN where ``found`` is False
    found: np.ndarray  # (T,) bool
    width: int
    height: int
    # (K,) int, increasing: the frames that start a new shot of an edited video (``shots.find_cuts`` and
    # ``shots.face_jumps``); empty for one continuous shot
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class HeadPose:
    """Per-frame similarity that maps the pose-normalised face into the frame.

    ``image_points = scale[t] * rotation[t] @ normalised_points + translation[t]`` for every landmark.
    """

    rotation: np.ndarray  # (T, 3, 3) float64, proper rotations
    translation: np.ndarray  # (T, 3) float64 pixels
    scale: np.ndarray  # (T,) float64 pixels per normalised unit

    def apply(self, t: int, points: np.ndarray) -> np.ndarray:
        """Map ``points`` (N, 3) from the normalised frame into frame ``t``'s pixels (N, 3)."""
        return self.scale[t] * points @ self.rotation[t].T + self.translation[t]


@dataclass
class Expression:
    """AU-related features of one clip, each relative to the person's own neutral reference."""

    # (T, 478, 3) pose-normalised landmarks (unit: the face's rigid-set RMS radius); None once the main job has
    # planned its frames (``pipeline.release_normalised``)
    normalised: np.ndarray | None
    neutral: np.ndarray  # (478, 3) pose-normalised neutral reference shape
    neutral_index: int  # the frame the neutral reference's mouth was taken around
    aus: np.ndarray  # (T, 17) float32 intensities 0-5 in AU_NAMES order
    found: np.ndarray  # (T,) bool
    # the frame its brows, eyes and cheeks were taken around (None: neutral_index)
    upper_neutral_index: int | None = None

    @property
    def displacement(self) -> np.ndarray:
        """(T, 478, 3) float32 normalised - neutral; 0 where the face was lost (computed, not stored)."""
        disp = self.normalised - self.neutral
        disp[~self.found] = 0.0
        return disp


@dataclass
class StageTimes:
    """Wall-clock seconds spent per pipeline stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt


@dataclass
class RetargetResult:
    """What ``retarget.retarget`` returns."""

    output: Path
    frames_written: int
    drive_frames_without_face: int
    target_frames_without_face: int
    drive_neutral_time: float
    target_neutral_time: float
    timings: dict[str, float]  # stage -> seconds
    config_path: Path | None  # the resolved configuration and AU trajectories written next to the output
    notes: tuple[str, ...] = ()  # what the user should know about the result (e.g. a neutral not at rest)
