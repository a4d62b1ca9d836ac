"""retarget.generators.kernels: each compiled loop gives the same bits as the numpy code it replaced.

The references below are that numpy code (as it was before the kernels, 2026-11-22), kept here as the
specification: the generator's output is meant to be unchanged by the kernels, and a kernel that rounds, orders
or picks differently fails here. Inputs are the astronaut's landmarks under scripted edits (a jaw drop, closed
eyes, random jitter that folds triangles) on the generator's own grid.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _helpers import close_eyes, open_mouth

from retarget import landmarks as lm
from retarget.generators import kernels, warp
from retarget.mesh import mesh_triangles, neighbour_table

# ------------------------------------------------------------------------------------- the numpy references


def ref_geometry(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, c = (points[triangles[:, i]].astype(np.float64) for i in range(3))
    e1, e2 = b - a, c - a
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    conditioning = (np.abs(det) / ((e1 ** 2).sum(1) + (e2 ** 2).sum(1) + 1e-9)).astype(np.float32)
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    coefficients = (np.stack([e2[:, 1], -e2[:, 0], e2[:, 0] * a[:, 1] - e2[:, 1] * a[:, 0],
                              -e1[:, 1], e1[:, 0], e1[:, 1] * a[:, 0] - e1[:, 0] * a[:, 1]]) / det).astype(np.float32)
    edges = np.stack([np.linalg.norm(c - b, axis=1), np.linalg.norm(c - a, axis=1), np.linalg.norm(b - a, axis=1)])
    heights = (np.abs(det) / np.maximum(edges, 1e-9)).astype(np.float32)
    return conditioning, coefficients, heights


def ref_barycentric(k: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    x, y = cols.astype(np.float32), rows.astype(np.float32)
    out = np.empty((3, len(x)), np.float32)
    np.multiply(k[0], x, out=out[1])
    out[1] += k[1] * y
    out[1] += k[2]
    np.multiply(k[3], x, out=out[2])
    out[2] += k[4] * y
    out[2] += k[5]
    np.subtract(1.0, out[1], out=out[0])
    out[0] -= out[2]
    return out


def ref_ramp(lengths: np.ndarray) -> np.ndarray:
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(len(starts), dtype=np.int32) - starts.astype(np.int32)


def ref_smallest(bary: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(bary[0], bary[1]), bary[2])


def ref_rasterise_cells(mesh: warp._GridMesh, drawn: np.ndarray, shape: tuple[int, int],
                        fringe: float) -> tuple[np.ndarray, np.ndarray]:
    gh, gw = shape
    corners = mesh.points[mesh.triangles[drawn]]
    lo = np.maximum(np.ceil(corners.min(1) - fringe), 0).astype(np.int32)
    hi = np.minimum(np.floor(corners.max(1) + fringe), [gw - 1, gh - 1]).astype(np.int32)
    span = np.maximum(hi - lo + 1, 0)
    box_rows = np.repeat(np.arange(len(drawn)), span[:, 1])
    row_y = lo[box_rows, 1] + ref_ramp(span[:, 1])
    width = span[box_rows, 0]
    rows = np.repeat(row_y, width)
    cols = np.repeat(lo[box_rows, 0], width) + ref_ramp(width)
    counts = span[:, 0] * span[:, 1]
    owner = np.repeat(np.arange(len(drawn), dtype=np.int32), counts)
    bary = ref_barycentric(np.repeat(mesh.coefficients[:, drawn], counts, axis=1), cols, rows)
    floor = np.repeat(np.maximum(-fringe / mesh.heights[:, drawn], -0.2), counts, axis=1)
    hit = np.flatnonzero(ref_smallest(bary - floor) >= 0)
    cell = rows[hit] * gw + cols[hit]
    best = np.full(gh * gw, len(drawn), np.int32)
    np.minimum.at(best, cell, owner[hit])
    win = hit[owner[hit] == best[cell]]
    ids = np.full(gh * gw, -1, np.int32)
    weights = np.zeros((3, gh * gw), np.float32)
    where = rows[win] * gw + cols[win]
    ids[where] = drawn[owner[win]]
    weights[:, where] = bary[:, win]
    return ids, weights


def ref_fill_holes(ids: np.ndarray, weights: np.ndarray, holes: np.ndarray, mesh: warp._GridMesh) -> None:
    padded = np.pad(ids, 1, constant_values=-1)
    rows, cols = np.nonzero(holes)
    candidates = np.stack([padded[rows + dy, cols + dx] for dy in range(3) for dx in range(3)], 1)
    bary = ref_barycentric(mesh.coefficients[:, np.maximum(candidates.ravel(), 0)], np.repeat(cols, 9),
                           np.repeat(rows, 9))
    score = ref_smallest(bary).reshape(-1, 9)
    score[candidates < 0] = -np.inf
    pick = score.argmax(1)
    best = candidates[np.arange(len(rows)), pick]
    tolerance = -0.15 * np.minimum(1.0, 10.0 * mesh.conditioning)
    near = (best >= 0) & (score.max(1) >= tolerance[np.maximum(best, 0)])
    ids[rows, cols] = np.where(near, best, -1)
    chosen = np.flatnonzero(near) * 9 + pick[near]
    weights[:, rows[near], cols[near]] = bary[:, chosen]


def ref_read_points(weights, ids, conditioning, src, triangles) -> np.ndarray:
    floor = (-0.5 * np.minimum(1.0, 10.0 * conditioning))[ids]
    w = np.maximum(weights, floor)
    w /= w[0] + w[1] + w[2]
    corner = src[triangles[ids].T]
    return (w[0, :, None] * corner[0] + w[1, :, None] * corner[1] + w[2, :, None] * corner[2]).astype(np.float32)


def ref_outline_distance(points: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(outline, np.float64)
    ab = np.roll(a, -1, axis=0) - a
    p = np.asarray(points, np.float64)
    px, py = p[:, 0:1] - a[None, :, 0], p[:, 1:2] - a[None, :, 1]
    t = np.clip((px * ab[:, 0] + py * ab[:, 1]) / np.maximum((ab * ab).sum(1), 1e-9), 0.0, 1.0)
    dx, dy = px - t * ab[:, 0], py - t * ab[:, 1]
    k = (dx * dx + dy * dy).argmin(1)
    n = np.arange(len(k))
    orientation = np.sign(np.sum(a[:, 0] * np.roll(a[:, 1], -1) - np.roll(a[:, 0], -1) * a[:, 1]))
    side = np.sign(ab[k, 0] * py[n, k] - ab[k, 1] * px[n, k]) * orientation
    near = a[k] + t[n, k, None] * ab[k]
    return side * np.hypot(dx[n, k], dy[n, k]), near


def ref_pushes(points, folded, ref, rate, limit, share=0.25):
    corners = points[folded]
    want = share * ref
    now = warp.signed_areas(points, folded)
    moves, costs = [], []
    for i in range(3):
        j, k = corners[:, (i + 1) % 3], corners[:, (i + 2) % 3]
        edge = k - j
        length = np.maximum(np.linalg.norm(edge, axis=1), 1e-6)
        normal = np.stack([-edge[:, 1], edge[:, 0]], 1) / length[:, None]
        step = (want - now) / length
        moves.append(normal * step[:, None])
        speed = rate[folded[:, i]] / max(float(rate.max()), 1e-9)
        costs.append(np.where(speed > 0, np.abs(step) / np.maximum(speed, 1e-9), np.inf))
    costs = np.stack(costs, 1)
    pick = costs.argmin(1)
    rows = np.arange(len(folded))
    ok = costs[rows, pick] <= limit
    shift = np.stack(moves, 1)[rows, pick]
    return (folded[rows[ok], pick[ok]], shift[ok]), np.unique(folded[~ok])


def ref_untangle(src, dst, iterations=40, damping=0.5, patience=15) -> np.ndarray:
    tris = mesh_triangles()
    table, count = neighbour_table()
    incidence = warp._incidence_table()
    ref = warp.signed_areas(src, tris)
    valid = np.abs(ref) > 1.0
    rate = np.full(len(src), damping)
    rate[lm.INNER_LIP_LOOP] = 0.3 * damping
    rate[warp._LIDS] = 0.0
    disp = (dst - src).astype(np.float64)
    push_limit = warp.PUSH_LIMIT * float(np.ptp(src[lm.FACE_OVAL], axis=0).max())
    reach = float(np.linalg.norm(disp, axis=1).max())
    now = warp.signed_areas(src + disp, tris)
    ref_sign = np.sign(ref)
    best, best_score, stalled = disp.copy(), None, 0
    moved = np.zeros(len(src), bool)
    changed = np.zeros(len(tris) + 1, bool)
    for _ in range(iterations):
        folded = valid & (np.sign(now) != ref_sign)
        score = (int(np.count_nonzero(folded)), float(np.abs(now[folded]).sum()))
        if best_score is None or score < best_score:
            best, best_score, stalled = disp.copy(), score, 0
        else:
            stalled += 1
        if score[0] == 0 or stalled >= patience:
            break
        pushed, stuck = ref_pushes(src + disp, tris[folded], ref[folded], rate, push_limit)
        moved[:] = False
        moved[stuck] = True
        verts = np.flatnonzero(moved)
        padding = (table.shape[1] - count[verts])[:, None]
        mean = (disp[table[verts]].sum(1) - disp[verts] * padding) / count[verts][:, None]
        disp[verts] += rate[verts, None] * (mean - disp[verts])
        if len(pushed[0]):
            np.add.at(disp, pushed[0], pushed[1])
            length = np.linalg.norm(disp[pushed[0]], axis=1, keepdims=True)
            disp[pushed[0]] *= np.minimum(1.0, reach / np.maximum(length, 1e-9))
            verts = np.union1d(verts, pushed[0])
        changed[:] = False
        changed[incidence[verts]] = True
        touched = np.flatnonzero(changed[:-1])
        now[touched] = warp.signed_areas(src + disp, tris[touched])
    return (src + best).astype(np.float32)


# ------------------------------------------------------------------------------------------------- inputs


def edits(points: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, source, destination), each (478, 2) float32 crop pixels: a jaw drop, closed eyes, and two random
    jitters large enough to fold triangles."""
    src = (points[:, :2] - points[:, :2].min(0) + 40).astype(np.float32)
    rng = np.random.default_rng(7)
    out = [("jaw drop", src, open_mouth(src, 0.12 * warp.face_size(src)).astype(np.float32)),
           ("closed eyes", src, close_eyes(src).astype(np.float32))]
    for k, scale in enumerate((2.0, 6.0)):
        out.append((f"jitter {k}", src, (src + rng.normal(0, scale, src.shape)).astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def cases(astronaut_landmarks: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return edits(np.asarray(astronaut_landmarks))


def grid_mesh(src: np.ndarray, dst: np.ndarray, grid: int = 192) -> tuple[warp._GridMesh, tuple[int, int]]:
    h, w = (np.ceil(np.maximum(src.max(0), dst.max(0))) + 40).astype(int)[::-1]
    gw, gh = warp._grid_shape(w, h, grid)
    scale = np.array([gw / w, gh / h], np.float32)
    return warp._GridMesh((dst + 0.5) * scale - 0.5, warp.face_triangles()), (gh, gw)


# -------------------------------------------------------------------------------------------------- tests


def test_triangle_geometry_matches_numpy(cases) -> None:
    for name, src, dst in cases:
        got = kernels.triangle_geometry(dst, warp.face_triangles())
        for a, b in zip(got, ref_geometry(dst, warp.face_triangles())):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_rasteriser_matches_numpy(cases) -> None:
    covered = 0
    for name, src, dst in cases:
        mesh, shape = grid_mesh(src, dst)
        drawn = np.flatnonzero(mesh.conditioning >= 0.02)
        drawn = drawn[np.random.default_rng(0).permutation(len(drawn))].astype(np.int32)  # any rank order
        ids, weights = kernels.rasterise_cells(mesh.coefficients, mesh.heights, mesh.points[mesh.triangles[drawn]],
                                               drawn, *shape, np.float32(warp._FRINGE))
        ref_ids, ref_weights = ref_rasterise_cells(mesh, drawn, shape, warp._FRINGE)
        np.testing.assert_array_equal(ids, ref_ids, err_msg=name)
        np.testing.assert_array_equal(weights, ref_weights, err_msg=name)
        covered += int((ids >= 0).sum())
    assert covered > 1000  # the meshes did cover the grids


def test_rasteriser_ties_on_edges_match_numpy(cases) -> None:
    """Corners on whole cells and no fringe: many cell centres lie exactly on an edge (a coordinate of 0)."""
    name, src, dst = cases[0]
    mesh, shape = grid_mesh(src, dst, grid=96)
    mesh = warp._GridMesh(np.round(mesh.points).astype(np.float32), mesh.triangles)
    drawn = np.flatnonzero(mesh.conditioning >= 0.02).astype(np.int32)
    ids, weights = kernels.rasterise_cells(mesh.coefficients, mesh.heights, mesh.points[mesh.triangles[drawn]],
                                           drawn, *shape, np.float32(0.0))
    ref_ids, ref_weights = ref_rasterise_cells(mesh, drawn, shape, 0.0)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(weights, ref_weights)
    assert (ref_smallest(weights.reshape(3, -1)[:, ids >= 0]) == 0).sum() > 50  # the ties were there


def test_hole_filling_matches_numpy(cases) -> None:
    filled = 0
    for name, src, dst in cases:
        mesh, shape = grid_mesh(src, dst, grid=96)
        ids, weights = warp._rasterise(mesh, np.zeros(len(mesh.triangles)), shape)  # holes already filled
        ids[::5, ::3] = -1  # punch more holes, some of them with no covered neighbour left
        ids[10:14, 10:14] = -1
        weights[:, ids < 0] = 0
        holes = ids < 0
        got_ids, got_weights = ids.copy(), weights.copy()
        kernels.fill_holes(got_ids, got_weights, holes, mesh.coefficients, mesh.conditioning)
        ref_fill_holes(ids, weights, holes, mesh)
        np.testing.assert_array_equal(got_ids, ids, err_msg=name)
        np.testing.assert_array_equal(got_weights, weights, err_msg=name)
        filled += int((got_ids[holes] >= 0).sum())
    assert filled > 100


def test_read_points_and_moves_match_numpy(cases) -> None:
    for name, src, dst in cases:
        mesh, shape = grid_mesh(src, dst)
        ids, weights = warp._rasterise(mesh, np.zeros(len(mesh.triangles)), shape)
        rows, cols = np.nonzero(ids >= 0)
        bary, tri = weights[:, rows, cols], ids[rows, cols]
        reads = kernels.read_points(bary, tri, mesh.conditioning, src, mesh.triangles)
        np.testing.assert_array_equal(reads, ref_read_points(bary, tri, mesh.conditioning, src, mesh.triangles),
                                      err_msg=name)
        h, w = (np.ceil(np.maximum(src.max(0), dst.max(0))) + 40).astype(int)[::-1]
        sx, sy = shape[1] / w, shape[0] / h
        farthest = 0.5 * float(np.linalg.norm(dst - src, axis=1).max())  # low enough to shorten some moves
        disp = np.zeros((*shape, 2), np.float32)
        kernels.place_moves(reads, rows, cols, sx, sy, farthest, disp)
        cells = np.stack([(cols + 0.5) / sx - 0.5, (rows + 0.5) / sy - 0.5], 1).astype(np.float32)
        moved = reads - cells
        length = np.linalg.norm(moved, axis=1, keepdims=True)
        expected = np.zeros_like(disp)
        expected[rows, cols] = moved * np.minimum(1.0, farthest / np.maximum(length, 1e-6))
        np.testing.assert_array_equal(disp, expected, err_msg=name)


def test_outline_distance_matches_numpy(cases) -> None:
    for name, src, dst in cases:
        for points in (src, dst):
            got = kernels.outline_distance(points.astype(np.float64), dst[lm.FACE_OVAL].astype(np.float64))
            for a, b in zip(got, ref_outline_distance(points, dst[lm.FACE_OVAL])):
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_untangle_matches_numpy(cases) -> None:
    folds_mended = 0
    for name, src, dst in cases:
        got, ref = warp.untangle(src, dst), ref_untangle(src, dst)
        np.testing.assert_array_equal(got, ref, err_msg=name)
        before = np.count_nonzero(np.sign(warp.signed_areas(dst, mesh_triangles()))
                                  != np.sign(warp.signed_areas(src, mesh_triangles())))
        after = np.count_nonzero(np.sign(warp.signed_areas(got, mesh_triangles()))
                                 != np.sign(warp.signed_areas(src, mesh_triangles())))
        folds_mended += before - after
    assert folds_mended > 10  # the jitters folded triangles, and untangling mended them


def test_nearest_inside_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    inside = np.zeros((50, 60), bool)
    cv2.circle(inside.view(np.uint8), (30, 25), 15, 1, -1)
    disp = rng.normal(0, 3, (50, 60, 2)).astype(np.float32) * inside[..., None]
    smooth = rng.normal(0, 3, (50, 60, 2)).astype(np.float32)
    _, labels = cv2.distanceTransformWithLabels((~inside).astype(np.uint8), cv2.DIST_L2, 3,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    nearest, mismatch = kernels.nearest_inside(labels, inside, disp, smooth)
    table = np.zeros((labels.max() + 1, 2), np.float32)
    table[labels[inside]] = disp[inside]
    np.testing.assert_array_equal(nearest, table[labels])
    np.testing.assert_array_equal(mismatch, np.linalg.norm(table[labels] - smooth, axis=-1))
    assert np.array_equal(nearest[inside], disp[inside])  # an inside cell is its own nearest


def test_kernels_cache_in_a_temporary_folder_where_numba_finds_no_other(tmp_path) -> None:
    """A read-only install without a writable home: numba refuses to import cached kernels (no cache locator);
    the warp then caches them under the temporary folder and works."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from retarget.generators.warp import _jit_kernels\n"
            "k = _jit_kernels()\n"
            "print(k.outline_distance(np.array([[0.2, 0.2]]), np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))[0][0])\n")
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator", TMPDIR=str(tmp_path))
    blocked = subprocess.run([sys.executable, "-c", "import retarget.generators.kernels"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert "no locator available" in blocked.stderr  # the situation is real: a plain import fails
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == pytest.approx(0.2)
    assert any((tmp_path / f"retarget-numba-{os.getuid()}").rglob("*.nbi"))  # cached there
