"""Gaussian splatting renderers: a vectorised CPU reference (NumPy) and gsplat on CUDA.

The CPU renderer follows 3DGS's forward pass ("classic" mode of gsplat):

1. per Gaussian: camera-frame covariance ``W Sigma W^T``; 2D covariance ``J W Sigma W^T J^T +
   eps2d I`` with J the projection's Jacobian at the centre (x/z, y/z clamped to 1.3x the half
   field of view, as 3DGS does); footprint = bounding box of the ``sigma_extent`` (3) std-dev
   ellipse, tightened where the opacity cannot reach ``alpha_min`` anyway;
2. per (pixel, Gaussian) pair in the footprint: ``alpha = min(alpha_max, opacity *
   exp(-0.5 d^T Sigma2D^-1 d))`` at the pixel centre, pairs with ``alpha < alpha_min`` skipped;
3. per pixel, front to back by the Gaussians' camera z (3DGS sorts Gaussians, not pairs):
   ``T_k = prod_{j<k} (1 - alpha_j)``, weight ``w_k = T_k alpha_k``; a pixel stops at the first
   pair with ``T_k (1 - alpha_k) < transmittance_min`` (that pair is not used).

Step 3 is vectorised: the pairs are sorted by pixel (stable radix sort, pairs being generated in
depth order) and ``log T`` is a segmented cumulative sum of ``log(1 - alpha)``. The Gaussians are
processed in depth-ordered chunks carrying each pixel's transmittance and "done" flag forward, so
Gaussians whose whole footprint is already opaque (behind the visible surface) are skipped before
their pairs are made (an O(1) summed-area-table test). There is no Python loop over pixels or
Gaussians (only over chunks of about ``max_pairs_per_chunk`` pairs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from hiscene_sim.rotations import quaternions_to_matrices

from .cameras import Camera
from .result import RenderResult

if TYPE_CHECKING:  # pragma: no cover
    from .gaussians import Gaussians

__all__ = [
    "GaussianRenderer",
    "gsplat_available",
    "render_gaussian_views",
    "render_gaussians",
    "render_gaussians_gsplat",
]


@dataclass
class _Projected:
    """Screen-space data of the Gaussians that can contribute, sorted front to back (by camera z).
    All arrays have length M."""

    index: np.ndarray  # int64 original Gaussian ids
    depth: np.ndarray  # float64 camera z of the centre
    u: np.ndarray  # float32 pixel coordinates of the centre
    v: np.ndarray
    con_a: np.ndarray  # float32 conic (inverse 2D covariance): power = -0.5(a dx^2 + c dy^2) - b dx dy
    con_b: np.ndarray
    con_c: np.ndarray
    opacity: np.ndarray  # float32
    x0: np.ndarray  # int64 footprint: first column / row, width / height (all >= 1)
    y0: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    color: np.ndarray  # (M, 3) float32
    normal: np.ndarray  # (M, 3) float32 disc normal facing the camera


@dataclass
class _Prepared:
    """View-independent per-Gaussian data, computed once per scene."""

    means: np.ndarray  # (N, 3) float64
    rs: np.ndarray  # (N, 3, 3) float64 R diag(s): world covariance = rs rs^T
    normals: np.ndarray  # (N, 3) float64 unit disc normals (smallest-scale axis)

    @classmethod
    def of(cls, g: Gaussians) -> _Prepared:
        rg = quaternions_to_matrices(g.rotations)
        rs = rg * g.scales.astype(np.float64)[:, None, :]
        normals = rg[np.arange(len(g)), :, np.argmin(g.scales, axis=1)]
        return cls(g.means.astype(np.float64), rs, normals)


def _project(g: Gaussians, prep: _Prepared, camera: Camera, near: float, eps2d: float,
             sigma_extent: float, alpha_min: float) -> _Projected:
    w, h = camera.width, camera.height
    rot = camera.rotation
    means = prep.means
    pc = np.einsum("nj,kj->nk", means, rot) + camera.translation
    z = pc[:, 2]
    keep = np.flatnonzero((z > near) & (g.opacities >= alpha_min))
    pc, z = pc[keep], z[keep]
    opac = g.opacities[keep].astype(np.float64)
    rs = prep.rs[keep]
    f = camera.focal
    cx, cy = camera.principal_point
    if camera.projection == "perspective":
        lim_x = 1.3 * (0.5 * w / f)
        lim_y = 1.3 * (0.5 * h / f)
        tx = np.clip(pc[:, 0] / z, -lim_x, lim_x)
        ty = np.clip(pc[:, 1] / z, -lim_y, lim_y)
        # rows of J W: (f/z) W_0 - (f tx / z) W_2 and (f/z) W_1 - (f ty / z) W_2
        t0 = (f / z)[:, None] * (rot[0][None, :] - tx[:, None] * rot[2][None, :])
        t1 = (f / z)[:, None] * (rot[1][None, :] - ty[:, None] * rot[2][None, :])
        u = f * pc[:, 0] / z + cx
        v = f * pc[:, 1] / z + cy
    else:
        t0 = np.broadcast_to(f * rot[0], (len(z), 3))
        t1 = np.broadcast_to(f * rot[1], (len(z), 3))
        u = f * pc[:, 0] + cx
        v = f * pc[:, 1] + cy
    m0 = np.einsum("mj,mjk->mk", t0, rs)
    m1 = np.einsum("mj,mjk->mk", t1, rs)
    a = np.einsum("mk,mk->m", m0, m0) + eps2d
    b = np.einsum("mk,mk->m", m0, m1)
    c = np.einsum("mk,mk->m", m1, m1) + eps2d
    det = a * c - b * b
    k = np.minimum(np.sqrt(2.0 * np.log(np.maximum(opac / alpha_min, 1.0))), sigma_extent)
    with np.errstate(invalid="ignore"):
        rx = k * np.sqrt(np.maximum(a, 0.0))
        ry = k * np.sqrt(np.maximum(c, 0.0))
        x0 = np.maximum(np.ceil(u - rx - 0.5), 0.0)
        x1 = np.minimum(np.floor(u + rx - 0.5), w - 1.0)
        y0 = np.maximum(np.ceil(v - ry - 0.5), 0.0)
        y1 = np.minimum(np.floor(v + ry - 0.5), h - 1.0)
        ok = (det > 0) & np.isfinite(u) & np.isfinite(v) & (x1 >= x0) & (y1 >= y0)
    sel = np.flatnonzero(ok)
    sel = sel[np.argsort(z[sel], kind="stable")]
    det = det[sel]
    nrm = prep.normals[keep[sel]]
    to_cam = camera.directions_to_camera(means[keep[sel]])
    nrm[np.einsum("ij,ij->i", nrm, to_cam) < 0] *= -1.0
    return _Projected(
        index=keep[sel],
        depth=z[sel],
        u=u[sel].astype(np.float32),
        v=v[sel].astype(np.float32),
        con_a=(c[sel] / det).astype(np.float32),
        con_b=(-b[sel] / det).astype(np.float32),
        con_c=(a[sel] / det).astype(np.float32),
        opacity=opac[sel].astype(np.float32),
        x0=x0[sel].astype(np.int64),
        y0=y0[sel].astype(np.int64),
        nx=(x1[sel] - x0[sel] + 1).astype(np.int64),
        ny=(y1[sel] - y0[sel] + 1).astype(np.int64),
        color=g.colors[keep[sel]].astype(np.float32),
        normal=nrm.astype(np.float32),
    )


def _stable_argsort_pixels(pix: np.ndarray, n_pix: int) -> np.ndarray:
    """Stable argsort of pixel indices (LSD radix sort on 16-bit digits via NumPy's stable
    sort, which is a radix sort for 16-bit integers)."""
    if n_pix <= 1 << 16:
        return np.argsort(pix.astype(np.uint16), kind="stable")
    order = np.argsort((pix & 0xFFFF).astype(np.uint16), kind="stable")
    hi = (pix[order] >> 16)
    if n_pix <= 1 << 32:
        return order[np.argsort(hi.astype(np.uint16), kind="stable")]
    return order[np.argsort(hi, kind="stable")]  # pragma: no cover - absurd image sizes


def _make_pairs(p: _Projected, ranks: np.ndarray, width: int, alpha_min: float, alpha_max: float):
    """(pixel, Gaussian) pairs of the Gaussians ``ranks`` (indices into ``p``, ascending), with
    alpha >= alpha_min, in rank order. Returns pix (int64), rank (int64), alpha (float32)."""
    cnt = p.nx[ranks] * p.ny[ranks]
    total = int(cnt.sum())
    gi = np.repeat(ranks, cnt)
    first = np.cumsum(cnt) - cnt
    local = (np.arange(total, dtype=np.int64) - np.repeat(first, cnt)).astype(np.float32)
    nx = p.nx[gi].astype(np.float32)
    ly = np.floor((local + 0.5) / nx)
    lx = local - ly * nx
    px = p.x0[gi].astype(np.float32) + lx
    py = p.y0[gi].astype(np.float32) + ly
    dx = px + np.float32(0.5) - p.u[gi]
    dy = py + np.float32(0.5) - p.v[gi]
    power = np.float32(-0.5) * (p.con_a[gi] * dx * dx + p.con_c[gi] * dy * dy) - p.con_b[gi] * dx * dy
    alpha = np.minimum(p.opacity[gi] * np.exp(np.minimum(power, 0.0)), np.float32(alpha_max))
    keep = np.flatnonzero(alpha >= alpha_min)
    pix = py[keep].astype(np.int64) * width + px[keep].astype(np.int64)
    return pix, gi[keep], alpha[keep]


class GaussianRenderer:
    """Renders one Gaussian scene from many cameras on the CPU; the view-independent per-Gaussian
    data (covariance factors, disc normals) is computed once here.

    Args:
        g: the Gaussians (world units). Keyword arguments of :meth:`render` given here become
            defaults for every view.
    """

    def __init__(self, g: Gaussians, **defaults) -> None:
        self.gaussians = g
        self._prep = _Prepared.of(g)
        self.defaults = defaults

    def render(self, camera: Camera, **kwargs) -> RenderResult:
        """One view; keyword arguments as :func:`render_gaussians`."""
        return _render(self.gaussians, self._prep, camera, **{**self.defaults, **kwargs})

    def render_views(self, cameras: Iterable[Camera], **kwargs) -> list[RenderResult]:
        """:meth:`render` for each camera."""
        return [self.render(c, **kwargs) for c in cameras]


def render_gaussians(g: Gaussians, camera: Camera, **kwargs) -> RenderResult:
    """Render Gaussians on the CPU by EWA splatting with front-to-back alpha compositing (the
    algorithm is described in this module's docstring). For many views of one scene use
    :func:`render_gaussian_views` / :class:`GaussianRenderer` (per-Gaussian set-up done once).

    Keyword arguments:
        background: RGB in [0, 1] composited behind (default white).
        near: Gaussians with camera z <= near are culled (default 0.01).
        eps2d: low-pass filter added to the 2D covariance's diagonal, pixels^2 (default 0.3).
        sigma_extent: footprint half-size in standard deviations (default 3).
        alpha_min, alpha_max, transmittance_min: 3DGS's 1/255, 0.99 and 1e-4.
        max_pairs_per_chunk: candidate pairs per depth chunk (default 2^20; bounds memory, and
            smaller chunks cull occluded Gaussians sooner).

    Returns:
        :class:`RenderResult`: ``color = sum w c + (1 - alpha) background``; ``depth`` the expected
        camera z ``sum w z / sum w`` (+inf where no weight); ``normal`` the normalised weighted sum
        of the disc normals (smallest-scale axis, facing the camera); ``primitive`` the Gaussian
        with the largest weight (front-most on ties; -1 where none); ``weights`` the (H*W, N) CSR
        matrix of ``w = T alpha``, each row in front-to-back order and summing to ``alpha``.
    """
    return _render(g, _Prepared.of(g), camera, **kwargs)


def render_gaussian_views(g: Gaussians, cameras: Sequence[Camera], **kwargs) -> list[RenderResult]:
    """:func:`render_gaussians` for every camera, with the per-Gaussian set-up done once."""
    return GaussianRenderer(g).render_views(cameras, **kwargs)


def _render(
    g: Gaussians,
    prep: _Prepared,
    camera: Camera,
    *,
    background: ArrayLike = (1.0, 1.0, 1.0),
    near: float = 0.01,
    eps2d: float = 0.3,
    sigma_extent: float = 3.0,
    alpha_min: float = 1.0 / 255.0,
    alpha_max: float = 0.99,
    transmittance_min: float = 1e-4,
    max_pairs_per_chunk: int = 1 << 20,
) -> RenderResult:
    h, w = camera.height, camera.width
    n_pix = h * w
    p = _project(g, prep, camera, near, eps2d, sigma_extent, alpha_min)
    m = len(p.index)
    log_tmin = math.log(transmittance_min)

    log_t = np.zeros(n_pix)  # log transmittance so far
    done = np.zeros(n_pix, dtype=bool)  # 3DGS's early stop reached
    acc = np.zeros(n_pix)
    rgb = np.zeros((3, n_pix))
    dsum = np.zeros(n_pix)
    nsum = np.zeros((3, n_pix))
    best = np.zeros(n_pix)
    primitive = np.full(n_pix, -1, dtype=np.int64)
    out_pix: list[np.ndarray] = []
    out_gid: list[np.ndarray] = []
    out_w: list[np.ndarray] = []

    ends = np.cumsum(p.nx * p.ny)
    start = 0
    while start < m:
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + max_pairs_per_chunk, side="right"))
        stop = min(max(stop, start + 1), m)
        ranks = np.arange(start, stop)
        start = stop
        if done.any():  # skip Gaussians whose whole footprint is already opaque
            open_ = (~done).reshape(h, w).astype(np.int32)
            sat = np.zeros((h + 1, w + 1), dtype=np.int32)
            sat[1:, 1:] = open_.cumsum(0).cumsum(1)
            x0, y0 = p.x0[ranks], p.y0[ranks]
            x1, y1 = x0 + p.nx[ranks], y0 + p.ny[ranks]
            n_open = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
            ranks = ranks[n_open > 0]
            if not len(ranks):
                continue
        pix, rank, alpha = _make_pairs(p, ranks, w, alpha_min, alpha_max)
        live = np.flatnonzero(~done[pix])
        pix, rank, alpha = pix[live], rank[live], alpha[live]
        if not len(pix):
            continue
        order = _stable_argsort_pixels(pix, n_pix)
        pix, rank, alpha = pix[order], rank[order], alpha[order]

        log1m = np.log1p(-alpha.astype(np.float64))
        csum = np.cumsum(log1m)
        is_start = np.empty(len(pix), dtype=bool)
        is_start[0] = True
        np.not_equal(pix[1:], pix[:-1], out=is_start[1:])
        starts = np.flatnonzero(is_start)
        seg_len = np.diff(np.append(starts, len(pix)))
        base = np.repeat(csum[starts] - log1m[starts] - log_t[pix[starts]], seg_len)
        incl = csum - base  # log T after each pair, including the pixel's earlier chunks
        used = incl >= log_tmin
        done[pix[~used]] = True
        idx = np.flatnonzero(used)
        if not len(idx):
            continue
        pix, rank, alpha, incl, log1m = pix[idx], rank[idx], alpha[idx], incl[idx], log1m[idx]
        wgt = np.exp(incl - log1m) * alpha

        # the used pairs are a prefix of each pixel's segment: the last one carries log T on
        last = np.empty(len(pix), dtype=bool)
        last[-1] = True
        np.not_equal(pix[1:], pix[:-1], out=last[:-1])
        log_t[pix[last]] = incl[last]

        acc += np.bincount(pix, weights=wgt, minlength=n_pix)
        for ch in range(3):
            rgb[ch] += np.bincount(pix, weights=wgt * p.color[rank, ch], minlength=n_pix)
            nsum[ch] += np.bincount(pix, weights=wgt * p.normal[rank, ch], minlength=n_pix)
        dsum += np.bincount(pix, weights=wgt * p.depth[rank], minlength=n_pix)

        # dominant Gaussian: the largest weight, the front-most on ties (earlier chunks win ties)
        seg = np.flatnonzero(np.append(True, pix[1:] != pix[:-1]))
        seg_max = np.maximum.reduceat(wgt, seg)
        seg_id = np.repeat(np.arange(len(seg)), np.diff(np.append(seg, len(pix))))
        cand = np.flatnonzero(wgt == seg_max[seg_id])
        cand = cand[np.append(True, seg_id[cand[1:]] != seg_id[cand[:-1]])]
        better = seg_max > best[pix[seg]]
        bp = pix[seg][better]
        best[bp] = seg_max[better]
        primitive[bp] = p.index[rank[cand[better]]]

        out_pix.append(pix)
        out_gid.append(p.index[rank])
        out_w.append(wgt.astype(np.float32))

    bg = np.asarray(background, dtype=np.float64).reshape(3, 1)
    color = np.clip(rgb + (1.0 - acc)[None, :] * bg, 0.0, 1.0).T
    covered = acc > 0
    depth = np.full(n_pix, np.inf)
    depth[covered] = dsum[covered] / acc[covered]
    nlen = np.linalg.norm(nsum, axis=0)
    normal = np.zeros((n_pix, 3))
    ok = nlen > 1e-12
    normal[ok] = (nsum[:, ok] / nlen[ok]).T
    if out_pix:
        rows = np.concatenate(out_pix)
        order = _stable_argsort_pixels(rows, n_pix)  # chunks are in depth order: stays front to back
        cols = np.concatenate(out_gid)[order]
        vals = np.concatenate(out_w)[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_pix))])
    else:
        cols = np.zeros(0, dtype=np.int64)
        vals = np.zeros(0, dtype=np.float32)
        indptr = np.zeros(n_pix + 1, dtype=np.int64)
    weights = sp.csr_matrix((vals, cols, indptr), shape=(n_pix, len(g)))
    return RenderResult(
        color=color.astype(np.float32).reshape(h, w, 3),
        depth=depth.astype(np.float32).reshape(h, w),
        normal=normal.astype(np.float32).reshape(h, w, 3),
        primitive=primitive.reshape(h, w),
        weights=weights,
        alpha=acc.astype(np.float32).reshape(h, w),
        camera=camera,
    )


def gsplat_available() -> bool:
    """True when CUDA is available and gsplat imports."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import gsplat  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # missing, or its CUDA extension fails to load
        return False
    return True


def render_gaussians_gsplat(
    g: Gaussians,
    camera: Camera,
    *,
    background: ArrayLike = (1.0, 1.0, 1.0),
    near: float = 0.01,
    eps2d: float = 0.3,
    device: str = "cuda",
    with_weights: bool = False,
) -> RenderResult:
    """Render with gsplat's CUDA rasteriser (``gsplat.rasterization``, "classic" mode, the same
    eps2d, near plane, pixel-centre and camera conventions as :func:`render_gaussians`;
    ``camera_model="ortho"`` for orthographic cameras).

    Colour, opacity (``alpha``), expected depth (gsplat's "ED") and normals (the camera-facing
    disc normals rendered as three extra channels, then normalised) come from gsplat. gsplat
    exposes no per-pixel Gaussian ids, so by default ``primitive`` is all -1 and ``weights`` is
    None. With ``with_weights=True`` both come from the CPU reference :func:`render_gaussians`
    (exact for that algorithm; gsplat's own blending agrees up to float32 / tile-order
    differences).

    Raises:
        RuntimeError: CUDA is not available, or gsplat is not installed / fails to load
            (``pip install gsplat``, the ``gpu`` extra).
    """
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError(
            "render_gaussians_gsplat needs CUDA (torch.cuda.is_available() is False); "
            "use render_gaussians on the CPU"
        )
    try:
        from gsplat import rasterization
    except (ImportError, OSError, RuntimeError) as exc:  # missing, or a failed CUDA extension build
        raise RuntimeError(f"render_gaussians_gsplat needs gsplat (pip install gsplat): {exc}") from exc
    dev = torch.device(device)
    h, w = camera.height, camera.width
    f32 = torch.float32
    nrm = g.normals()
    flip = np.einsum("ij,ij->i", nrm, camera.directions_to_camera(g.means)) < 0
    nrm[flip] *= -1.0
    feats = np.concatenate([g.colors, nrm], axis=1).astype(np.float32)
    with torch.no_grad():
        render, alphas, _ = rasterization(
            means=torch.as_tensor(g.means, dtype=f32, device=dev),
            quats=torch.as_tensor(g.rotations, dtype=f32, device=dev),
            scales=torch.as_tensor(g.scales, dtype=f32, device=dev),
            opacities=torch.as_tensor(g.opacities, dtype=f32, device=dev),
            colors=torch.as_tensor(feats, device=dev),
            viewmats=torch.as_tensor(camera.world_to_camera, dtype=f32, device=dev)[None],
            Ks=torch.as_tensor(camera.intrinsics, dtype=f32, device=dev)[None],
            width=w,
            height=h,
            near_plane=near,
            eps2d=eps2d,
            packed=False,
            render_mode="RGB+ED",
            rasterize_mode="classic",
            camera_model="pinhole" if camera.projection == "perspective" else "ortho",
        )
    out = render[0].to(torch.float64).cpu().numpy()
    acc = alphas[0, ..., 0].to(torch.float64).cpu().numpy()
    bg = np.asarray(background, dtype=np.float64).reshape(3)
    color = np.clip(out[..., :3] + (1.0 - acc)[..., None] * bg, 0.0, 1.0)
    nsum = out[..., 3:6]
    nlen = np.linalg.norm(nsum, axis=-1, keepdims=True)
    normal = np.where(nlen > 1e-12, nsum / np.maximum(nlen, 1e-12), 0.0)
    depth = np.where(acc > 1e-6, out[..., 6], np.inf)
    primitive = np.full((h, w), -1, dtype=np.int64)
    weights = None
    if with_weights:
        ref = render_gaussians(g, camera, background=background, near=near, eps2d=eps2d)
        primitive, weights = ref.primitive, ref.weights
    return RenderResult(
        color=color.astype(np.float32),
        depth=depth.astype(np.float32),
        normal=normal.astype(np.float32),
        primitive=primitive,
        weights=weights,
        alpha=acc.astype(np.float32),
        camera=camera,
    )
