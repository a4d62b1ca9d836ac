"""Compiled loops of the warp generator (numba): the per-cell and per-landmark work that numpy spreads over dozens
of short array passes a frame.

Each kernel does the arithmetic of the numpy code it replaced in the same order and precision (float32 where that
code was float32), so the generator's output stays the same to the bit; ``tests/test_kernels.py`` checks each
against a plain numpy version. Compiled once and cached on disk (``cache=True``): the first run after an install
compiles for a few seconds, later runs load the cache (about 0.3 s for numba itself and its first kernel). The
kernels release the interpreter lock (``nogil``), so the encoder's and decoder's threads run beside them.

This module imports numba; ``warp`` imports it only when it first needs a kernel, so commands that never warp
(``--help``, ``analyze``) do not pay for it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def rasterise_cells(coefficients: np.ndarray, heights: np.ndarray, corners: np.ndarray, drawn: np.ndarray,
                    gh: int, gw: int, fringe: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The triangle covering each cell centre of a (gh, gw) grid and the centre's barycentric coordinates in it.

    Args:
        coefficients: (6, K) float32 per triangle (``_GridMesh.coefficients``): u = c0 x + c1 y + c2,
            v = c3 x + c4 y + c5.
        heights: (3, K) float32, each vertex's distance from the opposite edge, cells.
        corners: (D, 3, 2) float32 corners of the triangles drawn, in ``drawn`` order.
        drawn: (D,) int32 triangle indices, the winner of an overlap first.
        fringe: how far outside its edges (cells) a triangle covers a cell, at most 0.2 in its own barycentric
            coordinates.
    Returns:
        ids (gh * gw,) int32, -1 where no triangle covers the cell, and weights (3, gh * gw) float32 (0 there).
    """
    ids = np.full(gh * gw, -1, np.int32)
    weights = np.zeros((3, gh * gw), np.float32)
    least = np.float32(-0.2)
    for r in range(drawn.shape[0]):
        t = drawn[r]
        c = corners[r]
        x0 = max(int(math.ceil(min(c[0, 0], c[1, 0], c[2, 0]) - fringe)), 0)
        y0 = max(int(math.ceil(min(c[0, 1], c[1, 1], c[2, 1]) - fringe)), 0)
        x1 = min(int(math.floor(max(c[0, 0], c[1, 0], c[2, 0]) + fringe)), gw - 1)
        y1 = min(int(math.floor(max(c[0, 1], c[1, 1], c[2, 1]) + fringe)), gh - 1)
        k0, k1, k2 = coefficients[0, t], coefficients[1, t], coefficients[2, t]
        k3, k4, k5 = coefficients[3, t], coefficients[4, t], coefficients[5, t]
        floor0 = max(-fringe / heights[0, t], least)
        floor1 = max(-fringe / heights[1, t], least)
        floor2 = max(-fringe / heights[2, t], least)
        for y in range(y0, y1 + 1):
            fy = np.float32(y)
            for x in range(x0, x1 + 1):
                cell = y * gw + x
                if ids[cell] >= 0:  # an earlier (winning) triangle has it
                    continue
                fx = np.float32(x)
                u = k0 * fx
                u = u + k1 * fy
                u = u + k2
                v = k3 * fx
                v = v + k4 * fy
                v = v + k5
                w = np.float32(1.0) - u
                w = w - v
                if min(min(w - floor0, u - floor1), v - floor2) >= 0:
                    ids[cell] = t
                    weights[0, cell] = w
                    weights[1, cell] = u
                    weights[2, cell] = v
    return ids, weights


