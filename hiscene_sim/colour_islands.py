"""Colour islands: a small object standing on a support, in the support's cluster.

A small, rounded object (a teddy 4 cm tall on a table, fused at 1.3 cm) meets its support in a
fillet too gentle for the 2D segmenter's crease test and for the concave-crease cut
(:mod:`hiscene_sim.creases`): its faces stay in the table's cluster. Its colour still tells it
apart: a textured table's own colours lie within ~0.2 (RGB in [0, 1]) of the table's median
colour, a dark red teddy's lie 0.25-0.3 away.

Within every cluster, the faces whose colour (averaged over one ring of neighbours in the
cluster) is farther than ``delta`` from the cluster's median colour form connected components.
A component becomes a piece of its own (an island) when it looks like something standing on the
cluster's surface, not a pattern on it:

* it is at least ``min_piece`` across (by area);
* it is enclosed by the cluster: of its boundary, apart from neighbours of its own colour in
  other clusters (the object's other parts), at least ``enclosed`` lies in the cluster;
* the cluster's faces around it face up (area-weighted mean normal z >= ``up``): it stands on a
  top, it is not a label on a can's side;
* it rises above them by at least ``rise`` (in surface samples): a flat painted patch does not.

Neighbouring clusters of the island's colour (the object's other parts that the lifting did
separate) then join it, so the object rules (:mod:`hiscene_sim.object_grouping`) see the object
whole: it rests on its support and stays an object of its own.

The converse, with ``strays``: a component that is no island but has the colour of a
neighbouring cluster (within ``delta`` of that cluster's median and of the faces it touches
there, along at least ``stray_share`` of its boundary) is a piece of that neighbour and goes
back to it: a strip of a table's side under a mug standing flush at the table's edge, which the
lifting put in the mug's cluster (no crease between them, a colour step only). With the strip
gone, the mug's cluster ends at its foot and rests on the table.

What this cannot see: an object of the support's colour (nothing to tell), and a multi-coloured
object whose coloured part stands on its own top (a cushion of another colour on a chair's
seat) is cut out as well; the object rules then keep it apart only if it rests there.

Written here because no library segments a surface by colour under these geometric tests; the
components come from scipy's connected components on the neighbour graph.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def weighted_median(values: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, C) per-group weighted median of ``values`` (M, C), channel by channel."""
    out = np.zeros((n_groups, values.shape[1]))
    total = np.bincount(groups, weights=weights, minlength=n_groups)
    for ch in range(values.shape[1]):
        order = np.lexsort((values[:, ch], groups))
        g = groups[order]
        cum = np.cumsum(weights[order])
        start = np.concatenate([[0.0], cum])[np.searchsorted(g, np.arange(n_groups))]
        past = np.flatnonzero(cum - start[g] >= 0.5 * total[g])
        first_group, first = np.unique(g[past], return_index=True)
        out[first_group, ch] = values[order[past[first]], ch]
    return out


