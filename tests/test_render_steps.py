"""The render loop's two steps: the face is generated on the main thread, pasted and encoded on the writer's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_video import make_clip

from retarget.generators.base import FaceEdit, GeneratedFace
from retarget.pipeline import (
    EyeLenders,
    _finish_frame,
    _pasted,
    _generate_face,
    _paste_face,
    _write_json,
    lenders_ahead,
    read_lenders_ahead,
)
from retarget.plan import RenderPlan
from retarget.types import AU_NAMES, Frame
from retarget.video import read_frames


class PaintGenerator:
    """Paints a grey square over the landmarks' box and remembers every edit it was given."""

    name = "paint"

    def __init__(self) -> None:
        self.edits: list[FaceEdit] = []

    def prepare(self, target_neutral: np.ndarray) -> None:
        pass

    def generate(self, edit: FaceEdit) -> GeneratedFace:
        self.edits.append(edit)
        x0, y0 = np.floor(edit.source[:, :2].min(0)).astype(int)
        x1, y1 = np.ceil(edit.source[:, :2].max(0)).astype(int)
        return GeneratedFace((x0, y0, x1, y1), np.full((y1 - y0, x1 - x0, 3), 128, np.uint8),
                             np.ones((y1 - y0, x1 - x0), np.float32))


def plan_of(weights: list[float], found: list[bool]) -> RenderPlan:
    n = len(weights)
    points = np.tile(np.array([[10.0, 12.0, 0.0], [30.0, 28.0, 0.0]], np.float32), (n, 239, 1))
    points[~np.asarray(found)] = np.nan
    aus = np.zeros((n, len(AU_NAMES)))
    return RenderPlan(times=np.arange(n) / 25.0, source=points, destination=points + 1.0,
                      weight=np.asarray(weights, float), drive_index=np.zeros(n, int), drive_aus=aus,
                      output_aus=aus, relative_aus=aus, drive_landmarks=None)


def test_frames_without_a_face_or_weight_pass_through() -> None:
    plan = plan_of([1.0, 0.0, 1.0], [True, True, False])
    generator = PaintGenerator()
    image = np.zeros((40, 50, 3), np.uint8)
    assert _generate_face(image, 1, plan, generator, None) is None  # weight 0
    assert _generate_face(image, 2, plan, generator, None) is None  # no target face
    assert generator.edits == []
    out, change = _paste_face(image, None, keep_before=True)
    assert out is image and change == (None, None)


def test_generating_leaves_the_frame_alone_and_pasting_reports_the_change() -> None:
    plan = plan_of([0.5], [True])
    generator = PaintGenerator()
    image = np.zeros((40, 50, 3), np.uint8)
    face = _generate_face(image, 0, plan, generator, None)
    assert face is not None and not image.any()  # nothing pasted yet
    np.testing.assert_allclose(generator.edits[0].destination, plan.source[0] + 0.5)  # weight scales the edit
    out, (box, before) = _paste_face(image, face, keep_before=True)
    assert box == (10, 12, 30, 28)
    assert before.shape == (16, 20, 3) and not before.any()  # the box as decoded
    assert (out[12:28, 10:30] == 128).all() and out[:12].sum() == 0 and out[28:].sum() == 0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def write(self, *args) -> None:
        self.calls.append(args)


def test_pasting_and_finishing_write_the_result_and_a_preview_of_the_frame_as_decoded() -> None:
    plan = plan_of([1.0], [True])
    image = np.zeros((40, 50, 3), np.uint8)
    face = _generate_face(image, 0, plan, PaintGenerator(), None)
    original, pasted, change = _pasted(Frame(0, 0.0, image), face, keep_original=True)
    assert change is None  # a frame without its decoded source: encoded whole
    assert _pasted(Frame(0, 0.0, image.copy()), face, keep_original=False)[0] is None
    writer, preview = Recorder(), Recorder()
    _finish_frame(writer, preview, None, original, pasted, change, 0.0)
    (result, when, edit), = writer.calls
    assert when == 0.0 and edit is None and result is pasted
    assert (result[12:28, 10:30] == 128).all()
    (_, target, shown, _), = preview.calls
    assert not target.any() and shown is result  # the preview's target panel is the frame before the paste


