"""The warp generator's compiled loops (``kernels``) built ahead of time into an extension module, which later runs
import without numba.

Importing numba and setting up its compiler to load the cached kernels took 0.4 s of every run, on the main
thread before the first frame (on the project's 2-core machine, a tenth of a 10 s 720p job; loading it on a
thread beside the tracking slowed both twice over, as it holds the interpreter lock). The built module imports
in under a millisecond.

It is built by numba's own ahead-of-time compiler (``numba.pycc``) from the same functions, with the
signatures the generator calls them with (``SIGNATURES``), on first use after an install or after anything it
depends on changes (``kernels.py``, numba, numpy, Python: the file's name carries a hash of them). The build
takes about 13 s and needs a C compiler. Where it cannot be built (no compiler; a numba without ``pycc``, which
numba marks for removal), that is noted in the cache folder and the kernels are compiled by numba's JIT as
before. Each kernel gives the same bits either way (``tests/test_kernels.py``). Unlike the JIT's kernels, the
built ones hold the interpreter lock while they run (about 0.1 s a 720p job).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import shutil
import stat
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

# each kernel's arguments as the generator passes them: (dtype, dimensions, C-contiguous) for an array, a dtype
# for a number; then its result, in numba's signature syntax. The built module checks none of this itself (an
# array of another dtype crashes the process), so ``accepts`` does before every call.
_C, _ANY = True, False
_KERNELS = {
    "rasterise_cells": ((("f4", 2, _C), ("f4", 2, _C), ("f4", 3, _C), ("i4", 1, _C), "i8", "i8", "f4"),
                        "Tuple((i4[::1], f4[:, ::1]))"),
    "outline_distance": ((("f8", 2, _C), ("f8", 2, _C)), "Tuple((f8[::1], f8[:, ::1]))"),
    "untangle_displacement": ((("f4", 2, _C), ("f8", 2, _C), ("i4", 2, _C), ("f4", 1, _C), ("b1", 1, _C),
                               ("f8", 1, _C), ("i4", 2, _C), ("i8", 1, _C), ("i8", 2, _C), "f8", "f8", "i8", "i8",
                               "f8"), "f8[:, ::1]"),
    "read_points": ((("f4", 2, _C), ("i4", 1, _C), ("f4", 1, _C), ("f4", 2, _C), ("i4", 2, _C)), "f4[:, ::1]"),
    "place_moves": ((("f4", 2, _C), ("i8", 1, _ANY), ("i8", 1, _ANY), "f8", "f8", "f8", ("f4", 3, _C)), "void"),
    "triangle_geometry": ((("f4", 2, _C), ("i4", 2, _C)), "Tuple((f4[::1], f4[:, ::1], f4[:, ::1]))"),
    "fill_holes": ((("i4", 2, _C), ("f4", 3, _C), ("b1", 2, _C), ("f4", 2, _C), ("f4", 1, _C)), "void"),
    "nearest_inside": ((("i4", 2, _C), ("b1", 2, _C), ("f4", 3, _C), ("f4", 3, _C)),
                       "Tuple((f4[:, :, ::1], f4[:, ::1]))"),
}
_DTYPES = {"f4": np.dtype(np.float32), "f8": np.dtype(np.float64), "i4": np.dtype(np.int32),
           "i8": np.dtype(np.int64), "b1": np.dtype(np.bool_)}
_NUMBERS = {"i8": (int, np.integer), "f4": (float, int, np.floating, np.integer),
            "f8": (float, int, np.floating, np.integer)}


def _numba_type(arg: tuple | str) -> str:
    if isinstance(arg, str):
        return arg
    dtype, ndim, contiguous = arg
    return f"{dtype}[{', '.join([':'] * (ndim - 1) + ['::1' if contiguous else ':'])}]"


SIGNATURES = {name: f"{result}({', '.join(_numba_type(a) for a in args)})" for name, (args, result) in
              _KERNELS.items()}


def accepts(name: str, args: tuple) -> bool:
    """Whether kernel ``name`` of the built module takes ``args`` (their types as ``SIGNATURES`` says)."""
    spec = _KERNELS[name][0]
    if len(args) != len(spec):
        return False
    for value, want in zip(args, spec):
        if isinstance(want, str):
            if isinstance(value, bool) or not isinstance(value, _NUMBERS[want]):
                return False
        elif not (isinstance(value, np.ndarray) and value.dtype == _DTYPES[want[0]] and value.ndim == want[1]
                  and value.flags.aligned and (value.flags.c_contiguous or not want[2])):
            return False
    return True


_SOURCE = Path(__file__).with_name("kernels.py")


def module_name() -> str:
    """The built module's name: ``_warp_kernels_`` and a hash of what its code depends on."""
    key = hashlib.sha256(_SOURCE.read_bytes())
    for part in (repr(sorted(SIGNATURES.items())), sys.version, sys.platform, _version("numba"), _version("numpy")):
        key.update(part.encode())
    return f"_warp_kernels_{key.hexdigest()[:16]}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_folders() -> list[Path]:
    """Where the module is looked for, in order, and built (the first that can be written): beside the
    package's source (as numba caches its JIT kernels), the user's cache folder, a private temporary folder."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [_SOURCE.parent / "__pycache__", Path(home) / "retarget",
            Path(tempfile.gettempdir()) / f"retarget-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"]


def _private(folder: Path) -> bool:
    """Whether ``folder`` is ours alone to load code from: owned by this user, writable by no one else."""
    try:
        info = folder.stat()
    except OSError:
        return False
    if not hasattr(os, "getuid"):
        return True
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _file_name(name: str) -> str:
    return name + importlib.machinery.EXTENSION_SUFFIXES[0]


def load(folders: list[Path] | None = None) -> ModuleType | None:
    """The built module for the current code, or None where none is built."""
    name = module_name()
    for folder in folders or cache_folders():
        path = folder / _file_name(name)
        if path.is_file() and _private(folder):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def unbuildable(folders: list[Path] | None = None) -> str | None:
    """Why an earlier build of the current module failed (noted in a cache folder), or None."""
    name = module_name()
    for folder in folders or cache_folders():
        note = folder / f"{name}.unbuildable"
        if note.is_file():
            return note.read_text().strip() or "unknown"
    return None


def build(folders: list[Path] | None = None) -> ModuleType | None:
    """Build the module into the first writable cache folder and load it; None where it cannot be built (the
    reason is noted there, so later runs do not try again)."""
    name = module_name()
    for folder in folders or cache_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        except OSError:
            continue
        try:
            try:
                _compile(name, work)
            except Exception as exc:  # no compiler, no pycc, a compiler error: the JIT's kernels serve
                (folder / f"{name}.unbuildable").write_text(f"{type(exc).__name__}: {exc}\n")
                return None
            os.replace(work / _file_name(name), folder / _file_name(name))  # whole, even with runs side by side
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return load([folder])
    return None


def _compile(name: str, output: Path) -> None:
    with warnings.catch_warnings(), open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")  # pycc's pending-deprecation warning; the JIT takes over once it is gone
        from numba.pycc import CC

        from . import kernels

        cc = CC(name)
        cc.output_dir = str(output)
        cc.verbose = False
        for function, signature in SIGNATURES.items():
            cc.export(function, signature)(getattr(kernels, function).py_func)
        cc.compile()
