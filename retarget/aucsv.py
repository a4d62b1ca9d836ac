"""AU curves over time, and reading and writing them in OpenFace 2's CSV layout.

Written columns (one row per frame, comma-separated, no spaces):

    frame, face_id, timestamp, confidence, success,
    pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz,      (only when the curves carry a pose)
    AU01_r, AU02_r, ... AU45_r                                 (the 17 AUs of ``types.AU_NAMES``)

``frame`` is 1-based and ``face_id`` is 0, as in OpenFace. Numbers are written in their shortest form that
reads back to the same value (float64 times and pose, float32 confidence and AUs), so a write/read round
trip is exact.

The reader also takes real OpenFace 2 output and hand-keyed files:
- header names may carry leading/trailing spaces (OpenFace writes ``" timestamp"``, ``" AU01_r"``), and their
  case does not matter;
- columns it does not use (``gaze_*``, ``x_0`` ..., ``AU01_c`` ..., unknown ``AU*_r``) are ignored;
- AU columns that are missing read as 0; at least a ``timestamp`` column and one ``AUxx_r`` column of the 17
  must exist;
- no ``success`` / ``confidence`` column means success 1 / confidence 1; no pose columns means ``pose=None``
  (some but not all six is an error);
- AU values are clipped to 0-5, confidence to 0-1;
- with several ``face_id`` values only face 0 (or, without a face 0, the first id in the file) is kept;
- rows repeating the previous row's timestamp are dropped (the first is kept); after that the timestamps
  must be finite and strictly increasing.
So ``timestamp,AU12_r`` with three rows (0, 1.0 and 2.5 s) is a valid file. Every bad input raises
``RetargetError`` with one line naming the file and, for a bad cell, its row and column.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RetargetError
from .types import AU_NAMES

POSE_COLUMNS: tuple[str, ...] = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
AU_COLUMNS: tuple[str, ...] = tuple(f"{name}_r" for name in AU_NAMES)
AU_MAX = 5.0

_AU_HEADER = re.compile(r"^au0*(\d+)_r$")


@dataclass
class AUCurves:
    """Per-frame AU intensities of one face over time."""

    times: np.ndarray  # (T,) float64 seconds, strictly increasing
    aus: np.ndarray  # (T, 17) float32 intensities 0-5 in types.AU_NAMES order
    success: np.ndarray  # (T,) bool, face found
    confidence: np.ndarray  # (T,) float32 0-1
    pose: np.ndarray | None  # (T, 6) float64 pose_Tx..pose_Rz (OpenFace conventions), None if absent

    def __len__(self) -> int:
        return len(self.times)

    def check(self) -> None:
        """Raise RetargetError unless shapes, dtypes-compatible values and time order are valid."""
        n = len(self.times)
        if self.times.shape != (n,) or self.aus.shape != (n, len(AU_NAMES)) or self.success.shape != (n,) \
                or self.confidence.shape != (n,) or (self.pose is not None and self.pose.shape != (n, 6)):
            raise RetargetError("AU curves have inconsistent array shapes")
        if n == 0:
            raise RetargetError("AU curves have no frames")
        if not np.isfinite(self.times).all() or (n > 1 and not (np.diff(self.times) > 0).all()):
            raise RetargetError("AU curve timestamps must be finite and strictly increasing")


# ----------------------------------------------------------------------------------------------------- write


def _num(value: float, single: bool = False) -> str:
    """Shortest decimal text that reads back as the same float64 (or float32 when ``single``)."""
    v = np.float32(value) if single else np.float64(value)
    if not np.isfinite(v):
        raise RetargetError(f"cannot write the non-finite value {value} to a CSV")
    text = np.format_float_positional(v, unique=True, trim="-")
    return "0" if text == "-0" else text


def write_au_csv(path: Path, curves: AUCurves) -> None:
    """Write ``curves`` in OpenFace 2's layout, atomically (a temporary file beside ``path``, then renamed)."""
    path = Path(path)
    curves.check()
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += list(POSE_COLUMNS) if curves.pose is not None else []
    header += list(AU_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    aus = np.clip(np.nan_to_num(curves.aus.astype(np.float32)), 0.0, AU_MAX)
    confidence = np.clip(np.nan_to_num(curves.confidence.astype(np.float32)), 0.0, 1.0)
    for t in range(len(curves)):
        row = [str(t + 1), "0", _num(curves.times[t]), _num(confidence[t], single=True),
               "1" if curves.success[t] else "0"]
        if curves.pose is not None:
            row += [_num(v) for v in curves.pose[t]]
        row += [_num(v, single=True) for v in aus[t]]
        writer.writerow(row)
    tmp = path.with_name(f".{path.name}.part{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RetargetError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------------ read


def _load_text(path: Path) -> str:
    if not path.exists():
        raise RetargetError(f"{path} not found")
    if not path.is_file():
        raise RetargetError(f"{path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RetargetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise RetargetError(f"{path} is empty")
    if b"\0" in data[:4096]:
        raise RetargetError(f"{path} is not a CSV file (binary data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RetargetError(f"{path} is not a CSV file (not UTF-8 text)") from None


def _delimiter(first_line: str) -> str:
    """Comma, unless the header has none and is clearly tab- or semicolon-separated."""
    if "," not in first_line:
        for other in ("\t", ";"):
            if other in first_line:
                return other
    return ","


def _header_key(name: str) -> str:
    """Canonical name of a header cell: stripped, lower case, AU numbers zero-padded (``AU1_r`` -> ``au01_r``)."""
    key = name.strip().lower()
    m = _AU_HEADER.match(key)
    return f"au{int(m.group(1)):02d}_r" if m else key


def _cell(row: list[str], col: int, name: str, line: int, path: Path) -> float:
    text = row[col].strip()
    if not text:
        raise RetargetError(f"{path}: row {line}, column {name}: empty cell")
    try:
        value = float(text)
    except ValueError:
        raise RetargetError(f"{path}: row {line}, column {name}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise RetargetError(f"{path}: row {line}, column {name}: {text[:40]!r} is not a finite number")
    return value


def read_au_csv(path: Path) -> AUCurves:
    """Read AU curves from our CSV, OpenFace 2 output, or a hand-keyed ``timestamp,AUxx_r`` file."""
    path = Path(path)
    text = _load_text(path)
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(lines, delimiter=_delimiter(first)))
            if any(c.strip() for c in r)]
    if not rows:
        raise RetargetError(f"{path} is empty")
    header = rows[0][1]
    keys = [_header_key(h) for h in header]
    index: dict[str, int] = {}
    for col, key in enumerate(keys):
        if key and key in index:
            raise RetargetError(f"{path}: column {header[col].strip()!r} appears twice in the header")
        index[key] = col
    if "timestamp" not in index:
        raise RetargetError(f"{path} has no timestamp column (is it a CSV of AU intensities? "
                            f"expected a header like timestamp,AU12_r)")
    au_cols = {k: index[c.lower()] for k, c in enumerate(AU_COLUMNS) if c.lower() in index}
    if not au_cols:
        raise RetargetError(f"{path} has no AU intensity column (expected at least one of "
                            f"{', '.join(AU_COLUMNS[:3])} ... {AU_COLUMNS[-1]})")
    pose_present = [c for c in POSE_COLUMNS if c.lower() in index]
    if pose_present and len(pose_present) < len(POSE_COLUMNS):
        missing = [c for c in POSE_COLUMNS if c not in pose_present]
        raise RetargetError(f"{path} has only some pose columns (missing {', '.join(missing)})")
    data = rows[1:]
    if not data:
        raise RetargetError(f"{path} has a header but no data rows")
    for line, row in data:
        if len(row) != len(header):
            raise RetargetError(f"{path}: row {line} has {len(row)} fields, the header has {len(header)}")

    if "face_id" in index:
        ids = [_cell(row, index["face_id"], "face_id", line, path) for line, row in data]
        keep_id = 0.0 if 0.0 in ids else ids[0]
        data = [d for d, i in zip(data, ids) if i == keep_id]

    def column(key: str, name: str) -> np.ndarray:
        col = index[key]
        return np.array([_cell(row, col, name, line, path) for line, row in data], np.float64)

    times = column("timestamp", "timestamp")
    aus = np.zeros((len(data), len(AU_NAMES)), np.float64)
    for k in au_cols:
        aus[:, k] = column(AU_COLUMNS[k].lower(), AU_COLUMNS[k])
    success = column("success", "success") != 0 if "success" in index else np.ones(len(data), bool)
    confidence = column("confidence", "confidence") if "confidence" in index else np.ones(len(data))
    pose = np.stack([column(c.lower(), c) for c in POSE_COLUMNS], 1) if pose_present else None

    # a row repeating the previous timestamp is dropped; then time must only go forward
    keep = np.ones(len(times), bool)
    keep[1:] = times[1:] != times[:-1]
    back = np.flatnonzero(np.diff(times[keep]) < 0)
    if len(back):
        lines_kept = [line for (line, _), k in zip(data, keep) if k]
        i = int(back[0]) + 1
        raise RetargetError(f"{path}: row {lines_kept[i]}: timestamp {times[keep][i]:g} goes back in time "
                            f"(after {times[keep][i - 1]:g}); timestamps must be strictly increasing")
    return AUCurves(
        times=times[keep],
        aus=np.clip(aus[keep], 0.0, AU_MAX).astype(np.float32),
        success=success[keep],
        confidence=np.clip(confidence[keep], 0.0, 1.0).astype(np.float32),
        pose=pose[keep] if pose is not None else None,
    )
