"""Timings of the renderers on this machine: ``python benchmarks/bench_render.py [--views 40]``.

Mesh: a ~200k-face sphere with vertex colours, the 40 A.1 viewpoints at 256x256 (Embree).
Gaussians: 200k discs sampled from a sphere, one 256x256 view, then all views.
gsplat (``--gsplat``, needs CUDA and gsplat): the same discs through gsplat's CUDA rasteriser against the
CPU reference on the same views, as a speed ratio and as the agreement of the two images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trimesh

from hiscene_sim.render import (
    GaussianRenderer,
    MeshRenderer,
    gaussians_from_mesh,
    render_gaussians_gsplat,
    viewpoints,
)


def bench_mesh(n_faces: int = 200_000, size: int = 256, n_views: int = 40) -> float:
    """Prints and returns the seconds to render ``n_views`` views (BVH build excluded)."""
    count = round(np.sqrt(n_faces / 4.0))
    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[count, count])
    mesh.visual.vertex_colors = (np.abs(mesh.vertices) * 255).astype(np.uint8)
    cams = viewpoints("corner", bounds=mesh.bounds, width=size, height=size)[:n_views]
    t0 = time.perf_counter()
    renderer = MeshRenderer(mesh)
    t1 = time.perf_counter()
    results = renderer.render_views(cams)
    t2 = time.perf_counter()
    print(
        f"mesh ({renderer.backend}): {len(mesh.faces)} faces, {len(cams)} views at {size}x{size}: "
        f"BVH {t1 - t0:.2f} s, render {t2 - t1:.2f} s ({(t2 - t1) / len(cams) * 1e3:.0f} ms/view), "
        f"coverage {np.mean([r.alpha.mean() for r in results]):.2f}"
    )
    return t2 - t1


def bench_gaussians(n: int = 200_000, size: int = 256, n_views: int = 1) -> float:
    """Prints and returns the seconds per view."""
    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[64, 64])
    mesh.visual.vertex_colors = (np.abs(mesh.vertices) * 255).astype(np.uint8)
    t0 = time.perf_counter()
    g = gaussians_from_mesh(mesh, n, seed=0)
    t1 = time.perf_counter()
    renderer = GaussianRenderer(g)
    cams = viewpoints("corner", bounds=mesh.bounds, width=size, height=size)
    cams = cams[12:13] if n_views == 1 else cams[:n_views]
    t2 = time.perf_counter()
    results = renderer.render_views(cams)
    t3 = time.perf_counter()
    nnz = int(np.mean([r.weights.nnz for r in results]))
    print(
        f"gaussians: {n} sampled in {t1 - t0:.2f} s; {len(cams)} view(s) at {size}x{size}: "
        f"{t3 - t2:.2f} s ({(t3 - t2) / len(cams):.2f} s/view, set-up included), "
        f"{nnz} pixel-Gaussian weights/view"
    )
    return (t3 - t2) / len(cams)


def bench_gsplat(n: int = 200_000, size: int = 256, n_views: int = 40) -> float:
    """gsplat (CUDA) against the CPU reference on the same ``n_views`` views: prints the seconds of
    each, their ratio, and how far the images agree (silhouette IoU, mean |colour| and |alpha|
    differences, median |depth| difference where both cover a pixel). Returns the speed-up."""
    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[64, 64])
    mesh.visual.vertex_colors = (np.abs(mesh.vertices) * 255).astype(np.uint8)
    g = gaussians_from_mesh(mesh, n, seed=0)
    cams = viewpoints("corner", bounds=mesh.bounds, width=size, height=size)[:n_views]
    render_gaussians_gsplat(g, cams[0])  # warm-up: CUDA context, kernels
    t0 = time.perf_counter()
    gpu = [render_gaussians_gsplat(g, cam) for cam in cams]
    t1 = time.perf_counter()
    cpu = GaussianRenderer(g).render_views(cams)
    t2 = time.perf_counter()
    ious, dcol, dalpha, ddepth = [], [], [], []
    for a, b in zip(gpu, cpu, strict=True):
        ma, mb = a.mask(), b.mask()
        ious.append((ma & mb).sum() / max((ma | mb).sum(), 1))
        dcol.append(np.mean(np.abs(a.color - b.color)))
        dalpha.append(np.mean(np.abs(a.alpha - b.alpha)))
        both = ma & mb
        ddepth.append(np.median(np.abs(a.depth[both] - b.depth[both])) if both.any() else 0.0)
    speedup = (t2 - t1) / max(t1 - t0, 1e-9)
    print(
        f"gsplat vs CPU reference: {n} Gaussians, {len(cams)} views at {size}x{size}: "
        f"gsplat {t1 - t0:.2f} s, CPU {t2 - t1:.2f} s, ratio {speedup:.1f}x; "
        f"IoU min {min(ious):.3f} mean {np.mean(ious):.3f}, |colour| {max(dcol):.4f}, "
        f"|alpha| {max(dalpha):.4f}, |depth| median {max(ddepth):.4f} (worst view)"
    )
    return speedup


def main() -> None:  # pragma: no cover - manual
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--views", type=int, default=1, help="Gaussian views to time (1..40)")
    ap.add_argument("--gsplat", action="store_true", help="only gsplat (CUDA) against the CPU reference")
    args = ap.parse_args()
    if args.gsplat:
        bench_gsplat()
        return
    bench_mesh()
    bench_gaussians(n_views=args.views)


if __name__ == "__main__":  # pragma: no cover
    main()
