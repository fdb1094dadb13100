"""Watertight repair with appearance kept.

Order of attempts (the first that yields a closed, consistently wound, positive-volume
surface wins):

1. ``weld``: weld vertices by position (ignoring UV seams) and fix winding / normals with
   trimesh. A textured mesh that is closed as a surface keeps its texture unchanged.
2. ``pymeshfix``: MeshFix fills holes and removes non-manifold parts; accepted only if it
   kept most of the surface (area and bounding box), else a soup is being thrown away.
3. ``voxel``: voxel remesh (the fallback for soups that won't repair, and for flat meshes):
   voxelise the surface, fill the inside, marching cubes. Always closed; fine detail below
   the voxel size is lost, open shells become a solid of at least one voxel's thickness.

When the surface changes (2, 3, or decimation of meshes above ``max_faces``) colours are
transferred from the original surface (texture, vertex or face colours) to the new vertices
by closest point, so appearance is kept as vertex colours.

"Watertight" here is a property of the surface: welding the visual mesh's vertices by
position gives a closed 2-manifold. GLB and OBJ store one UV per vertex, so textured meshes
keep vertices split along UV seams in those files; ``RepairResult.solid`` is the welded mesh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import trimesh

from exporters.config import RepairConfig

log = logging.getLogger(__name__)


class MeshError(ValueError):
    """A mesh that cannot be used; the message names the object and the problem."""


@dataclass
class RepairResult:
    visual: trimesh.Trimesh  # what renderers see: watertight surface, texture or vertex colours
    solid: trimesh.Trimesh  # the same surface welded: closed, outward-wound; for mass and collision
    method: str  # "weld" | "pymeshfix" | "voxel"
    warnings: list[str] = field(default_factory=list)


def is_closed_volume(mesh: trimesh.Trimesh) -> bool:
    return bool(len(mesh.faces) > 0 and mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0)


def weld(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Geometry only, vertices merged by position, degenerate/duplicate faces removed,
    winding made consistent and outward."""
    solid = trimesh.Trimesh(vertices=np.asarray(mesh.vertices, dtype=np.float64), faces=mesh.faces, process=True)
    solid.update_faces(solid.nondegenerate_faces())
    solid.update_faces(solid.unique_faces())
    solid.remove_unreferenced_vertices()
    trimesh.repair.fix_winding(solid)
    trimesh.repair.fix_inversion(solid)
    return solid


def sanitize(mesh: trimesh.Trimesh, name: str) -> tuple[trimesh.Trimesh, list[str]]:
    """Drop faces with non-finite vertices; error on an empty mesh."""
    warnings: list[str] = []
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise MeshError(f"{name}: mesh has no triangles")
    finite = np.all(np.isfinite(mesh.vertices), axis=1)
    if not finite.all():
        bad_faces = ~np.all(finite[mesh.faces], axis=1)
        warnings.append(
            f"{name}: {int((~finite).sum())} vertices are NaN/inf; dropped the {int(bad_faces.sum())} faces using them"
        )
        mesh = mesh.copy()
        mesh.update_faces(~bad_faces)
        mesh.remove_unreferenced_vertices()
        if len(mesh.faces) == 0:
            raise MeshError(f"{name}: every triangle has a NaN/inf vertex")
    return mesh, warnings


def surface_colors(source: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """RGBA uint8 colours of ``source``'s surface at its closest points to ``points`` (N,3)."""
    visual = source.visual
    n = len(points)
    if visual is None or visual.kind is None:
        return np.tile(np.array([200, 200, 200, 255], dtype=np.uint8), (n, 1))
    closest, _, tri = trimesh.proximity.closest_point(source, points)
    if visual.kind == "face":
        return np.asarray(visual.face_colors, dtype=np.uint8)[tri]
    bary = trimesh.triangles.points_to_barycentric(source.triangles[tri], closest)
    bary = np.clip(np.nan_to_num(bary, nan=1 / 3), 0, 1)
    corners = source.faces[tri]
    if visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[corners]
        return np.clip(np.einsum("nk,nkc->nc", bary, colors), 0, 255).astype(np.uint8)
    # texture: interpolate UVs, sample the material's image (or its flat colour)
    uv = getattr(visual, "uv", None)
    material = getattr(visual, "material", None)
    image = getattr(material, "image", None) if material is not None else None
    if image is None and material is not None and hasattr(material, "baseColorTexture"):
        image = material.baseColorTexture
    if uv is None or image is None:
        try:
            flat = visual.to_color().vertex_colors
            return np.asarray(flat, dtype=np.uint8)[corners[:, 0]]
        except Exception:  # noqa: BLE001 - any material trimesh can't flatten gets neutral grey
            return np.tile(np.array([200, 200, 200, 255], dtype=np.uint8), (n, 1))
    uvp = np.einsum("nk,nkc->nc", bary, np.asarray(uv, dtype=np.float64)[corners])
    colors = trimesh.visual.color.uv_to_color(uvp, image)
    return np.asarray(colors, dtype=np.uint8)


def _with_colors(mesh: trimesh.Trimesh, source: trimesh.Trimesh) -> trimesh.Trimesh:
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=surface_colors(source, mesh.vertices))
    return mesh


def _meshfix_part(part: trimesh.Trimesh) -> trimesh.Trimesh | None:
    import pymeshfix

    fixer = pymeshfix.MeshFix(np.asarray(part.vertices, dtype=np.float64), np.asarray(part.faces, dtype=np.int32))
    fixer.repair(joincomp=False, remove_smallest_components=False)
    if len(fixer.faces) == 0:
        return None
    fixed = weld(trimesh.Trimesh(fixer.points, fixer.faces, process=False))
    if not is_closed_volume(fixed):
        return None
    # refuse a "repair" that threw most of the surface away
    kept_area = fixed.area / max(part.area, 1e-12)
    ext_ratio = np.min(fixed.extents / np.maximum(part.extents, 1e-12))
    return fixed if kept_area >= 0.6 and ext_ratio >= 0.9 else None


