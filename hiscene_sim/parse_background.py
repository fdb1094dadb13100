"""Floor and walls of a fused scene, found on its primitives before anything is segmented.

A generated room comes back welded: floor, walls and every piece of furniture are one
surface. Segmenting first and then asking which cluster is the floor fails at room scale (a
sofa's cluster that swallowed a floor patch is not flat, a floor cluster that swallowed a
low table is). So the background is found geometrically, on the primitives, first:

* **floor** - the lowest height holding a large share of the up-facing area (at least a
  quarter of the largest such level) whose up-facing primitives span most of the scene's x
  and y extent; its primitives are the up-facing ones within a tolerance of that height and
  everything below it (a slab's sides and bottom).
* **walls** - planes x = c or y = c at the scene's edge, whose inward-facing primitives span
  most of the scene along the wall (``min_span``) and rise from the floor to near the
  scene's top; a wall's primitives are everything between the scene's edge and the plane.

Every tolerance is in units of the surface's own sampling length (:attr:`SceneScale.spacing`,
about the generator's voxel pitch) or a share of the scene's extent, never metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FOREGROUND, FLOOR, WALL = 0, 1, 2


@dataclass(frozen=True)
class SceneScale:
    lo: np.ndarray  # (3,) scene bounds
    hi: np.ndarray
    spacing: float  # surface sampling length: mesh edge length / Gaussian spacing, about the voxel pitch

    @property
    def extent(self) -> float:
        """The scene's largest horizontal size."""
        return float(max(self.hi[0] - self.lo[0], self.hi[1] - self.lo[1]))

    @property
    def diagonal(self) -> float:
        return float(np.linalg.norm(self.hi - self.lo))


@dataclass(frozen=True)
class Wall:
    axis: int  # 0: a plane x = c, 1: a plane y = c
    side: int  # -1: at the scene's low edge (the room is at larger coordinates), +1: at the high edge
    plane: float  # coordinate of its inward face

    @property
    def inward(self) -> np.ndarray:
        n = np.zeros(2)
        n[self.axis] = -self.side
        return n


@dataclass
class Background:
    kind: np.ndarray  # (N,) FOREGROUND / FLOOR / WALL per primitive
    wall_index: np.ndarray  # (N,) index into ``walls`` for WALL primitives, -1 otherwise
    floor_z: float | None
    walls: list[Wall] = field(default_factory=list)

    def corner_azimuth(self) -> float | None:
        """Degrees: the direction the room opens towards (mean of the walls' inward normals), or
        None without walls. Paper A.1 (a) puts the cameras on that side, looking at the corner."""
        if not self.walls:
            return None
        v = np.sum([w.inward for w in self.walls], axis=0)
        if np.linalg.norm(v) < 1e-9:  # two facing walls: look along them
            v = np.array([-v[1], v[0]]) if np.linalg.norm(v) else np.array([self.walls[0].inward[1], -self.walls[0].inward[0]])
        return float(np.degrees(np.arctan2(v[1], v[0])))


def _level_histogram(values: np.ndarray, weights: np.ndarray, lo: float, width: float, n_bins: int) -> np.ndarray:
    """Weight per bin of ``width`` from ``lo``, each bin also counting the one below it (a
    level may straddle two bins)."""
    index = np.clip(((values - lo) / width).astype(np.int64), 0, n_bins - 1)
    hist = np.bincount(index, weights=weights, minlength=n_bins)
    return hist + np.roll(hist, 1) * (np.arange(n_bins) > 0)


def find_floor_height(centers, normals, areas, scale: SceneScale, min_span: float) -> float | None:
    up = normals[:, 2] > 0.9
    if not up.any():
        return None
    width = scale.spacing
    n_bins = int(np.ceil((scale.hi[2] - scale.lo[2]) / width)) + 1
    hist = _level_histogram(centers[up, 2], areas[up], scale.lo[2], width, n_bins)
    for b in np.flatnonzero(hist >= 0.25 * hist.max()):  # lowest large level first
        z0, z1 = scale.lo[2] + (b - 1) * width, scale.lo[2] + (b + 1) * width
        sel = up & (centers[:, 2] >= z0) & (centers[:, 2] <= z1)
        if not sel.any():
            continue
        span = np.percentile(centers[sel, :2], 98, axis=0) - np.percentile(centers[sel, :2], 2, axis=0)
        if (span >= min_span * (scale.hi[:2] - scale.lo[:2])).all():
            return float(np.average(centers[sel, 2], weights=areas[sel]))
    return None


