"""Fused scenes: the test set for scene parsing.

An image-to-3D generator that works on a voxel grid (TRELLIS-like) returns a whole room as
ONE welded surface: the union of everything is voxelised, one marching-cubes surface is
extracted, and appearance is baked into vertex colours, so a mug standing on a table is
welded to the table. This module builds such scenes from pybullet_data meshes and keeps the
ground truth: the source object nearest to every fused vertex (``vertex_object``) and the
majority of each face's vertices (``face_object``). :mod:`hiscene_sim.testing.parse_metrics`
scores a parse of the fused surface against it.

Pipeline (:func:`fuse_meshes`): every source object is solidified on its own, the way
``exporters.watertight.voxel_remesh`` does (:func:`hiscene_sim.voxels.solid_occupancy`: dense
seeded surface samples -> voxels -> morphological closing and hole filling, so open meshes
still give a solid), all on one shared grid; the union is blurred slightly (joins voxels
touching only along an edge) and ONE marching-cubes surface is extracted
(:func:`hiscene_sim.voxels.occupancy_surface`), welded, Taubin-smoothed and simplified with
manifold3d (which keeps it a closed 2-manifold; flat floor/table areas collapse to few
triangles, curved objects keep roughly voxel-sized ones). Then every fused vertex gets the
nearest source object and that object's colour at the nearest source surface point.

Surfaces come out about 0.5-0.7 voxel outside the true one (voxels containing the surface
count as inside), like any voxel generator's output; the faces where an object rests on its
support are inside the union and vanish.

Layouts are lists of :class:`Placed` (asset, x, y, yaw, support); a 2 x 2 m floor slab (top at
z = 0, background) is always added. :func:`test_set` gives 10 seeded scenes, 3 to 8 objects
each (the table counts, the floor doesn't), on a table and on the floor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import ConvexHull, cKDTree

from hiscene_sim.pybullet_assets import asset_mesh, placement
from hiscene_sim.voxels import occupancy_surface, solid_occupancy

DEFAULT_VOXEL = 0.005  # metres: a 3 cm lego brick is ~6 voxels across
FLOOR_SIZE = 2.0  # metres, square
FLOOR_THICKNESS = 0.03
FLOOR_COLOR = (150, 150, 160, 255)
FLOOR_NAME = "floor"

ITEM_ASSETS = ("mug", "duck", "teddy", "lego", "bunny", "jenga", "tray", "cube")


# --------------------------------------------------------------------------------------
# data model


@dataclass
class FusedObjectInfo:
    name: str  # unique in the scene, e.g. "mug_2"
    label: str  # category (the asset name), e.g. "mug"; "floor" for the slab
    is_background: bool
    bounds: np.ndarray  # (2, 3) world-space bounds of the source mesh
    mesh: trimesh.Trimesh | None  # the source mesh in world coordinates (appearance kept when built)
    support: str | None = None  # name of the object it rests on ("floor", "table", ...), None for the floor


@dataclass
class FusedScene:
    mesh: trimesh.Trimesh  # ONE welded, closed surface with vertex colours
    vertex_object: np.ndarray  # (V,) int: index into ``objects`` of the nearest source object
    face_object: np.ndarray  # (F,) int: majority of the face's vertices
    objects: list[FusedObjectInfo]
    name: str = ""
    seed: int = 0
    voxel_size: float = DEFAULT_VOXEL
    layout: list[Placed] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # what the generator wants kept (scene_sets: kind, split, pieces)

    @property
    def background_ids(self) -> set[int]:
        return {i for i, o in enumerate(self.objects) if o.is_background}

    @property
    def foreground_ids(self) -> list[int]:
        return [i for i, o in enumerate(self.objects) if not o.is_background]

    @property
    def n_foreground(self) -> int:
        return len(self.foreground_ids)

    def object_areas(self) -> np.ndarray:
        """(len(objects),) fused-surface area given to each object by ``face_object``."""
        return np.bincount(self.face_object, weights=self.mesh.area_faces, minlength=len(self.objects))


@dataclass(frozen=True)
class Placed:
    """One object of a layout: a pybullet_data asset at (x, y) with yaw (radians), its lowest
    point resting on ``support`` ("floor", or the name of an earlier object, e.g. "table")."""

    asset: str
    x: float
    y: float
    yaw: float = 0.0
    support: str = FLOOR_NAME
    name: str | None = None

    def to_json(self) -> dict:
        return {"asset": self.asset, "x": self.x, "y": self.y, "yaw": self.yaw, "support": self.support, "name": self.name}


@dataclass(frozen=True)
class SceneSpec:
    name: str
    layout: tuple[Placed, ...]
    seed: int

    @property
    def n_objects(self) -> int:
        return len(self.layout)


# --------------------------------------------------------------------------------------
# nearest source surface (shared with parse_metrics)


class SurfaceIndex:
    """Exact nearest surface point over several meshes: a KD-tree over seeded surface samples
    (plus every face centroid) proposes ``k`` candidate faces per query, and the exact
    point-triangle distance picks among them. Much faster than trimesh.proximity on 2 cores
    for 10^5 queries against meshes from 12 to 10^5 faces."""

    def __init__(self, meshes: Sequence[trimesh.Trimesh], spacing: float, seed: int = 0, max_samples: int = 3_000_000):
        self.meshes = list(meshes)
        if not self.meshes:
            raise ValueError("SurfaceIndex needs at least one mesh")
        areas = np.array([max(float(m.area), 0.0) for m in self.meshes])
        spacing = max(spacing, math.sqrt(areas.sum() / max_samples)) if areas.sum() > 0 else spacing
        points, mesh_id, face_id = [], [], []
        for i, mesh in enumerate(self.meshes):
            if len(mesh.faces) == 0:
                continue
            count = math.ceil(areas[i] / spacing**2)
            if count > 0:
                samples, faces = trimesh.sample.sample_surface(mesh, count, seed=seed + i)
                points.append(samples)
                face_id.append(np.asarray(faces, dtype=np.int64))
                mesh_id.append(np.full(len(samples), i, dtype=np.int64))
            points.append(mesh.triangles_center)
            face_id.append(np.arange(len(mesh.faces), dtype=np.int64))
            mesh_id.append(np.full(len(mesh.faces), i, dtype=np.int64))
        self.points = np.vstack(points)
        self.mesh_id = np.concatenate(mesh_id)
        self.face_id = np.concatenate(face_id)
        self.tree = cKDTree(self.points)
        # flat arrays of all triangles, addressed by (mesh, face) -> row
        self._offset = np.concatenate([[0], np.cumsum([len(m.faces) for m in self.meshes])])
        self._triangles = np.vstack([np.asarray(m.triangles, dtype=np.float64).reshape(-1, 3, 3) for m in self.meshes])

    def query(self, points: np.ndarray, k: int = 8, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mesh index, distance, closest point, face index) for each of ``points`` (N, 3)."""
        points = np.asarray(points, dtype=np.float64)
        n = len(points)
        k = min(k, len(self.points))
        out_mesh = np.zeros(n, dtype=np.int64)
        out_dist = np.zeros(n)
        out_point = np.zeros((n, 3))
        out_face = np.zeros(n, dtype=np.int64)
        for start in range(0, n, chunk):
            p = points[start : start + chunk]
            _, nearest = self.tree.query(p, k=k)
            nearest = nearest.reshape(len(p), k)
            rows = self._offset[self.mesh_id[nearest]] + self.face_id[nearest]  # (m, k)
            tris = self._triangles[rows.ravel()]
            closest = trimesh.triangles.closest_point(tris, np.repeat(p, k, axis=0)).reshape(len(p), k, 3)
            dist = np.linalg.norm(closest - p[:, None, :], axis=2)
            # ties (shared edges of one mesh, touching meshes): lowest (mesh, face) row wins
            dist_key = np.where(np.isfinite(dist), dist, np.inf)
            best = _argmin_stable(dist_key, rows)
            sel = np.arange(len(p))
            out_mesh[start : start + len(p)] = self.mesh_id[nearest[sel, best]]
            out_face[start : start + len(p)] = self.face_id[nearest[sel, best]]
            out_dist[start : start + len(p)] = dist_key[sel, best]
            out_point[start : start + len(p)] = closest[sel, best]
        return out_mesh, out_dist, out_point, out_face