def _pymeshfix(solid: trimesh.Trimesh) -> trimesh.Trimesh | None:
    """MeshFix each connected part alone (MeshFix keeps only the largest part otherwise,
    e.g. a mug loses its handle); parts already closed stay as they are. Parts under 1% of
    the area that cannot be repaired are dropped; any larger failure returns None."""
    parts = solid.split(only_watertight=False) if solid.body_count > 1 else [solid]
    repaired = []
    for part in parts:
        if is_closed_volume(part):
            repaired.append(part)
            continue
        fixed = _meshfix_part(part)
        if fixed is not None:
            repaired.append(fixed)
        elif part.area > 0.01 * solid.area:
            return None
    if not repaired:
        return None
    merged = weld(trimesh.util.concatenate(repaired))
    return merged if is_closed_volume(merged) else None


def voxel_remesh(solid: trimesh.Trimesh, config: RepairConfig) -> trimesh.Trimesh:
    """Closed surface from the filled voxelisation of ``solid`` (works for any soup):
    :func:`hiscene_sim.voxels.solid_occupancy`, its marching-cubes surface
    (:func:`hiscene_sim.voxels.occupancy_surface`), Taubin smoothing (keeps the topology) and
    manifold3d simplification (keeps it a manifold)."""
    import manifold3d

    from hiscene_sim.voxels import occupancy_surface, solid_occupancy

    pitch = max(float(np.max(solid.extents)) / config.voxel_resolution, config.min_thickness / 2, 1e-6)
    origin = solid.bounds[0]
    occupancy, lo = solid_occupancy(solid, origin, pitch, config.close_voxels, seed=0)
    remeshed = weld(occupancy_surface(occupancy, pitch, origin, first_voxel=lo, pad=2))
    if not is_closed_volume(remeshed):
        fixed = _meshfix_part(remeshed)  # MeshFix removes the odd non-manifold edge left
        if fixed is None:
            raise MeshError("voxel remesh did not produce a closed surface")
        remeshed = fixed
    trimesh.smoothing.filter_taubin(remeshed, iterations=10)
    manifold = manifold3d.Manifold(
        manifold3d.Mesh(
            vert_properties=np.asarray(remeshed.vertices, dtype=np.float32),
            tri_verts=np.asarray(remeshed.faces, dtype=np.uint32),
        )
    )
    if manifold.status() == manifold3d.Error.NoError:
        for tolerance in (0.5 * pitch, 0.25 * pitch):
            out = manifold.simplify(tolerance).to_mesh()
            # accept only if it stays closed when welded by position, like every other output
            simplified = weld(trimesh.Trimesh(out.vert_properties[:, :3], out.tri_verts, process=False))
            if is_closed_volume(simplified):
                remeshed = simplified
                break
    return remeshed


def make_watertight(mesh: trimesh.Trimesh, name: str, config: RepairConfig | None = None) -> RepairResult:
    """Return a watertight version of ``mesh`` (already in metres, local frame) with its appearance."""
    config = config or RepairConfig()
    mesh, warnings = sanitize(mesh, name)
    original = mesh
    if len(mesh.faces) > config.max_faces:
        warnings.append(f"{name}: {len(mesh.faces)} faces exceed {config.max_faces}; decimated to {config.max_faces}")
        simplified = weld(mesh).simplify_quadric_decimation(face_count=config.max_faces)
        mesh = _with_colors(simplified, original)

    solid = weld(mesh)
    if len(solid.faces) == 0:
        raise MeshError(f"{name}: mesh has no non-degenerate triangles")
    if is_closed_volume(solid):
        visual = mesh.copy()
        signed = trimesh.Trimesh(visual.vertices, visual.faces, process=False).volume
        if np.isclose(-signed, solid.volume, rtol=1e-6):
            visual.invert()  # closed but wound inward as stored
        elif not np.isclose(signed, solid.volume, rtol=1e-6):
            visual = _with_colors(solid.copy(), original)  # inconsistent winding: use the welded surface
        return RepairResult(visual=visual, solid=solid, method="weld", warnings=warnings)

    thickness = float(np.min(solid.extents)) if len(solid.vertices) else 0.0
    flat = thickness < config.min_thickness
    if not flat:
        fixed = _pymeshfix(solid)
        if fixed is not None:
            warnings.append(f"{name}: mesh was not closed; repaired with MeshFix (colours transferred to the new surface)")
            return RepairResult(_with_colors(fixed.copy(), original), fixed, "pymeshfix", warnings)
    reason = "flat (zero volume); thickened by voxel remesh" if flat else "not closed and MeshFix could not repair it; voxel remeshed"
    warnings.append(f"{name}: mesh is {reason} at {config.voxel_resolution} voxels across")
    solid_for_voxels = solid
    if flat:
        # two copies of the sheet, min_thickness apart, so the filled voxels enclose volume
        offset = np.zeros(3)
        offset[int(np.argmin(solid.extents))] = config.min_thickness / 2
        solid_for_voxels = trimesh.util.concatenate(
            [solid.copy().apply_translation(offset), solid.copy().apply_translation(-offset)]
        )
    try:
        remeshed = voxel_remesh(solid_for_voxels, config)
    except MeshError as exc:
        raise MeshError(f"{name}: {exc}; the mesh cannot be made watertight") from None
    return RepairResult(_with_colors(remeshed.copy(), original), remeshed, "voxel", warnings)

