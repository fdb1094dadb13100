"""Exact mesh rendering by ray casting (Embree through ``embreex``; trimesh's rtree intersector
as a slow fallback).

One ray per pixel centre; the first hit gives the face id, the depth, the barycentric coordinates
(colour from vertex colours / face colours / texture, interpolated normals) and the one-hot weights.
Nothing is anti-aliased: each pixel belongs to exactly one face, which is what per-face labelling
of 2D segmentations needs.

Timing: ``python benchmarks/bench_render.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import trimesh
from numpy.typing import ArrayLike

from .cameras import Camera
from .result import RenderResult
from .surface import SurfaceAlbedo, as_mesh

__all__ = ["MeshRenderer", "embree_available", "render_mesh", "render_views"]

NormalMode = Literal["face", "vertex"]


def embree_available() -> bool:
    """True when ``embreex`` imports (fast path)."""
    try:
        import embreex.rtcore_scene  # noqa: F401
        from embreex.mesh_construction import TriangleMesh  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


class _EmbreeCaster:
    """First-hit ray caster on an embreex scene. Vertices are centred and scaled to unit size
    before conversion to float32 (Embree's precision), and hits are mapped back."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        v = np.asarray(mesh.vertices, dtype=np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        self.offset = 0.5 * (lo + hi)
        ext = float(np.max(hi - lo))
        self.scale = 1.0 / ext if ext > 0 else 1.0
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene=self.scene,
            vertices=((v - self.offset) * self.scale).astype(np.float32),
            indices=np.ascontiguousarray(mesh.faces, dtype=np.int32),
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray):
        """Returns (face id (n,) int64, -1 on miss; t (n,) float64 world distance; bary (n, 3))."""
        o = ((origins - self.offset) * self.scale).astype(np.float32)
        d = directions.astype(np.float32)
        out = self.scene.run(o, d, output=1)
        fid = out["primID"].astype(np.int64)
        t = out["tfar"].astype(np.float64) / self.scale
        u = out["u"].astype(np.float64)
        w = out["v"].astype(np.float64)
        bary = np.stack([1.0 - u - w, u, w], axis=1)
        return fid, t, bary


