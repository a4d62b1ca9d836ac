"""Whole-clip per-frame arrays on disk while a clip renders (``retarget.spill``, ``pipeline.spill_frames``), and
the heap trimmed while a job runs (``heap.Trimming``): what keeps a long clip's memory from growing."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref

import numpy as np
import pytest
from test_render_steps import PaintGenerator
from test_shots import FPS, _elsewhere, _other_person, _talking_driver, _two_shot_track

from retarget import heap, spill
from retarget import landmarks as lm
from retarget.analysis import analyse_clip, shot_analyses
from retarget.config import RetargetConfig
from retarget.pipeline import EyeLenders, _generate_face, release_normalised, spill_frames
from retarget.plan import build_plan, build_shot_plan
from retarget.spill import FrameRows
from retarget.types import Track


def _rows(n: int = 300, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, 478, 3)).astype(np.float32)
    rows[n // 2] = np.nan  # a frame without a face
    return rows


def test_rows_read_back_as_written_in_any_order(tmp_path) -> None:
    array = _rows()
    rows = spill.spill(array, tmp_path)
    assert len(rows) == 300 and rows.shape == (300, 478, 3) and rows.dtype == np.float32 and rows.ndim == 3
    # more blocks than are cached, visited back and forth: every row is its own, not a cached block's neighbour
    order = np.random.default_rng(1).permutation(300).tolist() + list(range(299, -1, -7))
    for t in order:
        assert np.array_equal(rows[t], array[t], equal_nan=True), t
    assert np.array_equal(rows[-1], array[-1]) and np.array_equal(rows[np.int64(5)], array[5])
    assert np.array_equal(np.asarray(rows), array, equal_nan=True)
    with pytest.raises(IndexError):
        rows[300]
    with pytest.raises(ValueError):
        rows[3][0, 0] = 1.0  # a row shares its cached block: read-only


def test_a_slice_is_a_view_of_the_same_rows(tmp_path) -> None:
    array = _rows(200)
    rows = spill.spill(array, tmp_path)
    part = rows[50:130]
    assert isinstance(part, FrameRows) and len(part) == 80
    assert np.array_equal(part[3], array[53]) and np.array_equal(part[-1], array[129])
    inner = part[10:20]
    assert np.array_equal(np.asarray(inner), array[60:70])
    assert np.array_equal(np.asarray(rows[190:500]), array[190:])  # clipped as numpy clips
    assert len(rows[120:100]) == 0
    assert np.array_equal(rows[[3, 7]], array[[3, 7]])  # anything else reads the rows, then indexes them


def test_the_file_has_no_name_to_leave_behind(tmp_path) -> None:
    rows = spill.spill(_rows(10), tmp_path)
    assert os.listdir(tmp_path) == []  # unlinked from the start: a killed job leaves nothing
    assert np.array_equal(rows[9], _rows(10)[9])
    rows.close()
    with pytest.raises(ValueError):
        rows[0]  # closed: its disk space is freed


def test_no_rows(tmp_path) -> None:
    rows = spill.spill(np.zeros((0, 478, 3), np.float32), tmp_path)
    assert len(rows) == 0 and np.asarray(rows).shape == (0, 478, 3)


def _cut_clip(astronaut_landmarks):
    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(_other_person(first)))
    clip = analyse_clip(track, FPS, None, 0.2, 0.33)
    return first, clip, shot_analyses(clip, None)


def test_the_plan_moves_to_disk_and_its_arrays_leave_memory(astronaut_landmarks, tmp_path) -> None:
    first, clip, shots = _cut_clip(astronaut_landmarks)
    drive = _talking_driver(first)
    plan = build_shot_plan(drive, shots, clip.track, RetargetConfig())
    source, destination, driver = (np.array(a) for a in (plan.source, plan.destination, plan.drive_landmarks))
    gone = [weakref.ref(a) for a in (plan.source, plan.destination, plan.drive_landmarks)]
    release_normalised(drive, clip, shots)
    store = spill.FrameStore(tmp_path)
    spill_frames(plan, drive, clip, shots, store)
    spilled = [plan.source, plan.destination, plan.drive_landmarks]
    assert all(isinstance(a, FrameRows) for a in spilled)
    # the target's track and its shots read the same file; the driver's motion too
    assert clip.track.landmarks is plan.source and drive.landmarks is plan.drive_landmarks
    for start, shot in shots:
        assert np.array_equal(np.asarray(shot.track.landmarks), source[start:start + len(shot.track)])
    assert np.array_equal(np.asarray(plan.source), source, equal_nan=True)
    assert np.array_equal(np.asarray(plan.destination), destination, equal_nan=True)
    assert np.array_equal(np.asarray(plan.drive_landmarks), driver)
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]  # nothing holds the in-memory arrays any more
    spill_frames(plan, drive, clip, shots, store)  # again: what is on disk stays as it is
    assert [plan.source, plan.destination, plan.drive_landmarks] == spilled
    store.close()
    with pytest.raises(ValueError):
        plan.source[0]  # closed with the store


def test_a_spilled_plan_renders_the_same_faces(astronaut_landmarks, tmp_path) -> None:
    first, clip, _ = _cut_clip(astronaut_landmarks)
    whole = Track(clip.track.times, clip.track.landmarks.copy(), clip.track.found, 1280, 720)
    target = analyse_clip(whole, FPS, None, 0.2, 0.33)
    drive = _talking_driver(first)
    plan = build_plan(drive, target, False, RetargetConfig())
    kept = build_plan(drive, target, False, RetargetConfig())
    plan.eye_reference = kept.eye_reference = np.where(np.arange(len(plan)) % 5 == 4, np.arange(len(plan)) - 2, -1)
    spill_frames(plan, drive, target, None, spill.FrameStore(tmp_path))
    image = np.zeros((720, 1280, 3), np.uint8)
    edits = []
    for p in (kept, plan):
        generator, lenders = PaintGenerator(), EyeLenders(p)
        for t in range(len(p)):
            reference = lenders.see(t, image)
            assert _generate_face(image, t, p, generator, None, None, reference) is not None
            assert (reference is None) == (t % 5 != 4)
            if reference is not None:
                assert np.array_equal(reference[1], kept.source[t - 2])
        edits.append(generator.edits)
    for a, b in zip(*edits, strict=True):
        assert np.array_equal(a.source, b.source) and np.array_equal(a.destination, b.destination)


def test_a_still_keeps_its_one_row_in_memory(astronaut_landmarks, tmp_path) -> None:
    first = np.asarray(astronaut_landmarks, np.float32)
    still = analyse_clip(Track(np.zeros(1), first[None].copy(), np.ones(1, bool), 512, 512), FPS, None, 0.2, 0.33,
                         population_neutral=True)
    drive = _talking_driver(first)
    plan = build_plan(drive, still, True, RetargetConfig())
    source = plan.source
    spill_frames(plan, drive, still, None, spill.FrameStore(tmp_path))
    assert plan.source is source and plan.source.strides[0] == 0  # one row broadcast: nothing to move
    assert isinstance(plan.destination, FrameRows) and isinstance(plan.drive_landmarks, FrameRows)


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append((pad, threading.current_thread().name))
        return 1


def test_the_heap_is_trimmed_while_a_job_runs_and_not_after(monkeypatch) -> None:
    libc = _FakeLibc()
    monkeypatch.setattr(heap, "_glibc", lambda: libc)
    with heap.Trimming(period=0.01) as trimming:
        time.sleep(0.2)
    done = len(libc.calls)
    assert done >= 3 and trimming.count == done
    assert set(libc.calls) == {(0, "heap-trim")}  # all of it, from a thread of its own
    time.sleep(0.05)
    assert len(libc.calls) == done and not any(t.name == "heap-trim" for t in threading.enumerate())


def test_a_trimmed_function_runs_under_trimming(monkeypatch) -> None:
    libc = _FakeLibc()
    monkeypatch.setattr(heap, "_glibc", lambda: libc)
    monkeypatch.setattr(heap, "TRIM_PERIOD", 0.01)

    @heap.trimming
    def job(x: int) -> int:
        time.sleep(0.1)
        return x + 1

    assert job(1) == 2 and len(libc.calls) >= 2
    monkeypatch.setattr(heap, "_glibc", lambda: None)  # not glibc: no thread, and the job still runs
    with heap.Trimming(period=0.01) as trimming:
        time.sleep(0.05)
    assert trimming.count == 0


def test_rows_on_disk_are_written_by_blocks(tmp_path) -> None:
    rows = spill.empty((150, 478, 3), np.float32, tmp_path)
    assert os.listdir(tmp_path) == [] and not np.asarray(rows).any()  # reads as zeros until written
    before = rows[70]  # caches its block
    values = _rows(150, seed=5)
    rows[:64] = values[:64]
    rows[64:150] = values[64:]
    assert not before.any() and np.array_equal(rows[70], values[70])  # the cached block was dropped
    rows[10] = np.nan
    view = rows[100:]
    view[20:30] = np.nan  # through a view, broadcast
    values[10], values[120:130] = np.nan, np.nan
    assert np.array_equal(np.asarray(rows), values, equal_nan=True)
    with pytest.raises(TypeError):
        rows[[1, 2]] = 0.0


def test_a_plan_written_to_disk_is_the_plan(astronaut_landmarks, tmp_path) -> None:
    first, clip, shots = _cut_clip(astronaut_landmarks)
    drive, config = _talking_driver(first), RetargetConfig()
    made = []

    def on_disk(shape, dtype):
        made.append(shape)
        return spill.empty(shape, dtype, tmp_path)

    kept = build_shot_plan(drive, shots, clip.track, config)
    plan = build_shot_plan(drive, shots, clip.track, config, on_disk)
    assert made == [(60, 478, 3)]  # one array for the whole clip; each shot writes into its part of it
    assert isinstance(plan.destination, FrameRows)
    assert np.array_equal(np.asarray(plan.destination), kept.destination, equal_nan=True)
    one = build_plan(drive, shots[0][1], False, config, allocate=on_disk)
    assert np.array_equal(np.asarray(one.destination), build_plan(drive, shots[0][1], False, config).destination)


def test_tracked_rows_are_kept_in_blocks_and_joined(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(spill.RowAppender, "BLOCK", 4)
    rows = _rows(11, seed=6)
    rows[5] = np.nan  # a frame without a face
    for folder in (None, tmp_path):
        store = spill.FrameStore(folder)
        appender = store.appender((478, 3))
        for t, row in enumerate(rows):
            appender.append(np.nan if t == 5 else row)
        joined = appender.finish()
        assert isinstance(joined, FrameRows) == (folder is not None)
        assert np.array_equal(np.asarray(joined), rows, equal_nan=True)
        assert np.asarray(store.appender((478, 3)).finish()).shape == (0, 478, 3)
        store.close()
    direct = spill.RowAppender((478, 3), np.float32, spill.FrameStore())  # a store without a folder: memory
    for row in rows:
        direct.append(row)
    assert np.array_equal(direct.finish(), rows, equal_nan=True)


def _recorded_reads(rows: FrameRows, monkeypatch) -> list[tuple[int, int]]:
    """The (start, stop) of every read of ``rows``' file from now on."""
    spans: list[tuple[int, int]] = []
    read = rows._rows.read
    monkeypatch.setattr(rows._rows, "read", lambda a, b: spans.append((a, b)) or read(a, b))
    return spans


