"""Concave creases: where one object stands on or leans against another in a fused surface, the
surface folds inwards (a mug's side meeting the table top, a box against a cabinet's door). The
lifted clusters sometimes run across such a fold: a strip of a mug's side that the 2D
segmentation never separated from the table goes into the table's cluster. Cutting every cluster
along the creases through it gives the object rules (:mod:`hiscene_sim.object_grouping`) pieces
that end at the fold; parts of one object cut this way (a chair's legs under its seat) join
again there, since they do not rest on each other.

Written here because neither trimesh nor scipy segments a surface by convexity; the pieces come
from scipy's connected components and nearest-source search on the neighbour graph."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def surface_concavity(pairs: np.ndarray, centers: np.ndarray, normals: np.ndarray, areas: np.ndarray,
                      smoothing: int) -> np.ndarray:
    """(E,) how much the surface folds inwards between each pair of neighbouring faces: the length
    of the change of their normals (2 sin(angle / 2)), positive across a concave fold, negative
    across a convex edge, ~0 on a flat or gently curved surface.
    Normals are first averaged (area-weighted) over ``smoothing`` rings of neighbours: a
    marching-cubes surface rounds a crease over a few faces and is rough within one. The measure
    has no unit, so it does not depend on the scene's scale."""
    n = len(centers)
    i, j = pairs[:, 0], pairs[:, 1]
    ring = sp.coo_matrix((np.ones(2 * len(pairs)), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)).tocsr()
    ring = ring + sp.identity(n, format="csr")
    smooth = normals * areas[:, None]
    for _ in range(smoothing):
        smooth = ring @ smooth
    smooth /= np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-18)
    step = centers[j] - centers[i]
    step /= np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-18)
    # the size of the turn, with the usual convexity test for its sign: concave where each centre
    # lies above the other's tangent plane, convex where both lie below, neither where they
    # disagree (a step nearly along a crease, between the long thin faces of a simplified
    # surface's chamfer, whose sign is noise)
    ahead = np.einsum("ij,ij->i", smooth[i], step)
    behind = -np.einsum("ij,ij->i", smooth[j], step)
    sign = np.where((ahead > 0) & (behind > 0), 1.0, np.where((ahead < 0) & (behind < 0), -1.0, 0.0))
    return np.linalg.norm(smooth[i] - smooth[j], axis=1) * sign


def face_fold(pairs: np.ndarray, centers: np.ndarray, normals: np.ndarray, areas: np.ndarray, smoothing: int) -> np.ndarray:
    """(N,) the largest inward fold (:func:`surface_concavity`) between each face and a neighbour
    (0 for a face with only flat or convex neighbours)."""
    concavity = surface_concavity(pairs, centers, normals, areas, smoothing)
    fold = np.zeros(len(centers))
    np.maximum.at(fold, pairs[:, 0], concavity)
    np.maximum.at(fold, pairs[:, 1], concavity)
    return fold


def split_at_creases(pieces: np.ndarray, foreground: np.ndarray, prims, graph: sp.spmatrix, threshold: float,
                     smoothing: int, min_piece: float) -> np.ndarray:
    """Cut the connected clusters ``pieces`` (one id per primitive; ``graph``: the neighbour edges
    inside each foreground cluster) along their concave creases.

    A face is in a crease when the surface folds inwards by ``threshold`` or more
    (:func:`surface_concavity`) between it and a neighbour. Without the crease faces a cluster
    falls apart into the parts the creases enclose; those at least ``min_piece`` across (by area,
    ``min_piece ** 2``) are kept, and every other face of the cluster (the crease band itself,
    and crumbs of a rough surface) joins the kept part it is fewest steps from. A cluster with
    no kept part stays as it was. Returns new ids: unchanged clusters keep theirs, the parts
    take ids above them."""
    n = len(pieces)
    i, j = prims.pairs[:, 0], prims.pairs[:, 1]
    smooth = foreground & (face_fold(prims.pairs, prims.centers, prims.normals, prims.areas, smoothing) < threshold)
    inside = (pieces[i] == pieces[j]) & smooth[i] & smooth[j]
    _, parts = sp.csgraph.connected_components(
        sp.coo_matrix((np.ones(int(inside.sum())), (i[inside], j[inside])), shape=(n, n)), directed=False)
    area = np.bincount(parts, weights=prims.areas * smooth)
    sources = np.flatnonzero(smooth & (area[parts] >= min_piece ** 2))
    if len(sources) == 0:
        return pieces
    # every face of a cluster to its nearest kept part, in steps over the cluster's own edges
    _, _, nearest = sp.csgraph.dijkstra(graph.tocsr(), directed=False, indices=sources, unweighted=True, min_only=True,
                                        return_predecessors=True)
    reached = nearest >= 0
    out = pieces.copy()
    out[reached] = pieces.max() + 1 + parts[nearest[reached]]
    return out
