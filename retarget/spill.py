"""Whole-clip per-frame arrays kept on disk while a video job runs, so that memory does not grow with its length.

The main job writes and reads its per-frame arrays a frame or a block of frames at a time: a video target's
tracked, smoothed and pose-normalised landmarks, the plan's destinations and the driver's landmarks (478 x 3
float32 each, 5.6 KiB a frame). Held in memory they grew the job's peak with the clip's length; in unlinked
temporary files beside the output (``FrameStore``, one per job) they take disk instead: ``RowAppender``
writes rows there as they come, ``spill`` moves an array there, ``empty`` makes one to be written a block at
a time, and ``FrameRows`` reads them back.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

BLOCK = 64  # rows read back at once
SPARSE = 8  # rows picked by index are read one by one when the range they span is this many times their count
CACHED_BLOCKS = 4  # blocks kept: the render's frame, the eye lender's and the driver's each stay in one


class _RowFile:
    """The unlinked file and the blocks of it last read, shared by a ``FrameRows`` and the views of it."""

    def __init__(self, file, row_shape: tuple[int, ...], dtype: np.dtype, rows: int) -> None:
        self.file = file
        self.row_shape, self.dtype, self.rows = row_shape, dtype, rows
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        self.blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # a seek and its read or write go together

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (a new array)."""
        out = np.empty((max(0, stop - start),) + self.row_shape, self.dtype)
        if out.size == 0:
            return out
        with self._lock:
            self.file.seek(start * self.row_bytes)
            if self.file.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise OSError(f"the temporary frame file {self.file.name} was cut short")
        return out

    def write(self, start: int, values: np.ndarray) -> None:
        """Rows from ``start`` on set to ``values`` (count, ...); the cached blocks they touch are dropped."""
        data = np.ascontiguousarray(values, self.dtype)
        if data.size == 0:
            return
        with self._lock:
            self.file.seek(start * self.row_bytes)
            self.file.write(memoryview(data).cast("B"))
            self.file.flush()
        for k in range(start // BLOCK, (start + len(data) - 1) // BLOCK + 1):
            self.blocks.pop(k, None)

    def row(self, index: int) -> np.ndarray:
        """Row ``index`` (a read-only view of a cached block)."""
        k = index // BLOCK
        block = self.blocks.get(k)
        if block is None:
            block = self.read(k * BLOCK, min(self.rows, (k + 1) * BLOCK))
            block.setflags(write=False)
            self.blocks[k] = block
            if len(self.blocks) > CACHED_BLOCKS:
                self.blocks.popitem(last=False)
        else:
            self.blocks.move_to_end(k)
        return block[index - k * BLOCK]


class FrameRows:
    """A (T, ...) array whose rows live in an unlinked temporary file (``spill``, ``empty``).

    Indexing with an int reads that row (a block of ``BLOCK`` rows is read and cached; the row is read-only); a
    slice with step 1 gives a view of the same file; an array of row numbers or a mask reads the range of rows
    it spans; ``np.asarray`` reads every row. Assigning to an int or such a slice writes those rows. Meant for
    arrays written and read a frame or a block of frames at a time.
    """

    def __init__(self, rows: _RowFile, start: int = 0, stop: int | None = None) -> None:
        self._rows = rows
        self._start = start
        self._stop = rows.rows if stop is None else stop

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + self._rows.row_shape

    @property
    def dtype(self) -> np.dtype:
        return self._rows.dtype

    @property
    def ndim(self) -> int:
        return 1 + len(self._rows.row_shape)

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._rows.row(self._start + self._index(key))
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            return FrameRows(self._rows, self._start + start, self._start + max(start, stop))
        index = None if isinstance(key, tuple) else np.asarray(key)
        mask = index is not None and index.dtype == bool and index.shape == (len(self),)
        if index is not None and index.ndim == 1 and (index.dtype.kind in "iu" or mask):
            # rows picked by number or by mask: only the range they span is read
            picked = np.flatnonzero(index) if index.dtype == bool else index + np.where(index < 0, len(self), 0)
            if len(picked) == 0:
                return np.empty((0,) + self._rows.row_shape, self.dtype)
            low, high = int(picked.min()), int(picked.max()) + 1
            if low < 0 or high > len(self):
                raise IndexError(f"rows {low}-{high - 1} out of range for {len(self)} rows")
            if high - low > SPARSE * len(picked):  # a few rows spread far apart: each read on its own
                return np.stack([self._rows.read(self._start + i, self._start + i + 1)[0] for i in picked])
            return self._rows.read(self._start + low, self._start + high)[picked - low]
        return np.asarray(self)[key]

    def __setitem__(self, key, values) -> None:
        if isinstance(key, (int, np.integer)):
            start, count = self._index(key), 1
        elif isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            count = max(0, stop - start)
        else:
            raise TypeError("rows on disk are written by an int or a slice with step 1")
        if count:
            shape = (count,) + self._rows.row_shape
            self._rows.write(self._start + start, np.broadcast_to(np.asarray(values, self.dtype), shape))

    def _index(self, key: int | np.integer) -> int:
        index = int(key) + (len(self) if key < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"row {int(key)} out of range for {len(self)} rows")
        return index

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self._rows.read(self._start, self._stop)
        return out if dtype is None else out.astype(dtype, copy=False)

    def close(self) -> None:
        """Close the file (every view of it); it is already unlinked, so this frees its disk space."""
        self._rows.blocks.clear()
        self._rows.file.close()


def spill(array: np.ndarray, directory: str | Path | None = None) -> FrameRows:
    """``array`` (T, ...) written to an unlinked temporary file in ``directory`` (default: the system's temporary
    folder) and given back as ``FrameRows``. The file has no name to leave behind: the system frees it when
    the last reference is closed or the process ends, however it ends."""
    array = np.ascontiguousarray(array)
    rows = empty(array.shape, array.dtype, directory)
    try:
        step = max(1, (8 << 20) // max(1, rows._rows.row_bytes))  # about 8 MiB a write
        for start in range(0, len(array), step):
            rows._rows.write(start, array[start:start + step])
    except BaseException:
        rows.close()
        raise
    return rows


def empty(shape: tuple[int, ...], dtype: np.dtype | type = np.float32,
          directory: str | Path | None = None) -> FrameRows:
    """A (T, ...) ``FrameRows`` of ``shape`` to be written (it reads as zeros until then), in an unlinked temporary
    file in ``directory``, as ``spill`` makes one: a plan writes its frames' destinations there a block at a
    time instead of holding them all."""
    file = tempfile.TemporaryFile(dir=directory, prefix=".retarget-frames-")
    rows = _RowFile(file, tuple(shape[1:]), np.dtype(dtype), shape[0])
    try:
        file.truncate(rows.rows * rows.row_bytes)  # a sparse file: no disk taken until written
    except BaseException:
        file.close()
        raise
    return FrameRows(rows)


class FrameStore:
    """Where a job keeps its whole-clip per-frame arrays: in memory (``folder`` None: the arrays as they are) or
    in unlinked temporary files in ``folder`` (``FrameRows``), every one of which ``close`` frees. A failure to
    write there is one ``RetargetError`` naming the folder."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._made: list[FrameRows] = []

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray | FrameRows:
        """An array of ``shape`` to be written (``np.empty``, or ``empty`` in the folder)."""
        if self.folder is None:
            return np.empty(shape, dtype)
        return self._made_here(lambda: empty(shape, dtype, self.folder))

    def keep(self, array: np.ndarray) -> np.ndarray | FrameRows:
        """``array`` (T, ...) as it is, or moved to the folder (``spill``)."""
        if self.folder is None or isinstance(array, FrameRows):
            return array
        return self._made_here(lambda: spill(array, self.folder))

    def _made_here(self, make) -> FrameRows:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)  # the output's folder, which its writer makes too
            rows = make()
        except OSError as exc:
            raise self.write_error(exc) from exc
        self._made.append(rows)
        return rows

    def write_error(self, exc: OSError) -> Exception:
        """The one-line ``RetargetError`` for a failure to write in the folder."""
        from .errors import RetargetError

        return RetargetError(f"cannot write temporary files in {self.folder}: {exc.strerror or exc}")

    def appender(self, row_shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> RowAppender:
        """Rows of ``row_shape`` appended one at a time (``RowAppender``); in memory, or in the folder."""
        return RowAppender(row_shape, dtype, self)

    def close(self) -> None:
        for rows in self._made:
            rows.close()
        self._made = []

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RowAppender:
    """Rows (``row_shape`` each) appended one at a time into blocks of ``BLOCK`` rows; ``finish`` gives them all as
    one (count, ...) array, or, with a ``store`` that has a folder (``FrameStore``), as ``FrameRows`` in a file of it
    that each full block was written to: only one block is ever in memory.

    A clip's landmarks kept as one small array per frame sat among mediapipe's freed buffers in the heap, and
    the whole list was stacked into a second copy at the end."""

    BLOCK = 512

    def __init__(self, row_shape: tuple[int, ...], dtype: np.dtype | type = np.float32,
                 store: FrameStore | None = None) -> None:
        self._shape, self._dtype = tuple(row_shape), np.dtype(dtype)
        self._store = store if store is not None and store.folder is not None else None  # None: in memory
        self._blocks: list[np.ndarray] = []  # full blocks (in memory only)
        self._block = np.empty((self.BLOCK,) + self._shape, self._dtype)
        self._filled = 0  # rows in ``_block``
        self._file: _RowFile | None = None  # the file (with a store), grown a block at a time
        self._count = 0

    def append(self, row: np.ndarray | float) -> None:
        """Add ``row`` (``row_shape``, or a scalar to fill it with)."""
        self._block[self._filled] = row
        self._filled += 1
        self._count += 1
        if self._filled == self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._store is None:
            self._blocks.append(self._block)
            self._block = np.empty((self.BLOCK,) + self._shape, self._dtype)
        else:
            file = self._on_disk()
            try:
                file.write(file.rows, self._block[:self._filled])
            except OSError as exc:
                raise self._store.write_error(exc) from exc
            file.rows += self._filled
        self._filled = 0

    def _on_disk(self) -> _RowFile:
        if self._file is None:
            self._file = self._store.empty((0,) + self._shape, self._dtype)._rows
        return self._file

    def finish(self) -> np.ndarray | FrameRows:
        """Every row appended, (count, ...): an array, or ``FrameRows`` with a store."""
        if self._store is not None:
            self._flush()
            return FrameRows(self._on_disk())
        out = np.empty((self._count,) + self._shape, self._dtype)
        for k, block in enumerate(self._blocks):
            out[k * self.BLOCK:(k + 1) * self.BLOCK] = block
            self._blocks[k] = None  # type: ignore[call-overload]
        out[len(self._blocks) * self.BLOCK:] = self._block[:self._filled]
        self._blocks = []
        return out