@njit(cache=True, nogil=True, error_model="numpy")
def outline_distance(points: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of ``points`` (N, 2) float64 to the closed polygon ``outline`` (M, 2) float64, positive
    inside, and the nearest point on it (N, 2)."""
    n, m = points.shape[0], outline.shape[0]
    ab = np.empty((m, 2))
    length2 = np.empty(m)
    turn = 0.0
    for j in range(m):
        k = (j + 1) % m
        ab[j, 0] = outline[k, 0] - outline[j, 0]
        ab[j, 1] = outline[k, 1] - outline[j, 1]
        length2[j] = max(ab[j, 0] * ab[j, 0] + ab[j, 1] * ab[j, 1], 1e-9)
        turn += outline[j, 0] * outline[k, 1] - outline[k, 0] * outline[j, 1]
    orientation = np.sign(turn)
    distance = np.empty(n)
    near = np.empty((n, 2))
    for i in range(n):
        best, best_j, best_t, best_dx, best_dy = np.inf, 0, 0.0, 0.0, 0.0
        for j in range(m):
            px, py = points[i, 0] - outline[j, 0], points[i, 1] - outline[j, 1]
            t = min(max((px * ab[j, 0] + py * ab[j, 1]) / length2[j], 0.0), 1.0)
            dx, dy = px - t * ab[j, 0], py - t * ab[j, 1]
            d2 = dx * dx + dy * dy
            if d2 < best:
                best, best_j, best_t, best_dx, best_dy = d2, j, t, dx, dy
        j = best_j
        px, py = points[i, 0] - outline[j, 0], points[i, 1] - outline[j, 1]
        side = np.sign(ab[j, 0] * py - ab[j, 1] * px) * orientation
        distance[i] = side * math.hypot(best_dx, best_dy)
        near[i, 0] = outline[j, 0] + best_t * ab[j, 0]
        near[i, 1] = outline[j, 1] + best_t * ab[j, 1]
    return distance, near


@njit(cache=True, nogil=True, error_model="numpy")
def _signed_area(points: np.ndarray, src: np.ndarray, disp: np.ndarray, a: int, b: int, c: int) -> float:
    """Twice the signed area of triangle (a, b, c) of the points ``src`` (N, 2) float32 + ``disp`` (N, 2)."""
    ax, ay = np.float64(src[a, 0]) + disp[a, 0], np.float64(src[a, 1]) + disp[a, 1]
    bx, by = np.float64(src[b, 0]) + disp[b, 0], np.float64(src[b, 1]) + disp[b, 1]
    cx, cy = np.float64(src[c, 0]) + disp[c, 0], np.float64(src[c, 1]) + disp[c, 1]
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True, nogil=True, error_model="numpy")
def untangle_displacement(src: np.ndarray, disp: np.ndarray, triangles: np.ndarray, ref: np.ndarray,
                          valid: np.ndarray, rate: np.ndarray, table: np.ndarray, count: np.ndarray,
                          incidence: np.ndarray, push_limit: float, reach: float, iterations: int, patience: int,
                          share: float) -> np.ndarray:
    """The rounds of ``warp.untangle``: the displacement (N, 2) float64 from ``src`` (N, 2) float32, starting at
    ``disp`` (modified), with the fewest folded triangles (then the smallest folded area) seen.

    Args:
        triangles: (K, 3) int32; ref: (K,) float32 twice each one's signed area in ``src``; valid: (K,) bool,
            the triangles that are checked.
        rate: (N,) float64 how far a vertex moves towards its neighbours' mean displacement in a round (0: never).
        table: (N, D) int32 mesh neighbours, padded with the vertex itself; count: (N,) int64 neighbours each.
        incidence: (N, E) int64 triangles touching each vertex, padded with -1.
        push_limit: the largest push (pixels) that mends a folded triangle; reach: no vertex moves farther.
        share: the share of its area at rest a push gives a folded triangle back.
    """
    n, k = src.shape[0], triangles.shape[0]
    now = np.empty(k)
    for f in range(k):
        now[f] = _signed_area(src, src, disp, triangles[f, 0], triangles[f, 1], triangles[f, 2])
    ref_sign = np.sign(ref)
    fastest = max(rate.max(), 1e-9)
    best = disp.copy()
    best_count, best_area, stalled, first = 0, 0.0, 0, True
    moved = np.zeros(n, np.bool_)
    changed = np.zeros(k, np.bool_)
    mean = np.empty((n, 2))
    push_vertex = np.empty(k, np.int64)
    push_move = np.empty((k, 2))
    scaled = np.empty((k, 2))
    for _ in range(iterations):
        folded_count, folded_area = 0, 0.0
        for f in range(k):
            if valid[f] and np.sign(now[f]) != ref_sign[f]:
                folded_count += 1
                folded_area += abs(now[f])
        if first or folded_count < best_count or (folded_count == best_count and folded_area < best_area):
            best[:] = disp
            best_count, best_area, stalled, first = folded_count, folded_area, 0, False
        else:
            stalled += 1
        if folded_count == 0 or stalled >= patience:
            break
        # each folded triangle: the cheapest push of one movable vertex across the opposite edge, or relax all three
        moved[:] = False
        pushes = 0
        for f in range(k):
            if not (valid[f] and np.sign(now[f]) != ref_sign[f]):
                continue
            want = np.float32(share) * ref[f]
            area = now[f]
            pick, pick_cost, move_x, move_y = -1, np.inf, 0.0, 0.0
            for i in range(3):
                j, m = triangles[f, (i + 1) % 3], triangles[f, (i + 2) % 3]
                ex = (np.float64(src[m, 0]) + disp[m, 0]) - (np.float64(src[j, 0]) + disp[j, 0])
                ey = (np.float64(src[m, 1]) + disp[m, 1]) - (np.float64(src[j, 1]) + disp[j, 1])
                length = max(math.sqrt(ex * ex + ey * ey), 1e-6)
                step = (want - area) / length
                speed = rate[triangles[f, i]] / fastest
                cost = abs(step) / max(speed, 1e-9) if speed > 0 else np.inf
                if pick < 0 or cost < pick_cost:
                    pick, pick_cost = i, cost
                    move_x, move_y = -ey / length * step, ex / length * step
            if pick_cost <= push_limit:
                push_vertex[pushes] = triangles[f, pick]
                push_move[pushes, 0], push_move[pushes, 1] = move_x, move_y
                pushes += 1
            else:
                for i in range(3):
                    moved[triangles[f, i]] = True
        # relax the stuck vertices towards their neighbours' mean displacement (all from the same state)
        for v in range(n):
            if moved[v]:
                sx, sy = 0.0, 0.0
                for d in range(table.shape[1]):
                    sx += disp[table[v, d], 0]
                    sy += disp[table[v, d], 1]
                padding = table.shape[1] - count[v]
                mean[v, 0] = (sx - disp[v, 0] * padding) / count[v]
                mean[v, 1] = (sy - disp[v, 1] * padding) / count[v]
        for v in range(n):
            if moved[v]:
                disp[v, 0] += rate[v] * (mean[v, 0] - disp[v, 0])
                disp[v, 1] += rate[v] * (mean[v, 1] - disp[v, 1])
        # the pushes, then no vertex farther than the edit moved any landmark
        for p in range(pushes):
            disp[push_vertex[p], 0] += push_move[p, 0]
            disp[push_vertex[p], 1] += push_move[p, 1]
        for p in range(pushes):
            v = push_vertex[p]
            length = math.sqrt(disp[v, 0] * disp[v, 0] + disp[v, 1] * disp[v, 1])
            factor = min(1.0, reach / max(length, 1e-9))
            scaled[p, 0], scaled[p, 1] = disp[v, 0] * factor, disp[v, 1] * factor
        for p in range(pushes):
            v = push_vertex[p]
            disp[v, 0], disp[v, 1] = scaled[p, 0], scaled[p, 1]
            moved[v] = True
        # only the triangles around moved vertices change
        changed[:] = False
        for v in range(n):
            if moved[v]:
                for e in range(incidence.shape[1]):
                    if incidence[v, e] >= 0:
                        changed[incidence[v, e]] = True
        for f in range(k):
            if changed[f]:
                now[f] = _signed_area(src, src, disp, triangles[f, 0], triangles[f, 1], triangles[f, 2])
    return best


@njit(cache=True, nogil=True, error_model="numpy")
def read_points(weights: np.ndarray, ids: np.ndarray, conditioning: np.ndarray, src: np.ndarray,
                triangles: np.ndarray) -> np.ndarray:
    """(N, 2) float32 source positions of cells with barycentric ``weights`` (3, N) float32 in triangles ``ids``
    (N,), each coordinate floored at ``-0.5 * min(1, 10 * conditioning)`` of its triangle (see
    ``warp._read_points``)."""
    n = ids.shape[0]
    out = np.empty((n, 2), np.float32)
    for i in range(n):
        t = ids[i]
        floor = np.float32(-0.5) * min(np.float32(1.0), np.float32(10.0) * conditioning[t])
        w0, w1, w2 = max(weights[0, i], floor), max(weights[1, i], floor), max(weights[2, i], floor)
        total = w0 + w1
        total = total + w2
        w0, w1, w2 = w0 / total, w1 / total, w2 / total
        a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        for d in range(2):
            value = w0 * src[a, d] + w1 * src[b, d]
            out[i, d] = value + w2 * src[c, d]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def place_moves(reads: np.ndarray, rows: np.ndarray, cols: np.ndarray, sx: float, sy: float, farthest: float,
                disp: np.ndarray) -> None:
    """Write into ``disp`` (gh, gw, 2) float32, at each cell (``rows``, ``cols``), its read position ``reads``
    (N, 2) float32 minus the cell centre's own (pixels; ``sx``, ``sy`` cells per pixel), shortened to at most
    ``farthest`` pixels."""
    limit = np.float32(farthest)
    for i in range(rows.shape[0]):
        mx = reads[i, 0] - np.float32((cols[i] + 0.5) / sx - 0.5)
        my = reads[i, 1] - np.float32((rows[i] + 0.5) / sy - 0.5)
        length = np.sqrt(mx * mx + my * my)
        factor = min(np.float32(1.0), limit / max(length, np.float32(1e-6)))
        disp[rows[i], cols[i], 0] = mx * factor
        disp[rows[i], cols[i], 1] = my * factor


@njit(cache=True, nogil=True, error_model="numpy")
def triangle_geometry(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle (K, 3) of ``points`` (N, 2): conditioning (K,) float32, barycentric coefficients (6, K)
    float32 and vertex heights (3, K) float32, as ``warp._GridMesh`` documents them (computed in float64)."""
    k = triangles.shape[0]
    conditioning = np.empty(k, np.float32)
    coefficients = np.empty((6, k), np.float32)
    heights = np.empty((3, k), np.float32)
    for t in range(k):
        ax, ay = np.float64(points[triangles[t, 0], 0]), np.float64(points[triangles[t, 0], 1])
        bx, by = np.float64(points[triangles[t, 1], 0]), np.float64(points[triangles[t, 1], 1])
        cx, cy = np.float64(points[triangles[t, 2], 0]), np.float64(points[triangles[t, 2], 1])
        e1x, e1y, e2x, e2y = bx - ax, by - ay, cx - ax, cy - ay
        det = e1x * e2y - e2x * e1y
        conditioning[t] = np.float32(abs(det) / ((e1x * e1x + e1y * e1y) + (e2x * e2x + e2y * e2y) + 1e-9))
        if abs(det) < 1e-9:
            det = 1e-9
        coefficients[0, t] = np.float32(e2y / det)
        coefficients[1, t] = np.float32(-e2x / det)
        coefficients[2, t] = np.float32((e2x * ay - e2y * ax) / det)
        coefficients[3, t] = np.float32(-e1y / det)
        coefficients[4, t] = np.float32(e1x / det)
        coefficients[5, t] = np.float32((e1y * ax - e1x * ay) / det)
        bcx, bcy, acx, acy = cx - bx, cy - by, cx - ax, cy - ay
        heights[0, t] = np.float32(abs(det) / max(math.sqrt(bcx * bcx + bcy * bcy), 1e-9))
        heights[1, t] = np.float32(abs(det) / max(math.sqrt(acx * acx + acy * acy), 1e-9))
        heights[2, t] = np.float32(abs(det) / max(math.sqrt(e1x * e1x + e1y * e1y), 1e-9))
    return conditioning, coefficients, heights


@njit(cache=True, nogil=True, error_model="numpy")
def fill_holes(ids: np.ndarray, weights: np.ndarray, holes: np.ndarray, coefficients: np.ndarray,
               conditioning: np.ndarray) -> None:
    """Give each ``holes`` cell (gh, gw) bool the triangle among its 3x3 neighbours' in ``ids`` (gh, gw) int32
    (as they were before any hole was filled) that contains its centre best, with its barycentric ``weights``
    (3, gh, gw) float32; a cell further outside even that one than ``-0.15 * min(1, 10 * conditioning)`` in
    barycentric terms stays outside (-1). In place."""
    gh, gw = ids.shape
    before = ids.copy()
    for row in range(gh):
        for col in range(gw):
            if not holes[row, col]:
                continue
            best, best_score, b0, b1, b2 = -1, -np.inf, np.float32(0), np.float32(0), np.float32(0)
            first = True
            fx, fy = np.float32(col), np.float32(row)
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    y, x = row + dy, col + dx
                    t = before[y, x] if 0 <= y < gh and 0 <= x < gw else -1
                    if t < 0:
                        score = -np.inf
                        u = v = w = np.float32(0)
                    else:
                        u = coefficients[0, t] * fx
                        u = u + coefficients[1, t] * fy
                        u = u + coefficients[2, t]
                        v = coefficients[3, t] * fx
                        v = v + coefficients[4, t] * fy
                        v = v + coefficients[5, t]
                        w = np.float32(1.0) - u
                        w = w - v
                        score = min(min(w, u), v)
                    if first or score > best_score:
                        best, best_score, b0, b1, b2, first = t, score, w, u, v, False
            if best >= 0 and best_score >= np.float32(-0.15) * min(np.float32(1.0),
                                                                   np.float32(10.0) * conditioning[best]):
                ids[row, col] = best
                weights[0, row, col], weights[1, row, col], weights[2, row, col] = b0, b1, b2
            else:
                ids[row, col] = -1


@njit(cache=True, nogil=True, error_model="numpy")
def nearest_inside(labels: np.ndarray, inside: np.ndarray, disp: np.ndarray,
                   smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cell of a (h, w) grid: ``disp`` (h, w, 2) float32 at the nearest ``inside`` (h, w) bool cell, as
    ``cv2.distanceTransformWithLabels`` (one label a pixel) numbered it in ``labels`` (h, w) int32, and the
    length (h, w) float32 of its difference from ``smooth`` (h, w, 2) float32."""
    h, w = labels.shape
    table = np.zeros((labels.max() + 1, 2), np.float32)
    for y in range(h):
        for x in range(w):
            if inside[y, x]:
                table[labels[y, x], 0], table[labels[y, x], 1] = disp[y, x, 0], disp[y, x, 1]
    nearest = np.empty((h, w, 2), np.float32)
    mismatch = np.empty((h, w), np.float32)
    for y in range(h):
        for x in range(w):
            nx, ny = table[labels[y, x], 0], table[labels[y, x], 1]
            nearest[y, x, 0], nearest[y, x, 1] = nx, ny
            dx, dy = nx - smooth[y, x, 0], ny - smooth[y, x, 1]
            mismatch[y, x] = np.sqrt(dx * dx + dy * dy)
    return nearest, mismatch