def find_walls(centers, normals, areas, scale: SceneScale, floor_z: float, min_span: float) -> list[Wall]:
    walls = []
    height = scale.hi[2] - floor_z
    width = scale.spacing
    for axis in (0, 1):
        other = 1 - axis
        extent_a = scale.hi[axis] - scale.lo[axis]
        for side in (-1, 1):
            edge = scale.lo[axis] if side < 0 else scale.hi[axis]
            inward = -side  # sign of the inward normal along the axis
            facing = (normals[:, axis] * inward > 0.9) & (np.abs(centers[:, axis] - edge) <= 0.15 * extent_a)
            if not facing.any():
                continue
            c = centers[facing, axis]
            n_bins = int(np.ceil(0.15 * extent_a / width)) + 2
            start = min(edge, edge + inward * 0.15 * extent_a)
            hist = _level_histogram(c, areas[facing], start, width, n_bins)
            b = int(np.argmax(hist))
            plane_sel = facing.copy()
            plane_sel[facing] = (c >= start + (b - 1) * width) & (c <= start + (b + 1) * width)
            p = centers[plane_sel]
            if len(p) < 10:
                continue
            span = np.percentile(p[:, other], 99) - np.percentile(p[:, other], 1)
            z_lo, z_hi = np.percentile(p[:, 2], 1), np.percentile(p[:, 2], 99)
            fill = areas[plane_sel].sum() / max(span * (z_hi - z_lo), 1e-12)
            if (span >= min_span * (scale.hi[other] - scale.lo[other]) and z_hi >= floor_z + 0.85 * height
                    and z_lo <= floor_z + 0.15 * height and (z_hi - z_lo) >= 0.15 * scale.extent and fill >= 0.5):
                walls.append(Wall(axis, side, float(np.average(p[:, axis], weights=areas[plane_sel]))))
    return walls


def detect_background(centers: np.ndarray, normals: np.ndarray, areas: np.ndarray, zmin: np.ndarray, zmax: np.ndarray, scale: SceneScale,
                      min_span: float = 0.6, wall_span: float = 0.85) -> Background:
    """Floor and wall primitives."""
    n = len(centers)
    kind = np.zeros(n, dtype=np.int8)
    wall_index = np.full(n, -1, dtype=np.int64)
    floor_z = find_floor_height(centers, normals, areas, scale, min_span)
    if floor_z is None:
        return Background(kind, wall_index, None)
    # the floor's top, and everything below it (a slab's sides and bottom): faces reaching at
    # most half a sample above it; points (Gaussian centres) only below it, as an object's
    # lowest rim stands right on it
    extended = zmax > zmin
    below = zmax <= floor_z + np.where(extended, 0.5, -0.25) * scale.spacing
    floor = ((normals[:, 2] > 0.9) & (np.abs(centers[:, 2] - floor_z) <= 0.75 * scale.spacing)) | below
    kind[floor] = FLOOR
    walls = find_walls(centers, normals, areas, scale, floor_z, wall_span)
    for i, wall in enumerate(walls):
        # the wall's face (within a sample of its plane, facing the room) and everything behind it;
        # a shelf's back board a few centimetres in front is not wall
        c = (centers[:, wall.axis] - wall.plane) * -wall.side  # distance into the room
        facing = normals[:, wall.axis] * -wall.side > 0.9
        inside = (c <= -0.5 * scale.spacing) | (facing & (np.abs(c) <= 0.75 * scale.spacing))
        sel = inside & (kind == FOREGROUND)
        kind[sel] = WALL
        wall_index[sel] = i
    return Background(kind, wall_index, floor_z, walls)
