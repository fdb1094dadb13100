"""Convex decomposition with CoACD, cached by mesh content + parameters.

Speed comes from (see benchmarks/bench_collision.py for the measured effect):
- simplifying the watertight mesh to ``decimate_faces`` before decomposing (CoACD's cost
  grows with the face count; hull fidelity is judged on volume, which survives this);
- ``preprocess_mode="off"`` when the input is already a closed 2-manifold (CoACD's remesh
  step is only needed for broken input), lower MCTS iterations / depth and Hausdorff
  resolution, a larger concavity threshold;
- a content-addressed cache so a re-export does no decomposition;
- objects spread over processes by the export driver.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import trimesh

from exporters.config import CollisionConfig
from exporters.watertight import is_closed_volume
from hiscene_sim.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

_MIN_HULL_VOLUME = 1e-12  # m^3; smaller hulls are numerical slivers


def _coacd_version() -> str:
    try:
        from importlib.metadata import version

        return version("coacd")
    except Exception:  # noqa: BLE001 - version only feeds the cache key
        return "unknown"


def cache_key(mesh: trimesh.Trimesh, config: CollisionConfig) -> str:
    """sha256 over the mesh's vertices and faces, the parameters and the CoACD version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.vertices, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype="<i8").tobytes())
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(_coacd_version().encode())
    return h.hexdigest()


def _load_cached(path: Path) -> list[trimesh.Trimesh] | None:
    try:
        with np.load(path) as data:
            count = int(data["count"])
            return [trimesh.Trimesh(data[f"v{i}"], data[f"f{i}"], process=False) for i in range(count)]
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a corrupt cache entry is recomputed, never trusted
        log.warning("ignoring unreadable collision cache entry %s: %s", path, exc)
        return None


