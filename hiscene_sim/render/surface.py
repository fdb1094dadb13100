"""Surface colour (albedo) of a trimesh mesh at barycentric points, and area-uniform sampling.

Shared by the mesh renderer (colour per hit pixel) and :func:`gaussians_from_mesh` (colour per
sampled Gaussian), so both see the same colours.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import trimesh

__all__ = ["DEFAULT_ALBEDO", "SurfaceAlbedo", "SurfaceSamples", "as_mesh", "sample_surface"]

#: Colour of a mesh without colours or material (linear RGB in [0, 1]).
DEFAULT_ALBEDO = (0.7, 0.7, 0.7)


def as_mesh(obj: trimesh.Trimesh | trimesh.Scene) -> trimesh.Trimesh:
    """A single Trimesh: a Trimesh as is, a Scene concatenated into one mesh in world coordinates
    (face ids then index the concatenated faces, in scene-graph order)."""
    if isinstance(obj, trimesh.Trimesh):
        return obj
    if isinstance(obj, trimesh.Scene):
        geom = obj.to_geometry()
        if not isinstance(geom, trimesh.Trimesh):
            raise TypeError(f"scene does not concatenate to a Trimesh (got {type(geom).__name__})")
        return geom
    raise TypeError(f"expected trimesh.Trimesh or trimesh.Scene, got {type(obj).__name__}")


def _rgb01(colors: np.ndarray) -> np.ndarray:
    """uint8 or float RGB(A) (..., 3|4) -> float32 RGB in [0, 1]."""
    c = np.asarray(colors)
    if c.dtype.kind in "ui":
        return (c[..., :3].astype(np.float32) / 255.0).astype(np.float32)
    return np.clip(c[..., :3].astype(np.float32), 0.0, 1.0)


def _image_rgb(img) -> np.ndarray | None:
    if img is None:
        return None
    arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return _rgb01(arr)


class SurfaceAlbedo:
    """Colour lookup for one mesh, prepared once.

    Handles, by ``mesh.visual``: vertex colours (barycentric interpolation), face colours, textures
    (per-vertex UV interpolated, bilinear sample with wrap-around, v = 0 at the image bottom as in
    trimesh; times a PBR ``baseColorFactor``), a material without texture (its main colour), and no
    visual at all (:data:`DEFAULT_ALBEDO`). Alpha is ignored.
    """

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.kind = "constant"
        self.constant = np.asarray(DEFAULT_ALBEDO, dtype=np.float32)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        visual = mesh.visual
        kind = getattr(visual, "kind", None)
        if kind == "vertex":
            self.kind = "vertex"
            self.vertex_colors = _rgb01(visual.vertex_colors)
        elif kind == "face":
            self.kind = "face"
            self.face_colors = _rgb01(visual.face_colors)
        elif kind == "texture":
            material = getattr(visual, "material", None)
            image = None
            factor = np.ones(3, dtype=np.float32)
            if material is not None:
                if hasattr(material, "baseColorTexture"):  # PBRMaterial
                    image = _image_rgb(material.baseColorTexture)
                    if material.baseColorFactor is not None:
                        factor = _rgb01(np.asarray(material.baseColorFactor))
                else:  # SimpleMaterial
                    image = _image_rgb(getattr(material, "image", None))
            uv = getattr(visual, "uv", None)
            if image is not None and uv is not None and len(uv) == len(mesh.vertices):
                self.kind = "texture"
                self.uv = np.asarray(uv, dtype=np.float64)
                self.image = image
                self.factor = factor
            elif material is not None and hasattr(material, "main_color"):
                self.constant = _rgb01(np.asarray(material.main_color))
                if image is not None:
                    warnings.warn("textured mesh without per-vertex UVs: using the material's main colour")

    def __call__(self, face_ids: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        """Albedo at surface points.

        Args:
            face_ids: (M,) int face indices.
            barycentric: (M, 3) weights of the face's three vertices (sum 1).

        Returns:
            (M, 3) float32 RGB in [0, 1].
        """
        m = len(face_ids)
        if self.kind == "constant":
            return np.broadcast_to(self.constant, (m, 3)).astype(np.float32)
        if self.kind == "face":
            return self.face_colors[face_ids]
        tri = self.faces[face_ids]
        bary = np.asarray(barycentric, dtype=np.float32)
        if self.kind == "vertex":
            c = self.vertex_colors
            return np.einsum("mk,mkc->mc", bary, c[tri]).astype(np.float32)
        uv = np.einsum("mk,mkc->mc", bary.astype(np.float64), self.uv[tri])
        return (self._sample(uv) * self.factor).astype(np.float32)

    def _sample(self, uv: np.ndarray) -> np.ndarray:
        """Bilinear, wrap-around sampling of the texture at (M, 2) UVs."""
        img = self.image
        h, w = img.shape[:2]
        x = uv[:, 0] * w - 0.5
        y = (1.0 - uv[:, 1]) * h - 0.5
        x0 = np.floor(x)
        y0 = np.floor(y)
        fx = (x - x0).astype(np.float32)[:, None]
        fy = (y - y0).astype(np.float32)[:, None]
        x0 = x0.astype(np.int64)
        y0 = y0.astype(np.int64)
        x1 = np.mod(x0 + 1, w)
        y1 = np.mod(y0 + 1, h)
        x0 = np.mod(x0, w)
        y0 = np.mod(y0, h)
        top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
        bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
        return top * (1 - fy) + bottom * fy


@dataclass
class SurfaceSamples:
    """Points sampled uniformly by area on a mesh surface.

    Attributes:
        points: (n, 3) float64 world positions.
        face_ids: (n,) int64 face each point lies on.
        barycentric: (n, 3) float64 weights of that face's vertices.
        normals: (n, 3) float64 unit face normals.
        colors: (n, 3) float32 albedo in [0, 1] (see :class:`SurfaceAlbedo`).
        area: total surface area (world units squared).
    """

    points: np.ndarray
    face_ids: np.ndarray
    barycentric: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    area: float


def sample_surface(mesh: trimesh.Trimesh | trimesh.Scene, n: int, seed: int | None = 0) -> SurfaceSamples:
    """Sample ``n`` points uniformly by area (deterministic for a given ``seed``)."""
    mesh = as_mesh(mesh)
    if n < 1:
        raise ValueError("n must be >= 1")
    areas = np.asarray(mesh.area_faces, dtype=np.float64)
    total = float(areas.sum())
    if not total > 0:
        raise ValueError("mesh has no surface area")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas)
    face_ids = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face_ids = np.minimum(face_ids, len(areas) - 1).astype(np.int64)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    tri = np.asarray(mesh.triangles, dtype=np.float64)[face_ids]
    points = np.einsum("nk,nkc->nc", bary, tri)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)[face_ids]
    colors = SurfaceAlbedo(mesh)(face_ids, bary)
    return SurfaceSamples(points, face_ids, bary, normals, colors, total)
