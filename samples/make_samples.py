"""Make the sample inputs in samples/ from a public-domain photo that ships inside scikit-image.

- ``target.png``: the astronaut photo (Eileen Collins, NASA, public domain), 512x512.
- ``drive.mp4``: a 4 s, 25 fps driver made from the same photo, mirrored and tinted so it is a different
  picture, animated by this project's own warp generator with scripted expressions (a blink, a jaw drop, a
  smile, raised brows), with a synthesised "speech" audio track (amplitude-modulated tones, AAC).

No third-party media: both inputs come from scikit-image's bundled data. Run: ``python samples/make_samples.py``.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from retarget import landmarks as lm
from retarget.face import FaceTracker
from retarget.generators import FaceEdit, make_generator
from retarget.compose import paste
from retarget.quiet import native_stderr_silenced

HERE = Path(__file__).resolve().parent
FPS = 25
SECONDS = 4.0


def bump(t: float, start: float, end: float) -> float:
    """0 outside [start, end], rising smoothly to 1 in the middle."""
    if not start < t < end:
        return 0.0
    return float(np.sin(np.pi * (t - start) / (end - start)) ** 2)


def expression_offsets(points: np.ndarray, t: float) -> np.ndarray:
    """(478, 3) pixel offsets of the scripted expression at time ``t`` seconds for a face ``points``."""
    off = np.zeros_like(points)
    face = float(np.ptp(points[lm.FACE_OVAL, 1]))
    # blink at 0.6 s: upper lids travel onto the lower lids
    closure = bump(t, 0.45, 0.85)
    for pairs in (lm.RIGHT_LID_PAIRS, lm.LEFT_LID_PAIRS):
        off[pairs[:, 0], 1] += closure * (points[pairs[:, 1], 1] - points[pairs[:, 0], 1])
    # jaw drop at 1.6 s: everything below the lips moves down, most at the chin
    drop = bump(t, 1.1, 2.2) * 0.12 * face
    mouth_y = (points[lm.UPPER_LIP_INNER, 1] + points[lm.LOWER_LIP_INNER, 1]) / 2
    below = np.clip((points[:, 1] - mouth_y) / (points[lm.CHIN, 1] - mouth_y), 0, 1)
    below[lm.INNER_LIP_LOWER] = np.maximum(below[lm.INNER_LIP_LOWER], 0.9)
    below[list(lm.INNER_MOUTH_CORNERS)] = 0.5
    off[:, 1] += drop * np.sqrt(below) * (points[:, 1] > mouth_y - 1)
    # smile at 2.8 s: mouth corners up and out
    smile = bump(t, 2.4, 3.4) * 0.05 * face
    centre_x = points[lm.UPPER_LIP_TOP, 0]
    near_mouth = np.exp(-((points[:, :2] - points[lm.MOUTH_CORNERS, :2].mean(0)) ** 2).sum(1) / (0.2 * face) ** 2)
    side = np.sign(points[:, 0] - centre_x) * np.clip(np.abs(points[:, 0] - centre_x) / (0.15 * face), 0, 1)
    off[:, 0] += smile * side * near_mouth
    off[:, 1] -= smile * np.abs(side) * near_mouth
    # brows up at 3.6 s
    raise_ = bump(t, 3.3, 3.95) * 0.04 * face
    off[np.concatenate([lm.RIGHT_BROW, lm.LEFT_BROW]), 1] -= raise_
    return off


def speech_audio(seconds: float, rate: int = 16000) -> np.ndarray:
    """(1, N) float32 mono: syllable-like amplitude-modulated tones, -12 dBFS peak."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    tone = np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    tone += 0.4 * np.sin(2 * np.pi * 2 * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return (0.25 * envelope * tone)[None].astype(np.float32)


def write_driver(face_image: np.ndarray, path: Path) -> None:
    with native_stderr_silenced(), FaceTracker(still=True) as tracker:  # mediapipe's native log lines
        points = tracker(face_image)
    if points is None:
        raise SystemExit("no face found in the sample photo")
    generator = make_generator("warp")
    generator.prepare(points)
    rate = 16000
    audio = speech_audio(SECONDS, rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = face_image.shape[1], face_image.shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(int(SECONDS * FPS)):
            dst = (points + expression_offsets(points, i / FPS)).astype(np.float32)
            edit = FaceEdit(face_image, points, dst, np.zeros(17, np.float32))
            frame = av.VideoFrame.from_ndarray(paste(face_image, generator.generate(edit)), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for start in range(0, audio.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 1024]),
                                               format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = rate, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: samples/)")
    args = parser.parse_args()
    from PIL import Image
    from skimage import data

    photo = data.astronaut()  # (512, 512, 3) uint8, public domain
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(args.out / "target.png")
    # the driver: mirrored, cropped closer and tinted, so it is a different picture of a face
    driver = np.ascontiguousarray(photo[0:320, ::-1][:, 132:452])
    driver = np.clip(driver.astype(np.float32) * [1.05, 0.97, 0.9], 0, 255).astype(np.uint8)
    write_driver(driver, args.out / "drive.mp4")
    print(f"wrote {args.out / 'target.png'} and {args.out / 'drive.mp4'}")


if __name__ == "__main__":
    main()
