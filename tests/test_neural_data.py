"""The learned generator's data: aligned crops (``neural.crops``), prepared clips, pair and synthetic samplers.

Fast tests use landmark sets moved by known similarities, drawn images, the synthetic sampler and short clips
of the astronaut photo encoded into pytest's tmp_path. Tests marked ``media`` use the shortest real clip
(drv_lp_d0.mp4, 78 frames) and skip where ../shared/media is absent.
"""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from _helpers import media_file

from retarget import face
from retarget import landmarks as lm
from retarget.errors import RetargetError
from retarget.neural import crops
from retarget.neural.crops import crop_affine, crop_landmarks, cut_crop, invert_affine, smooth_affines
from retarget.neural.data import (PARAMS, ClipCrops, PairSampler, SyntheticSampler, list_clips, prepare_clip,
                                  synthetic_aus)
from retarget.types import AU_NAMES
from retarget.video import read_frames


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(affine: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ affine[:, :2].T + affine[:, 2]


def template_face(affine_crop_to_frame: np.ndarray, size: int = 256) -> np.ndarray:
    """(478, 3) landmarks whose stable points are the template, carried into a frame by a known map."""
    rng = np.random.default_rng(0)
    points = np.zeros((478, 3))
    points[:, :2] = rng.uniform(0, size, (478, 2))  # expression points: anything, they are not fitted
    points[crops.STABLE, :2] = crops.TEMPLATE * size
    points[:, 2] = rng.normal(0, 10, 478)
    out = points.copy()
    out[:, :2] = apply(affine_crop_to_frame, points[:, :2])
    out[:, 2] = points[:, 2] * np.sqrt(np.linalg.det(affine_crop_to_frame[:, :2]))
    return out


# ----------------------------------------------------------------------------------------------------- crops


def test_crop_affine_undoes_a_known_similarity() -> None:
    to_frame = similarity(1.7, 23.0, 310.0, -40.0)
    frame_points = template_face(to_frame)
    affine = crop_affine(frame_points, 256)
    assert affine.shape == (2, 3) and affine.dtype == np.float64
    np.testing.assert_allclose(affine, invert_affine(to_frame), atol=1e-9)
    back = crop_landmarks(frame_points, affine)
    np.testing.assert_allclose(back[crops.STABLE, :2], crops.TEMPLATE * 256, atol=1e-7)
    np.testing.assert_allclose(back[:, 2], template_face(np.eye(2, 3))[:, 2], atol=1e-7)  # z scaled back


def test_crop_affine_fits_only_the_stable_points() -> None:
    points = template_face(similarity(2.0, -8.0, 50.0, 90.0))
    moved = points.copy()
    moving = np.setdiff1d(np.arange(478), crops.STABLE)  # mouth, brows, lids, cheeks, chin...
    moved[moving, :2] += np.random.default_rng(1).normal(0, 30, (len(moving), 2))
    np.testing.assert_allclose(crop_affine(moved, 256), crop_affine(points, 256), atol=1e-9)
    assert not np.isin([*lm.MOUTH_CORNERS, lm.CHIN, *lm.RIGHT_BROW, *lm.CHEEKS, 159, 145], crops.STABLE).any()


def test_crop_sizes_only_scale() -> None:
    points = template_face(similarity(0.8, 5.0, 20.0, 30.0))
    a256, a512 = crop_affine(points, 256), crop_affine(points, 512)
    np.testing.assert_allclose(a512, 2 * a256, atol=1e-9)
    np.testing.assert_allclose(crop_landmarks(points, a512), 2 * crop_landmarks(points, a256), atol=1e-7)


def test_invert_affine_round_trip_and_landmark_dtype() -> None:
    affine = similarity(1.3, 37.0, -12.0, 45.0)
    inverse = invert_affine(affine)
    xy = np.random.default_rng(2).uniform(-100, 400, (50, 2))
    np.testing.assert_allclose(apply(inverse, apply(affine, xy)), xy, atol=1e-9)
    pts = np.c_[xy, np.ones(50)].astype(np.float32)
    pts[3] = np.nan
    out = crop_landmarks(pts, affine)
    assert out.dtype == np.float32 and np.isnan(out[3]).all()
    np.testing.assert_allclose(out[:, 2][~np.isnan(out[:, 2])], 1.3, rtol=1e-6)


def test_crop_affine_refuses_a_lost_face() -> None:
    points = template_face(np.eye(2, 3))
    points[crops.STABLE[0]] = np.nan
    with pytest.raises(ValueError, match="finite"):
        crop_affine(points, 256)


def test_cut_crop_puts_a_frame_point_where_the_affine_says() -> None:
    image = np.full((300, 400, 3), 40, np.uint8)
    cv2.circle(image, (250, 120), 6, (255, 200, 0), -1)
    affine = crop_affine(template_face(similarity(1.4, 15.0, 60.0, -30.0)), 128)
    crop = cut_crop(image, affine, 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    ys, xs = np.nonzero(crop[..., 0] > 150)
    x, y = apply(affine, np.array([250.0, 120.0]))
    assert abs(xs.mean() - x) < 0.5 and abs(ys.mean() - y) < 0.5


def test_template_is_a_level_frontal_face() -> None:
    t = crops.TEMPLATE
    where = {int(i): k for k, i in enumerate(crops.STABLE)}
    assert t.shape == (len(crops.STABLE), 2) and ((t > 0.05) & (t < 0.95)).all()
    left, right = t[where[263]], t[where[33]]
    assert abs(left[1] - right[1]) < 1e-9 and abs((left[0] + right[0]) / 2 - 0.5) < 1e-9
    assert abs(t[where[1], 0] - 0.5) < 1e-9 and 0.45 < t[where[1], 1] < 0.6  # the nose tip near the centre


def test_astronaut_crop_layout(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    affine = crop_affine(astronaut_landmarks, 256)
    c = crop_landmarks(astronaut_landmarks, affine) / 256
    eyes = c[263, :2] - c[33, :2]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) < 2
    assert abs(c[lm.NOSE_TIP, 0] - 0.5) < 0.03 and abs(c[lm.NOSE_TIP, 1] - 0.5) < 0.08
    width = c[lm.FACE_OVAL, 0].max() - c[lm.FACE_OVAL, 0].min()
    assert 0.6 < width < 0.8
    assert 0.03 < c[10, 1] < 0.15 and 0.8 < c[lm.CHIN, 1] < 0.97  # forehead top and chin inside, with margins
    crop = cut_crop(astronaut, affine, 256)
    assert crop.shape == (256, 256, 3)


def test_smooth_affines_keeps_a_constant_and_fills_lost_frames() -> None:
    a = np.tile(similarity(1.2, 10.0, 5.0, 6.0), (20, 1, 1))
    found = np.ones(20, bool)
    found[[0, 7, 8]] = False
    a[~found] = np.nan
    out = smooth_affines(a, found, 25.0, 0.33)
    np.testing.assert_allclose(out, np.tile(similarity(1.2, 10.0, 5.0, 6.0), (20, 1, 1)), atol=1e-9)


# ------------------------------------------------------------------------------------------------ synthetic


def test_synthetic_sampler_shapes_and_dtypes() -> None:
    s = SyntheticSampler(size=64, seed=0)
    b = s.sample(5)
    assert s.size == 64
    for name in ("source", "target", "other"):
        assert getattr(b, name).shape == (5, 64, 64, 3) and getattr(b, name).dtype == np.uint8
        assert getattr(b, f"{name}_aus").shape == (5, 17) and getattr(b, f"{name}_aus").dtype == np.float32
        pts = getattr(b, f"{name}_landmarks")
        assert pts.shape == (5, 478, 3) and pts.dtype == np.float32
        assert ((pts[..., :2] >= 0) & (pts[..., :2] < 64)).all()
    assert (b.clip != b.other_clip).all()  # other is another identity
    assert ((b.source_aus >= 0) & (b.source_aus <= 5)).all()


def test_synthetic_sampler_is_seeded() -> None:
    a, b, c = SyntheticSampler(48, seed=3).sample(4), SyntheticSampler(48, seed=3).sample(4), \
        SyntheticSampler(48, seed=4).sample(4)
    for name in ("source", "target", "other", "source_aus", "other_landmarks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.source, c.source)


def test_synthetic_aus_follow_the_drawing() -> None:
    au = {n: k for k, n in enumerate(AU_NAMES)}
    p = np.array([[1.0, 0.2, 0.6, 0.5, 0.8], [0, 0, 0, 0.2, 0]])
    aus = synthetic_aus(p)
    assert aus.shape == (2, 17)
    assert aus[0, au["AU45"]] == 5 and aus[0, au["AU01"]] == pytest.approx(1.0)
    assert aus[0, au["AU02"]] == pytest.approx(3.0) and aus[0, au["AU12"]] == pytest.approx(4.0)
    assert aus[0, au["AU26"]] == pytest.approx(2.5) and aus[0, au["AU25"]] == 5
    assert aus[1, au["AU25"]] == pytest.approx(2.5) and aus[1, au["AU26"]] == pytest.approx(1.0)
    others = [au[n] for n in AU_NAMES if n not in ("AU01", "AU02", "AU12", "AU25", "AU26", "AU45")]
    assert not aus[:, others].any()
    # and the drawing changes where those AUs say: lids close over the eyes, the mouth opens dark
    s = SyntheticSampler(size=64, seed=0)
    rest = np.zeros(len(PARAMS))
    neutral, pts = s.draw(0, rest)
    closed, _ = s.draw(0, np.array([1.0, 0, 0, 0, 0]))
    opened, open_pts = s.draw(0, np.array([0, 0, 0, 1.0, 0]))
    eye = pts[lm.RIGHT_IRIS[0], :2].round().astype(int)
    assert closed[eye[1], eye[0]].astype(int).sum() != neutral[eye[1], eye[0]].astype(int).sum()
    mouth = open_pts[lm.INNER_LIP_LOOP, :2].mean(0).round().astype(int)
    box = (slice(mouth[1] - 1, mouth[1] + 2), slice(mouth[0] - 3, mouth[0] + 4))
    assert opened[box].mean() < neutral[box].mean() - 20
    gap = open_pts[lm.LOWER_LIP_INNER, 1] - open_pts[lm.UPPER_LIP_INNER, 1]
    assert gap > 3 and pts[lm.LOWER_LIP_INNER, 1] - pts[lm.UPPER_LIP_INNER, 1] < 0.5


# ----------------------------------------------------------------------------------------------- list_clips


def test_list_clips_walks_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.mp4", "a/deep/y.MOV", "a/deep/z.webm", "a/notes.txt", "a/.hidden.mp4", "b.mkv"):
        (tmp_path / name).write_bytes(b"0")
    found = list_clips([tmp_path / "a", tmp_path / "b.mkv", tmp_path / "a" / "x.mp4"])
    assert found == sorted(p.resolve() for p in (tmp_path / "a/x.mp4", tmp_path / "a/deep/y.MOV",
                                                  tmp_path / "a/deep/z.webm", tmp_path / "b.mkv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RetargetError, match="no video clips"):
        list_clips([tmp_path / "empty"])
    with pytest.raises(RetargetError, match="not found"):
        list_clips([tmp_path / "missing"])


# ------------------------------------------------------------------------------------- prepared astronaut clip


def astronaut_clip(path: Path, astronaut: np.ndarray, n: int = 12, rotation: int = 0, blank: bool = False) -> Path:
    """An H.264 clip of the astronaut's head drifting and turning a little (or of a grey picture)."""
    base = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, width=256, height=192, time_base=Fraction(1, 1000),
                               options={"preset": "ultrafast", "crf": "12"})
        video.pix_fmt = "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        for i in range(n):
            m = cv2.getRotationMatrix2D((128, 96), 2.0 * i - 10, 1.0 + 0.01 * i)
            m[:, 2] += (-20 + 3 * i, -40 + i)
            image = np.full((192, 256, 3), 128, np.uint8) if blank else \
                cv2.warpAffine(base, m, (256, 192), borderMode=cv2.BORDER_REFLECT)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i * 40, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


@pytest.fixture(scope="module")
def astro_clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> ClipCrops:
    folder = tmp_path_factory.mktemp("astro")
    return prepare_clip(astronaut_clip(folder / "astro.mp4", astronaut), folder / "cache", 128)


def test_prepare_clip_contents(astro_clip: ClipCrops) -> None:
    c = astro_clip
    assert c.frame_count == 12 and c.found.all() and c.size == 128 and c.fps == 25.0
    assert c.affines.shape == (12, 2, 3) and c.affines.dtype == np.float32
    assert c.aus.shape == (12, 17) and c.aus.dtype == np.float32
    assert c.landmarks.shape == (12, 478, 3) and c.landmarks.dtype == np.float32
    nose = c.landmarks[:, lm.NOSE_TIP, :2] / 128
    assert (np.abs(nose - 0.5) < 0.08).all()  # the face is followed: centred in every crop
    assert np.abs(c.aus).max() < 2.0  # a still photo moved around: no strong expression (measure noise only)


def test_cache_reused_and_rebuilt_when_the_file_changes(tmp_path: Path, astronaut: np.ndarray,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clip = astronaut_clip(tmp_path / "a.mp4", astronaut, n=6)
    cache = tmp_path / "cache"
    calls = []
    real = face.track_frames
    monkeypatch.setattr(face, "track_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = prepare_clip(clip, cache, 64)
    second = prepare_clip(clip, cache, 64)
    assert len(calls) == 1 and sorted(p.suffix for p in cache.iterdir()) == [".json", ".npz"]
    for name in ("found", "affines", "aus", "landmarks", "times"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.path == clip.resolve() and second.frame_count == 6
    prepare_clip(clip, cache, 128)  # another crop size: tracked again
    assert len(calls) == 2
    astronaut_clip(clip, astronaut, n=7)  # the file changes
    assert prepare_clip(clip, cache, 64).frame_count == 7 and len(calls) == 3


def test_prepare_clip_errors(tmp_path: Path, astronaut: np.ndarray) -> None:
    still = tmp_path / "face.png"
    cv2.imwrite(str(still), np.ascontiguousarray(astronaut[..., ::-1]))
    with pytest.raises(RetargetError, match="face.png is a still image"):
        prepare_clip(still, tmp_path / "cache")
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w") as out:
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    with pytest.raises(RetargetError, match="sound.m4a has no video stream"):
        prepare_clip(sound, tmp_path / "cache")
    blank = astronaut_clip(tmp_path / "blank.mp4", astronaut, n=4, blank=True)
    with pytest.raises(RetargetError, match=r"blank.mp4: a face was found in 0 of 4 frames"):
        prepare_clip(blank, tmp_path / "cache")
    with pytest.raises(RetargetError, match="not found"):
        prepare_clip(tmp_path / "missing.mp4", tmp_path / "cache")


def pyav_crops(clip: ClipCrops, frames: list[int], size: int | None = None) -> np.ndarray:
    size = size or clip.size
    images = {f.index: f.image for f in read_frames(clip.path) if f.index in frames}
    return np.stack([cut_crop(images[i], clip.affines[i].astype(np.float64) * size / clip.size, size)
                     for i in frames])


def check_pairs(sampler: PairSampler, sample, clips: list[ClipCrops]) -> None:
    assert (sample.source_frame != sample.target_frame).all()
    for b in range(len(sample.clip)):
        c, i, j = clips[sample.clip[b]], sample.source_frame[b], sample.target_frame[b]
        assert c.found[i] and c.found[j]
        np.testing.assert_array_equal(sample.source_aus[b], c.aus[i])
        np.testing.assert_array_equal(sample.target_aus[b], c.aus[j])
        np.testing.assert_allclose(sample.target_landmarks[b], c.landmarks[j] * sampler.size / c.size, rtol=1e-6)
        o = clips[sample.other_clip[b]]
        np.testing.assert_array_equal(sample.other_aus[b], o.aus[sample.other_frame[b]])
        if len(clips) > 1:
            assert sample.other_clip[b] != sample.clip[b]


def test_pair_sampler_on_the_astronaut_clip(astro_clip: ClipCrops) -> None:
    s = PairSampler([astro_clip], seed=5, num_threads=1)
    b = s.sample(4)
    assert b.source.shape == (4, 128, 128, 3) and b.source.dtype == np.uint8
    check_pairs(s, b, [astro_clip])
    assert ((b.other_frame != b.source_frame) & (b.other_frame != b.target_frame)).all()  # one clip: a 3rd frame
    want = pyav_crops(astro_clip, [int(i) for i in b.source_frame])
    assert np.abs(b.source.astype(int) - want).max() <= 1  # decord's frame i is PyAV's frame i
    again = PairSampler([astro_clip], seed=5, num_threads=1).sample(4)
    np.testing.assert_array_equal(again.source, b.source)
    np.testing.assert_array_equal(again.target_frame, b.target_frame)
    copy = pickle.loads(pickle.dumps(s))  # readers are dropped and reopened
    assert copy.sample(2).source.shape == (2, 128, 128, 3)
    big = PairSampler([astro_clip], seed=5, size=256).sample(1)  # another size: affines and landmarks scaled
    assert big.source.shape == (1, 256, 256, 3)
    np.testing.assert_allclose(big.source_landmarks[0], 2 * astro_clip.landmarks[big.source_frame[0]], rtol=1e-6)


def test_stored_crops_match_decoded_crops(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = astronaut_clip(tmp_path / "a.mp4", astronaut, n=6)
    plain = prepare_clip(path, tmp_path / "cache", 96)
    stored = prepare_clip(path, tmp_path / "cache", 96, store_crops=True)
    assert plain.crops_path is None and stored.crops_path is not None
    assert prepare_clip(path, tmp_path / "cache", 96).crops_path == stored.crops_path  # found again
    a = PairSampler([stored], seed=1).sample(3)
    b = PairSampler([plain], seed=1).sample(3)
    np.testing.assert_array_equal(a.source_frame, b.source_frame)
    assert np.abs(a.source.astype(int) - b.source).mean() < 3  # JPEG quality 95


def test_rotated_clip_crops_match_pyav(tmp_path: Path, astronaut: np.ndarray) -> None:
    clip = prepare_clip(astronaut_clip(tmp_path / "phone.mp4", astronaut, n=5, rotation=90), tmp_path / "c", 96)
    assert (clip.width, clip.height) == (192, 256) and clip.found.all()
    s = PairSampler([clip], seed=0, num_threads=1)
    got = s._read([(0, 1), (0, 3)])
    assert np.abs(got.astype(int) - pyav_crops(clip, [1, 3])).max() <= 1


def test_pair_sampler_refuses_a_clip_decord_reads_differently(astro_clip: ClipCrops) -> None:
    from dataclasses import replace

    shifted = replace(astro_clip, times=astro_clip.times + np.r_[0, np.full(11, 0.5)])
    with pytest.raises(RetargetError, match="astro.mp4: decord's frame 1 is at"):
        PairSampler([shifted], seed=0).sample(1)
    wrong = replace(astro_clip, thumbs=255 - astro_clip.thumbs)
    with pytest.raises(RetargetError, match="differs from PyAV's"):
        PairSampler([wrong], seed=0).sample(1)
    with pytest.raises(RetargetError, match="no clips"):
        PairSampler([], seed=0)


# ------------------------------------------------------------------------------------------------ real clips


@pytest.fixture(scope="module")
def d0(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClipCrops, Path]:
    path = media_file("drv_lp_d0.mp4")
    cache = tmp_path_factory.mktemp("d0cache")
    return prepare_clip(path, cache, 256), cache


@pytest.mark.media
def test_real_clip_cache_built_once(d0: tuple[ClipCrops, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    clip, cache = d0

    def no_tracking(*args, **kwargs):
        raise AssertionError("the clip was tracked again")

    monkeypatch.setattr(face, "track_frames", no_tracking)
    again = prepare_clip(media_file("drv_lp_d0.mp4"), cache, 256)
    np.testing.assert_array_equal(again.affines, clip.affines)
    np.testing.assert_array_equal(again.aus, clip.aus)
    assert clip.frame_count == 78 and clip.found.all()


@pytest.mark.media
def test_real_clip_decord_frames_are_pyav_frames(d0: tuple[ClipCrops, Path]) -> None:
    import decord

    clip, _ = d0
    reader = decord.VideoReader(str(clip.path), ctx=decord.cpu(0), num_threads=2)
    assert len(reader) == clip.frame_count
    frames = [0, 31, 50, 77]
    got = reader.get_batch(frames).asnumpy()
    want = {f.index: f.image for f in read_frames(clip.path) if f.index in frames}
    for k, i in enumerate(frames):
        assert np.abs(got[k].astype(int) - want[i]).mean() < 0.5
    crops_ = PairSampler([clip], seed=0)._read([(0, i) for i in frames])
    assert np.abs(crops_.astype(int) - pyav_crops(clip, frames)).max() <= 1


@pytest.mark.media
def test_real_clip_face_centred_and_level(d0: tuple[ClipCrops, Path]) -> None:
    clip, _ = d0
    pts = clip.landmarks / clip.size
    assert (np.abs(pts[:, lm.NOSE_TIP, 0] - 0.5) < 0.06).all() and (np.abs(pts[:, lm.NOSE_TIP, 1] - 0.5) < 0.1).all()
    eyes = pts[:, 263, :2] - pts[:, 33, :2]
    assert (np.abs(np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))) < 3).all()
    assert ((pts[:, 10, 1] > 0.02) & (pts[:, lm.CHIN, 1] < 0.98)).all()  # forehead top and chin inside
    smile = clip.aus[:, AU_NAMES.index("AU12")]
    assert smile.max() > 2  # the broad smile reads as AU12 relative to the clip's own neutral


@pytest.mark.media
def test_real_clip_pairs(d0: tuple[ClipCrops, Path], astro_clip: ClipCrops) -> None:
    clip, _ = d0
    s = PairSampler([clip, astro_clip], seed=2, size=128)
    b = s.sample(6)
    check_pairs(s, b, [clip, astro_clip])
    real = b.clip == 0
    assert real.any()
    want = pyav_crops(clip, [int(i) for i in b.source_frame[real]], size=128)
    assert np.abs(b.source[real].astype(int) - want).max() <= 1