def test_rows_picked_by_number_or_mask_read_only_their_span(tmp_path, monkeypatch) -> None:
    array = _rows(200, seed=7)
    rows = spill.spill(array, tmp_path)
    spans = _recorded_reads(rows, monkeypatch)
    picked = np.array([40, 42, 41, 55])
    assert np.array_equal(rows[picked], array[picked]) and spans == [(40, 56)]
    assert np.array_equal(rows[np.array([-1, 0])], array[[-1, 0]])
    mask = np.zeros(200, bool)
    mask[[120, 130]] = True
    assert np.array_equal(rows[mask], array[mask]) and spans[-1] == (120, 131)
    assert np.array_equal(rows[100:][np.array([1, 2])], array[[101, 102]])  # within a view
    assert rows[np.array([], int)].shape == (0, 478, 3)
    assert np.array_equal(rows[:, 3, 1], array[:, 3, 1], equal_nan=True)  # anything else: every row, then numpy
    with pytest.raises(IndexError):
        rows[np.array([5, 200])]


def test_a_store_keeps_arrays_in_memory_or_on_disk(tmp_path) -> None:
    array = _rows(20)
    memory = spill.FrameStore()
    assert memory.keep(array) is array and isinstance(memory.empty((3, 2)), np.ndarray)
    with spill.FrameStore(tmp_path / "new") as disk:
        kept, made = disk.keep(array), disk.empty((5, 478, 3))
        assert isinstance(kept, FrameRows) and isinstance(made, FrameRows) and disk.keep(kept) is kept
        assert np.array_equal(np.asarray(kept), array, equal_nan=True)
        assert os.listdir(tmp_path / "new") == []  # the folder made, and nothing named in it
    with pytest.raises(ValueError):
        kept[0]  # every file closed with the store


