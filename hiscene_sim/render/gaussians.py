"""3D Gaussian scenes: the model, 3DGS PLY I/O and sampling from a mesh.

The renderers live in :mod:`.splat` (which imports this module, not the other way round):
``render_gaussians`` is a CPU reference splatter (EWA splatting as in 3DGS / gsplat's "classic"
mode) vectorised over (Gaussian, pixel) pairs with NumPy; it also returns the sparse pixel ->
Gaussian blending weights that lifting 2D segmentations to 3D needs. ``render_gaussians_gsplat``
uses gsplat's CUDA rasteriser when a GPU and gsplat are available. :mod:`hiscene_sim.render`
exports both.

Timing: ``python benchmarks/bench_render.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from numpy.typing import ArrayLike

from hiscene_sim.rotations import matrices_to_quaternions, normalize_quaternions, quaternions_to_matrices

from ._ply import read_ply_vertices, write_ply_vertices
from .surface import sample_surface

__all__ = [
    "SH_C0",
    "Gaussians",
    "gaussians_from_mesh",
    "is_3dgs_ply",
    "load_3dgs_ply",
    "save_3dgs_ply",
]

#: Zeroth-order real spherical-harmonics constant: ``color = 0.5 + SH_C0 * f_dc``.
SH_C0 = 0.28209479177387814


@dataclass(eq=False)
class Gaussians:
    """A set of N anisotropic 3D Gaussians (world units, metres, +Z up).

    Attributes:
        means: (N, 3) float32 centres.
        scales: (N, 3) float32 LINEAR standard deviations along the Gaussian's local axes (the PLY
            stores their logs).
        rotations: (N, 4) float32 unit quaternions, w x y z, local -> world (normalised here; a zero
            quaternion becomes the identity).
        opacities: (N,) float32 in [0, 1] (the PLY stores logits).
        colors: (N, 3) float32 RGB, nominally in [0, 1] (the SH DC term ``0.5 + SH_C0 * f_dc``;
            renderers clip the result).
        sh_rest: optional (N, K, 3) float32 higher-order SH coefficients (PLY ``f_rest_*``), kept
            for round trips; the renderers here ignore them (view-independent colour).
    """

    means: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray
    sh_rest: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.means = np.ascontiguousarray(self.means, dtype=np.float32).reshape(-1, 3)
        n = len(self.means)
        self.scales = np.ascontiguousarray(self.scales, dtype=np.float32).reshape(n, 3)
        self.rotations = normalize_quaternions(np.asarray(self.rotations).reshape(n, 4)).astype(np.float32)
        self.opacities = np.ascontiguousarray(self.opacities, dtype=np.float32).reshape(n)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(n, 3)
        if self.sh_rest is not None:
            self.sh_rest = np.ascontiguousarray(self.sh_rest, dtype=np.float32)
            if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
                raise ValueError(f"sh_rest must be (N, K, 3), got {self.sh_rest.shape}")
            if self.sh_rest.shape[1] == 0:
                self.sh_rest = None

    def __len__(self) -> int:
        return len(self.means)

    def subset(self, index: ArrayLike) -> Gaussians:
        """The Gaussians selected by an index array or boolean mask."""
        idx = np.asarray(index)
        return Gaussians(
            self.means[idx], self.scales[idx], self.rotations[idx], self.opacities[idx],
            self.colors[idx], None if self.sh_rest is None else self.sh_rest[idx],
        )

    def rotation_matrices(self) -> np.ndarray:
        """(N, 3, 3) float64 local -> world rotations; column k is local axis k."""
        return quaternions_to_matrices(self.rotations)

    def covariances(self) -> np.ndarray:
        """(N, 3, 3) float64 world covariances ``R diag(s^2) R^T``."""
        m = self.rotation_matrices() * self.scales.astype(np.float64)[:, None, :]
        return m @ np.transpose(m, (0, 2, 1))

    def normals(self) -> np.ndarray:
        """(N, 3) float64 unit world axis of the smallest scale (a flat disc's normal; sign
        arbitrary)."""
        r = self.rotation_matrices()
        k = np.argmin(self.scales, axis=1)
        return r[np.arange(len(self)), :, k]


# --------------------------------------------------------------------------- PLY
def save_3dgs_ply(g: Gaussians, path: str | Path) -> None:
    """Write the standard 3DGS PLY (binary little endian, float32): x, y, z, nx, ny, nz (zeros),
    f_dc_0..2 (``(color - 0.5) / SH_C0``), f_rest_* (only when ``g.sh_rest`` is set; channel-major
    as 3DGS: all R coefficients, then G, then B), opacity (logit), scale_0..2 (log), rot_0..3
    (wxyz)."""
    n = len(g)
    f: dict[str, np.ndarray] = {
        "x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2],
        "nx": np.zeros(n, np.float32), "ny": np.zeros(n, np.float32), "nz": np.zeros(n, np.float32),
    }
    f_dc = (g.colors.astype(np.float64) - 0.5) / SH_C0
    for k in range(3):
        f[f"f_dc_{k}"] = f_dc[:, k]
    if g.sh_rest is not None:
        rest = np.transpose(g.sh_rest, (0, 2, 1)).reshape(n, -1)
        for k in range(rest.shape[1]):
            f[f"f_rest_{k}"] = rest[:, k]
    op = np.clip(g.opacities.astype(np.float64), 1e-7, 1.0 - 1e-7)
    f["opacity"] = np.log(op / (1.0 - op))
    log_s = np.log(np.maximum(g.scales.astype(np.float64), 1e-30))
    for k in range(3):
        f[f"scale_{k}"] = log_s[:, k]
    for k in range(4):
        f[f"rot_{k}"] = g.rotations[:, k]
    write_ply_vertices(path, {k: np.asarray(v, dtype=np.float32) for k, v in f.items()})


def is_3dgs_ply(path: str | Path) -> bool:
    """Whether ``path`` is a PLY whose vertices carry 3DGS fields (opacity, scale_0, rot_0)
    rather than a mesh's; reads the header only."""
    from ._ply import _parse_header

    with open(path, "rb") as f:
        head = f.read(65536)
    try:
        _, elements, _ = _parse_header(head)
    except ValueError:
        return False
    names = {name for element, _, props in elements if element == "vertex" for name, _ in props}
    return {"opacity", "scale_0", "rot_0"} <= names