class _TrimeshCaster:
    """Fallback: trimesh's pure-Python/rtree intersector (much slower)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        from trimesh.ray.ray_triangle import RayMeshIntersector

        self.mesh = mesh
        self.intersector = RayMeshIntersector(mesh)

    def cast(self, origins: np.ndarray, directions: np.ndarray):
        n = len(origins)
        fid = np.full(n, -1, dtype=np.int64)
        t = np.full(n, np.inf)
        bary = np.zeros((n, 3))
        tri, ray, loc = self.intersector.intersects_id(
            origins, directions, multiple_hits=True, return_locations=True
        )
        if len(tri):
            dist = np.einsum("ij,ij->i", loc - origins[ray], directions[ray])
            keep = dist >= 0
            tri, ray, loc, dist = tri[keep], ray[keep], loc[keep], dist[keep]
            order = np.lexsort((dist, ray))
            tri, ray, loc, dist = tri[order], ray[order], loc[order], dist[order]
            first = np.ones(len(ray), dtype=bool)
            first[1:] = ray[1:] != ray[:-1]
            tri, ray, loc, dist = tri[first], ray[first], loc[first], dist[first]
            fid[ray] = tri
            t[ray] = dist
            bary[ray] = trimesh.triangles.points_to_barycentric(self.mesh.triangles[tri], loc)
        return fid, t, bary


class MeshRenderer:
    """Renders one mesh from many cameras; the acceleration structure (BVH) and colour lookup are
    built once here.

    Args:
        mesh: a Trimesh (or a Scene, concatenated; see :func:`~.surface.as_mesh`).
        backend: ``"auto"`` (Embree if ``embreex`` imports, else trimesh with a warning),
            ``"embree"`` or ``"trimesh"``.
    """

    def __init__(self, mesh: trimesh.Trimesh | trimesh.Scene, backend: str = "auto") -> None:
        self.mesh = as_mesh(mesh)
        if len(self.mesh.faces) == 0:
            raise ValueError("mesh has no faces")
        if backend == "auto":
            if embree_available():
                backend = "embree"
            else:
                warnings.warn(
                    "embreex is not installed: falling back to trimesh's much slower ray caster "
                    "(pip install embreex)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                backend = "trimesh"
        if backend == "embree":
            self._caster = _EmbreeCaster(self.mesh)
        elif backend == "trimesh":
            self._caster = _TrimeshCaster(self.mesh)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.n_faces = len(self.mesh.faces)
        self._faces = np.asarray(self.mesh.faces, dtype=np.int64)
        self._face_normals = np.asarray(self.mesh.face_normals, dtype=np.float64)
        self._vertex_normals: np.ndarray | None = None
        self._albedo = SurfaceAlbedo(self.mesh)

    def render(
        self,
        camera: Camera,
        *,
        shade: bool = False,
        normals: NormalMode = "face",
        background: ArrayLike = (1.0, 1.0, 1.0),
        light_dir: ArrayLike | None = None,
        ambient: float = 0.3,
    ) -> RenderResult:
        """Render one view.

        Args:
            camera: the camera.
            shade: False (default): raw albedo, what 2D segmentation wants. True: Lambert shading
                ``albedo * (ambient + (1 - ambient) * max(0, n . l))``.
            normals: ``"face"`` (flat, exact) or ``"vertex"`` (barycentric interpolation of
                ``mesh.vertex_normals``); either is flipped to face the camera.
            background: RGB in [0, 1] for pixels that hit nothing.
            light_dir: world direction TOWARDS the light for shading; default a headlight (towards
                the camera, per pixel).
            ambient: ambient term of the shading.

        Returns:
            :class:`RenderResult`; ``weights`` is the (H*W, n_faces) one-hot of the hit face.
        """
        h, w = camera.height, camera.width
        n_pix = h * w
        origins, directions = camera.rays()
        fid, t, bary = self._caster.cast(origins, directions)
        hit = fid >= 0
        idx = np.flatnonzero(hit)
        f = fid[idx]
        b = bary[idx]
        d = directions[idx]

        depth = np.full(n_pix, np.inf, dtype=np.float32)
        depth[idx] = (t[idx] * (d @ camera.forward)).astype(np.float32)

        if normals == "face":
            nrm = self._face_normals[f]
        elif normals == "vertex":
            if self._vertex_normals is None:
                self._vertex_normals = np.asarray(self.mesh.vertex_normals, dtype=np.float64)
            nrm = np.einsum("mk,mkc->mc", b, self._vertex_normals[self._faces[f]])
        else:
            raise ValueError(f"normals must be 'face' or 'vertex', got {normals!r}")
        nlen = np.linalg.norm(nrm, axis=1, keepdims=True)
        bad = nlen[:, 0] < 1e-12  # degenerate faces: face the viewer
        nrm = np.where(bad[:, None], -d, nrm / np.where(nlen > 0, nlen, 1.0))
        flip = np.einsum("ij,ij->i", nrm, d) > 0
        nrm[flip] *= -1.0

        col = self._albedo(f, b)
        if shade:
            light = -d if light_dir is None else np.broadcast_to(
                np.asarray(light_dir, dtype=np.float64) / np.linalg.norm(light_dir), d.shape
            )
            lam = np.clip(np.einsum("ij,ij->i", nrm, light), 0.0, 1.0)
            col = col * (ambient + (1.0 - ambient) * lam)[:, None].astype(np.float32)

        color = np.empty((n_pix, 3), dtype=np.float32)
        color[:] = np.asarray(background, dtype=np.float32).reshape(3)
        color[idx] = col
        normal = np.zeros((n_pix, 3), dtype=np.float32)
        normal[idx] = nrm
        primitive = np.where(hit, fid, -1).astype(np.int64)
        alpha = hit.astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(hit)]).astype(np.int64)
        weights = sp.csr_matrix(
            (np.ones(len(idx), dtype=np.float32), f.astype(np.int64), indptr), shape=(n_pix, self.n_faces)
        )
        return RenderResult(
            color=color.reshape(h, w, 3),
            depth=depth.reshape(h, w),
            normal=normal.reshape(h, w, 3),
            primitive=primitive.reshape(h, w),
            weights=weights,
            alpha=alpha.reshape(h, w),
            camera=camera,
        )

    def render_views(self, cameras: Iterable[Camera], **kwargs) -> list[RenderResult]:
        """:meth:`render` for each camera (same keyword arguments)."""
        return [self.render(c, **kwargs) for c in cameras]


def render_mesh(mesh: trimesh.Trimesh | trimesh.Scene, camera: Camera, **kwargs) -> RenderResult:
    """Render one view of ``mesh`` (see :meth:`MeshRenderer.render` for the keyword arguments).
    For several views use :func:`render_views`, which builds the BVH once."""
    return MeshRenderer(mesh, backend=kwargs.pop("backend", "auto")).render(camera, **kwargs)


def render_views(
    mesh: trimesh.Trimesh | trimesh.Scene, cameras: Sequence[Camera], **kwargs
) -> list[RenderResult]:
    """Render ``mesh`` from every camera (BVH built once); keyword arguments as
    :meth:`MeshRenderer.render`, plus ``backend``."""
    renderer = MeshRenderer(mesh, backend=kwargs.pop("backend", "auto"))
    return renderer.render_views(cameras, **kwargs)
