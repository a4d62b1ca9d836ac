"""retarget.aucsv: the OpenFace 2 CSV layout, written and read back, and the inputs the reader must take or refuse."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from retarget.aucsv import AU_COLUMNS, POSE_COLUMNS, AUCurves, read_au_csv, write_au_csv
from retarget.errors import RetargetError
from retarget.types import AU_NAMES


def curves(n: int = 40, pose: bool = True, seed: int = 0) -> AUCurves:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.01, 0.05, n))  # irregular, like a variable-frame-rate clip
    success = rng.uniform(size=n) > 0.2
    return AUCurves(
        times=times,
        aus=(rng.uniform(0, 5, (n, len(AU_NAMES))) * success[:, None]).astype(np.float32),
        success=success,
        confidence=np.where(success, rng.uniform(0.5, 1.0, n), 0.0).astype(np.float32),
        pose=np.column_stack([rng.normal(0, 50, (n, 2)), rng.uniform(300, 900, n), rng.normal(0, 0.3, (n, 3))])
        if pose else None,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("pose", [True, False])
def test_round_trip_is_exact(tmp_path: Path, pose: bool) -> None:
    original = curves(pose=pose)
    path = tmp_path / "aus.csv"
    write_au_csv(path, original)
    back = read_au_csv(path)
    np.testing.assert_array_equal(back.times, original.times)
    assert back.aus.dtype == np.float32 and back.confidence.dtype == np.float32
    np.testing.assert_array_equal(back.aus, original.aus)
    np.testing.assert_array_equal(back.success, original.success)
    np.testing.assert_array_equal(back.confidence, original.confidence)
    if pose:
        np.testing.assert_array_equal(back.pose, original.pose)
    else:
        assert back.pose is None


def test_written_columns_follow_openface(tmp_path: Path) -> None:
    path = tmp_path / "aus.csv"
    c = curves(5)
    write_au_csv(path, c)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["frame", "face_id", "timestamp", "confidence", "success", *POSE_COLUMNS, *AU_COLUMNS]
    assert AU_COLUMNS == tuple(f"{a}_r" for a in AU_NAMES) and AU_COLUMNS[0] == "AU01_r" and AU_COLUMNS[-1] == "AU45_r"
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]  # 1-based like OpenFace
    assert {r[1] for r in rows[1:]} == {"0"}
    assert [r[4] for r in rows[1:]] == ["1" if s else "0" for s in c.success]
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_write_replaces_atomically_and_refuses_bad_curves(tmp_path: Path) -> None:
    path = write(tmp_path / "aus.csv", "old")
    bad = curves(5)
    bad.times[3] = bad.times[2]
    with pytest.raises(RetargetError, match="strictly increasing"):
        write_au_csv(path, bad)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aus.csv"]


def test_success_zero_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "timestamp,success,confidence,AU12_r\n0,1,0.98,2\n0.1,0,0,0\n0.2,1,0.95,3\n")
    c = read_au_csv(path)
    np.testing.assert_array_equal(c.success, [True, False, True])
    np.testing.assert_allclose(c.confidence, [0.98, 0, 0.95])
    assert c.aus[1].max() == 0


OPENFACE_HEADER = ("frame, face_id, timestamp, confidence, success, gaze_0_x, gaze_0_y, gaze_0_z, "
                   "pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz, x_0, x_1, "
                   + ", ".join(f"{c}" for c in AU_COLUMNS) + ", AU01_c, AU02_c, AU28_c")


def openface_row(frame: int, face: int, t: float, au: float) -> str:
    values = [frame, face, t, 0.98, 1, 0.1, 0.2, -0.9, 10.5, -20.25, 480.0, 0.1, -0.2, 0.05, 300.5, 310.25]
    values += [au + k / 100 for k in range(len(AU_COLUMNS))] + [1, 0, 1]
    return ", ".join(str(v) for v in values)


def test_reads_openface_output(tmp_path: Path) -> None:
    rows = [openface_row(i + 1, 0, round(i / 30, 3), 1.0 + i) for i in range(3)]
    c = read_au_csv(write(tmp_path / "of.csv", OPENFACE_HEADER + "\n" + "\n".join(rows) + "\n"))
    np.testing.assert_allclose(c.times, [0, 0.033, 0.067])
    np.testing.assert_allclose(c.aus[0], np.arange(17) / 100 + 1.0, atol=1e-6)
    np.testing.assert_allclose(c.aus[2, 0], 3.0)
    np.testing.assert_allclose(c.pose[0], [10.5, -20.25, 480.0, 0.1, -0.2, 0.05])
    assert c.success.all()
    np.testing.assert_allclose(c.confidence, 0.98)


def test_multiple_faces_keep_face_zero(tmp_path: Path) -> None:
    rows = []
    for i in range(3):
        rows += [openface_row(i + 1, 1, i / 10, 4.0), openface_row(i + 1, 0, i / 10, 1.0)]
    c = read_au_csv(write(tmp_path / "multi.csv", OPENFACE_HEADER + "\n" + "\n".join(rows)))
    assert len(c) == 3
    np.testing.assert_allclose(c.aus[:, 0], 1.0)


def test_multiple_faces_without_face_zero_keep_the_first_id(tmp_path: Path) -> None:
    text = "timestamp,face_id,AU12_r\n0,3,1\n0,2,4\n0.5,3,2\n0.5,2,4\n"
    c = read_au_csv(write(tmp_path / "ids.csv", text))
    np.testing.assert_allclose(c.aus[:, AU_NAMES.index("AU12")], [1, 2])


def test_missing_aus_are_zero_and_values_are_clipped(tmp_path: Path) -> None:
    c = read_au_csv(write(tmp_path / "a.csv", "timestamp,AU25_r,AU26_r\n0,7.5,-1\n0.04,2,3\n"))
    assert c.pose is None
    np.testing.assert_allclose(c.aus[:, AU_NAMES.index("AU25")], [5.0, 2.0])
    np.testing.assert_allclose(c.aus[:, AU_NAMES.index("AU26")], [0.0, 3.0])
    others = [k for k, a in enumerate(AU_NAMES) if a not in ("AU25", "AU26")]
    assert not c.aus[:, others].any()
    assert c.success.all() and (c.confidence == 1).all()  # absent columns: success 1, confidence 1


def test_hand_keyed_sparse_csv(tmp_path: Path) -> None:
    c = read_au_csv(write(tmp_path / "keys.csv", "timestamp,AU12_r\n0,0\n1.0,4\n2.5,0.5\n"))
    np.testing.assert_array_equal(c.times, [0.0, 1.0, 2.5])
    np.testing.assert_allclose(c.aus[:, AU_NAMES.index("AU12")], [0, 4, 0.5])
    assert c.aus.shape == (3, 17)


def test_lenient_header_spellings(tmp_path: Path) -> None:
    c = read_au_csv(write(tmp_path / "k.csv", "\ufeff Timestamp ;  au1_r\n0;1\n1;2\n"))
    np.testing.assert_allclose(c.aus[:, 0], [1, 2])


def test_repeated_timestamps_are_dropped(tmp_path: Path) -> None:
    c = read_au_csv(write(tmp_path / "d.csv", "timestamp,AU12_r\n0,1\n0.5,2\n0.5,3\n1,4\n"))
    np.testing.assert_array_equal(c.times, [0, 0.5, 1])
    np.testing.assert_allclose(c.aus[:, AU_NAMES.index("AU12")], [1, 2, 4])


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ("just some words\nand more\n", "no timestamp column"),
    ("frame,AU12_r\n1,2\n", "no timestamp column"),
    ("timestamp,gaze_0_x,AU12_c\n0,1,1\n", "no AU intensity column"),
    ("timestamp,AU12_r\n", "no data rows"),
    ("timestamp,AU12_r\n0,1\n0.1,abc\n", r"row 3, column AU12_r: 'abc' is not a number"),
    ("timestamp,AU12_r\n0,1\n0.1,\n", r"row 3, column AU12_r: empty cell"),
    ("timestamp,AU12_r\n0,1\nnan,2\n", "row 3, column timestamp: 'nan' is not a finite number"),
    ("timestamp,AU12_r\n0,1\n0.1,inf\n", "not a finite number"),
    ("timestamp,AU12_r\n0,1\n0.1,2,3\n", "row 3 has 3 fields, the header has 2"),
    ("timestamp,AU12_r\n0,1\n1,2\n0.5,3\n", "row 4: timestamp 0.5 goes back in time"),
    ("timestamp,AU12_r,AU12_r\n0,1,1\n", "appears twice"),
    ("timestamp,pose_Tx,pose_Ty,AU12_r\n0,1,1,1\n", "only some pose columns"),
    ("timestamp,face_id,AU12_r\n0,x,1\n", "column face_id"),
])
def test_bad_inputs_raise_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(RetargetError, match=message) as info:
        read_au_csv(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    png = tmp_path / "x.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    with pytest.raises(RetargetError, match="not a CSV"):
        read_au_csv(png)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("timestamp,AU12_r\n0,\xe9\n".encode("latin-1"))
    with pytest.raises(RetargetError, match="not a CSV"):
        read_au_csv(latin)
    with pytest.raises(RetargetError, match="not found"):
        read_au_csv(tmp_path / "missing.csv")
    with pytest.raises(RetargetError, match="not a file"):
        read_au_csv(tmp_path)