def load_3dgs_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY (as written by 3DGS, gsplat, TRELLIS, ...); fields are read by name.

    Required: x, y, z, opacity, scale_0..2, rot_0..3. Colour from f_dc_0..2 (or, failing those,
    uchar/float red, green, blue); f_rest_* optional (kept as ``sh_rest``). No coordinate
    transform is applied (TRELLIS, for one, writes its own axes; convert in the caller).
    """
    v = read_ply_vertices(path)
    required = ["x", "y", "z", "opacity", *[f"scale_{k}" for k in range(3)], *[f"rot_{k}" for k in range(4)]]
    missing = [k for k in required if k not in v]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing vertex properties {missing}")
    n = len(v["x"])

    def col(k: str) -> np.ndarray:
        return np.asarray(v[k], dtype=np.float64)

    means = np.stack([col("x"), col("y"), col("z")], axis=1)
    if all(f"f_dc_{k}" in v for k in range(3)):
        colors = 0.5 + SH_C0 * np.stack([col(f"f_dc_{k}") for k in range(3)], axis=1)
    elif all(k in v for k in ("red", "green", "blue")):
        colors = np.stack([col(k) for k in ("red", "green", "blue")], axis=1)
        if v["red"].dtype.kind in "ui":
            colors = colors / 255.0
    else:
        colors = np.full((n, 3), 0.5)
    rest_keys = sorted((k for k in v if k.startswith("f_rest_")), key=lambda k: int(k[7:]))
    sh_rest = None
    if rest_keys:
        if len(rest_keys) % 3:
            raise ValueError(f"{path}: {len(rest_keys)} f_rest_* fields is not a multiple of 3")
        rest = np.stack([col(k) for k in rest_keys], axis=1)
        sh_rest = np.transpose(rest.reshape(n, 3, -1), (0, 2, 1))
    logit = col("opacity")
    opacities = 1.0 / (1.0 + np.exp(-logit))
    scales = np.exp(np.stack([col(f"scale_{k}") for k in range(3)], axis=1))
    rotations = np.stack([col(f"rot_{k}") for k in range(4)], axis=1)
    return Gaussians(means, scales, rotations, opacities, colors, sh_rest)


# ----------------------------------------------------------------- from a mesh
def gaussians_from_mesh(
    mesh: trimesh.Trimesh | trimesh.Scene,
    n: int,
    seed: int | None = 0,
    *,
    opacity: float = 0.95,
    scale_factor: float = 1.0,
    thickness: float = 0.01,
) -> Gaussians:
    """Flat Gaussian discs on a mesh surface.

    ``n`` points are sampled uniformly by area (:func:`~.surface.sample_surface` with the same
    ``seed``, whose ``face_ids`` therefore tell each Gaussian's face), coloured by the mesh's albedo
    there, and oriented by the face normal: tangent std-dev ``scale_factor * sqrt(area / n)``,
    normal std-dev ``thickness`` times that.

    Returns:
        :class:`Gaussians` with N = n.
    """
    s = sample_surface(mesh, n, seed)
    nrm = s.normals
    # tangent: any unit vector orthogonal to the normal (in-plane orientation is irrelevant for
    # isotropic tangent scales)
    helper = np.where(np.abs(nrm[:, [0]]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    t1 = np.cross(nrm, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(nrm, t1)
    frames = np.stack([t1, t2, nrm], axis=2)  # columns: local x, y, z (normal)
    quats = matrices_to_quaternions(frames, positive_w=False)
    sigma = scale_factor * math.sqrt(s.area / n)
    scales = np.tile(np.array([sigma, sigma, max(sigma * thickness, 1e-9)]), (n, 1))
    return Gaussians(s.points, scales, quats, np.full(n, opacity), s.colors)
