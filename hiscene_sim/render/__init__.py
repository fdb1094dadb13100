"""Rendering layer for the 3D-segmentation stage (paper 3.3 / A.1).

* :mod:`.cameras`: :class:`Camera` (OpenCV frame: +x right, +y down, +z forward), :func:`look_at`,
  :func:`normalize_scene`, :func:`viewpoints` (the 40 predefined views of paper A.1).
* :mod:`.mesh`: exact mesh rendering by Embree ray casting (:func:`render_mesh`,
  :func:`render_views`, :class:`MeshRenderer`).
* :mod:`.gaussians`: the :class:`Gaussians` model, 3DGS PLY I/O, :func:`gaussians_from_mesh`.
* :mod:`.splat`: the splatting renderers (:func:`render_gaussians`, :func:`render_gaussian_views`,
  :class:`GaussianRenderer` on CPU; :func:`render_gaussians_gsplat` on CUDA).
* ``python benchmarks/bench_render.py``: timings of both renderers on this machine.
* :mod:`.result`: :class:`RenderResult`, what every renderer returns (colour, depth, normal,
  primitive ids and sparse pixel -> primitive weights).
"""

from .cameras import Camera, look_at, normalize_scene, viewpoint_angles, viewpoints
from .gaussians import Gaussians, gaussians_from_mesh, load_3dgs_ply, save_3dgs_ply
from .mesh import MeshRenderer, embree_available, render_mesh, render_views
from .result import RenderResult
from .splat import GaussianRenderer, gsplat_available, render_gaussian_views, render_gaussians, render_gaussians_gsplat
from .surface import SurfaceAlbedo, SurfaceSamples, sample_surface

__all__ = [
    "Camera",
    "GaussianRenderer",
    "Gaussians",
    "MeshRenderer",
    "RenderResult",
    "SurfaceAlbedo",
    "SurfaceSamples",
    "embree_available",
    "gaussians_from_mesh",
    "gsplat_available",
    "load_3dgs_ply",
    "look_at",
    "normalize_scene",
    "render_gaussian_views",
    "render_gaussians",
    "render_gaussians_gsplat",
    "render_mesh",
    "render_views",
    "sample_surface",
    "save_3dgs_ply",
    "viewpoint_angles",
    "viewpoints",
]