def _argmin_stable(dist: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row, the column with the smallest distance; exact ties go to the smallest row id
    (so the answer does not depend on the KD-tree's order of equidistant samples)."""
    best = dist.min(axis=1, keepdims=True)
    tied = dist <= best
    key = np.where(tied, rows, np.iinfo(np.int64).max)
    return np.argmin(key, axis=1)


def surface_colors_at(mesh: trimesh.Trimesh, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RGBA uint8 of ``mesh``'s appearance (texture, vertex or face colours, material colour)
    at ``points`` lying on its faces ``faces``."""
    n = len(points)
    grey = np.tile(np.array([200, 200, 200, 255], dtype=np.uint8), (n, 1))
    visual = mesh.visual
    if n == 0 or visual is None or visual.kind is None:
        return grey
    if visual.kind == "face":
        return np.asarray(visual.face_colors, dtype=np.uint8)[faces]
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate source triangles
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[faces], points)
    bary = np.clip(np.nan_to_num(bary, nan=1 / 3), 0, 1)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
    corners = mesh.faces[faces]
    if visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[corners]
        return np.clip(np.round(np.einsum("nk,nkc->nc", bary, colors)), 0, 255).astype(np.uint8)
    uv = getattr(visual, "uv", None)
    material = getattr(visual, "material", None)
    image = getattr(material, "image", None) if material is not None else None
    if image is None and material is not None:
        image = getattr(material, "baseColorTexture", None)
    if uv is None or image is None or len(uv) != len(mesh.vertices):
        main = getattr(material, "main_color", None) if material is not None else None
        if main is not None:
            return np.tile(np.asarray(main, dtype=np.uint8)[:4], (n, 1))
        return grey
    uvp = np.einsum("nk,nkc->nc", bary, np.asarray(uv, dtype=np.float64)[corners])
    colors = np.asarray(trimesh.visual.color.uv_to_color(uvp, image), dtype=np.uint8)
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        colors = np.clip(colors.astype(np.float64) * np.asarray(factor, dtype=np.float64)[:4] / 255.0, 0, 255).astype(np.uint8)
    return colors


# --------------------------------------------------------------------------------------
# fusing


def floor_slab(size: float = FLOOR_SIZE, thickness: float = FLOOR_THICKNESS) -> trimesh.Trimesh:
    slab = trimesh.creation.box(extents=(size, size, thickness))
    slab.apply_translation((0.0, 0.0, -thickness / 2))
    slab.visual = trimesh.visual.ColorVisuals(slab, vertex_colors=np.tile(FLOOR_COLOR, (len(slab.vertices), 1)))
    return slab


def _simplify(mesh: trimesh.Trimesh, pitch: float, tolerance: float) -> trimesh.Trimesh:
    import manifold3d

    from exporters.watertight import is_closed_volume, weld

    if tolerance <= 0:
        return mesh
    manifold = manifold3d.Manifold(
        manifold3d.Mesh(
            vert_properties=np.asarray(mesh.vertices, dtype=np.float32),
            tri_verts=np.asarray(mesh.faces, dtype=np.uint32),
        )
    )
    if manifold.status() != manifold3d.Error.NoError:
        return mesh
    # manifold's output is a manifold by index; welding its float32 positions can rarely pinch
    # two vertices together, so a coarser tolerance that does not survive the weld is retried finer
    bodies, volume = mesh.body_count, mesh.volume
    for tol in (tolerance, tolerance / 2, tolerance / 4):
        out = manifold.simplify(tol * pitch).to_mesh()
        simplified = weld(trimesh.Trimesh(np.asarray(out.vert_properties[:, :3], dtype=np.float64), out.tri_verts, process=False))
        # a speck of a few voxels may collapse away; anything bigger changes the volume
        if (is_closed_volume(simplified) and simplified.body_count <= bodies
                and abs(simplified.volume - volume) <= 0.01 * volume):
            return simplified
    return mesh


def fuse_meshes(
    objects: Sequence[FusedObjectInfo],
    voxel_size: float = DEFAULT_VOXEL,
    seed: int = 0,
    close_voxels: int = 1,
    smooth_iterations: int = 10,
    simplify_tolerance: float = 0.05,
    name: str = "",
) -> FusedScene:
    """Fuse world-space meshes into one marching-cubes surface with ground truth.

    ``objects`` carry the world-space meshes (with appearance). ``simplify_tolerance`` is in
    voxels (0 keeps the raw marching-cubes surface); ``close_voxels`` is the per-object
    morphological closing that seals small holes in open meshes.
    """
    from exporters.watertight import is_closed_volume, weld

    objects = list(objects)
    if not objects:
        raise ValueError("fuse_meshes needs at least one object")
    pitch = float(voxel_size)
    meshes = [o.mesh for o in objects]
    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    border = close_voxels + 4
    # z = 0 (the floor's top) in the middle of a voxel layer, so contacts there are unambiguous
    origin = lo - border * pitch
    origin[2] = (math.floor(lo[2] / pitch) - border + 0.5) * pitch
    shape = np.ceil((hi - origin) / pitch).astype(np.int64) + border + 1
    occupancy = np.zeros(shape, dtype=bool)
    for i, mesh in enumerate(meshes):
        block, corner = solid_occupancy(mesh, origin, pitch, close_voxels, seed + 1000 * i)
        end = corner + np.array(block.shape)
        if (corner < 0).any() or (end > shape).any():
            raise RuntimeError("object voxels outside the scene grid")  # cannot happen: the grid has a border
        sl = tuple(slice(a, b) for a, b in zip(corner, end))
        occupancy[sl] |= block
    fused = weld(occupancy_surface(occupancy, pitch, origin))  # as in voxel_remesh
    del occupancy
    if not is_closed_volume(fused):
        raise RuntimeError(f"{name or 'scene'}: marching cubes did not give a closed surface")
    if smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(fused, iterations=smooth_iterations)
    fused = _simplify(fused, pitch, simplify_tolerance)

    # ground truth and appearance: nearest source surface point of every fused vertex
    index = SurfaceIndex(meshes, spacing=pitch, seed=seed)
    vertex_object, _, closest, face = index.query(fused.vertices)
    colors = np.zeros((len(fused.vertices), 4), dtype=np.uint8)
    for i, mesh in enumerate(meshes):
        mask = vertex_object == i
        if mask.any():
            colors[mask] = surface_colors_at(mesh, face[mask], closest[mask])
    fused.visual = trimesh.visual.ColorVisuals(fused, vertex_colors=colors)
    face_object = majority_face_labels(fused, vertex_object, index)
    return FusedScene(
        mesh=fused,
        vertex_object=vertex_object.astype(np.int64),
        face_object=face_object,
        objects=objects,
        name=name,
        seed=seed,
        voxel_size=pitch,
    )


def majority_face_labels(mesh: trimesh.Trimesh, vertex_labels: np.ndarray, index: SurfaceIndex | None = None) -> np.ndarray:
    """Per face, the label two or three of its vertices share; faces with three different
    labels take the label nearest to their centroid (``index``) or their first vertex's."""
    corner = np.asarray(vertex_labels)[mesh.faces]
    out = corner[:, 0].copy()
    out = np.where(corner[:, 1] == corner[:, 2], corner[:, 1], out)
    split = (corner[:, 0] != corner[:, 1]) & (corner[:, 1] != corner[:, 2]) & (corner[:, 0] != corner[:, 2])
    if split.any() and index is not None:
        out[split], *_ = index.query(mesh.triangles_center[split])
    return out.astype(np.int64)


def place_objects(layout: Sequence[Placed], floor_size: float = FLOOR_SIZE) -> list[FusedObjectInfo]:
    """World-space meshes of a layout, the floor slab first (background)."""
    floor = floor_slab(floor_size)
    infos = [FusedObjectInfo(FLOOR_NAME, FLOOR_NAME, True, floor.bounds.copy(), floor, None)]
    by_name = {FLOOR_NAME: infos[0]}
    counts: dict[str, int] = {}
    for item in layout:
        counts[item.asset] = counts.get(item.asset, 0) + 1
    seen: dict[str, int] = {}
    for item in layout:
        seen[item.asset] = seen.get(item.asset, 0) + 1
        name = item.name or (item.asset if counts[item.asset] == 1 else f"{item.asset}_{seen[item.asset]}")
        if name in by_name:
            raise ValueError(f"duplicate object name {name!r} in layout")
        if item.support not in by_name:
            raise ValueError(f"{name}: support {item.support!r} is not the floor or an earlier object")
        support_z = float(by_name[item.support].bounds[1][2])
        mesh, scale = asset_mesh(item.asset)
        mesh = mesh.copy()
        mesh.apply_transform(placement(mesh, scale, item.x, item.y, item.yaw, support_z))
        info = FusedObjectInfo(name, item.asset, False, mesh.bounds.copy(), mesh, item.support)
        infos.append(info)
        by_name[name] = info
    return infos


def build_fused_scene(
    layout: Sequence[Placed] | SceneSpec,
    voxel_size: float = DEFAULT_VOXEL,
    seed: int | None = None,
    name: str = "",
    floor_size: float = FLOOR_SIZE,
    **fuse_options,
) -> FusedScene:
    """Place pybullet_data assets on a 2 x 2 m floor slab (and on each other: items whose
    support is the table rest on its top) and fuse everything into one surface."""
    if isinstance(layout, SceneSpec):
        name = name or layout.name
        seed = layout.seed if seed is None else seed
        layout = layout.layout
    seed = 0 if seed is None else int(seed)
    layout = list(layout)
    scene = fuse_meshes(place_objects(layout, floor_size), voxel_size=voxel_size, seed=seed, name=name, **fuse_options)
    scene.layout = layout
    return scene


# --------------------------------------------------------------------------------------
# the test set


def footprint(mesh: trimesh.Trimesh) -> np.ndarray:
    """Counter-clockwise convex hull of the mesh's XY projection."""
    xy = np.asarray(mesh.vertices)[:, :2]
    hull = ConvexHull(xy)
    return xy[hull.vertices]  # scipy gives 2-D hull vertices counter-clockwise


def _edge_normals(poly: np.ndarray) -> np.ndarray:
    edges = np.roll(poly, -1, axis=0) - poly
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)  # outward for a CCW polygon
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def footprints_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test of two convex polygons; True unless some edge normal separates
    them by at least ``margin``."""
    for normals in (_edge_normals(a), _edge_normals(b)):
        pa, pb = a @ normals.T, b @ normals.T
        gap = np.maximum(pb.min(axis=0) - pa.max(axis=0), pa.min(axis=0) - pb.max(axis=0))
        if (gap >= margin).any():
            return False
    return True


def inside_polygon(points: np.ndarray, poly: np.ndarray, margin: float = 0.0) -> bool:
    """All ``points`` inside the convex CCW ``poly`` by at least ``margin``."""
    normals = _edge_normals(poly)
    offsets = np.einsum("ij,ij->i", normals, poly)
    return bool(((points @ normals.T) <= offsets - margin).all())


def support_top(mesh: trimesh.Trimesh) -> np.ndarray:
    """XY polygon of a support's top (the vertices within 1 mm of its highest point)."""
    v = np.asarray(mesh.vertices)
    top = v[v[:, 2] >= v[:, 2].max() - 1e-3][:, :2]
    return top[ConvexHull(top).vertices]


def _placed_footprint(item: Placed, support_z: float) -> np.ndarray:
    mesh, scale = asset_mesh(item.asset)
    mesh = mesh.copy()
    mesh.apply_transform(placement(mesh, scale, item.x, item.y, item.yaw, support_z))
    return footprint(mesh)


def _draw_scene(rng: np.random.Generator, n_objects: int, on_table: bool, floor_size: float, margin: float):
    """One random layout with ``n_objects`` objects (the table counts), or None if placement failed."""
    layout: list[Placed] = []
    footprints: list[tuple[str, np.ndarray]] = []  # (support, polygon)
    floor_poly = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * floor_size / 2
    region = 0.7 * floor_size / 2  # floor items gather near the middle, like a room corner
    table_top = None
    n_items = n_objects
    if on_table:
        table = Placed("table", float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.15, 0.15)))
        table_mesh = place_objects([table], floor_size)[1].mesh
        table_top = support_top(table_mesh)
        layout.append(table)
        footprints.append((FLOOR_NAME, footprint(table_mesh)))
        n_items -= 1
    # at most one tray per scene, and none on a crowded table
    trays = 0
    n_floor_extra = 1 if on_table and n_items >= 3 and rng.random() < 0.5 else 0
    for k in range(n_items):
        support = "table" if on_table and k < n_items - n_floor_extra else FLOOR_NAME
        for _attempt in range(200):
            choices = [a for a in ITEM_ASSETS if not (a == "tray" and (trays or (support == "table" and n_items > 4)))]
            asset = str(rng.choice(choices))
            yaw = float(rng.uniform(-math.pi, math.pi))
            if support == "table":
                lo, hi = table_top.min(axis=0), table_top.max(axis=0)
                x, y = rng.uniform(lo, hi)
                support_z = float(table_mesh.bounds[1][2])
                area = table_top
            else:
                x, y = rng.uniform(-region, region, size=2)
                support_z = 0.0
                area = floor_poly
            item = Placed(asset, float(x), float(y), yaw, support)
            poly = _placed_footprint(item, support_z)
            if not inside_polygon(poly, area, margin):
                continue
            # items on the table only meet other items on the table (and its legs never
            # reach them); floor items must keep clear of every floor footprint, the table's too
            if any(s == support and footprints_overlap(poly, other, margin) for s, other in footprints):
                continue
            layout.append(item)
            footprints.append((support, poly))
            trays += asset == "tray"
            break
        else:
            return None
    return layout


