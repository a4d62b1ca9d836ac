"""Training data for the learned generator: aligned face crops from video clips, tracked once and cached.

- ``prepare_clip`` tracks a clip once (streaming PyAV decode and the project's face mesh, as the pipeline
  does), analyses it (smoothed landmarks and the 17 AUs relative to the clip's own neutral, with the default
  smoothing of ``config.RetargetConfig``), fits a crop per frame (``crops.crop_affine``) and caches the
  result (``.npz`` + ``.json``) keyed by the file (resolved path, size, mtime), the crop size and
  ``CACHE_VERSION``: landmarks, AUs and affines (about 6 KB a frame), and with ``store_crops`` every
  frame's crop as JPEG (about 17 KB a 256 crop).
- ``PairSampler`` draws (source, target, other) triples and reads their frames by random access with decord,
  cutting the crops with the cached affines, or reads the stored crops.

Speed (2 CPU cores): decord's random access decodes from the previous keyframe, and the development clips have
1-5 keyframes (groups of up to 300 frames), so ``PairSampler.sample(8)`` at 256 takes about 0.4 s on one
78-frame clip and about 6 s over all 15 clips; from stored crops, about 20 ms. Re-encoding clips with
short keyframe intervals helps decord only partly (0.2 s for 3 frames of a 720x1280 clip at keyint 10).
- ``SyntheticSampler`` draws cartoon faces whose AUs are known functions of the drawing, for fast tests.

Frame indices: decord and PyAV (``video.read_frames``) decode the same frames in the same (presentation)
order on the development clips (pixel-identical). A reader is checked when it is opened: decord must have at
least the cached number of frames, the same frame times, and the same pixels on a few cached thumbnails, or
the sampler raises ``RetargetError`` naming the file (variable frame timing or edit lists are where they
could disagree; re-encoding the clip at a constant frame rate fixes it). One file here
(vid_vx_RD_Radio10_0_clip_0.mp4) has a last packet PyAV does not output; decord repeats the previous frame
there, so decord may have more frames than the cache, never fewer. Display rotation (phone clips): decord
0.6.0 here applies it itself, like ``read_frames`` (checked on rotated test clips); the orientation that
matches the thumbnails is used, so a build that does not rotate works too.

Imports: av, decord, torch and mediapipe imported together in one process, in any order, work here
(decord 0.6.0, torch 2.13 CPU, av 18, mediapipe 0.10.21); decord is imported only when a reader is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import landmarks as lm
from ..errors import RetargetError
from ..types import AU_NAMES, N_LANDMARKS
from .crops import crop_affine, crop_landmarks, cut_crop

CACHE_VERSION = 1
"""Bump when what ``prepare_clip`` computes changes: every cached clip is then tracked again."""

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
MIN_FACE_FRAMES = 2
THUMB_SIZE = 32  # side of the cached thumbnails that a decord reader is checked against
_THUMB_TOLERANCE = 3.0  # mean absolute difference (0-255) allowed between PyAV's and decord's thumbnails


@dataclass
class ClipCrops:
    """A prepared clip: per-frame crop affines, AUs and crop landmarks (no pixels), T = ``frame_count``."""

    path: Path  # resolved
    fps: float
    frame_count: int
    found: np.ndarray  # (T,) bool: a face in the frame
    affines: np.ndarray  # (T, 2, 3) float32: frame px -> crop px at ``size``; lost frames: the nearest found one's
    aus: np.ndarray  # (T, 17) float32, 0-5 in AU_NAMES order, relative to the clip's own neutral
    landmarks: np.ndarray  # (T, 478, 3) float32 crop px at ``size`` (smoothed track); NaN where not found
    size: int
    times: np.ndarray | None = None  # (T,) float64 seconds (PyAV presentation times)
    width: int = 0  # frame size as read_frames gives it (display orientation)
    height: int = 0
    rotation: int = 0  # display rotation, counter-clockwise quarter turns (0-3)
    neutral_index: int = 0  # the frame the AUs' neutral reference was taken around
    thumb_indices: np.ndarray | None = None  # (K,) int64 frames with a cached thumbnail
    thumbs: np.ndarray | None = None  # (K, THUMB_SIZE, THUMB_SIZE, 3) uint8 whole frames, squashed
    crops_path: Path | None = None  # stored JPEG crops at ``size`` (``prepare_clip(store_crops=True)``), or None

    @property
    def face_frames(self) -> np.ndarray:
        """Indices of the frames with a face, ascending."""
        return np.flatnonzero(self.found)


# ------------------------------------------------------------------------------------------------ clips


def list_clips(paths: list[Path]) -> list[Path]:
    """The video files among ``paths``: files as given, folders searched recursively for ``VIDEO_EXTENSIONS``.

    Sorted, duplicates removed, resolved. Raises RetargetError for a path that does not exist or when nothing
    is found.
    """
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f.resolve() for f in p.rglob("*")
                         if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."))
        elif p.is_file():
            found.add(p.resolve())
        else:
            raise RetargetError(f"{p} not found")
    if not found:
        names = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise RetargetError(f"no video clips ({' '.join(VIDEO_EXTENSIONS)}) found in {names}")
    return sorted(found)


def _smoothing() -> tuple[float, float]:
    from ..config import RetargetConfig

    c = RetargetConfig()
    return float(c.smooth_expression), float(c.smooth_pose)


def _cache_key(path: Path, size: int) -> dict:
    st = path.stat()
    smooth_landmarks, smooth_pose = _smoothing()
    return {"path": str(path), "file_size": st.st_size, "mtime_ns": st.st_mtime_ns, "size": int(size),
            "version": CACHE_VERSION, "smooth_landmarks": smooth_landmarks, "smooth_pose": smooth_pose}


def _cache_paths(cache_dir: Path, path: Path, key: dict) -> tuple[Path, Path]:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{path.stem[:60]}-{digest}"
    return cache_dir / f"{stem}.npz", cache_dir / f"{stem}.json"


def prepare_clip(path: Path, cache_dir: Path, size: int = 256,
                 on_progress: Callable[[], None] | None = None, store_crops: bool = False) -> ClipCrops:
    """Track, analyse and crop one clip, or load it from ``cache_dir`` when it was done with the same inputs.

    ``store_crops`` also decodes the clip a second time (PyAV) and stores every frame's crop in the cache as
    JPEG (quality 95, about 17 KB a 256 crop), so that ``PairSampler`` reads crops instead of seeking in the
    video: much faster on clips with few keyframes (see ``PairSampler``). Asked for on a cached clip without
    stored crops, only the crops are made (no re-tracking).

    ``on_progress()`` is called once per decoded frame (a tqdm ``update`` fits): tracking, then storing crops;
    not at all on a cache hit. Raises RetargetError (one line naming the file) for a missing file, a still
    image, a file without a video stream, and a clip with fewer than ``MIN_FACE_FRAMES`` frames with a face.
    """
    from ..video import probe

    path = Path(path)
    info = probe(path)  # RetargetError: missing, not media, no video stream
    if info.is_still:
        raise RetargetError(f"{path} is a still image; training needs video clips")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise RetargetError(f"crop size must be a whole number of pixels >= 16, not {size!r}")
    path = path.resolve()
    cache_dir = Path(cache_dir)
    key = _cache_key(path, size)
    npz_path, json_path = _cache_paths(cache_dir, path, key)
    clip = _load_cache(npz_path, json_path, key)
    if clip is None:
        clip = _track_clip(path, info, int(size), on_progress)
        _save_cache(clip, npz_path, json_path, key)
    crops_path = npz_path.with_suffix(".crops.npy")
    if store_crops and _load_crop_offsets(crops_path, clip.frame_count) is None:
        _store_crops(clip, crops_path, on_progress)
    if _load_crop_offsets(crops_path, clip.frame_count) is not None:
        clip.crops_path = crops_path
    return clip


def _track_clip(path: Path, info, size: int, on_progress) -> ClipCrops:
    from ..analysis import analyse_clip
    from ..face import track_frames
    from ..video import read_frames

    estimate = max(1, int(info.frame_count))
    wanted = {0, estimate // 3, (2 * estimate) // 3, estimate - 1}
    thumbs: dict[int, np.ndarray] = {}

    def keep_thumbs(frames):
        for frame in frames:
            if frame.index in wanted:
                thumbs[frame.index] = _thumb(frame.image)
            yield frame

    track = track_frames(keep_thumbs(read_frames(path)), info.width, info.height, on_frame=on_progress)
    n = len(track)
    if n == 0:
        raise RetargetError(f"{path} has no decodable video frames")
    faces = int(track.found.sum())
    if faces < MIN_FACE_FRAMES:
        raise RetargetError(f"{path}: a face was found in {faces} of {n} frames; training needs at least "
                            f"{MIN_FACE_FRAMES}")
    fps = float(info.fps) if info.fps else 25.0
    smooth_landmarks, smooth_pose = _smoothing()
    analysis = analyse_clip(track, fps, None, smooth_landmarks, smooth_pose)
    steady = analysis.track.landmarks
    good = np.flatnonzero(track.found)
    affines = np.empty((n, 2, 3), np.float64)
    crop_points = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
    for t in good:
        affines[t] = crop_affine(steady[t], size)
        crop_points[t] = crop_landmarks(steady[t].astype(np.float64), affines[t])
    for t in np.flatnonzero(~track.found):
        affines[t] = affines[good[np.argmin(np.abs(good - t))]]
    idx = np.array(sorted(i for i in thumbs if i < n), np.int64)
    return ClipCrops(path=path, fps=fps, frame_count=n, found=track.found.copy(),
                     affines=affines.astype(np.float32), aus=analysis.expression.aus.astype(np.float32),
                     landmarks=crop_points, size=size, times=track.times.astype(np.float64),
                     width=info.width, height=info.height, rotation=_rotation(path),
                     neutral_index=int(analysis.expression.neutral_index), thumb_indices=idx,
                     thumbs=np.stack([thumbs[i] for i in idx]) if len(idx) else
                     np.zeros((0, THUMB_SIZE, THUMB_SIZE, 3), np.uint8))


def _thumb(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


def _rotation(path: Path) -> int:
    """Display rotation of the video stream in counter-clockwise quarter turns, as ``read_frames`` applies it."""
    from .. import video

    container = video._open_container(path)
    if container is None:
        return 0
    try:
        stream = video._video_stream(container)
        return 0 if stream is None else video._first_frame_rotation(container, stream)
    finally:
        container.close()


_ARRAYS = ("found", "affines", "aus", "landmarks", "times", "thumb_indices", "thumbs")


def _save_cache(clip: ClipCrops, npz_path: Path, json_path: Path, key: dict) -> None:
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = npz_path.with_name(f".{npz_path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{name: getattr(clip, name) for name in _ARRAYS})
    os.replace(tmp, npz_path)
    meta = {"key": key, "fps": clip.fps, "frame_count": clip.frame_count, "size": clip.size,
            "width": clip.width, "height": clip.height, "rotation": clip.rotation,
            "neutral_index": clip.neutral_index, "frames_with_face": int(clip.found.sum()),
            "au_names": list(AU_NAMES)}
    tmp = json_path.with_name(f".{json_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, json_path)  # written last: a cache entry without its .json is ignored


def _load_cache(npz_path: Path, json_path: Path, key: dict) -> ClipCrops | None:
    """The cached clip, or None when there is none or it does not match ``key`` (then it is rebuilt)."""
    if not (npz_path.is_file() and json_path.is_file()):
        return None
    try:
        meta = json.loads(json_path.read_text())
        if meta.get("key") != key or meta.get("au_names") != list(AU_NAMES):
            return None
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    n = int(meta["frame_count"])
    size = int(meta["size"])
    if (arrays["found"].shape != (n,) or arrays["affines"].shape != (n, 2, 3)
            or arrays["aus"].shape != (n, len(AU_NAMES)) or arrays["landmarks"].shape != (n, N_LANDMARKS, 3)):
        return None
    return ClipCrops(path=Path(key["path"]), fps=float(meta["fps"]), frame_count=n,
                     found=arrays["found"].astype(bool), affines=arrays["affines"], aus=arrays["aus"],
                     landmarks=arrays["landmarks"], size=size, times=arrays["times"], width=int(meta["width"]),
                     height=int(meta["height"]), rotation=int(meta["rotation"]),
                     neutral_index=int(meta["neutral_index"]), thumb_indices=arrays["thumb_indices"],
                     thumbs=arrays["thumbs"])


def _offsets_path(crops_path: Path) -> Path:
    return crops_path.with_name(crops_path.name.replace(".crops.npy", ".crops-offsets.npy"))


def _store_crops(clip: ClipCrops, crops_path: Path, on_progress) -> None:
    """Every frame's crop as JPEG, concatenated into ``crops_path`` (uint8), with (T + 1,) int64 offsets beside it."""
    from ..video import read_frames

    chunks, offsets = [], [0]
    for frame in read_frames(clip.path):
        if frame.index >= clip.frame_count:
            break
        crop = cut_crop(frame.image, clip.affines[frame.index].astype(np.float64), clip.size)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RetargetError(f"cannot encode the crop of frame {frame.index} of {clip.path}")
        chunks.append(buf.ravel())
        offsets.append(offsets[-1] + buf.size)
        if on_progress is not None:
            on_progress()
    if len(chunks) != clip.frame_count:
        raise RetargetError(f"{clip.path} changed while it was being prepared ({len(chunks)} frames now, "
                            f"{clip.frame_count} before); prepare it again")
    for target, array in ((crops_path, np.concatenate(chunks)),
                          (_offsets_path(crops_path), np.asarray(offsets, np.int64))):  # offsets last
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, target)