def _store_cached(path: Path, hulls: list[trimesh.Trimesh]) -> None:
    arrays: dict[str, np.ndarray] = {"count": np.array(len(hulls))}
    for i, hull in enumerate(hulls):
        arrays[f"v{i}"] = np.asarray(hull.vertices, dtype=np.float64)
        arrays[f"f{i}"] = np.asarray(hull.faces, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def simplify_for_decomposition(solid: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Quadric-decimate to about ``faces`` faces; keep the original if that breaks closure."""
    if faces <= 0 or len(solid.faces) <= faces:
        return solid
    simplified = solid.simplify_quadric_decimation(face_count=faces)
    simplified = trimesh.Trimesh(simplified.vertices, simplified.faces, process=True)
    return simplified if len(simplified.faces) >= 4 else solid


def _as_hulls(parts: list) -> list[trimesh.Trimesh]:
    hulls = []
    for vertices, faces in parts:
        hull = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=True)
        if len(hull.vertices) < 4:
            continue
        try:
            hull = hull.convex_hull  # exact hull, outward winding, no stray interior vertices
        except Exception:  # noqa: BLE001 - qhull fails on coplanar slivers; those are dropped
            continue
        if hull.volume > _MIN_HULL_VOLUME:
            hulls.append(hull)
    return hulls


def split_parts(solid: trimesh.Trimesh) -> list[trimesh.Trimesh]:
    """Connected components of a closed mesh (a table's top and legs, a teddy made of blobs)."""
    if solid.body_count <= 1:
        return [solid]
    parts = [p for p in solid.split(only_watertight=False) if len(p.faces) >= 4]
    return parts or [solid]


def is_convex(part: trimesh.Trimesh, tolerance: float) -> bool:
    """A closed part whose volume is within ``tolerance`` of its convex hull's."""
    try:
        hull_volume = part.convex_hull.volume
    except Exception:  # noqa: BLE001 - qhull fails on flat parts; CoACD handles those
        return False
    return bool(is_closed_volume(part) and hull_volume > 0 and part.volume >= (1.0 - tolerance) * hull_volume)


def _run_coacd(work: trimesh.Trimesh, config: CollisionConfig) -> list[trimesh.Trimesh]:
    import coacd

    kwargs = config.coacd_kwargs()
    if kwargs["preprocess_mode"] == "auto" and is_closed_volume(work):
        kwargs["preprocess_mode"] = "off"  # already a closed 2-manifold: CoACD's remesh is wasted work
    coacd.set_log_level("error")
    mesh = coacd.Mesh(np.asarray(work.vertices, dtype=np.float64), np.asarray(work.faces, dtype=np.int64))
    return _as_hulls(coacd.run_coacd(mesh, **kwargs))


def decompose(solid: trimesh.Trimesh, config: CollisionConfig, cache_dir: Path | None = None) -> tuple[list[trimesh.Trimesh], bool]:
    """Convex hulls whose union approximates the watertight ``solid``; (hulls, from_cache).

    Each connected part is handled alone: a convex part is its own hull, the others go to
    CoACD. Falls back to the mesh's convex hull if nothing usable comes out.
    """
    key = cache_key(solid, config)
    cache_path = Path(cache_dir) / "coacd" / key[:2] / f"{key}.npz" if cache_dir else None
    if cache_path is not None:
        cached = _load_cached(cache_path)
        if cached:
            return cached, True

    hulls = []
    for part in split_parts(solid) if config.split_parts else [solid]:
        if config.split_parts and is_convex(part, config.convex_tolerance):
            hulls.append(part.convex_hull)  # already convex: its hull is exact, no search needed
            continue
        # each part gets its share of the face budget
        budget = max(200, int(config.decimate_faces * len(part.faces) / len(solid.faces))) if config.decimate_faces else 0
        hulls.extend(_run_coacd(simplify_for_decomposition(part, budget), config))
    if not hulls:
        log.warning("CoACD returned no usable hull; using the mesh's convex hull")
        hulls = [solid.convex_hull]
    if cache_path is not None:
        _store_cached(cache_path, hulls)
    return hulls, False


def to_manifold(mesh: trimesh.Trimesh):
    """A manifold3d solid of a closed trimesh, or None if manifold3d rejects it."""
    import manifold3d

    solid = manifold3d.Manifold(
        manifold3d.Mesh(
            vert_properties=np.asarray(mesh.vertices, dtype=np.float32),
            tri_verts=np.asarray(mesh.faces, dtype=np.uint32),
        )
    )
    return solid if solid.status() == manifold3d.Error.NoError else None


def winding_numbers(mesh: trimesh.Trimesh, points: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Generalised winding number of ``mesh`` at ``points`` (Jacobson et al. 2013): about 1
    inside, 0 outside, robust to small holes. O(points x faces), chunked to bound memory."""
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk, None, None, :]
        a, b, c = (tri[None, :, k, :] - p[:, :, 0, :] for k in range(3))
        la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
        det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la + np.einsum("pfi,pfi->pf", c, a) * lb
        out[start : start + chunk] = np.arctan2(det, den).sum(axis=1) / (2 * np.pi)
    return out


def hull_union_iou(solid: trimesh.Trimesh, hulls: list[trimesh.Trimesh], samples: int = 5_000, seed: int = 0) -> float:
    """Volume IoU of the union of convex hulls against the watertight mesh.

    Exact with manifold3d booleans; if manifold3d rejects the mesh, a seeded Monte Carlo
    estimate (winding number for the mesh, half-space tests for the hulls)."""
    import manifold3d

    mesh_solid = to_manifold(solid)
    if mesh_solid is not None:
        # a mesh of overlapping closed parts (a table's legs pushed into its top) is valid
        # but counts the overlap twice in volume(); the union of its parts resolves that
        mesh_solid = manifold3d.Manifold.batch_boolean(mesh_solid.decompose(), manifold3d.OpType.Add)
        union = manifold3d.Manifold.batch_boolean(
            [manifold3d.Manifold.hull_points(np.asarray(h.vertices, dtype=np.float32)) for h in hulls],
            manifold3d.OpType.Add,
        )
        # both from booleans of the same two solids, so inter <= union holds (summing
        # separately computed volumes gave IoU > 1 where hulls touch face to face)
        inter = (mesh_solid ^ union).volume()
        either = (mesh_solid + union).volume()
        return float(inter / either) if either > 0 else 0.0
    lo = np.minimum(solid.bounds[0], np.min([h.bounds[0] for h in hulls], axis=0))
    hi = np.maximum(solid.bounds[1], np.max([h.bounds[1] for h in hulls], axis=0))
    points = np.random.default_rng(seed).uniform(lo, hi, size=(samples, 3))
    in_mesh = winding_numbers(solid, points) > 0.5
    in_hulls = np.zeros(samples, dtype=bool)
    for hull in hulls:
        normals = hull.face_normals
        offsets = np.einsum("ij,ij->i", normals, hull.triangles[:, 0])
        in_hulls |= np.all(points @ normals.T - offsets <= 1e-9, axis=1)
    union_count = np.count_nonzero(in_mesh | in_hulls)
    return float(np.count_nonzero(in_mesh & in_hulls) / union_count) if union_count else 0.0