def _noisy_track(astronaut_landmarks, n: int = 80) -> Track:
    rng = np.random.default_rng(8)
    points = (np.asarray(astronaut_landmarks, np.float32)[None] + rng.normal(0, 0.6, (n, 478, 3))).astype(np.float32)
    points[40:50, lm.LOWER_LIP_INNER, 1] += 12.0  # the mouth opens for a while
    found = np.ones(n, bool)
    found[[0, 30, 31, 79]] = False
    points[~found] = np.nan
    return Track(np.arange(n) / 30, points, found, 512, 512)


def test_an_analysis_on_disk_is_the_analysis_and_holds_no_whole_clip_array(astronaut_landmarks, tmp_path,
                                                                            monkeypatch) -> None:
    import retarget.expression as expression
    import retarget.face as face

    kept = analyse_clip(_noisy_track(astronaut_landmarks), 30, None, 0.2, 0.33)  # in memory, in one block
    monkeypatch.setattr(face, "POSE_BLOCK", 16)  # several blocks, each with and without lost frames
    monkeypatch.setattr(expression, "frame_blocks", lambda n, size=2048: [slice(a, min(a + 16, n))
                                                                         for a in range(0, n, 16)])
    track = _noisy_track(astronaut_landmarks)
    raw = weakref.ref(track.landmarks)
    with spill.FrameStore(tmp_path) as store:
        clip = analyse_clip(track, 30, None, 0.2, 0.33, consume=True, store=store)
        gc.collect()
        assert raw() is None  # the raw track, smoothed in place, went to disk with the shapes
        assert isinstance(clip.track.landmarks, FrameRows) and track.landmarks is clip.track.landmarks
        assert isinstance(clip.expression.normalised, FrameRows)
        assert np.array_equal(np.asarray(clip.track.landmarks), kept.track.landmarks, equal_nan=True)
        assert np.array_equal(np.asarray(clip.expression.normalised), kept.expression.normalised, equal_nan=True)
        assert clip.expression.neutral_index == kept.expression.neutral_index
        assert np.array_equal(clip.expression.neutral, kept.expression.neutral)
        assert np.array_equal(clip.expression.aus, kept.expression.aus)
        assert np.array_equal(clip.pose.rotation, kept.pose.rotation)


