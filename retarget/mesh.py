"""The topology of mediapipe's face mesh: its triangles and each vertex's neighbours.

Mediapipe ships the tessellation only as an edge list; its faces are the 3-cycles of that list, less two that
are not faces. The mesh has holes at the eyes and the mouth.
"""

from __future__ import annotations

import functools
from collections import Counter
from itertools import combinations

import numpy as np


@functools.lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """(K, 3) landmark indices of mediapipe's face-mesh tessellation (holes at the eyes and the mouth)."""
    from .mediapipe_import import import_solution

    edges = import_solution("face_mesh_connections").FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}
    uses = Counter(e for t in cliques for e in combinations(t, 2))
    # the edge list only lists edges, and two 3-cycles of it are not faces: each of their edges has 3 users
    return np.array(sorted(t for t in cliques if not all(uses[e] > 2 for e in combinations(t, 2))), np.int32)


@functools.lru_cache(maxsize=1)
def neighbour_table() -> tuple[np.ndarray, np.ndarray]:
    """(478, D) padded neighbour indices of each vertex in the mesh and (478,) neighbour counts."""
    nbrs: list[set[int]] = [set() for _ in range(478)]
    for a, b, c in mesh_triangles().tolist():
        nbrs[a] |= {b, c}
        nbrs[b] |= {a, c}
        nbrs[c] |= {a, b}
    width = max(len(n) for n in nbrs)
    table = np.array([sorted(n) + [i] * (width - len(n)) for i, n in enumerate(nbrs)], np.int32)
    return table, np.array([max(1, len(n)) for n in nbrs])
