"""Meshes for the viewer: load, decimate to a face budget, keep colours, pack as base64.

Decimation is trimesh's ``simplify_quadric_decimation`` (fast-simplification, a dependency);
where that is unavailable or fails, vertex clustering on a grid (written here: a dozen lines
of NumPy, no library offers it for a bare vertex/face array without extra dependencies).
Colours lost by decimation are carried over from the nearest original vertex (scipy cKDTree).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

log = logging.getLogger(__name__)

_DEFAULT_GREY = np.array([102, 102, 102])  # trimesh's colour for a mesh that has none


@dataclass(frozen=True)
class ViewMesh:
    """A triangle mesh in an object's own frame, as the page stores it."""

    positions: np.ndarray  # (n, 3) float32
    faces: np.ndarray  # (m, 3) int
    colors: np.ndarray | None  # (n, 3) uint8, or None: the mesh has no colours of its own
    source_faces: int  # before decimation

    @property
    def n_faces(self) -> int:
        return int(len(self.faces))

    def packed(self) -> dict:
        """base64 little-endian typed arrays: float32 positions, uint16 / uint32 indices, uint8 colours."""
        index_type = "<u2" if len(self.positions) < 65536 else "<u4"
        out = {
            "positions": _b64(self.positions.astype("<f4")),
            "indices": _b64(self.faces.astype(index_type)),
            "index_bytes": 2 if index_type == "<u2" else 4,
        }
        if self.colors is not None:
            out["colors"] = _b64(self.colors.astype(np.uint8))
        return out


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def load_mesh(path: Path) -> trimesh.Trimesh:
    """One mesh from a file (a multi-part file is concatenated); ValueError names the file."""
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as exc:  # trimesh raises many types for a bad file
        raise ValueError(f"{path}: cannot read the mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path}: holds no triangles")
    return mesh


def vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(n, 3) uint8 colours of the mesh's vertices (a texture sampled at the UVs), or None
    when the mesh has no colour of its own."""
    visual = mesh.visual
    try:
        if visual.kind == "texture":
            visual = visual.to_color()
        if visual.kind not in ("vertex", "face"):
            return None
        colors = np.asarray(visual.vertex_colors)[:, :3]
    except Exception as exc:  # a broken material: show the mesh without its colours
        log.debug("no vertex colours: %s", exc)
        return None
    if len(colors) != len(mesh.vertices) or np.all(colors == _DEFAULT_GREY):
        return None
    return colors.astype(np.uint8)


def cluster_vertices(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: snap vertices to a grid, merge each cell's vertices into their mean,
    drop collapsed and repeated faces; the finest grid whose result fits ``max_faces``."""
    lo = vertices.min(axis=0)
    extent = float(np.max(vertices.max(axis=0) - lo)) or 1.0
    result = (vertices, faces)
    for cells in (512, 256, 128, 64, 32, 16, 8, 4):
        keys = np.floor((vertices - lo) / (extent / cells)).astype(np.int64)
        _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        f = cluster.reshape(-1)[faces]
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
        _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
        f = f[np.sort(first)]
        sums = np.zeros((len(counts), 3))
        np.add.at(sums, cluster.reshape(-1), vertices)
        result = (sums / counts[:, None], f)
        if len(f) <= max_faces:
            break
    return result


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) with at most about ``max_faces`` faces."""
    if len(mesh.faces) <= max_faces:
        return np.asarray(mesh.vertices), np.asarray(mesh.faces)
    try:
        simple = mesh.simplify_quadric_decimation(face_count=max_faces)
        if 0 < len(simple.faces) <= max_faces * 1.05:
            return np.asarray(simple.vertices), np.asarray(simple.faces)
        log.debug("quadric decimation gave %d faces for %d; clustering instead", len(simple.faces), max_faces)
    except Exception as exc:  # fast-simplification missing or failing on this mesh
        log.debug("quadric decimation failed (%s); clustering instead", exc)
    return cluster_vertices(np.asarray(mesh.vertices, dtype=float), np.asarray(mesh.faces), max_faces)


def view_mesh(mesh: trimesh.Trimesh, max_faces: int, scale=(1.0, 1.0, 1.0)) -> ViewMesh:
    """``mesh`` (scaled by ``scale``, a negative product mirrors it) decimated to ``max_faces``."""
    source_faces = len(mesh.faces)
    colors = vertex_colors(mesh)
    vertices, faces = decimate(mesh, max_faces)
    if colors is not None and len(vertices) != len(mesh.vertices):
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(np.asarray(mesh.vertices)).query(vertices)
        colors = colors[nearest]
    scale = np.asarray(scale, dtype=float)
    vertices = np.asarray(vertices, dtype=float) * scale
    faces = np.asarray(faces, dtype=np.int64)
    if np.prod(scale) < 0:  # a mirror turns the faces inside out
        faces = faces[:, ::-1]
    return ViewMesh(vertices.astype(np.float32), faces, colors, source_faces)


def hull_mesh(paths: list[Path]) -> ViewMesh | None:
    """Every collision hull of an object as one mesh (hulls are small: no decimation)."""
    parts = [load_mesh(p) for p in paths]
    if not parts:
        return None
    offsets = np.cumsum([0] + [len(m.vertices) for m in parts[:-1]])
    vertices = np.concatenate([np.asarray(m.vertices) for m in parts]).astype(np.float32)
    faces = np.concatenate([np.asarray(m.faces) + o for m, o in zip(parts, offsets)])
    return ViewMesh(vertices, faces, None, len(faces))


def face_allowances(face_counts: list[int], total: int, per_object: int, minimum: int) -> list[int]:
    """How many faces each object may keep: the budget ``total`` shared out smallest first
    (an object needing less than its share leaves the rest to the others), each between
    ``minimum`` and ``per_object``."""
    allowance = [0] * len(face_counts)
    left = total
    order = sorted(range(len(face_counts)), key=lambda i: face_counts[i])
    for k, i in enumerate(order):
        share = max(minimum, left // max(len(order) - k, 1))
        allowance[i] = min(face_counts[i], per_object, share)
        left = max(left - allowance[i], 0)
    return allowance
