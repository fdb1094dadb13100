"""The weight-free default 2D segmenter: entities from what the renderer knows exactly.

A boundary runs between two neighbouring pixels when
- their surfaces are not continuous (an occlusion edge: each point lies far from the other's
  tangent plane, more than ``jump_pixels`` pixel footprints), or
- they meet in a concave crease (normals differ by more than ``crease_deg`` and bend towards
  each other, as where a mug stands on a table) and their colours differ by more than
  ``color_delta``, or the crease is sharper than ``sharp_crease_deg`` whatever the colours, or
- (with ``color_edge`` > 0; off by default, see the field) the colour steps with no crease
  at all (two touching bowls of different colours): the
  colour smoothed over ``color_sigma`` pixels differs by more than ``color_edge`` at every
  distance of 2 to 4 pixels each side (a step, not a texture's stroke), at the pixel where
  the step peaks (a one-pixel line). Regions apart only across such steps whose mean colours
  are within ``color_edge`` are one region again (a texture's seams and blotches).
Entities are the connected regions between boundaries; regions under ``min_pixels`` and the
boundary pixels themselves get no entity (-1).

What it can separate: objects standing on or leaning against others (a concave crease at
the contact) that differ in colour or meet at a sharp angle, touching objects of clearly
different colours (with ``color_edge``), and anything in front of something else (depth jump). What it cannot:
two touching objects of the same colour that meet smoothly, or an object's parts from the
object when they hang below it on a concave junction (a table's legs): that is left to the
3D stage (lifting and the support rule in :mod:`hiscene_sim.object_grouping`). It sees
geometry and albedo only, never semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from hiscene_sim.render.result import RenderResult
from hiscene_sim.segment.base import SEGMENTERS


def view_points(view: RenderResult) -> tuple[np.ndarray, np.ndarray]:
    """(world points (H, W, 3), pixel footprint in world units (H, W)) of a rendered view."""
    cam = view.camera
    h, w = cam.height, cam.width
    z = np.where(np.isfinite(view.depth), view.depth, 0.0).astype(np.float64)
    cx, cy = cam.principal_point
    u = (np.arange(w) + 0.5 - cx)[None, :] / cam.focal
    v = (np.arange(h) + 0.5 - cy)[:, None] / cam.focal
    if cam.projection == "perspective":
        x, y, footprint = u * z, v * z, z / cam.focal
    else:
        x, y = np.broadcast_to(u, (h, w)), np.broadcast_to(v, (h, w))
        footprint = np.full((h, w), 1.0 / cam.focal)
    local = np.stack([x, y, z, np.ones_like(z)], axis=-1)
    world = local @ np.asarray(cam.camera_to_world).T
    return world[..., :3], footprint


@dataclass
class GeometricSegmenter:
    jump_pixels: float = 4.0
    crease_deg: float = 30.0
    sharp_crease_deg: float = 80.0
    crease_stride: int = 1  # 3 catches rounded (filleted) contacts, but over-splits; measured worse
    color_delta: float = 0.15
    # a colour step without a crease (two touching bowls of different colours): the colour,
    # smoothed over ``color_sigma`` pixels, differs by more than ``color_edge`` between pixels
    # ``color_span / 2`` to ``color_span`` each side. Off (0) by default: at 0.2 it separated touching bowls and raised
    # the dev split (tabletops 0.936 -> 0.951 IoU), but on the held-out splits it split
    # multi-coloured objects that then rest on their own parts (a plant's foliage on its pot):
    # rooms within 20 % in 8 of 12 instead of 10, tabletops exact 12 of 20 instead of 13
    color_edge: float = 0.0
    color_sigma: float = 1.0
    color_span: int = 4
    min_pixels: int = 4
    dilate: int = 1
    name: str = "geometric"

    def boundaries(self, view: RenderResult) -> np.ndarray:
        """(H, W) bool: pixels on an entity boundary (or background)."""
        edge = self._geometric_edges(view)
        if self.color_edge > 0:
            edge |= self._color_steps(view)
        return edge

    def _geometric_edges(self, view: RenderResult) -> np.ndarray:
        """Occlusion edges and creases (and the background)."""
        valid = np.isfinite(view.depth) & (view.alpha > 0.5)
        points, footprint = view_points(view)
        normal = view.normal.astype(np.float64)
        color = view.color.astype(np.float64)
        edge = ~valid.copy()
        for axis in (0, 1):
            for step, test_jump in ((1, True), (self.crease_stride, False)):
                a = [slice(None)] * 2
                b = [slice(None)] * 2
                a[axis], b[axis] = slice(0, -step), slice(step, None)
                a, b = tuple(a), tuple(b)
                both = valid[a] & valid[b]
                d = points[b] - points[a]
                if test_jump:
                    tol = self.jump_pixels * np.maximum(footprint[a], footprint[b])
                    off_a = np.abs(np.einsum("ijk,ijk->ij", normal[a], d))
                    off_b = np.abs(np.einsum("ijk,ijk->ij", normal[b], d))
                    # either tangent plane will do: at a silhouette the near surface's normal is
                    # perpendicular to the view, so the jump shows only against the far one
                    cut = both & (np.linalg.norm(d, axis=-1) > tol) & ((off_a > tol) | (off_b > tol))
                else:
                    # creases are tested across ``crease_stride`` pixels: where a fused surface
                    # rounds the contact into a fillet, neighbouring pixels differ only a little
                    cos = np.clip(np.einsum("ijk,ijk->ij", normal[a], normal[b]), -1, 1)
                    angle = np.degrees(np.arccos(cos))
                    concave = np.einsum("ijk,ijk->ij", normal[b] - normal[a], d) < 0
                    color_change = np.linalg.norm(color[a] - color[b], axis=-1) > self.color_delta
                    crease = concave & ((angle > self.sharp_crease_deg) | ((angle > self.crease_deg) & color_change))
                    cut = both & crease
                edge[a] |= cut
                edge[b] |= cut
        return edge

    def _color_steps(self, view: RenderResult) -> np.ndarray:
        """Thin colour edges: where the smoothed colour differs by more than ``color_edge``
        between the pixels ``color_span / 2`` to ``color_span`` before and after, at the pixel where that difference
        peaks along the axis (so an edge is one pixel wide, as a crease is, and a small object
        is not eaten by a thick ring)."""
        valid = np.isfinite(view.depth) & (view.alpha > 0.5)
        mask = valid.astype(np.float32)
        weight = np.maximum(ndimage.gaussian_filter(mask, self.color_sigma), 1e-6)
        smooth = np.stack([ndimage.gaussian_filter(view.color[..., i].astype(np.float32) * mask, self.color_sigma) / weight
                           for i in range(3)], axis=-1)
        half = max(self.color_span // 2, 1)
        reach = 2 * half
        h, w = valid.shape
        edge = np.zeros(valid.shape, dtype=bool)
        for axis in (0, 1):
            # a step, not a stroke: the colours differ at every distance from ``half`` to
            # ``2 * half`` pixels each side (a thin dark line differs only where one end falls on it)
            size = (h, w)[axis]
            if size <= 2 * reach:
                continue
            centre = [slice(None)] * 2
            centre[axis] = slice(reach, size - reach)
            diff2 = None
            for d in range(half, reach + 1):
                ahead = [slice(None)] * 2
                behind = [slice(None)] * 2
                ahead[axis], behind[axis] = slice(reach + d, size - reach + d), slice(reach - d, size - reach - d)
                step2 = np.sum((smooth[tuple(ahead)] - smooth[tuple(behind)]) ** 2, axis=-1)
                step2[~(valid[tuple(ahead)] & valid[tuple(behind)])] = 0.0
                diff2 = step2 if diff2 is None else np.minimum(diff2, step2)
            diff = np.zeros(valid.shape, dtype=np.float32)
            diff[tuple(centre)] = np.sqrt(diff2)
            diff[~valid] = 0.0
            peak = ndimage.maximum_filter1d(diff, size=2 * half + 1, axis=axis)
            edge |= (diff > self.color_edge) & (diff >= peak)
        return edge

    def segment(self, view: RenderResult) -> np.ndarray:
        geometric = self._geometric_edges(view)
        color_only = self._color_steps(view) & ~geometric if self.color_edge > 0 else None
        edge = geometric if color_only is None else geometric | color_only
        # one pixel of dilation closes the odd pixel where a boundary test misses (a rounded
        # rim), which would otherwise join two whole regions; afterwards the regions grow back
        # over the dilated pixels (not over the boundary itself), so a small object seen in
        # a few pixels keeps them
        closed = ndimage.binary_dilation(edge, iterations=self.dilate) if self.dilate else edge
        labels, n = ndimage.label(~closed)
        if n == 0:
            return np.full(edge.shape, -1, dtype=np.int64)
        if self.dilate:
            _, (ri, ci) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
            regrow = closed & ~edge & (view.alpha > 0.5)
            labels[regrow] = labels[ri[regrow], ci[regrow]]
        if color_only is not None:
            labels, n = self._merge_alike(labels, n, color_only, view.color)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= self.min_pixels
        keep[0] = False
        remap = np.full(n + 1, -1, dtype=np.int64)
        remap[keep] = np.arange(int(keep.sum()))
        return remap[labels]

    def _merge_alike(self, labels: np.ndarray, n: int, color_only: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, int]:
        """Regions apart only across colour-step pixels whose mean colours differ by less than
        ``color_edge`` are one region again: a textured object's dark strokes and seams close
        small pieces off, two touching objects of different colours stay apart. (Hand-written:
        skimage's RAG merging has no way to keep the geometric boundaries uncrossable.)"""
        pairs = []
        for axis in (0, 1):
            # two labelled pixels with a colour-step pixel between them (boundary pixels keep
            # label 0, so labelled neighbours at distance 1 are never apart across a step)
            a = [slice(None)] * 2
            b = [slice(None)] * 2
            mid = [slice(None)] * 2
            a[axis], b[axis], mid[axis] = slice(0, -2), slice(2, None), slice(1, -1)
            la, lb = labels[tuple(a)], labels[tuple(b)]
            across = (la > 0) & (lb > 0) & (la != lb) & color_only[tuple(mid)]
            pairs.append(np.stack([la[across], lb[across]], axis=1))
        pairs = np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)
        if len(pairs) == 0:
            return labels, n
        counts = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
        means = np.stack([np.bincount(labels.ravel(), weights=color[..., i].ravel(), minlength=n + 1) for i in range(3)], axis=1)
        means /= np.maximum(counts, 1)[:, None]
        alike = pairs[np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1) < self.color_edge]
        graph = sp.coo_matrix((np.ones(len(alike)), (alike[:, 0], alike[:, 1])), shape=(n + 1, n + 1))
        _, component = sp.csgraph.connected_components(graph, directed=False)
        component[0] = -1
        _, merged = np.unique(component, return_inverse=True)  # 0 stays the unlabelled pixels
        return merged[labels], int(merged.max())


@SEGMENTERS.register("geometric")
def _make_geometric(**kwargs) -> GeometricSegmenter:
    return GeometricSegmenter(**kwargs)
