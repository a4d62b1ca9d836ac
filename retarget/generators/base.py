"""The generator interface: the only contract between the pipeline and a face generator.

A learned generator (aligned crops, AU-conditioned, on GPU) implements the same two methods; it reads the
relative AU vector and the driver frame from ``FaceEdit`` and returns its result in frame coordinates, so the
tracking, transfer, smoothing, paste-back and encoding stages do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class FaceEdit:
    """Everything a generator gets for one output frame."""

    image: np.ndarray  # (H, W, 3) uint8 RGB target frame
    source: np.ndarray  # (478, 3) float32 the target's landmarks in this frame, pixels
    destination: np.ndarray  # (478, 3) float32 where they should go, pixels
    relative_aus: np.ndarray  # (17,) float32 destination AUs minus the frame's own AUs
    drive_image: np.ndarray | None = None  # (h, w, 3) uint8 RGB driver frame nearest in time
    drive_landmarks: np.ndarray | None = None  # (478, 3) float32 pixels of drive_image
    # (H, W) float32 0-1 where the target's person (head, hair, body) is: given for a still target whose head
    # follows the driver's, so the head's move carries the hair and leaves the background
    person: np.ndarray | None = None
    # a nearby frame of a video target with both eyes open (an earlier one, or a later one at the clip's start),
    # for an eye this edit opens further than the frame's own can stretch (the target's own blink under a driver
    # whose eyes are open): (H, W, 3) uint8 RGB, and its landmarks (478, 3) pixels
    reference_image: np.ndarray | None = None
    reference_landmarks: np.ndarray | None = None


@dataclass
class GeneratedFace:
    """A generated region of the frame and how much of it to use."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels (x1, y1 exclusive)
    image: np.ndarray  # (y1 - y0, x1 - x0, 3) uint8 RGB
    alpha: np.ndarray  # (y1 - y0, x1 - x0) float32 in [0, 1]: 1 = use the generated pixel
    # (x0, y0, x1, y1) in the box's pixels where alpha is exactly 1, when the generator knows it (None: unknown):
    # the paste copies it and blends only the rim around it
    opaque: tuple[int, int, int, int] | None = None


class Generator(Protocol):
    name: str

    def prepare(self, target_neutral: np.ndarray) -> None:
        """Called once per target with its pose-normalised neutral shape (478, 3)."""

    def generate(self, edit: FaceEdit) -> GeneratedFace:
        """The edited face for one frame."""
