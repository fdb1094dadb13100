"""What the scene's geometry says about each object, for labelling: what rests on what, and
how much of an object's top is a flat, upward surface.

An object rests on another when rays cast straight down from just outside its bottom rim
mostly first meet that other object's upward-facing surface within a small gap (a share of
the resting object's size, so the rule holds at any scene scale). Ray casting goes through trimesh's
Embree intersector, built once for the whole scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.occlusion.views import SceneGeometry
from hiscene_sim.scene import Scene

GAP = 0.08  # a resting object's bottom lies within this share of its own size of its support
UPWARD = 0.8  # a surface faces up when its normal's z is above this
RAYS = 32  # rays per object, around its bottom


@dataclass(frozen=True)
class ObjectFacts:
    object_id: str
    kind: str  # object | floor | wall | background
    rests_on: str | None  # id of the object under it
    supports: tuple[str, ...]  # ids of the foreground objects resting on it
    top_area: float  # m^2 of upward surface at the height where what it supports stands (else its top)
    footprint_area: float  # m^2, its horizontal bounding box
    supported_footprint: float  # m^2, the largest footprint of the objects resting on it
    size: tuple[float, float, float]  # bounding-box extents, m


def _kind(is_foreground: bool, label: str) -> str:
    if is_foreground:
        return "object"
    return label if label in ("floor", "wall") else "background"


def _around_bottom(mesh: trimesh.Trimesh, gap: float) -> np.ndarray:
    """xy points just outside the object's bottom rim: its lowest vertices (within ``gap`` of
    its bottom), up to ``RAYS`` of them around its centre, each moved ``gap`` outwards. Rays
    down from there land on what it stands on, also where that surface has a hole under the
    object (a parsed scene: the patch it was welded to belongs to no one)."""
    v = mesh.vertices
    low = v[v[:, 2] <= v[:, 2].min() + gap][:, :2]
    center = low.mean(axis=0)
    offset = low - center
    angle = np.arctan2(offset[:, 1], offset[:, 0])
    pick = np.argsort(angle)[np.linspace(0, len(low) - 1, min(RAYS, len(low))).round().astype(int)]
    norm = np.linalg.norm(offset[pick], axis=1, keepdims=True)
    direction = np.where(norm > 1e-12, offset[pick] / np.maximum(norm, 1e-12), 0.0)
    return low[pick] + gap * direction


def scene_facts(scene: Scene, scene_dir: str | Path, geometry: SceneGeometry | None = None) -> dict[str, ObjectFacts]:
    """Facts of every object of ``scene`` (foreground and background), by id."""
    geometry = geometry or SceneGeometry.of_scene(scene, scene_dir)
    combined = geometry.combined
    normals = np.asarray(combined.face_normals)
    n = len(geometry.ids)
    rests_on: list[int | None] = [None] * n
    support_z: dict[int, list[float]] = {}
    foreground = {o.id for o in scene.objects}
    for k, (oid, mesh) in enumerate(zip(geometry.ids, geometry.meshes)):
        if oid not in foreground:
            continue
        gap = GAP * float(np.max(mesh.extents))
        xy = _around_bottom(mesh, gap)
        z0 = float(mesh.bounds[0][2]) + gap
        origins = np.column_stack([xy, np.full(len(xy), z0)])
        directions = np.tile([0.0, 0.0, -1.0], (len(xy), 1))
        locations, ray, tri = combined.ray.intersects_location(origins, directions, multiple_hits=True)
        other = geometry.face_object[tri] != k
        below = z0 - locations[:, 2]
        hits: dict[int, tuple[float, int]] = {}  # ray -> (distance, face) of its first hit on another object
        for r, d, t in zip(ray[other], below[other], tri[other]):
            if r not in hits or d < hits[r][0]:
                hits[r] = (d, t)
        votes: dict[int, int] = {}
        heights: dict[int, list[float]] = {}
        for d, t in hits.values():
            if d <= 2 * gap and normals[t, 2] >= UPWARD:
                j = int(geometry.face_object[t])
                votes[j] = votes.get(j, 0) + 1
                heights.setdefault(j, []).append(z0 - d)
        if votes:
            j = max(votes, key=votes.get)
            if votes[j] >= 0.5 * len(xy):
                rests_on[k] = j
                support_z.setdefault(j, []).extend(heights[j])
    resting: dict[int, list[int]] = {}  # support -> the objects resting on it
    for i, j in enumerate(rests_on):
        if j is not None:
            resting.setdefault(j, []).append(i)
    footprints = [float(np.prod(mesh.extents[:2])) for mesh in geometry.meshes]
    facts = {}
    for k, (oid, mesh) in enumerate(zip(geometry.ids, geometry.meshes)):
        up = np.asarray(mesh.face_normals)[:, 2] >= UPWARD
        centers_z = np.asarray(mesh.triangles_center)[:, 2]
        band = 0.02 * max(float(mesh.extents.max()), 1e-9)
        level = float(np.median(support_z[k])) if k in support_z else float(centers_z[up].max()) if up.any() else float(mesh.bounds[1][2])
        top_area = float(np.asarray(mesh.area_faces)[up & (np.abs(centers_z - level) <= band)].sum())
        on_it = resting.get(k, [])
        facts[oid] = ObjectFacts(
            oid, _kind(oid in foreground, geometry.labels[k]), geometry.ids[rests_on[k]] if rests_on[k] is not None else None,
            tuple(geometry.ids[i] for i in on_it), top_area, footprints[k], max((footprints[i] for i in on_it), default=0.0),
            tuple(float(x) for x in mesh.extents),
        )
    return facts
