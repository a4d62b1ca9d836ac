"""The learned generator (``--generator neural --checkpoint CKPT``): the papers' AU-swap network on aligned crops.

Per frame: cut the target's aligned crop and the driver's, swap the driver's AU-related feature into the target's
AU-free feature, conditioned on the relative AU vector from ``FaceEdit``, and paste the generated crop back through
the inverse alignment with a feathered face mask. Without a driver frame (AU curves, ``retarget edit``) the crop's
own AU-related feature is used and the relative AUs alone carry the change (the manipulation paper's editing).

Runs on the first CUDA device in bf16; on a CPU it works, slowly, with a warning.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import RetargetError
from ..landmarks import FACE_OVAL
from .base import FaceEdit, GeneratedFace


@dataclass(frozen=True)
class NeuralSettings:
    checkpoint: str | None = None  # a directory written by ``retarget train`` (model.safetensors + config.json)
    device: str | None = None  # "cuda", "cpu", ...; default: CUDA when there is one
    mask_grow: float = 0.06  # the face mask reaches this far beyond the face oval, fraction of the crop
    feather: float = 0.05  # its edge ramps over this fraction of the crop


class NeuralGenerator:
    name = "neural"

    def __init__(self, settings: NeuralSettings) -> None:
        if not settings.checkpoint:
            raise RetargetError("--generator neural needs --checkpoint DIR (a directory made by retarget train)")
        import torch

        from ..neural import checkpoint
        from ..neural.train import pick_device

        self.settings = settings
        self.device = pick_device(settings.device)
        net, _, config, _ = checkpoint.load(settings.checkpoint, self.device)
        self.net = net.eval()
        self.size = config.model.size
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cpu":
            print("retarget: warning: the neural generator is running on the CPU; expect well under 1 frame/s "
                  "at 256 px (a CUDA GPU runs it in bf16)", file=sys.stderr)

    def prepare(self, target_neutral: np.ndarray) -> None:
        pass  # the generator works from each frame's crop; the neutral enters through the relative AUs

    def generate(self, edit: FaceEdit) -> GeneratedFace:
        return self.generate_batch([edit])[0]

    def generate_batch(self, edits: list[FaceEdit]) -> list[GeneratedFace]:
        """Several frames in one forward pass (the batched path for GPU throughput)."""
        from ..neural.crops import crop_affine, cut_crop

        affines = [crop_affine(e.source, self.size) for e in edits]
        crops = np.stack([cut_crop(e.image, a, self.size) for e, a in zip(edits, affines)])
        drives = np.stack([self._drive_crop(e, c) for e, c in zip(edits, crops)])
        out = self._forward(crops, drives, np.stack([e.relative_aus for e in edits]))
        return [self._paste(e, o, a) for e, o, a in zip(edits, out, affines)]

    def _placement(self, edit: FaceEdit, source_affine: np.ndarray) -> np.ndarray:
        """Where the generated crop goes: through the destination's alignment, so a still target's head motion
        (translation, roll, scale; not yaw or pitch) moves the face; the source's when the destination has no
        usable alignment."""
        from ..neural.crops import crop_affine

        try:
            return crop_affine(edit.destination, self.size)
        except ValueError:
            return source_affine

    def _drive_crop(self, edit: FaceEdit, own: np.ndarray) -> np.ndarray:
        from ..neural.crops import crop_affine, cut_crop

        if edit.drive_image is None or edit.drive_landmarks is None:
            return own
        return cut_crop(edit.drive_image, crop_affine(edit.drive_landmarks, self.size), self.size)

    def _forward(self, crops: np.ndarray, drives: np.ndarray, relative_aus: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 twice and (B, 17) -> (B, S, S, 3) uint8."""
        import torch

        from ..neural.train import to_tensor

        rel = torch.from_numpy(np.asarray(relative_aus, np.float32)).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype,
                                             enabled=self.dtype != torch.float32):
            image = self.net.swap(to_tensor(crops, self.device), to_tensor(drives, self.device), rel).image
        image = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte()
        return image.permute(0, 2, 3, 1).cpu().numpy()

    def _paste(self, edit: FaceEdit, crop: np.ndarray, affine: np.ndarray) -> GeneratedFace:
        """The generated crop back in frame coordinates, with a feathered face mask as alpha."""
        from ..neural.crops import crop_landmarks, invert_affine

        h, w = edit.image.shape[:2]
        corners = np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]], np.float64)
        inverse = invert_affine(self._placement(edit, affine))
        frame_corners = corners @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.clip(np.floor(frame_corners.min(0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(frame_corners.max(0)).astype(int), 0, [w, h])
        if x1 <= x0 or y1 <= y0:
            return GeneratedFace((0, 0, 0, 0), np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32))
        shifted = inverse.copy()
        shifted[:, 2] -= (x0, y0)
        size = (int(x1 - x0), int(y1 - y0))
        image = cv2.warpAffine(crop, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = face_mask(crop_landmarks(edit.source, affine), self.size, self.settings.mask_grow,
                         self.settings.feather)
        alpha = cv2.warpAffine(mask, shifted, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        return GeneratedFace((int(x0), int(y0), int(x1), int(y1)), image, alpha)


def face_mask(landmarks: np.ndarray, size: int, grow: float, feather: float) -> np.ndarray:
    """(size, size) float32 alpha: 1 inside the face oval grown by ``grow`` * size, ramping to 0 over
    ``feather`` * size. landmarks (478, 3) crop pixels."""
    hull = cv2.convexHull(landmarks[FACE_OVAL, :2].astype(np.float32)).reshape(-1, 2)
    centre = hull.mean(0)
    radius = np.linalg.norm(hull - centre, axis=1, keepdims=True)
    grown = centre + (hull - centre) * (1 + grow * size / np.maximum(radius, 1))
    mask = np.zeros((size, size), np.float32)
    cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], 1.0)
    k = max(1, int(feather * size)) | 1
    return cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), k / 2)
