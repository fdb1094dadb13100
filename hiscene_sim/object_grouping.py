"""From lifted clusters to objects: the 3D rules that decide what is one object (paper 3.2's
"3D clean-up", which the paper leaves to the segmentation model and we cannot).

Separate objects in a fused scene meet only where one rests on another, and there the surface
folds inwards: every cluster is first cut along the concave creases through it
(:mod:`hiscene_sim.creases`), so a strip of a mug's side that went into the table's cluster ends
at the mug's foot; and a small object of another colour standing on a cluster's up-facing
surface with no crease at its foot (a teddy left in the table's cluster) is cut out of it
(:mod:`hiscene_sim.colour_islands`, meshes with colour only), while a piece of a cluster with
the colour of the cluster beside it (a strip of a table's side in the cluster of a mug standing
flush at the edge) goes back to that cluster. A part rests on another when the
contact lies at its bottom, it stands over the contact (its centre over the contact patch), the
contact is a footprint rather than a joint (long against the part's width: a mug's ring, not a
leaf's joint on its stem or a table top's four leg ends; or, on a broad up-facing support, a
small base right under the part's centre: a figure's foot), the support is not narrower than the
part nor a base it covers (a lamp's foot disc), and the part is an object at all (not a flat
piece inside its support, not an open piece of surface, not something already standing on the
floor). Every other contact between two clusters (a table leg under its top, two slices of one
table top, a teddy's arm) is inside one object, so those clusters merge: side contacts first, so
a support's fragments join before what stands on them is judged; each cluster joins the
neighbour it touches most, and only the smaller of two moves; a contact counts by how smoothly
the surface runs on across it, so a strip of a table top joins the top, not the mug standing on
it. Two closed parts that each stand on something and touch along a contact shorter than the
smaller one's width (a teddy welded to the mug beside it, a tucked chair's leg against the
table's, a bowl's foot against a flat plate's rim) stay two: a cut through one object runs
around its whole section; and so do two such parts of different colours however long their
contact (two mugs welded side by side at a coarse pitch): one object's standing parts share its
material. Conversely a part of its support's very colour (median within ``rest_color``) on a
support that is no flat top around its foot does not rest on it but is a piece of it: a clump of
a plant's leaves lying on its foliage (a can on a table of its own colour still rests there).
Then what is left must be a plausible object:

* a cluster touching nothing (a leaf the voxels cut off) joins the nearest object within a
  few samples, else goes to the background;
* a flat patch lying on the floor is floor; a cluster lying on a wall's plane is wall;
* a cluster smaller than ``min_size`` (a share of the scene's extent, and a number of
  surface samples) joins the neighbour it touches most, else goes to the background.

Every decision is logged with its reason, and the work per round is a few vectorised passes
over the contacts, so the cost does not grow with the number of fragments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from hiscene_sim.colour_islands import split_colour_islands, weighted_median
from hiscene_sim.creases import split_at_creases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupingConfig:
    tolerance: float = 1.5  # contact heights, in surface samples (SceneScale.spacing)
    over_contact: float = 0.25  # a resting part's centre lies within this share of its size of the contact patch
    min_footprint: float = 0.25  # ... and the patch spans this share of the part's horizontal size
    min_contact: float = 0.4  # ... and the contact is this long against the part's horizontal size
    min_support: float = 0.7  # ... and the support is at least this share of the part's horizontal size
    min_support_up: float = 0.3  # mean up component of the support's normals under a part whose contact climbs its side
    balanced_bottom: float = 0.9  # a part balanced on a small base: this share of the contact at its bottom,
    balanced_support_up: float = 0.3  # ... the support's surface under it facing up (mean normal z),
    balanced_support: float = 2.0  # ... the support this many times the part's horizontal size,
    balanced_openness: float = 0.3  # ... and the part closed
    touch_ratio: float = 1.0  # two standing parts touching along less than the smaller's width stay apart
    apart_color: float = 0.15  # ... and so do two whose median colours (RGB in [0, 1]) differ by more (0: off)
    rest_color: float = 0.03  # a part does not rest on a support whose median colour is this close to its own ...
    rest_flat: float = 0.5  # ... unless this share of the support around its foot faces up (a table top) (0: off)
    max_openness: float = 0.7  # a part whose mean normal is longer than this is a piece of a surface, not an object
    wall_band: float = 2.0  # clusters lying within this many samples of a wall's plane are wall
    min_size: float = 0.01  # smallest object: this share of the scene's extent ...
    min_samples: float = 2.5  # ... and this many surface samples across (the larger wins)
    float_gap: float = 4.0  # a loose cluster joins an object this many samples away
    max_rounds: int = 200
    # a cluster is cut along the concave creases through it (where one object stands on or leans
    # against another) into the pieces at least crease_min_piece samples across: a face is in a
    # crease where the surface folds inwards by this much towards a neighbour (0: no cut; meshes
    # only, a Gaussian's normal has no sign) ...
    crease: float = 0.25  # (the normals turn by ~14 deg from one face to the next)
    crease_smoothing: int = 2  # ... its normals averaged over this many rings of neighbours
    crease_min_piece: float = 2.0
    # a piece whose colour is farther than this (RGB in [0, 1]) from its cluster's median colour,
    # enclosed by the cluster's up-facing surface and rising island_rise samples above it, is cut
    # out as an object standing there (:mod:`hiscene_sim.colour_islands`; 0: off; only where the
    # primitives have colours)
    island_color: float = 0.25
    island_rise: float = 1.5
    island_min_piece: float = 2.0
    island_strays: bool = True  # ... and a piece of a neighbour's colour goes back to that neighbour


@dataclass
class Grouping:
    labels: np.ndarray  # (N,) object id >= 0 for foreground primitives, -1 for background
    dropped: list[str] = field(default_factory=list)  # what went to the background, and why


def resolve_roots(parent: np.ndarray, max_steps: int = 64) -> np.ndarray:
    """Pointer jumping: every node of a forest of merges (``parent[i]`` is where ``i`` goes)
    points at its root."""
    for _ in range(max_steps):
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    return parent


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    fg = labels >= 0
    out = labels.copy()
    uniq, inv = np.unique(labels[fg], return_inverse=True)
    out[fg] = inv
    return out, len(uniq)


class _Stats:
    """Per-cluster extents, areas and centres (foreground clusters 0..K-1)."""

    def __init__(self, labels: np.ndarray, k: int, prims):
        fg = labels >= 0
        lab = labels[fg]
        a = prims.areas[fg]
        self.area = np.bincount(lab, weights=a, minlength=k)
        self.zmin = np.full(k, np.inf)
        self.zmax = np.full(k, -np.inf)
        np.minimum.at(self.zmin, lab, prims.zmin[fg])
        np.maximum.at(self.zmax, lab, prims.zmax[fg])
        self.lo = np.full((k, 3), np.inf)
        self.hi = np.full((k, 3), -np.inf)
        np.minimum.at(self.lo, lab, prims.centers[fg])
        np.maximum.at(self.hi, lab, prims.centers[fg])
        w = np.maximum(self.area, 1e-18)[:, None]
        normal = np.stack([np.bincount(lab, weights=a * prims.normals[fg, d], minlength=k) for d in range(3)], axis=1)
        # |area-weighted mean normal|: ~0 for a closed surface (an object missing only the patch it
        # stands on stays low), ~1 for a piece of a surface (an underside, a cut-off top)
        self.openness = np.linalg.norm(normal, axis=1) / np.maximum(self.area, 1e-18)
        self.center = np.stack([np.bincount(lab, weights=a * prims.centers[fg, d], minlength=k) for d in range(3)], axis=1) / w

    @property
    def size(self) -> np.ndarray:
        return np.linalg.norm(self.hi - self.lo, axis=1)

    @property
    def hsize(self) -> np.ndarray:
        """Horizontal size: the diagonal of the xy bounding box."""
        return np.linalg.norm(self.hi[:, :2] - self.lo[:, :2], axis=1)


def _contacts(labels, prims):
    """Pairs of neighbouring primitives in different clusters: (a, b, pair index)."""
    a, b = labels[prims.pairs[:, 0]], labels[prims.pairs[:, 1]]
    cut = np.flatnonzero(a != b)
    return a[cut], b[cut], cut


def _on_floor(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """(k,) bool: clusters with a contact (``a``, ``b`` from :func:`_contacts`) with the floor (-1)."""
    on_floor = np.zeros(k, dtype=bool)
    on_floor[a[(a >= 0) & (b == -1)]] = True
    on_floor[b[(b >= 0) & (a == -1)]] = True
    return on_floor


def merge_unless_resting(labels: np.ndarray, prims, tol: float, config: GroupingConfig, log_merges: list[str]) -> np.ndarray:
    """Merge touching foreground clusters unless one rests on the other; background
    primitives (label < 0) are never merged. Rounds repeat until no cluster moves."""
    labels, k = _compact(labels)
    for _ in range(config.max_rounds):
        if k <= 1:
            break
        stats = _Stats(labels, k, prims)
        a, b, cut = _contacts(labels, prims)
        on_floor = _on_floor(a, b, k)
        both = (a >= 0) & (b >= 0)
        a, b, cut = a[both], b[both], cut[both]
        if len(a) == 0:
            break
        z = prims.pair_z[cut]
        xy = prims.pair_xy[cut]
        length = prims.pair_length[cut]  # a marching-cubes boundary zigzags: ~1.3 x the straight length
        key = np.minimum(a, b) * k + np.maximum(a, b)
        uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
        pair = prims.pairs[cut]
        cosine = np.einsum("ij,ij->i", prims.normals[pair[:, 0]], prims.normals[pair[:, 1]])
        if not prims.oriented_normals:
            cosine = np.abs(cosine)  # a Gaussian's normal has no sign
        continuity = np.bincount(inv, weights=np.clip(cosine, 0.0, 1.0), minlength=len(uniq))
        lo_id, hi_id = uniq // k, uniq % k
        rests = np.zeros(len(uniq), dtype=bool)
        at_bottom = np.zeros(len(uniq), dtype=bool)  # the contact is at either part's bottom
        stands = on_floor.copy()
        for up_id, down_id in ((lo_id, hi_id), (hi_id, lo_id)):
            up_e = up_id[inv]
            # contact edges at the upper part's bottom
            bottom = z <= stats.zmin[up_e] + tol
            n_bottom = np.bincount(inv, weights=bottom, minlength=len(uniq))
            at_bottom |= n_bottom >= 0.5 * counts
            # the part's whole footprint: its contacts at its bottom with every cluster it stands on
            # (a support may still be in pieces)
            part_lo = np.full((k, 2), np.inf)
            part_hi = np.full((k, 2), -np.inf)
            np.minimum.at(part_lo, up_e[bottom], xy[bottom])
            np.maximum.at(part_hi, up_e[bottom], xy[bottom])
            box_lo, box_hi = part_lo[up_id], part_hi[up_id]
            hsize = stats.hsize[up_id]
            margin = np.maximum(tol, config.over_contact * hsize)[:, None]
            c = stats.center[up_id, :2]
            over = ((c >= box_lo - margin) & (c <= box_hi + margin)).all(axis=1)
            # and the contact is a footprint, not a joint: a leaf on its stem, a lamp's pole on its base
            # (its length, from the edges along it, against the part's horizontal size: a mug's
            # ring ~2, a table top's four leg ends ~0.5, a leaf's joint ~0.2)
            footprint = np.linalg.norm(np.maximum(box_hi - box_lo, 0), axis=1) + 2 * tol >= config.min_footprint * hsize
            bottom_length = np.bincount(up_e, weights=bottom * length, minlength=k)[up_id] / 1.3
            footprint &= bottom_length >= config.min_contact * hsize
            # ... or the part stands balanced on a small base (a bottle's foot, a figure's feet):
            # all of the contact is at its bottom, its centre is over the patch itself, and the
            # support is a broad, up-facing surface (a leaf's joint has its centre far off, a
            # pole is narrow)
            down_prim = np.where(a == up_e, prims.pairs[cut, 1], prims.pairs[cut, 0])
            support_up = np.bincount(inv, weights=bottom * prims.normals[down_prim, 2], minlength=len(uniq)) / np.maximum(n_bottom, 1)
            centred = ((c >= box_lo - tol) & (c <= box_hi + tol)).all(axis=1)
            balanced = (prims.oriented_normals & centred & (n_bottom >= config.balanced_bottom * counts)
                        & (support_up >= config.balanced_support_up) & (stats.hsize[down_id] >= config.balanced_support * hsize)
                        & (stats.openness[up_id] <= config.balanced_openness))
            footprint |= balanced
            over &= footprint
            # and the support is not narrower than what rests on it: a table top on its legs is one object
            over &= stats.hsize[down_id] >= config.min_support * hsize
            # and the support is not a base the part covers (a lamp on its foot disc): a support
            # reaches out beyond what stands on it somewhere
            covered = ((stats.lo[down_id, :2] >= stats.lo[up_id, :2] - tol).all(axis=1)
                       & (stats.hi[down_id, :2] <= stats.hi[up_id, :2] + tol).all(axis=1))
            over &= ~covered
            above = stats.zmax[up_id] > stats.zmin[up_id] + tol
            # a flat piece inside its support, below its top (a mug's or a glass's inner bottom)
            # is part of it
            inside = ((stats.lo[up_id] >= stats.lo[down_id] - tol).all(axis=1) & (stats.hi[up_id] <= stats.hi[down_id] + tol).all(axis=1)
                      & (stats.zmax[up_id] < stats.zmax[down_id] - tol) & (stats.zmax[up_id] - stats.zmin[up_id] <= 2 * tol))
            above &= ~inside & (stats.openness[up_id] <= config.max_openness)
            # most of the contact is at the part's bottom; or the support reaches below the part, the
            # contact at the part's bottom is a footprint in both directions and the support's surface
            # there faces up (a mug's ring on a table top, not a cut through a slab): where the
            # support's cluster took a strip of the part's side (a similar colour, a flush edge), the
            # contact climbs the part's side as well
            # (a Gaussian's normal has no sign, so a splat's parts rest by the first rule only)
            sunk = (prims.oriented_normals & (stats.zmin[down_id] < stats.zmin[up_id] - tol) & (support_up >= config.min_support_up)
                    & (np.min(box_hi - box_lo, axis=1) >= config.min_footprint * hsize))
            # what stands on the floor rests on the floor, not on a neighbour it leans on
            rest = ((n_bottom >= 0.5 * counts) | sunk) & over & above & ~on_floor[up_id]
            # ... and a part the support walls in on every side is inside it (a mug's inner surface)
            for i in np.flatnonzero(rest & (n_bottom < 0.5 * counts)):
                rest[i] = not _walled_in(labels, prims, stats, up_id[i], down_id[i], tol)
            # ... and, where the support around its foot is no flat top, of another colour than
            # the support: a clump of leaves lying on a plant's foliage is the plant
            if config.rest_color > 0 and prims.colors is not None and rest.any():
                ri = np.flatnonzero(rest)
                ri = ri[_colour_gaps(labels, prims, up_id[ri], down_id[ri]) < config.rest_color]
                for i in ri:
                    rest[i] = _flat_around_foot(labels, prims, stats, up_id[i], down_id[i], tol) >= config.rest_flat
            rests |= rest
            stands[up_id[rest]] = True
        # two parts that each stand on something (the floor, or a support they rest on) and touch
        # each other along a short contact (a teddy welded to the mug beside it, a tucked chair's
        # leg against the table's, a bowl's foot against the rim of the flat plate beside it) stay
        # two: parts of one object meet along a whole cut
        contact = np.bincount(inv, weights=length, minlength=len(uniq)) / 1.3
        smaller = np.minimum(stats.hsize[lo_id], stats.hsize[hi_id])
        closed = stats.openness <= config.max_openness  # a strip of a surface is not an object of its own
        standing = stands[lo_id] & stands[hi_id] & closed[lo_id] & closed[hi_id]
        rests |= standing & (contact < config.touch_ratio * smaller)
        # ... and so do two of different colours, however long the contact (two mugs welded
        # side by side at a coarse pitch, a glass against a mug): one object's parts that each
        # stand on something share its material
        if config.apart_color > 0 and prims.colors is not None:
            pending = np.flatnonzero(standing & ~rests)
            if len(pending):
                rests[pending[_colour_gaps(labels, prims, lo_id[pending], hi_id[pending]) > config.apart_color]] = True
        # side and top contacts first (a cut through one object): they merge the fragments of a
        # support, so that what stands on it is then judged against the whole support
        merge = ~rests & ~at_bottom
        if not merge.any():
            merge = ~rests
        if not merge.any():
            break
        # every cluster picks the candidate it touches most; it moves there when that one is
        # larger, or when the two picked each other (a bowl's inner and outer surface), so a
        # fragment does not drag its neighbours along through a chain of weak contacts. A contact
        # counts by how smoothly the surface runs on across it (the cosine between the two faces'
        # normals, none across a right angle): a strip of a table top's edge continues the top,
        # not the side of the mug standing on it
        src = np.concatenate([lo_id[merge], hi_id[merge]])
        dst = np.concatenate([hi_id[merge], lo_id[merge]])
        weight = np.concatenate([continuity[merge], continuity[merge]])
        order = np.lexsort((dst, -weight, src))
        src, dst = src[order], dst[order]
        first = np.ones(len(src), dtype=bool)
        first[1:] = src[1:] != src[:-1]
        best = np.arange(k)
        best[src[first]] = dst[first]
        ids = np.arange(k)
        larger = (stats.area[best] > stats.area) | ((stats.area[best] == stats.area) & (best < ids))
        moves = (best != ids) & larger  # of a mutual pair, the smaller moves
        parent = np.where(moves, best, ids)
        first = moves
        parent = resolve_roots(parent)
        log_merges.append(f"round: {int(first.sum())} clusters joined a neighbour they neither rest on nor support")
        fg = labels >= 0
        labels[fg] = parent[labels[fg]]
        labels, k = _compact(labels)
    return labels


def _colour_gaps(labels: np.ndarray, prims, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (RGB in [0, 1]) between the area-weighted median colours of clusters ``a[i]``
    and ``b[i]``: computed only for the clusters asked about, a few per round."""
    ids = np.unique(np.concatenate([a, b]))
    sel = np.flatnonzero(np.isin(labels, ids))
    median = weighted_median(prims.colors[sel], prims.areas[sel], np.searchsorted(ids, labels[sel]), len(ids))
    return np.linalg.norm(median[np.searchsorted(ids, a)] - median[np.searchsorted(ids, b)], axis=1)


