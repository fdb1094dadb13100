"""Which way is up in a scene file: the rotation that makes a file's chosen axis +Z, and the
``auto`` guess of that axis from the geometry.

``auto`` scores the six axis directions (+-X, +-Y, +-Z) as candidate "up" by how stably the
geometry would rest that way up under gravity:

* support: the points within ``CONTACT_BAND`` of the scene's extent above its lowest point
  along the candidate up; their convex hull is the support polygon (a floor, a table's feet,
  an object's base);
* stability: the tipping angle ``atan(margin / height)`` of the centre of the surface area
  (area-weighted face centroids), where ``margin`` is its distance inside the support polygon
  (negative outside) and ``height`` its height above the support;
* tie-break: ``SUPPORT_WEIGHT`` x the share of the surface area in the largest flat cluster
  facing that way (faces whose normals agree within 10 deg, coplanar within the contact band):
  a one-sided ground quad faces up.

Then it tells a scene from a lone object by the input's structure:

* a scene (a fused mesh, or several mesh nodes) rests on its support, a floor or a table: the
  best-scoring direction is up, so gravity is along the normal of that support. Upside down or
  on its side the scene stands on a mug's rim, the top edges of two walls or a thin floor edge;
* a lone object (a file with one mesh node) stands several ways, and physics alone would lay a
  refrigerator on its back and stand a table on its top: the file format's usual up axis is
  taken when the object stands on it (glTF: +Y by its spec, then +Z; OBJ, PLY, STL, which carry
  no convention: +Z as written, then +Y), else the positive side of the best axis if it stands
  on that, else the best;
* mesh nodes that share no support (loose objects apart from each other) rest stably on no side
  as a whole: each node then scores on its own, the scores averaged by area, and they are read
  as lone objects;
* when +Z (the file as written) scores within ``KEEP_AS_WRITTEN`` of the best, the file is kept.

Not handled: rotations other than multiples of 90 deg about the axes (a scan tilted by a few
degrees stays tilted); a lone object written upside down or with an unusual axis up when it also
stands on a usual one (a table written -Y up is turned onto +Y, upside down; an OBJ block written
Y-up stays as written: pass ``--up y``); a scene that rests stably on its side (a single tall
shelf unit in a fused mesh is laid down); scenes hanging from a ceiling. Measured on the
benchmark's fused tabletops and rooms (``hiscene_sim/testing/scene_sets.py``) turned to each of
the six directions: all 258 right (43 scenes); lone pybullet_data and scene-synthesizer objects written in
their format's usual axis: all right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "+Z": (0.0, 0.0, 1.0), "-Z": (0.0, 0.0, -1.0), "+Y": (0.0, 1.0, 0.0),
    "-Y": (0.0, -1.0, 0.0), "+X": (1.0, 0.0, 0.0), "-X": (-1.0, 0.0, 0.0),
}
# the rotation taking each direction to +Z; +Y is glTF's up: +90 deg about X (y -> z, z -> -y)
_TO_Z_UP: dict[str, tuple[tuple[float, ...], ...]] = {
    "+Z": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "-Z": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),  # 180 deg about X
    "+Y": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),  # +90 deg about X
    "-Y": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),  # -90 deg about X
    "+X": ((0, 0, -1), (0, 1, 0), (1, 0, 0)),  # -90 deg about Y
    "-X": ((0, 0, 1), (0, 1, 0), (-1, 0, 0)),  # +90 deg about Y
}
CONTACT_BAND = 0.01  # support points: within 1% of the scene's largest extent of its lowest point
FLAT_COS = math.cos(math.radians(10.0))
SUPPORT_WEIGHT = 0.1  # radians per unit share of area in the largest up-facing flat cluster
KEEP_AS_WRITTEN = math.radians(2.0)
MIN_STABLE = math.radians(5.0)  # below this the scene as a whole rests on nothing: parts vote
MAX_POINTS = 400_000  # support hulls and centroids on a subsample beyond this


def rotation_to_z_up(direction: str) -> np.ndarray:
    """3x3 rotation taking the file axis ``direction`` (``"+Y"``, ...) to +Z."""
    return np.array(_TO_Z_UP[direction], dtype=float)


@dataclass
class Geometry:
    """Points (vertices, or Gaussian centres) with optional triangles, in the file's frame."""

    vertices: np.ndarray
    faces: np.ndarray | None = None

    def finite(self) -> "Geometry":
        ok = np.all(np.isfinite(self.vertices), axis=1)
        if ok.all():
            return self
        if self.faces is None:
            return Geometry(self.vertices[ok])
        return Geometry(self.vertices, self.faces[np.all(ok[self.faces], axis=1)])


@dataclass
class UpGuess:
    direction: str  # the file axis that becomes +Z
    reason: str
    scores_deg: dict[str, float] = field(default_factory=dict)


@dataclass
class _Surface:
    points: np.ndarray  # support candidates
    centre: np.ndarray  # centre of the surface area (or of the points)
    extent: float
    normals: np.ndarray | None = None
    areas: np.ndarray | None = None
    centroids: np.ndarray | None = None