def test_expressiveness_of_some_frames_read_by_block(astronaut_landmarks, monkeypatch) -> None:
    import retarget.expression as expression

    clip = analyse_clip(_noisy_track(astronaut_landmarks), 30, None, 0.2, 0.33)
    shapes, good = clip.expression.normalised, np.flatnonzero(clip.track.found)
    whole = expression.expressiveness(shapes[good])
    monkeypatch.setattr(expression, "frame_blocks", lambda n, size=2048: [slice(a, min(a + 7, n))
                                                                         for a in range(0, n, 7)])
    for a, b in zip(expression.expressiveness(shapes, good), whole, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_smoothing_rows_on_disk_by_block_is_smoothing_in_memory(tmp_path, seed) -> None:
    """``smooth_rows`` reads a block and the frames the window reaches past it, and bridges a gap from the
    nearest frames with a face on either side, however far: bit for bit ``smooth`` of the whole clip."""
    from retarget.smooth import smooth, smooth_rows

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 160))
    values = (np.cumsum(rng.normal(size=(n, 478, 3)), axis=0) * 5 + 300).astype(np.float32)
    valid = rng.random(n) > 0.15
    valid[n // 3:n // 3 + 25] = seed % 2 == 0  # a gap longer than a block in some
    values[~valid] = np.nan
    cuts = np.unique(rng.integers(1, n, size=seed % 4))
    seconds = [0.2, 0.33, 0.0, 1.0, 0.2, 0.5][seed]
    expected = smooth(values, 30, seconds, valid=valid, cuts=cuts)
    rows = spill.spill(values, tmp_path)
    out = spill.empty(values.shape, np.float32, tmp_path)
    assert smooth_rows(rows, 30, seconds, out, valid=valid, cuts=cuts, block=int(rng.integers(1, 20))) is out
    assert np.array_equal(np.asarray(out), expected, equal_nan=True)


def test_spread_rows_are_read_one_by_one(tmp_path, monkeypatch) -> None:
    array = _rows(300, seed=9)
    rows = spill.spill(array, tmp_path)
    spans = _recorded_reads(rows, monkeypatch)
    picked = np.arange(0, 300, 100)
    assert np.array_equal(rows[picked], array[picked], equal_nan=True)
    assert spans == [(0, 1), (100, 101), (200, 201)]  # not the 201 rows between the first and the last


def test_a_track_on_disk_is_the_track_and_its_analysis_the_analysis(astronaut, tmp_path) -> None:
    from PIL import Image
    from test_video import make_clip

    from retarget.face import track_frames
    from retarget.video import read_frames

    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS))
    blank = np.zeros_like(small)
    clip = make_clip(tmp_path / "clip.mp4", 256, 256, n_frames=12, fps=25,
                     images=[small] * 5 + [blank] * 2 + [small] * 5)  # two frames without a face
    kept = track_frames(read_frames(clip), 256, 256)
    with spill.FrameStore(tmp_path / "store") as store:
        track = track_frames(read_frames(clip), 256, 256, store=store)
        assert isinstance(track.landmarks, FrameRows)
        assert np.array_equal(np.asarray(track.landmarks), kept.landmarks, equal_nan=True)
        assert np.array_equal(track.found, kept.found) and np.array_equal(track.cuts, kept.cuts)
        alone = analyse_clip(kept, 25, None, 0.2, 0.33)
        clip_on_disk = analyse_clip(track, 25, None, 0.2, 0.33, consume=True, store=store)
        assert isinstance(clip_on_disk.track.landmarks, FrameRows)
        assert np.array_equal(np.asarray(clip_on_disk.track.landmarks), alone.track.landmarks, equal_nan=True)
        assert np.array_equal(np.asarray(clip_on_disk.expression.normalised), alone.expression.normalised,
                              equal_nan=True)
        assert np.array_equal(clip_on_disk.expression.aus, alone.expression.aus)


def test_face_jumps_read_from_disk_by_block(astronaut_landmarks, tmp_path) -> None:
    from retarget.shots import face_jumps

    first = np.asarray(astronaut_landmarks, np.float32)
    track = _two_shot_track(first, _elsewhere(first), 30)
    track.found[28:30] = False
    track.landmarks[28:30] = np.nan
    expected = face_jumps(track.landmarks, track.found, track.times, np.zeros(0, int))
    assert expected.tolist() == [30]
    rows = spill.spill(track.landmarks, tmp_path)
    assert face_jumps(rows, track.found, track.times, np.zeros(0, int)).tolist() == [30]