def test_specs(n: int = 10, seed: int = 0, floor_size: float = FLOOR_SIZE, margin: float = 0.03) -> list[SceneSpec]:
    """``n`` seeded layouts: even ones on pybullet_data's table (the table plus 2-7 items, some
    with one more item on the floor beside it), odd ones on the floor only; 3 to 8 objects
    each (the table counts, the floor doesn't); footprints at least ``margin`` apart."""
    specs = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        n_objects = 3 + (i * 5) % 6  # 3, 8, 7, 6, 5, 4, 3, ...
        on_table = i % 2 == 0
        layout = None
        while layout is None:
            layout = _draw_scene(rng, n_objects, on_table, floor_size, margin)
        kind = "table" if on_table else "floor"
        specs.append(SceneSpec(f"fused_{i:02d}_{kind}_{n_objects}", tuple(layout), seed * 1000 + i))
    return specs


def test_set(n: int = 10, seed: int = 0, voxel_size: float = DEFAULT_VOXEL, **fuse_options) -> list[FusedScene]:
    """Build the ``n`` scenes of :func:`test_specs` (6-15 s each on 2 cores)."""
    return [build_fused_scene(spec, voxel_size=voxel_size, **fuse_options) for spec in test_specs(n, seed)]


test_specs.__test__ = False  # not pytest tests, despite the names
test_set.__test__ = False