def test_pasting_a_decoded_frame_hands_the_writer_its_source_and_the_box_as_decoded(tmp_path: Path) -> None:
    plan = plan_of([1.0], [True])
    clip = make_clip(tmp_path / "clip.mp4", n_frames=1, images=[np.full((40, 50, 3), 60, np.uint8)])
    frame = next(iter(read_frames(clip, keep_source=True)))
    decoded = frame.image.copy()
    face = _generate_face(frame.image, 0, plan, PaintGenerator(), None)
    original, pasted, edit = _pasted(frame, face, keep_original=False)
    assert original is None and edit is not None and edit.source is frame.source
    assert edit.box == (10, 12, 30, 28)
    np.testing.assert_array_equal(edit.before, decoded[12:28, 10:30])
    assert (pasted[12:28, 10:30] == 128).all()


def test_eye_lenders_hand_out_earlier_frames_and_frames_read_ahead(tmp_path: Path) -> None:
    """Frames 0-1 borrow frame 2 (a clip that starts in a blink: read ahead), frames 5-6 borrow frame 4 (kept
    as it streams past)."""
    plan = plan_of([1.0] * 8, [True] * 8)
    plan.eye_reference = np.array([2, 2, -1, -1, -1, 4, 4, -1])
    assert lenders_ahead(plan) == [2]
    greys = [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(8)]
    clip = make_clip(tmp_path / "clip.mp4", n_frames=8, images=greys)
    ahead = read_lenders_ahead(clip, lenders_ahead(plan))
    assert list(ahead) == [2] and abs(float(ahead[2].mean()) - 60) < 3  # frame 2's own grey, decoded
    lenders = EyeLenders(plan, ahead)
    lent = []
    for t in range(8):
        image = np.full((48, 64, 3), 30 * t, np.uint8)
        got = lenders.see(t, image)
        image[:] = 255  # the render pastes into the decoded frame; a kept copy must not change
        lent.append(None if got is None else int(got[0].mean()))
    assert lent[0] is not None and abs(lent[0] - 60) < 3 and lent[1] == lent[0]
    assert lent[2:5] == [None] * 3 and lent[5] == lent[6] == 120 and lent[7] is None
    assert read_lenders_ahead(clip, []) == {}


def test_the_report_is_written_item_by_item_and_never_half(tmp_path: Path) -> None:
    import json

    path = tmp_path / "out.retarget.json"
    head = {"config": {"crf": 21}, "notes": []}
    _write_json(path, head, "frames", ({"time": t / 30, "aus": [0.5, float(t)]} for t in range(3)))
    assert json.loads(path.read_text()) == {**head, "frames": [{"time": t / 30, "aus": [0.5, float(t)]}
                                                               for t in range(3)]}
    lines = path.read_text().splitlines()
    assert [json.loads(line.rstrip(",")) for line in lines[-5:-2]] == [{"time": t / 30, "aus": [0.5, float(t)]}
                                                                       for t in range(3)]  # a line a frame

    def failing():
        yield {"time": 0.0}
        raise RuntimeError("interrupted")

    try:
        _write_json(path, head, "frames", failing())
    except RuntimeError:
        pass
    else:
        raise AssertionError("the error must reach the caller")
    assert json.loads(path.read_text())["frames"][2]["aus"] == [0.5, 2.0]  # the earlier report stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.retarget.json"]  # no partial file left


def test_the_preview_is_a_whole_number_of_macroblocks(tmp_path: Path) -> None:
    """x264 encoded a preview's partial macroblocks differently from run to run on the same frames: the panels'
    height is rounded down to 16 pixels and the row is widened to 16 with black."""
    from fractions import Fraction

    from retarget.pipeline import PreviewWriter
    from retarget.types import Frame

    path = tmp_path / "side.mp4"
    preview = PreviewWriter(path, 100, Fraction(25), Fraction(1, 25))
    drive = Frame(0, 0.0, np.full((120, 90, 3), 200, np.uint8))
    target = np.full((100, 130, 3), 90, np.uint8)
    for k in range(3):
        preview.write(drive, target, target, k / 25)
    preview.close()
    frames = list(read_frames(path))
    assert len(frames) == 3
    h, w = frames[0].image.shape[:2]
    assert h == 96 and w % 16 == 0  # panels 72 + 124 + 124 = 320 wide: already whole
    preview = PreviewWriter(tmp_path / "odd.mp4", 100, Fraction(25), Fraction(1, 25))
    narrower = np.full((100, 125, 3), 90, np.uint8)
    preview.write(drive, narrower, narrower, 0.0)  # 72 + 120 + 120 = 312 -> 320
    preview.close()
    image = next(iter(read_frames(tmp_path / "odd.mp4"))).image
    assert image.shape[:2] == (96, 320)
    assert image[:, 314:].max() < 20 and image[:, 296:308].min() > 60  # the panel, then the black strip