def _flat_around_foot(labels, prims, stats, part: int, support: int, tol: float) -> float:
    """Share of the support's surface around the part's foot (within the part's horizontal
    extent, within two contact heights of its bottom) that faces straight up: ~1 on a table
    top, low on a plant's foliage."""
    lo, hi, z = stats.lo[part], stats.hi[part], stats.zmin[part]
    c = prims.centers
    near = ((labels == support) & (c[:, 0] >= lo[0] - tol) & (c[:, 0] <= hi[0] + tol) & (c[:, 1] >= lo[1] - tol)
            & (c[:, 1] <= hi[1] + tol) & (np.abs(c[:, 2] - z) <= 2 * tol))
    area = prims.areas[near]
    return float((area * (prims.normals[near, 2] > 0.9)).sum() / area.sum()) if near.any() else 0.0


def _walled_in(labels, prims, stats, part: int, support: int, tol: float, sectors: int = 8) -> bool:
    """Whether the support has surface beside the part, above the part's bottom, in nearly every
    direction around it (all but one of ``sectors``): the part lies inside the support (a cup's
    inner wall inside its outer one), not on it with a strip of its side gone to the support."""
    lo, hi = stats.lo[part], stats.hi[part]
    reach = 0.25 * stats.hsize[part] + tol
    pts = prims.centers[labels == support]
    near = ((pts[:, 0] >= lo[0] - reach) & (pts[:, 0] <= hi[0] + reach) & (pts[:, 1] >= lo[1] - reach) & (pts[:, 1] <= hi[1] + reach)
            & (pts[:, 2] > stats.zmin[part] + tol) & (pts[:, 2] <= stats.zmax[part]))
    d = pts[near, :2] - stats.center[part, :2]
    seen = np.unique(np.floor((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors)
    return len(seen) >= sectors - 1


def group_objects(clusters: np.ndarray, prims, background, scale, config: GroupingConfig | None = None) -> Grouping:
    """Object id per primitive (``-1``: background) from the lifted clusters, the background
    found by :mod:`hiscene_sim.parse_background` (its ``kind`` and ``wall_index`` gain the wall
    pieces found here) and the rules above."""
    from scipy.spatial import cKDTree

    from hiscene_sim.parse_background import FLOOR, FOREGROUND

    config = config or GroupingConfig()
    tol = config.tolerance * scale.spacing
    background_kind = background.kind
    fg = background_kind == FOREGROUND
    # background primitives take negative ids (-1 floor, -2 walls) so contacts with them are seen
    labels = np.where(fg, clusters, np.where(background_kind == FLOOR, -1, -2)).astype(np.int64)
    # a cluster is also split into its connected pieces once the background is cut out of it
    pairs = prims.pairs
    same = fg[pairs[:, 0]] & fg[pairs[:, 1]] & (labels[pairs[:, 0]] == labels[pairs[:, 1]])
    n = len(labels)
    graph = sp.coo_matrix((np.ones(int(same.sum())), (pairs[same, 0], pairs[same, 1])), shape=(n, n))
    _, pieces = sp.csgraph.connected_components(graph, directed=False)
    notes: list[str] = []
    dropped: list[str] = []
    if config.crease > 0 and prims.oriented_normals:
        before = len(np.unique(pieces[fg]))
        pieces = split_at_creases(pieces, fg, prims, graph, config.crease, config.crease_smoothing,
                                  config.crease_min_piece * scale.spacing)
        notes.append(f"concave creases: {before} clusters cut into {len(np.unique(pieces[fg]))} pieces")
    if config.island_color > 0 and prims.colors is not None:
        pieces, n_islands = split_colour_islands(pieces, fg, prims, prims.colors, config.island_color,
                                                 config.island_min_piece * scale.spacing, config.island_rise * scale.spacing,
                                                 strays=config.island_strays)
        notes.append(f"colour islands: {n_islands} cut out of their clusters")
    labels = np.where(fg, pieces, labels)
    labels = _floor_patches(labels, prims, tol, dropped)
    labels = _wall_pieces(labels, prims, background, scale, config.wall_band, dropped)
    labels = merge_unless_resting(labels, prims, tol, config, notes)
    labels = _loose(labels, prims, scale, config, dropped, cKDTree)
    labels = merge_unless_resting(labels, prims, tol, config, notes)
    labels = _floor_patches(labels, prims, tol, dropped)
    labels = _small(labels, prims, scale, config, dropped)
    labels, _ = _compact(labels)
    for line in notes:
        log.debug(line)
    for line in dropped:
        log.info(line)
    out = np.where(labels >= 0, labels, -1)
    return Grouping(out, dropped)


def _floor_patches(labels, prims, tol, dropped):
    """Clusters touching the floor that never rise above it: floor."""
    labels, k = _compact(labels)
    if k == 0:
        return labels
    stats = _Stats(labels, k, prims)
    a, b, _ = _contacts(labels, prims)
    flat = _on_floor(a, b, k) & (stats.zmax - stats.zmin <= tol)
    if flat.any():
        dropped.append(f"{int(flat.sum())} flat patches on the floor ({stats.area[flat].sum():.3g} m2) -> floor")
        fgm = labels >= 0
        hit = fgm.copy()
        hit[fgm] = flat[labels[fgm]]
        labels[hit] = -1
    return labels


def _wall_pieces(labels, prims, background, scale, band: float, dropped):
    """Clusters lying (80 % of their area) within ``band`` samples of a wall's plane are pieces
    of the wall (its rounded top edge and ends, the corner where two walls meet)."""
    from hiscene_sim.parse_background import WALL

    labels, k = _compact(labels)
    if not background.walls or k == 0:
        return labels
    distance = np.stack([(prims.centers[:, w.axis] - w.plane) * -w.side for w in background.walls], axis=1)
    near = distance.min(axis=1) <= band * scale.spacing
    fg = labels >= 0
    share = np.bincount(labels[fg], weights=prims.areas[fg] * near[fg], minlength=k) / np.maximum(
        np.bincount(labels[fg], weights=prims.areas[fg], minlength=k), 1e-18)
    pieces = share >= 0.8
    if pieces.any():
        hit = fg.copy()
        hit[fg] = pieces[labels[fg]]
        background.kind[hit] = WALL
        background.wall_index[hit] = np.argmin(np.abs(distance[hit]), axis=1)
        labels[hit] = -2
        dropped.append(f"{int(pieces.sum())} clusters lying on a wall's plane -> wall")
    return labels


def _loose(labels, prims, scale, config, dropped, cKDTree):
    """Clusters touching nothing else join the nearest other object within ``float_gap``
    samples; farther ones go to the background."""
    labels, k = _compact(labels)
    if k <= 1:
        return labels
    a, b, _ = _contacts(labels, prims)
    touching = np.zeros(k, dtype=bool)
    touching[a[a >= 0]] = True
    touching[b[b >= 0]] = True
    loose = np.flatnonzero(~touching)
    if len(loose) == 0:
        return labels
    stats = _Stats(labels, k, prims)
    fg = labels >= 0
    anchored = fg & np.isin(labels, np.flatnonzero(touching))
    if not anchored.any():
        return labels
    tree = cKDTree(prims.centers[anchored])
    anchored_labels = labels[anchored]
    gap = config.float_gap * scale.spacing
    joined = 0
    for cl in loose[np.argsort(-stats.area[loose])]:
        members = np.flatnonzero(labels == cl)
        dist, idx = tree.query(prims.centers[members], distance_upper_bound=gap)
        ok = np.isfinite(dist)
        if ok.any():
            labels[members] = anchored_labels[idx[ok][np.argmin(dist[ok])]]
            joined += 1
        else:
            dropped.append(f"a loose cluster of {stats.area[cl]:.3g} m2 touching nothing, {gap:.3g} m from any object -> background")
            labels[members] = -2
    if joined:
        dropped.append(f"{joined} loose clusters joined the nearest object (within {gap:.3g} m)")
    return labels


def _small(labels, prims, scale, config, dropped):
    """Clusters smaller than the minimum object size join the neighbour they touch most, all
    at once per round; those touching no object go to the background."""
    min_size = max(config.min_size * scale.extent, config.min_samples * scale.spacing)
    for _ in range(config.max_rounds):
        labels, k = _compact(labels)
        if k == 0:
            return labels
        stats = _Stats(labels, k, prims)
        tiny = stats.size < min_size
        if not tiny.any():
            return labels
        a, b, _ = _contacts(labels, prims)
        both = (a >= 0) & (b >= 0)
        src, dst = np.concatenate([a[both], b[both]]), np.concatenate([b[both], a[both]])
        keep = tiny[src]
        votes = sp.coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(k, k)).tocsr()
        votes.sum_duplicates()
        has = np.asarray(votes.max(axis=1).todense()).ravel() > 0
        target = np.asarray(votes.argmax(axis=1)).ravel()
        parent = np.arange(k)
        # a tiny cluster joins its biggest-contact neighbour; two tiny ones choosing each other:
        # the smaller joins the larger
        move = tiny & has
        parent[move] = target[move]
        mutual = move & (parent[parent] == np.arange(k)) & (parent != np.arange(k)) & (stats.area > stats.area[parent])
        parent[mutual] = np.flatnonzero(mutual)
        lost = tiny & ~has
        parent = resolve_roots(parent)
        fg = labels >= 0
        if lost.any():
            dropped.append(f"{int(lost.sum())} clusters under {min_size:.3g} m across touching no object "
                           f"({stats.area[lost].sum():.3g} m2) -> background")
        if move.any():
            dropped.append(f"{int(move.sum())} clusters under {min_size:.3g} m across joined the object they touch most")
        new = parent[labels[fg]]
        new[lost[labels[fg]]] = -2
        labels[fg] = new
        if not move.any():
            return labels
    return labels
