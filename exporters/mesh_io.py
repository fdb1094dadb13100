"""Reading object meshes with clear errors, and writing OBJ files with their texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from exporters.watertight import MeshError


def load_mesh(path: Path, who: str) -> trimesh.Trimesh:
    """One triangle mesh from any file trimesh reads (GLB/GLTF/OBJ/PLY/STL/OFF); a file with
    several geometries is flattened into one mesh in the file's frame."""
    if not path.is_file():
        raise MeshError(f"{who}: mesh file {path} not found")
    if path.stat().st_size == 0:
        raise MeshError(f"{who}: mesh file {path} is empty (0 bytes)")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear error
        raise MeshError(f"{who}: cannot read mesh file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MeshError(f"{who}: mesh file {path} holds no triangles")
    return loaded


def texture_image(mesh: trimesh.Trimesh) -> Image.Image | None:
    """The base-colour texture of a textured mesh, or None."""
    visual = mesh.visual
    if getattr(visual, "kind", None) != "texture" or getattr(visual, "uv", None) is None:
        return None
    material = visual.material
    image = getattr(material, "image", None)
    if image is None:
        image = getattr(material, "baseColorTexture", None)
    return image


def mean_color(mesh: trimesh.Trimesh) -> tuple[float, float, float, float]:
    """Average RGBA in [0, 1]: for simulators that colour a body with one material."""
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        rgba = np.asarray(visual.vertex_colors, dtype=np.float64).mean(axis=0) / 255.0
    elif kind == "face":
        rgba = np.asarray(visual.face_colors, dtype=np.float64).mean(axis=0) / 255.0
    elif kind == "texture":
        image = texture_image(mesh)
        if image is not None:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float64).reshape(-1, 4).mean(axis=0) / 255.0
        else:
            rgba = np.asarray(visual.material.main_color, dtype=np.float64) / 255.0
    else:
        rgba = np.array([0.75, 0.75, 0.75, 1.0])
    rgba[3] = 1.0
    return tuple(float(v) for v in rgba)


def write_obj(mesh: trimesh.Trimesh, path: Path, texture_name: str = "texture.png") -> list[Path]:
    """Write ``mesh`` as OBJ; a textured mesh also gets ``<stem>.mtl`` and ``texture_name``.
    Vertex colours go on the ``v`` lines. Returns the files written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = texture_image(mesh)
    written = [path]
    if image is not None:
        out = mesh.copy()
        out.visual = trimesh.visual.TextureVisuals(
            uv=mesh.visual.uv, material=trimesh.visual.material.SimpleMaterial(image=image, name=Path(texture_name).stem)
        )
        text, files = trimesh.exchange.obj.export_obj(
            out, include_texture=True, return_texture=True, mtl_name=f"{path.stem}.mtl", include_normals=True
        )
        for name, data in files.items():
            target = path.parent / name
            target.write_bytes(data)
            written.append(target)
    else:
        text = trimesh.exchange.obj.export_obj(mesh, include_texture=False, include_color=True, include_normals=True)
    path.write_text(text)
    return written


def write_hull_obj(hull: trimesh.Trimesh, path: Path) -> None:
    """A convex hull as a plain OBJ (geometry only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trimesh.exchange.obj.export_obj(hull, include_texture=False, include_color=False, include_normals=False))