def split_colour_islands(pieces: np.ndarray, foreground: np.ndarray, prims, colors: np.ndarray, delta: float,
                         min_piece: float, rise: float, up: float = 0.7, enclosed: float = 0.8, strays: bool = False,
                         stray_share: float = 0.25) -> tuple[np.ndarray, int]:
    """Cut the colour islands (module docstring) out of the clusters ``pieces`` (one id per
    primitive; only ``foreground`` ones count). ``colors``: (N, 3) RGB in [0, 1] per primitive;
    ``min_piece`` and ``rise`` in scene units. Returns (new ids, number of islands): islands
    take ids above the clusters', and the clusters of an island's colour beside it take its id."""
    n = len(pieces)
    i, j = prims.pairs[:, 0], prims.pairs[:, 1]
    same = foreground[i] & foreground[j] & (pieces[i] == pieces[j])
    # colour averaged over one ring of neighbours in the same cluster (a texture's fine grain)
    ring = sp.coo_matrix((np.ones(2 * int(same.sum())), (np.concatenate([i[same], j[same]]), np.concatenate([j[same], i[same]]))),
                         shape=(n, n)).tocsr() + sp.identity(n, format="csr")
    weight = ring @ prims.areas
    color = (ring @ (colors * prims.areas[:, None])) / np.maximum(weight, 1e-18)[:, None]
    fg = np.flatnonzero(foreground)
    ids, group = np.unique(pieces[fg], return_inverse=True)
    median = np.zeros((int(pieces.max()) + 1 if n else 0, 3))
    median[ids] = weighted_median(color[fg], prims.areas[fg], group, len(ids))
    far = np.zeros(n, dtype=bool)
    far[fg] = np.linalg.norm(color[fg] - median[pieces[fg]], axis=1) > delta
    linked = same & far[i] & far[j]
    _, comp = sp.csgraph.connected_components(
        sp.coo_matrix((np.ones(int(linked.sum())), (i[linked], j[linked])), shape=(n, n)), directed=False)
    comp = np.where(far, comp, -1)
    if not far.any():
        return pieces, 0
    k = int(comp.max()) + 1
    area = np.bincount(comp[far], weights=prims.areas[far], minlength=k)
    top = np.full(k, -np.inf)
    np.maximum.at(top, comp[far], prims.zmax[far])
    # the boundary of each component, seen from its faces: (component face x, outside face y)
    edge = (comp[i] != comp[j]) & (far[i] | far[j])
    x = np.concatenate([i[edge & far[i]], j[edge & far[j]]])
    y = np.concatenate([j[edge & far[i]], i[edge & far[j]]])
    c = comp[x]
    inside = foreground[y] & (pieces[y] == pieces[x])
    own_colour = np.linalg.norm(color[y] - median[pieces[x]], axis=1) > delta  # the object's other parts
    counted = ~own_colour | inside
    share = np.bincount(c, weights=inside & counted, minlength=k) / np.maximum(np.bincount(c, weights=counted, minlength=k), 1)
    candidate = (area >= min_piece ** 2) & (share >= enclosed)
    # the cluster's surface around the island's foot: its faces beside the island (within
    # ``min_piece`` of its footprint) no higher than the island's bottom plus ``rise``
    order = np.argsort(pieces, kind="stable")
    bounds = np.searchsorted(pieces[order], np.arange(int(pieces.max()) + 2))
    by_comp = np.flatnonzero(far)[np.argsort(comp[far], kind="stable")]
    comp_bounds = np.searchsorted(comp[by_comp], np.arange(k + 1))
    island = np.zeros(k, dtype=bool)
    for c_id in np.flatnonzero(candidate):
        faces = by_comp[comp_bounds[c_id]:comp_bounds[c_id + 1]]
        source = order[bounds[pieces[faces[0]]]:bounds[pieces[faces[0]] + 1]]
        source = source[foreground[source] & ~far[source]]
        lo = prims.centers[faces, :2].min(axis=0) - min_piece
        hi = prims.centers[faces, :2].max(axis=0) + min_piece
        foot = prims.zmin[faces].min()
        near = source[np.all((prims.centers[source, :2] >= lo) & (prims.centers[source, :2] <= hi), axis=1)
                      & (prims.centers[source, 2] <= foot + rise)]
        if len(near) == 0:
            continue
        a = prims.areas[near]
        facing_up = np.average(prims.normals[near, 2], weights=a)
        level = np.average(prims.centers[near, 2], weights=a)
        island[c_id] = facing_up >= up and top[c_id] - level >= rise
    out = pieces.copy()
    comp_colour = np.zeros((k, 3))
    for ch in range(3):
        comp_colour[:, ch] = np.bincount(comp[far], weights=prims.areas[far] * color[far, ch], minlength=k)
    comp_colour /= np.maximum(area, 1e-18)[:, None]
    if strays:
        # a piece of another cluster's colour at this cluster's edge (a strip of a table's side
        # under a mug standing flush at the edge, in the mug's cluster) goes back to the
        # neighbour whose colour it has
        other = foreground[y] & (pieces[y] != pieces[x])
        matches = other & (np.linalg.norm(color[y] - comp_colour[c], axis=1) <= delta) \
            & (np.linalg.norm(median[pieces[y]] - comp_colour[c], axis=1) <= delta)
        stray = (area >= min_piece ** 2) & ~island
        votes = sp.coo_matrix((np.ones(int(matches.sum())), (c[matches], pieces[y[matches]])),
                              shape=(k, median.shape[0])).tocsr()
        votes.sum_duplicates()
        best = np.asarray(votes.argmax(axis=1)).ravel()
        n_best = np.asarray(votes.max(axis=1).todense()).ravel()
        n_boundary = np.bincount(c, minlength=k)
        stray &= n_best >= stray_share * n_boundary
        moved = far & stray[np.maximum(comp, 0)]
        out[moved] = best[comp[moved]]
    if not island.any():
        return out, 0
    new_id = np.full(k, -1, dtype=np.int64)
    new_id[island] = int(pieces.max()) + 1 + np.arange(int(island.sum()))
    members = far & island[np.maximum(comp, 0)]
    out[members] = new_id[comp[members]]
    # clusters of the island's colour beside it (the object's other parts) join it
    beside = island[c] & ~inside & foreground[y]
    pairs = np.unique(np.stack([c[beside], pieces[y[beside]]], axis=1), axis=0)
    if len(pairs):
        alike = np.linalg.norm(median[pairs[:, 1]] - comp_colour[pairs[:, 0]], axis=1) <= delta
        pairs = pairs[alike]
        _, first = np.unique(pairs[:, 1], return_index=True)  # a cluster beside two islands joins one
        target = np.full(int(pieces.max()) + 1, -1, dtype=np.int64)
        target[pairs[first, 1]] = new_id[pairs[first, 0]]
        joins = foreground & ~members & (target[pieces] >= 0)
        out[joins] = target[pieces[joins]]
    return out, int(island.sum())