def _surface(geometry: Geometry) -> _Surface | None:
    g = geometry.finite()
    if g.faces is not None and len(g.faces):
        used = np.unique(g.faces)
        points = g.vertices[used]
        tris = g.vertices[g.faces]
        cross = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        double_area = np.linalg.norm(cross, axis=1)
        keep = double_area > 0
        if keep.any():
            areas = double_area[keep] / 2
            centroids = tris[keep].mean(axis=1)
            normals = cross[keep] / double_area[keep, None]
            centre = (centroids * areas[:, None]).sum(axis=0) / areas.sum()
            extent = float(np.max(np.ptp(points, axis=0)))
            return _Surface(points, centre, extent, normals, areas, centroids)
    points = g.vertices[np.all(np.isfinite(g.vertices), axis=1)]
    if len(points) == 0:
        return None
    return _Surface(points, points.mean(axis=0), float(np.max(np.ptp(points, axis=0))))


def _tipping_angle(s: _Surface, up: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    heights = s.points @ up
    lowest = float(heights.min())
    contact = s.points[heights <= lowest + CONTACT_BAND * max(s.extent, 1e-12)]
    u = np.cross(up, (1.0, 0.0, 0.0) if abs(up[0]) < 0.9 else (0.0, 1.0, 0.0))
    u /= np.linalg.norm(u)
    basis = np.stack([u, np.cross(up, u)])
    flat, centre = contact @ basis.T, basis @ s.centre
    height = float(s.centre @ up) - lowest
    try:
        hull = ConvexHull(flat)
        margin = -float(np.max(hull.equations[:, :2] @ centre + hull.equations[:, 2]))
    except (QhullError, ValueError):  # a point or a line: it holds nothing up
        margin = -float(np.min(np.linalg.norm(flat - centre, axis=1)))
    return math.atan2(margin, max(height, 0.0))


def _support_share(s: _Surface, up: np.ndarray) -> float:
    """Share of the area in the largest flat cluster of faces facing ``up``."""
    if s.normals is None:
        return 0.0
    facing = s.normals @ up > FLAT_COS
    if not facing.any():
        return 0.0
    band = CONTACT_BAND * max(s.extent, 1e-12)
    levels = np.round((s.centroids[facing] @ up) / band).astype(np.int64)
    _, inverse = np.unique(levels, return_inverse=True)
    return float(np.bincount(inverse, weights=s.areas[facing]).max() / s.areas.sum())


def _subsample(geometry: Geometry) -> Geometry:
    n = len(geometry.faces) if geometry.faces is not None else len(geometry.vertices)
    if n <= MAX_POINTS:
        return geometry
    pick = np.random.default_rng(0).choice(n, MAX_POINTS, replace=False)
    if geometry.faces is None:
        return Geometry(geometry.vertices[pick])
    return Geometry(geometry.vertices, geometry.faces[pick])


def _scores(s: _Surface) -> dict[str, float]:
    out = {}
    for name, d in DIRECTIONS.items():
        up = np.asarray(d)
        out[name] = _tipping_angle(s, up) + SUPPORT_WEIGHT * _support_share(s, up)
    return out


def guess_up(scene: Geometry, parts: list[Geometry] | None = None, usual: tuple[str, ...] = ("+Z", "+Y")) -> UpGuess:
    """The file axis that is up, with the reason in words (see the module docstring).
    ``parts``: the mesh nodes of a multi-node file (None: a fused scene); ``usual``: the file
    format's usual up axes, most usual first."""
    s = _surface(_subsample(scene))
    if s is None or s.extent <= 0:
        return UpGuess("+Z", "auto: no extent to judge by; kept the file's axes")
    scores = _scores(s)
    lone, who = parts is not None and len(parts) == 1, "one object"
    if max(scores.values()) < MIN_STABLE and parts and len(parts) > 1:
        surfaces = [p for p in (_surface(_subsample(g)) for g in parts) if p is not None and p.extent > 0]
        weights = np.array([p.areas.sum() if p.areas is not None else 1.0 for p in surfaces])
        if len(surfaces) > 1 and weights.sum() > 0:
            per_part = [_scores(p) for p in surfaces]
            scores = {k: float(sum(w * ps[k] for w, ps in zip(weights, per_part)) / weights.sum()) for k in DIRECTIONS}
            lone, who = True, f"{len(surfaces)} objects without a common support, scores averaged by area"
    ranked = ", ".join(f"{k} {math.degrees(v):.0f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))
    detail = f"scores (tipping angle + support), deg: {ranked}"
    best = max(scores, key=scores.get)
    if lone:
        standing = [d for d in usual if scores[d] >= MIN_STABLE]
        if standing:
            up, why = standing[0], f"took {standing[0]}, the format's usual up axis it stands on"
        else:
            up = "+" + best[1] if scores["+" + best[1]] >= MIN_STABLE else best
            why = f"it stands on none of the format's usual up axes: took {up}"
        return UpGuess(up, f"auto ({who}): a lone object stands more than one way up; {why} ({detail})", _deg(scores))
    if best != "+Z" and scores["+Z"] >= scores[best] - KEEP_AS_WRITTEN:
        return UpGuess("+Z", f"auto: {best} and +Z tie within {math.degrees(KEEP_AS_WRITTEN):.0f} deg: kept the "
                       f"file's axes ({detail})", _deg(scores))
    share = _support_share(s, np.asarray(DIRECTIONS[best]))
    return UpGuess(best, f"auto (scene): rests most stably with {best} up ({detail}; largest flat area facing {best}: "
                   f"{share:.0%} of the surface)", _deg(scores))


def _deg(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(math.degrees(v), 2) for k, v in scores.items()}
