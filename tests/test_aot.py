"""retarget.generators.aot: the warp kernels built ahead of time give the JIT kernels' bits, load without numba,
and every way the build can fail leaves the JIT kernels in charge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_kernels import edits

from retarget.generators import aot, warp


@pytest.fixture(scope="module")
def built():
    """The module built for the current code (built here when no earlier run has); skips where it cannot be."""
    module = aot.load()
    if module is None and aot.unbuildable() is None:
        module = aot.build()
    if module is None:
        pytest.skip(f"the kernels cannot be built ahead of time here: {aot.unbuildable()}")
    return module


class _Recorder:
    """Stands in for the kernels: calls the JIT's, keeping a copy of every call's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []

    def __getattr__(self, name: str):
        kernel = getattr(warp._jit_kernels(), name)

        def call(*args):
            self.calls.append((name, [a.copy() if isinstance(a, np.ndarray) else a for a in args]))
            return kernel(*args)

        return call


def _as_list(result) -> list:
    return list(result) if isinstance(result, tuple) else [result]


def test_built_kernels_give_the_jit_kernels_bits(built, astronaut, astronaut_landmarks, monkeypatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(warp, "_kernels", lambda: recorder)
    generator = warp.WarpGenerator(warp.WarpSettings(head=0.0))
    for _, src, dst in edits(np.asarray(astronaut_landmarks)):
        depth = np.zeros((len(src), 1), np.float32)
        edit = warp.FaceEdit(image=astronaut, source=np.hstack([src, depth]), destination=np.hstack([dst, depth]),
                             relative_aus=np.zeros(17, np.float32))
        generator.generate(edit)
    assert {name for name, _ in recorder.calls} == set(aot.SIGNATURES)  # every kernel was called
    for name, args in recorder.calls:
        assert aot.accepts(name, tuple(args)), name  # the generator's own calls all go to the built module
        jit_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        expected = _as_list(getattr(warp._jit_kernels(), name)(*jit_args))
        got = _as_list(getattr(built, name)(*args))
        for a, b in zip(got + args, expected + jit_args):  # results, and the arguments a kernel fills in
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype, name
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_call_the_signatures_do_not_take_goes_to_the_jit(built) -> None:
    points = np.array([[0.2, 0.2], [2.0, 0.5]], np.float32)  # float32: the built kernel takes float64 only
    outline = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    assert not aot.accepts("outline_distance", (points, outline))
    assert aot.accepts("outline_distance", (points.astype(np.float64), outline.astype(np.float64)))
    distance, near = warp._JitFallback(built).outline_distance(points, outline)
    expected = warp._jit_kernels().outline_distance(points, outline)
    np.testing.assert_array_equal(distance, expected[0])
    np.testing.assert_array_equal(near, expected[1])


def test_the_warp_runs_without_numba_once_built(built) -> None:
    code = ("import sys\nimport numpy as np\nfrom retarget.generators.warp import outline_distance\n"
            "d = outline_distance(np.array([[0.2, 0.2]]), np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))[0][0]\n"
            "print(d, 'numba' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    distance, numba_loaded = run.stdout.split()
    assert float(distance) == pytest.approx(0.2) and numba_loaded == "False"


def test_a_failed_build_is_noted_and_not_tried_again(tmp_path, monkeypatch) -> None:
    attempts = []

    def no_compiler(name: str, output: Path) -> None:
        attempts.append(name)
        raise OSError("no C compiler found")

    monkeypatch.setattr(aot, "_compile", no_compiler)
    folders = [tmp_path / "cache"]
    assert aot.build(folders) is None
    assert "no C compiler found" in aot.unbuildable(folders)
    assert aot.load(folders) is None
    assert [p.name for p in folders[0].iterdir()] == [f"{aot.module_name()}.unbuildable"]  # no build left over
    assert len(attempts) == 1


def test_the_module_name_follows_the_kernels_source(tmp_path, monkeypatch) -> None:
    source = tmp_path / "kernels.py"
    shutil.copy(aot._SOURCE, source)
    monkeypatch.setattr(aot, "_SOURCE", source)
    before = aot.module_name()
    source.write_text(source.read_text() + "\n# changed\n")
    assert aot.module_name() != before  # an edited kernel is built afresh, never an old build loaded


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="folder ownership is checked on POSIX only")
def test_code_is_loaded_only_from_a_folder_no_one_else_can_write(built, tmp_path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(built.__file__, folder / Path(built.__file__).name)
    folder.chmod(0o777)
    assert aot.load([folder]) is None
    folder.chmod(0o700)
    assert aot.load([folder]) is not None