def _load_crop_offsets(crops_path: Path, frame_count: int) -> np.ndarray | None:
    """The (T + 1,) offsets of stored crops when they are complete, else None."""
    offsets_path = _offsets_path(crops_path)
    if not (crops_path.is_file() and offsets_path.is_file()):
        return None
    try:
        offsets = np.load(offsets_path, allow_pickle=False)
        blob = np.load(crops_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if offsets.shape != (frame_count + 1,) or blob.ndim != 1 or int(offsets[-1]) != blob.shape[0]:
        return None
    return offsets


# ---------------------------------------------------------------------------------------------- samples


@dataclass
class PairSample:
    """A batch of B (source, target, other) triples of ``S`` x ``S`` aligned crops, as numpy arrays.

    ``source`` and ``target`` are two different frames (both with a face) of the same clip; ``other`` is a
    frame of a different clip (a different person, as far as the clips are different people). With a single
    clip, ``other`` is a third frame of that clip (another frame than source and target where the clip has
    3 or more frames with a face). AUs are 0-5 in ``types.AU_NAMES`` order; landmarks are in crop pixels.
    """

    source: np.ndarray  # (B, S, S, 3) uint8 RGB
    target: np.ndarray  # (B, S, S, 3) uint8
    other: np.ndarray  # (B, S, S, 3) uint8
    source_aus: np.ndarray  # (B, 17) float32
    target_aus: np.ndarray  # (B, 17) float32
    other_aus: np.ndarray  # (B, 17) float32
    source_landmarks: np.ndarray  # (B, 478, 3) float32 crop px
    target_landmarks: np.ndarray  # (B, 478, 3) float32
    other_landmarks: np.ndarray  # (B, 478, 3) float32
    clip: np.ndarray  # (B,) int64: index of the source/target clip (SyntheticSampler: the identity)
    source_frame: np.ndarray  # (B,) int64 frame indices in that clip (SyntheticSampler: -1)
    target_frame: np.ndarray  # (B,) int64
    other_clip: np.ndarray  # (B,) int64
    other_frame: np.ndarray  # (B,) int64


class PairSampler:
    """Random (source, target, other) crops from prepared clips, decoded by random access with decord.

    Each triple: a clip drawn uniformly (every clip, i.e. every person, equally often whatever its length),
    two different frames of it with a face, and a frame with a face of another clip drawn uniformly among
    the others (see ``PairSample`` for one clip). Same clips and seed, same samples.

    Frames come from the clip's stored crops when it has them at this ``size`` (``prepare_clip(...,
    store_crops=True)``, fast), else from decord. Readers are opened lazily, checked against the cache (see
    the module docstring) the first time, and kept open for reuse, at most ``max_open`` at a time (least
    recently used closed first). ``size`` (default: the first clip's crop size) may differ from the size the
    clips were prepared at: affines and landmarks are scaled (and decord is used). Not thread-safe; pickling
    drops the open readers (each worker process opens its own).
    """

    def __init__(self, clips: list[ClipCrops], seed: int, num_threads: int = 2, size: int | None = None,
                 max_open: int = 64) -> None:
        if not clips:
            raise RetargetError("no clips to sample from")
        for c in clips:
            if int(c.found.sum()) < MIN_FACE_FRAMES:
                raise RetargetError(f"{c.path}: fewer than {MIN_FACE_FRAMES} frames with a face")
        self.clips = list(clips)
        self.size = int(size or clips[0].size)
        self.num_threads = int(num_threads)
        self.max_open = max(1, int(max_open))
        self._faces = [c.face_frames for c in self.clips]
        self._rng = np.random.default_rng(seed)
        self._readers: OrderedDict[int, object] = OrderedDict()
        self._turns: dict[int, int] = {}  # clips whose reader passed open_reader's checks: its quarter turns
        self._stores: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # stored crops, memory-mapped

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        state["_stores"] = {}
        return state

    def sample(self, batch: int) -> PairSample:
        rng = self._rng
        n = len(self.clips)
        clip = rng.integers(n, size=batch)
        other_clip = (clip + rng.integers(1, n, size=batch)) % n if n > 1 else clip.copy()
        src = np.empty(batch, np.int64)
        tgt = np.empty(batch, np.int64)
        oth = np.empty(batch, np.int64)
        for b in range(batch):
            faces = self._faces[clip[b]]
            src[b], tgt[b] = rng.choice(faces, size=2, replace=False)
            pool = self._faces[other_clip[b]]
            if n == 1 and len(pool) > 2:
                pool = pool[(pool != src[b]) & (pool != tgt[b])]
            oth[b] = rng.choice(pool)
        images = self._read([(c, f) for c, f in zip(np.r_[clip, clip, other_clip], np.r_[src, tgt, oth])])
        s = self.size

        def per(field: str, cs: np.ndarray, fs: np.ndarray) -> np.ndarray:
            rows = []
            for c, f in zip(cs, fs):
                value = getattr(self.clips[c], field)[f]
                rows.append(value * (s / self.clips[c].size) if field == "landmarks" else value)
            return np.stack(rows).astype(np.float32)

        return PairSample(
            source=images[:batch], target=images[batch:2 * batch], other=images[2 * batch:],
            source_aus=per("aus", clip, src), target_aus=per("aus", clip, tgt), other_aus=per("aus", other_clip, oth),
            source_landmarks=per("landmarks", clip, src), target_landmarks=per("landmarks", clip, tgt),
            other_landmarks=per("landmarks", other_clip, oth),
            clip=clip.astype(np.int64), source_frame=src, target_frame=tgt, other_clip=other_clip.astype(np.int64),
            other_frame=oth)

    def _read(self, wanted: list[tuple[int, int]]) -> np.ndarray:
        """Crops (len(wanted), S, S, 3) uint8 of (clip, frame) pairs: stored crops, or one decord batch a clip."""
        out = np.empty((len(wanted), self.size, self.size, 3), np.uint8)
        by_clip: dict[int, list[int]] = {}
        for k, (c, f) in enumerate(wanted):
            c, f = int(c), int(f)
            stored = self._stored(c)
            if stored is not None:
                blob, offsets = stored
                buf = np.asarray(blob[offsets[f]:offsets[f + 1]])
                out[k] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            else:
                by_clip.setdefault(c, []).append(f)
        frames: dict[tuple[int, int], np.ndarray] = {}
        for c in sorted(by_clip):
            indices = sorted(set(by_clip[c]))
            for f, image in zip(indices, self._decode(c, indices)):
                frames[c, f] = image
        for k, (c, f) in enumerate(wanted):
            c, f = int(c), int(f)
            if (c, f) in frames:
                clip = self.clips[c]
                affine = clip.affines[f].astype(np.float64) * (self.size / clip.size)
                out[k] = cut_crop(frames[c, f], affine, self.size)
        return out

    def _stored(self, c: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(JPEG blob memmap, offsets) of a clip with stored crops at this sampler's size, else None."""
        clip = self.clips[c]
        if clip.crops_path is None or clip.size != self.size:
            return None
        if c not in self._stores:
            offsets = _load_crop_offsets(Path(clip.crops_path), clip.frame_count)
            if offsets is None:
                raise RetargetError(f"the stored crops of {clip.path} ({clip.crops_path}) are missing or damaged; "
                                    "prepare the clip again")
            self._stores[c] = (np.load(clip.crops_path, mmap_mode="r", allow_pickle=False), offsets)
        return self._stores[c]

    def _decode(self, c: int, indices: list[int]) -> np.ndarray:
        reader = self._reader(c)
        clip = self.clips[c]
        try:
            images = reader.get_batch(indices).asnumpy()
        except Exception as exc:  # decord raises its own DECORDError
            raise RetargetError(f"cannot decode frames {indices[:4]} of {clip.path} with decord: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        return _rotate(images, self._turns[c])

    def _reader(self, c: int):
        if c in self._readers:
            self._readers.move_to_end(c)
            return self._readers[c]
        reader, turns = open_reader(self.clips[c], self.num_threads, check=c not in self._turns)
        self._turns.setdefault(c, turns)
        self._readers[c] = reader
        while len(self._readers) > self.max_open:
            self._readers.popitem(last=False)
        return reader


def _rotate(images: np.ndarray, turns: int) -> np.ndarray:
    """(N, H, W, 3) stored frames -> display orientation (``turns`` counter-clockwise quarter turns)."""
    if turns % 4 == 0:
        return images
    return np.ascontiguousarray(np.rot90(images, k=turns, axes=(1, 2)))


def open_reader(clip: ClipCrops, num_threads: int = 2, check: bool = True):
    """A decord ``VideoReader`` on ``clip.path`` and the quarter turns that bring its frames to PyAV's orientation.

    Raises RetargetError naming the file when decord has fewer frames than the cache, and, with ``check``,
    other frame times (more than half a frame apart) or other pixels on the cached thumbnails in every
    orientation. Checking decodes the thumbnail frames (up to 2 s on a long clip here), so a sampler checks a
    clip the first time it opens it only. Without ``check`` the turns are 0 when decord's frame size is the
    display size, else ``clip.rotation``.
    """
    import decord

    path = clip.path
    if not Path(path).is_file():
        raise RetargetError(f"{path} not found (it was prepared for training; was it moved?)")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # DECORDError and friends
        raise RetargetError(f"decord cannot open {path}: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from exc
    n = clip.frame_count
    fix = "re-encode it at a constant frame rate and prepare it again"
    if len(reader) < n:
        raise RetargetError(f"{path}: decord decodes {len(reader)} frames, PyAV decoded {n}; {fix}")
    h, w = reader[0].shape[:2] if len(reader) else (0, 0)
    turns = 0 if (not clip.width or (h, w) == (clip.height, clip.width)) else clip.rotation % 4
    reader.seek(0)
    if not check:
        return reader, turns
    if clip.times is not None and n > 1:
        stamps = np.asarray(reader.get_frame_timestamp(np.arange(n)), np.float64)[:, 0]
        drift = np.abs((stamps - stamps[0]) - (clip.times - clip.times[0]))
        if drift.max() > 0.5 / max(clip.fps, 1e-3):
            bad = int(np.argmax(drift > 0.5 / max(clip.fps, 1e-3)))
            raise RetargetError(f"{path}: decord's frame {bad} is at {stamps[bad] - stamps[0]:.3f} s, PyAV's at "
                                f"{clip.times[bad] - clip.times[0]:.3f} s (variable frame timing?); {fix}")
    if clip.thumbs is not None and clip.thumb_indices is not None and len(clip.thumb_indices):
        images = reader.get_batch([int(i) for i in clip.thumb_indices]).asnumpy()
        reader.seek(0)
        # decord 0.6.0 here applies the display rotation itself; a build that does not is turned like read_frames
        worst: dict[int, tuple[float, int]] = {}
        for k in dict.fromkeys((0, clip.rotation % 4, 1, 2, 3)):
            diffs = [float(np.abs(_thumb(image).astype(np.int16) - thumb.astype(np.int16)).mean())
                     for image, thumb in zip(_rotate(images, k), clip.thumbs)]
            worst[k] = (max(diffs), int(np.argmax(diffs)))
            if worst[k][0] <= _THUMB_TOLERANCE:
                break
        turns = min(worst, key=lambda k: worst[k][0])
        diff, at = worst[turns]
        if diff > _THUMB_TOLERANCE:
            raise RetargetError(f"{path}: decord's frame {int(clip.thumb_indices[at])} differs from PyAV's "
                                f"(mean difference {diff:.1f}/255); {fix}")
        shape = _rotate(images[:1], turns).shape[1:3]
        if clip.width and shape != (clip.height, clip.width):
            raise RetargetError(f"{path}: decord's frames are {shape[1]}x{shape[0]}, PyAV's "
                                f"{clip.width}x{clip.height}; {fix}")
    return reader, turns


# -------------------------------------------------------------------------------------------- synthetic


_AU = {name: k for k, name in enumerate(AU_NAMES)}
PARAMS = ("lid", "brow_inner", "brow_outer", "mouth_open", "mouth_width")
"""Expression parameters of a synthetic face, each 0..1 (lids closed, brows raised, mouth open / wide)."""


def synthetic_aus(params: np.ndarray) -> np.ndarray:
    """(..., 5) parameters in ``PARAMS`` order -> (..., 17) float32 AUs, 0-5.

    AU01 = 5 brow_inner, AU02 = 5 brow_outer, AU12 = 5 mouth_width, AU25 = 5 min(1, 2.5 mouth_open) (the
    lips part early), AU26 = 5 mouth_open, AU45 = 5 lid; every other AU 0.
    """
    p = np.asarray(params, dtype=np.float64)
    aus = np.zeros(p.shape[:-1] + (len(AU_NAMES),), np.float32)
    aus[..., _AU["AU01"]] = 5 * p[..., 1]
    aus[..., _AU["AU02"]] = 5 * p[..., 2]
    aus[..., _AU["AU12"]] = 5 * p[..., 4]
    aus[..., _AU["AU25"]] = 5 * np.minimum(1.0, 2.5 * p[..., 3])
    aus[..., _AU["AU26"]] = 5 * p[..., 3]
    aus[..., _AU["AU45"]] = 5 * p[..., 0]
    return aus


@dataclass(frozen=True)
class _Identity:
    skin: np.ndarray  # (3,) float RGB 0-255
    hair: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    background: np.ndarray  # (S2, S2, 3) uint8 at the drawing resolution
    centre: tuple[float, float]  # face centre, units of the crop side
    radii: tuple[float, float]  # face ellipse half-axes (x, y)
    eye_dx: float  # eye centre distance from the midline
    eye_y: float
    eye_size: tuple[float, float]  # eye half-axes
    mouth_y: float
    mouth_w: float  # half width at rest
    brow_gap: float  # brow height above the eye's top at rest


class SyntheticSampler:
    """Cartoon faces with known AUs: same ``sample(batch)`` interface and ``size`` as ``PairSampler``.

    ``identities`` made-up people (skin, hair and lip colour, face size and shape, eye spacing, mouth
    position, a textured background of their own) drawn with numpy/cv2 in the aligned-crop layout of
    ``crops`` (forehead near the top, chin near the bottom). Each face has five expression parameters
    (``PARAMS``: lids closing, inner and outer brows rising, mouth opening, mouth widening) and its AUs are
    ``synthetic_aus`` of them. ``source`` and ``target`` are the same identity with independent
    expressions; ``other`` is another identity. ``PairSample.clip``/``other_clip`` hold the identities and
    the frame fields are -1.

    Landmarks are a rough placeholder in crop pixels: the face oval, eye contours, irises, brows, outer and
    inner lips and the nose line (``landmarks`` index sets) lie on the drawn features; every other point sits
    on a ring inside the face; z is 0. Seeded: the same ``seed`` gives the same identities and samples.
    """

    def __init__(self, size: int = 64, seed: int = 0, identities: int = 8) -> None:
        if size < 16:
            raise ValueError("size must be at least 16")
        if identities < 2:
            raise ValueError("SyntheticSampler needs at least 2 identities")
        self.size = int(size)
        self.identities = [self._identity(np.random.default_rng([seed, 1, k])) for k in range(identities)]
        self._rng = np.random.default_rng([seed, 2])

    # -- sampling

    def random_params(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 5) expression parameters: each 0 (at rest) with some probability, else uniform in 0..1."""
        p = rng.uniform(0.0, 1.0, size=(n, len(PARAMS)))
        rest = rng.uniform(size=(n, len(PARAMS))) < np.array([0.6, 0.4, 0.4, 0.4, 0.4])
        return np.where(rest, 0.0, p)

    def sample(self, batch: int) -> PairSample:
        rng = self._rng
        k = len(self.identities)
        ident = rng.integers(k, size=batch)
        other = (ident + rng.integers(1, k, size=batch)) % k
        params = self.random_params(rng, 3 * batch)
        who = np.r_[ident, ident, other]
        drawn = [self.draw(int(i), p) for i, p in zip(who, params)]
        images = np.stack([d[0] for d in drawn])
        points = np.stack([d[1] for d in drawn])
        aus = synthetic_aus(params)
        b = batch
        minus = np.full(batch, -1, np.int64)
        return PairSample(source=images[:b], target=images[b:2 * b], other=images[2 * b:],
                          source_aus=aus[:b], target_aus=aus[b:2 * b], other_aus=aus[2 * b:],
                          source_landmarks=points[:b], target_landmarks=points[b:2 * b],
                          other_landmarks=points[2 * b:], clip=ident.astype(np.int64), source_frame=minus,
                          target_frame=minus.copy(), other_clip=other.astype(np.int64), other_frame=minus.copy())

    # -- drawing

    def _identity(self, rng: np.random.Generator) -> _Identity:
        s2 = 2 * self.size  # drawn at twice the size, then averaged down
        tones = np.array([[241, 194, 167], [224, 172, 138], [198, 134, 99], [141, 85, 54], [255, 219, 190],
                          [170, 110, 80]], float)
        skin = np.clip(tones[rng.integers(len(tones))] + rng.normal(0, 8, 3), 0, 255)
        hair = rng.uniform(10, 120, 3) * rng.uniform(0.5, 1.0)
        base = rng.uniform(40, 220, 3)
        noise = cv2.resize(rng.uniform(-60, 60, (6, 6, 3)).astype(np.float32), (s2, s2),
                           interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[0:s2, 0:s2].astype(np.float32) / s2
        angle = rng.uniform(0, np.pi)
        stripes = 25 * np.sin(2 * np.pi * rng.uniform(3, 8) * (xx * np.cos(angle) + yy * np.sin(angle)))
        background = np.clip(base + noise + stripes[..., None] + rng.normal(0, 6, (s2, s2, 3)), 0, 255)
        rx, ry = rng.uniform(0.29, 0.36), rng.uniform(0.37, 0.42)
        return _Identity(skin=skin, hair=hair, lips=np.clip(skin * [0.85, 0.5, 0.5] + [40, 0, 10], 0, 255),
                         iris=rng.uniform(20, 140, 3), background=background.astype(np.uint8),
                         centre=(0.5 + rng.uniform(-0.01, 0.01), 0.49 + rng.uniform(-0.01, 0.01)),
                         radii=(rx, ry), eye_dx=rng.uniform(0.13, 0.16), eye_y=rng.uniform(0.33, 0.37),
                         eye_size=(rng.uniform(0.050, 0.065), rng.uniform(0.022, 0.030)),
                         mouth_y=rng.uniform(0.66, 0.71), mouth_w=rng.uniform(0.08, 0.11),
                         brow_gap=rng.uniform(0.035, 0.05))

    def draw(self, identity: int, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One face: ((S, S, 3) uint8 image, (478, 3) float32 placeholder landmarks in crop px)."""
        d = self.identities[identity]
        lid, brow_in, brow_out, mouth_open, mouth_width = (float(v) for v in params)
        s2 = 2 * self.size
        img = d.background.copy()
        cx, cy = d.centre
        rx, ry = d.radii
        points = np.zeros((N_LANDMARKS, 3), np.float32)
        points[:, 0], points[:, 1] = cx, cy

        def px(v: float) -> int:  # crop units -> fixed-point drawing coordinates (4 fractional bits)
            return round(v * s2 * 16)

        def ellipse(x: float, y: float, ax: float, ay: float, colour, thickness: int = -1) -> None:
            cv2.ellipse(img, (px(x), px(y)), (px(ax), px(ay)), 0, 0, 360, [float(c) for c in colour],
                        thickness, cv2.LINE_AA, 4)

        ellipse(cx, cy - 0.06, rx * 1.08, ry * 0.95, d.hair)  # hair behind the head
        ellipse(cx, cy, rx, ry, d.skin)
        phi = np.arange(len(lm.FACE_OVAL)) * 2 * np.pi / len(lm.FACE_OVAL)  # from the top, towards image right
        points[lm.FACE_OVAL, 0] = cx + rx * np.sin(phi)
        points[lm.FACE_OVAL, 1] = cy - ry * np.cos(phi)
        rest = np.setdiff1d(np.arange(N_LANDMARKS), np.concatenate([
            lm.FACE_OVAL, lm.RIGHT_EYE, lm.LEFT_EYE, lm.RIGHT_IRIS, lm.LEFT_IRIS, lm.RIGHT_BROW, lm.LEFT_BROW,
            lm.OUTER_LIP_LOOP, lm.INNER_LIP_LOOP, [168, 6, 197, 195, 5, 4, 1, 2, *lm.NOSE_ALAR]]))
        ring = np.arange(len(rest)) * 2 * np.pi / len(rest)
        points[rest, 0] = cx + 0.6 * rx * np.sin(ring)
        points[rest, 1] = cy - 0.6 * ry * np.cos(ring)

        # nose: a shaded line and base
        nose_top, nose_tip, nose_w = d.eye_y + 0.02, d.mouth_y - 0.09, 0.035
        shade = d.skin * 0.75
        cv2.line(img, (px(cx), px(nose_top)), (px(cx - 0.01), px(nose_tip)), shade.tolist(), max(1, s2 // 64),
                 cv2.LINE_AA, 4)
        cv2.ellipse(img, (px(cx), px(nose_tip)), (px(nose_w), px(0.012)), 0, 0, 180, shade.tolist(),
                    max(1, s2 // 64), cv2.LINE_AA, 4)
        nose_line = np.array([168, 6, 197, 195, 5, 4, 1])
        points[nose_line, 0] = cx
        points[nose_line, 1] = np.linspace(d.eye_y, nose_tip, len(nose_line))
        points[2, :2] = cx, nose_tip + 0.012
        points[list(lm.NOSE_ALAR), 0] = cx - nose_w, cx + nose_w
        points[list(lm.NOSE_ALAR), 1] = nose_tip

        # eyes (sclera, iris, upper lid coming down) and brows
        ew, eh = d.eye_size
        yy, xx = (np.mgrid[0:s2, 0:s2] + 0.5) / s2
        for side, contour, iris_idx, brow_idx in ((-1, lm.RIGHT_EYE, lm.RIGHT_IRIS, lm.RIGHT_BROW),
                                                  (1, lm.LEFT_EYE, lm.LEFT_IRIS, lm.LEFT_BROW)):
            ex, ey = cx + side * d.eye_dx, d.eye_y
            inside = ((xx - ex) / ew) ** 2 + ((yy - ey) / eh) ** 2 <= 1
            lid_y = ey - eh + 2 * eh * lid
            open_ = inside & (yy >= lid_y)
            img[inside] = d.skin * 0.85
            img[open_] = (245, 245, 240)
            img[open_ & ((xx - ex) ** 2 + (yy - ey) ** 2 <= (0.8 * eh) ** 2)] = d.iris
            img[inside & (np.abs(yy - lid_y) <= 1.0 / s2)] = (40, 25, 20)
            theta = np.arange(16) * np.pi / 8  # outer corner, upper lid outer->inner, inner corner, lower lid
            points[contour, 0] = ex + side * ew * np.cos(theta)
            points[contour, 1] = ey - eh * np.sin(theta)
            upper = contour[1:8]
            points[upper, 1] = np.maximum(points[upper, 1], min(lid_y, ey + eh))
            points[iris_idx, 0] = ex + np.array([0, 0.8 * eh, 0, -0.8 * eh, 0])
            points[iris_idx, 1] = ey + np.array([0, 0, -0.8 * eh, 0, 0.8 * eh])
            base = ey - eh - d.brow_gap
            inner = (ex - side * ew * 0.9, base - 0.05 * brow_in)
            outer = (ex + side * ew * 1.2, base + 0.01 - 0.05 * brow_out)
            cv2.line(img, (px(outer[0]), px(outer[1])), (px(inner[0]), px(inner[1])), d.hair.tolist(),
                     max(2, s2 // 40), cv2.LINE_AA, 4)
            t = np.linspace(0, 1, 5)
            along_x = outer[0] + (inner[0] - outer[0]) * t
            along_y = outer[1] + (inner[1] - outer[1]) * t
            points[brow_idx[:5], 0], points[brow_idx[:5], 1] = along_x, along_y - 0.01
            points[brow_idx[5:], 0], points[brow_idx[5:], 1] = along_x, along_y + 0.01

        # mouth: lips, and the dark opening with a row of teeth
        mw = d.mouth_w * (0.85 + 0.45 * mouth_width)
        lip_h, gap = 0.022, 0.07 * mouth_open
        my = d.mouth_y + gap / 2
        ellipse(cx, my, mw, lip_h + gap / 2, d.lips)
        if gap > 0.002:
            ellipse(cx, my, mw * 0.8, gap / 2, (45, 15, 20))
            cv2.rectangle(img, (px(cx - mw * 0.45), px(my - gap / 2)), (px(cx + mw * 0.45), px(my - gap / 4)),
                          (235, 235, 225), -1, cv2.LINE_AA, 4)
            ellipse(cx, my, mw * 0.8, gap / 2, d.lips, max(1, s2 // 64))
        else:
            cv2.line(img, (px(cx - mw * 0.8), px(my)), (px(cx + mw * 0.8), px(my)), (90, 30, 35), 1, cv2.LINE_AA, 4)
        theta = np.r_[np.pi - np.arange(11) * np.pi / 10, -np.arange(1, 10) * np.pi / 10]
        points[lm.OUTER_LIP_LOOP, 0] = cx + mw * np.cos(theta)
        points[lm.OUTER_LIP_LOOP, 1] = my - (lip_h + gap / 2) * np.sin(theta)
        points[lm.INNER_LIP_LOOP, 0] = cx + 0.8 * mw * np.cos(theta)
        points[lm.INNER_LIP_LOOP, 1] = my - gap / 2 * np.sin(theta)

        image = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        points[:, :2] *= self.size
        points[:, 2] = 0.0
        return image, points