# --------------------------------------------------------------------------------------
# files


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".gt.npz")


def save_fused(scene: FusedScene, path: str | Path) -> Path:
    """Write the fused mesh (``.ply`` or ``.glb``: one mesh, vertex colours) and, next to it,
    ``<file>.gt.npz`` with the ground truth (per-vertex and per-face object, object names,
    labels, background flags, bounds, the source meshes' geometry and the layout)."""
    from hiscene_sim.atomic import atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ply", ".glb"):
        raise ValueError(f"{path}: save_fused writes .ply or .glb")
    mesh = scene.mesh
    if suffix == ".ply":
        data = mesh.export(file_type="ply", encoding="binary", vertex_normal=False)
    else:
        data = trimesh.Scene({"fused": mesh}).export(file_type="glb")
    atomic_write_bytes(path, data)
    meta = {
        "name": scene.name,
        "seed": scene.seed,
        "voxel_size": scene.voxel_size,
        "layout": [p.to_json() for p in scene.layout],
        "extra": scene.meta,
        "objects": [
            {"name": o.name, "label": o.label, "is_background": o.is_background, "support": o.support}
            for o in scene.objects
        ],
    }
    arrays = {
        "vertex_object": scene.vertex_object.astype(np.int32),
        "face_object": scene.face_object.astype(np.int32),
        "bounds": np.array([o.bounds for o in scene.objects], dtype=np.float64).reshape(-1, 2, 3),
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    for i, o in enumerate(scene.objects):
        if o.mesh is not None:
            arrays[f"source_{i}_vertices"] = np.asarray(o.mesh.vertices, dtype=np.float64)
            arrays[f"source_{i}_faces"] = np.asarray(o.mesh.faces, dtype=np.int32)
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(_sidecar(path), buffer.getvalue())
    return path


def load_fused(path: str | Path) -> FusedScene:
    """Read what :func:`save_fused` wrote (source meshes come back as geometry only)."""
    path = Path(path)
    loaded = trimesh.load(path, force="mesh", process=False)
    mesh = trimesh.Trimesh(loaded.vertices, loaded.faces, process=False)
    colors = None
    if loaded.visual is not None and loaded.visual.kind == "vertex":
        colors = np.asarray(loaded.visual.vertex_colors, dtype=np.uint8)
    if colors is not None:
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colors)
    with np.load(_sidecar(path)) as gt:
        meta = json.loads(bytes(gt["meta"]).decode())
        vertex_object = gt["vertex_object"].astype(np.int64)
        face_object = gt["face_object"].astype(np.int64)
        bounds = gt["bounds"]
        sources = {}
        for i in range(len(meta["objects"])):
            if f"source_{i}_vertices" in gt:
                sources[i] = trimesh.Trimesh(gt[f"source_{i}_vertices"], gt[f"source_{i}_faces"], process=False)
    if len(vertex_object) != len(mesh.vertices) or len(face_object) != len(mesh.faces):
        raise ValueError(
            f"{path}: ground truth has {len(vertex_object)} vertices / {len(face_object)} faces, "
            f"the mesh {len(mesh.vertices)} / {len(mesh.faces)}"
        )
    objects = [
        FusedObjectInfo(o["name"], o["label"], bool(o["is_background"]), bounds[i].copy(), sources.get(i), o.get("support"))
        for i, o in enumerate(meta["objects"])
    ]
    layout = [Placed(**p) for p in meta.get("layout", [])]
    return FusedScene(mesh, vertex_object, face_object, objects, meta["name"], int(meta["seed"]), float(meta["voxel_size"]),
                      layout, meta.get("extra", {}))
