"""Spatially aligned regeneration (paper 3.4, Algorithm 3): inject an LRM shape prior into the sparse
structure flow of a TRELLIS-like model, so that the regenerated object keeps the prior's pose and scale.

    line 2-3   prior mesh (InstantMesh-like LRM, in the scene's frame) -> voxels V    voxelize_prior
    line 4     S_implicit = E_S(V)                                                      codec.encode
    line 6-7   x_t = (1 - t) S_implicit + (sigma_min + (1 - sigma_min) t) eps         inject_shape_prior
    line 8-15  Euler from t to 0 on the usual grid (flow.FlowSampler)                  inject_shape_prior
    (TRELLIS)  occupancy = decoder(x0) > 0, coords = argwhere                           regenerate_structure
    (ours)     voxel centres back to the scene's frame via GridFrame                    voxels_to_world

The grid frame follows TRELLIS's object normalisation (``dataset_toolkits/render.py``
``normalize_scene``: scale by 1 / longest bounding-box side, then centre the box at the origin) and its
voxel convention (``dataset_toolkits/voxelize.py``: R = 64 cells on [-0.5, 0.5]^3, cell ijk has centre
(ijk + 0.5) / R - 0.5). TRELLIS voxelises the *surface* (open3d marks cells touching triangles); this
project's prior is *solid* by default (hiscene_sim.voxels.solid_occupancy), ``fill=False`` gives the
one-voxel shell instead, which is what a real TRELLIS encoder was trained on.

Weight-free stand-ins for the codec and the velocity model, whose answers are known in closed form, are
test doubles: :mod:`hiscene_sim.testing.flow_doubles`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import trimesh

from hiscene_sim.generate.flow import SIGMA_MIN, FlowSampler, noise_to
from hiscene_sim.generate.interfaces import StructureCodec, VelocityModel
from hiscene_sim.voxels import solid_occupancy

T_MIN, T_MAX = 0.2, 0.4  # the paper's "typically t in [0.2, 0.4]" (3.4; Algorithm 3 line 6)
TRELLIS_RESOLUTION = 64  # ss_vae_conv3d_16l8: 64^3 occupancy <-> 8 x 16^3 latent


# ----------------------------------------------------------------------------- the grid frame
@dataclass(frozen=True, eq=False)
class GridFrame:
    """Where a resolution^3 grid on [-0.5, 0.5]^3 sits in the world (the prior mesh's frame, metres).

    to_grid(p) = scale * rotation @ (p - center); from_grid inverts it exactly.
    center: (3,) world point at the grid's centre (the prior's bounding-box centre in grid axes).
    scale: grid units per world unit (1 / longest bounding-box side, so the object spans [-0.5, 0.5]).
    resolution: cells per side (64 for TRELLIS).
    rotation: (3, 3) rotation from world axes to grid axes (identity: the grid is axis-aligned with the
        world, +Z up, like TRELLIS's internal frame; its GLB export is what turns Y-up).
    """

    center: np.ndarray
    scale: float
    resolution: int = TRELLIS_RESOLUTION
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", np.asarray(self.center, dtype=np.float64).reshape(3))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=np.float64).reshape(3, 3))
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale}")
        if self.resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {self.resolution}")
        if not np.allclose(self.rotation @ self.rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(self.rotation) < 0:
            raise ValueError("rotation must be a proper rotation matrix")

    @classmethod
    def fit(
        cls, geometry: trimesh.Trimesh | np.ndarray, resolution: int = TRELLIS_RESOLUTION, rotation: np.ndarray | None = None
    ) -> GridFrame:
        """TRELLIS's normalisation of an object: the bounding box (in grid axes) centred, its longest side
        scaled to 1. ``geometry``: a mesh or (N, 3) world points."""
        points = np.asarray(geometry.vertices if isinstance(geometry, trimesh.Trimesh) else geometry, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError("need a non-empty (N, 3) set of points")
        rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        local = points @ rot.T
        lo, hi = local.min(axis=0), local.max(axis=0)
        extent = float((hi - lo).max())
        if extent <= 0:
            raise ValueError("the prior is degenerate (zero extent)")
        return cls(center=rot.T @ ((lo + hi) / 2), scale=1.0 / extent, resolution=resolution, rotation=rot)

    @property
    def pitch(self) -> float:
        """World size of one voxel."""
        return 1.0 / (self.resolution * self.scale)

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world -> (N, 3) normalised grid coordinates (the object inside [-0.5, 0.5]^3)."""
        return self.scale * (np.asarray(points, dtype=np.float64) - self.center) @ self.rotation.T

    def from_grid(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) normalised grid coordinates -> (N, 3) world (original pose and scale)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation / self.scale + self.center

    def voxel_centres(self, indices: np.ndarray) -> np.ndarray:
        """(M, 3) integer cell indices -> (M, 3) normalised centres (ijk + 0.5) / R - 0.5 (TRELLIS)."""
        return (np.asarray(indices, dtype=np.float64) + 0.5) / self.resolution - 0.5

    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous world -> grid transform."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = -self.scale * self.rotation @ self.center
        return m


def voxels_to_world(coords: np.ndarray | torch.Tensor, frame: GridFrame) -> np.ndarray:
    """Active voxels (M, 3) integer indices on the frame's grid -> (M, 3) world voxel centres (float64):
    the regenerated structure put back at the prior's pose and scale."""
    if isinstance(coords, torch.Tensor):
        coords = coords.detach().cpu().numpy()
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be (M, 3), got {coords.shape}")
    return frame.from_grid(frame.voxel_centres(coords))


# ----------------------------------------------------------------------------- line 3: voxelisation
def voxelize_prior(
    mesh: trimesh.Trimesh,
    resolution: int | None = None,
    frame: GridFrame | None = None,
    *,
    fill: bool = True,
    close_voxels: int = 1,
    seed: int = 0,
) -> tuple[torch.Tensor, GridFrame]:
    """Algorithm 3 line 3: the prior mesh S_init -> occupancy V on a TRELLIS-style grid.

    mesh: the LRM's reconstruction, world frame (metres). resolution: cells per side (default 64, or the
        frame's). frame: where the grid sits; None fits TRELLIS's normalisation to this mesh (GridFrame.fit).
        Geometry outside a given frame's cube is cropped.
    fill: True = solid (surface cells plus the filled inside, hiscene_sim.voxels.solid_occupancy, holes up to
        about 2 * close_voxels wide sealed first); False = the one-voxel-thick boundary of that solid.
    Returns (occupancy (1, 1, R, R, R) float32 in {0, 1}, indexed [x, y, z] in grid axes; the frame).
    """
    if frame is None:
        frame = GridFrame.fit(mesh, TRELLIS_RESOLUTION if resolution is None else resolution)
    elif resolution is not None and resolution != frame.resolution:
        raise ValueError(f"resolution {resolution} differs from the frame's {frame.resolution}")
    res = frame.resolution
    if len(mesh.faces) == 0:
        raise ValueError("the prior mesh has no faces")
    vertices = frame.to_grid(mesh.vertices)
    # TRELLIS voxelize.py clamps to [-0.5 + 1e-6, 0.5 - 1e-6] so that the faces of the box land in the
    # first / last cell; clamp only vertices within 1e-6 of the box, so a user frame still crops.
    edge = 0.5 - 1e-6
    near = (np.abs(vertices) > edge) & (np.abs(vertices) <= 0.5 + 1e-6)
    vertices = np.where(near, np.sign(vertices) * edge, vertices)
    local = trimesh.Trimesh(vertices=vertices, faces=np.asarray(mesh.faces), process=False)
    block, lo = solid_occupancy(local, np.full(3, -0.5), 1.0 / res, close_voxels, seed=seed)
    grid = np.zeros((res, res, res), dtype=bool)
    src_lo = np.maximum(-lo, 0)
    dst_lo = np.maximum(lo, 0)
    size = np.minimum(np.array(block.shape) - src_lo, res - dst_lo)
    if np.all(size > 0):
        grid[tuple(slice(d, d + s) for d, s in zip(dst_lo, size))] = block[tuple(slice(a, a + s) for a, s in zip(src_lo, size))]
    if not fill:
        from scipy import ndimage

        grid &= ~ndimage.binary_erosion(grid, ndimage.generate_binary_structure(3, 1), border_value=0)
    return torch.from_numpy(grid.astype(np.float32))[None, None], frame


# ----------------------------------------------------------------------------- lines 4-15
@dataclass(frozen=True)
class ShapePriorConfig:
    """Settings of the shape-prior injection.

    t: noise level the prior is taken to, in [0.2, 0.4] (paper: "typically t in [0.2, 0.4]"); the run
        starts at the grid point just below it (FlowSampler.start_time): with the default 20 steps every
        multiple of 0.05 in that range is a grid point, so 0.2, 0.25, 0.3, 0.35, 0.4 are used exactly.
    steps: N of a full run (Algorithm 3 line 8); the run from t takes INT(N t) of them (line 10).
    guidance, guidance_interval, rescale_t, sigma_min: as FlowSampler. Defaults: guidance 7.5 as the TRELLIS
        demo app's sparse-structure stage; rescale_t 1 and no interval (pass the checkpoint's pipeline.json
        values when using real TRELLIS weights).
    seed: of eps (Algorithm 3 line 7), drawn on the CPU with torch.Generator, so it is device-independent.
    """

    t: float = 0.3
    steps: int = 20
    guidance: float = 7.5
    guidance_interval: tuple[float, float] | None = None
    rescale_t: float = 1.0
    sigma_min: float = SIGMA_MIN
    seed: int = 0

    def __post_init__(self) -> None:
        if not T_MIN <= self.t <= T_MAX:
            raise ValueError(f"t must be in [{T_MIN}, {T_MAX}] (paper 3.4), got {self.t}")
        if self.sampler().num_steps(self.t) < 1:
            raise ValueError(f"{self.steps} steps leave no grid point at or below t = {self.t}")

    def sampler(self) -> FlowSampler:
        return FlowSampler(self.steps, self.sigma_min, self.guidance, self.guidance_interval, self.rescale_t)


@torch.no_grad()
def inject_shape_prior(
    codec: StructureCodec,
    model: VelocityModel,
    occupancy: torch.Tensor,
    t: float,
    sampler: FlowSampler,
    cond: Any,
    seed: int = 0,
    neg_cond: Any = None,
) -> torch.Tensor:
    """Algorithm 3 lines 4-15: encode the prior, noise it to t, integrate back to 0; returns latent x0.

    occupancy: (B, 1, R, R, R) float in [0, 1], R = codec.resolution. t: in [0, 1] (not restricted to
    [0.2, 0.4] here; ShapePriorConfig enforces the paper's range). The prior is noised to
    ``sampler.start_time(t)`` (the grid point at or just below t, = t when t is on the grid) so that the
    state and the first model time agree, then ``sampler.num_steps(t)`` Euler steps run. eps ~ N(0, I) is
    drawn from torch.Generator().manual_seed(seed) on the CPU, then moved to the latent's device/dtype.
    t = 1: x_1 = eps exactly, the prior is ignored; t below the first grid point: no steps, x0 ~ prior."""
    check_grid(occupancy, codec.resolution)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    prior = codec.encode(occupancy)  # line 4: S_implicit = E_S(V)
    t_run = sampler.start_time(t)  # line 6, snapped to the sampler's grid
    generator = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(tuple(prior.shape), generator=generator, dtype=torch.float32).to(prior)
    x_t = noise_to(prior, t_run, eps, sampler.sigma_min)  # line 7
    return sampler.sample(model, x_t, t_run, cond, neg_cond)  # lines 8-15


@dataclass(eq=False)
class RegeneratedStructure:
    """What regenerate_structure returns (batch of one).

    occupancy: (R, R, R) bool, decoder(x0) > 0 (TRELLIS ``sample_sparse_structure``).
    coords: (M, 3) int64 indices of the active voxels (argwhere, the batch/channel axes dropped).
    latent: (1, C, r, r, r), x0 of the injected run. t: the start time actually used; steps: Euler steps run.
    sampler: what the run applied (``FlowSampler.record``): steps run, and the guidance applied with its
    interval ("none" when the interval excludes every step, e.g. TRELLIS's [0.5, 1] from t <= 0.4)."""

    occupancy: torch.Tensor
    coords: torch.Tensor
    latent: torch.Tensor
    t: float
    steps: int
    sampler: dict = field(default_factory=dict)


@torch.no_grad()
def regenerate_structure(
    codec: StructureCodec,
    model: VelocityModel,
    occupancy: torch.Tensor,
    cond: Any,
    config: ShapePriorConfig | None = None,
    neg_cond: Any = None,
) -> RegeneratedStructure:
    """Algorithm 3 end to end on a voxelised prior (1, 1, R, R, R): inject, decode, threshold at 0.

    Map ``coords`` back to the scene with voxels_to_world(coords, frame), frame from voxelize_prior."""
    config = config or ShapePriorConfig()
    if occupancy.shape[0] != 1:
        raise ValueError(f"regenerate_structure takes one prior at a time, got batch {occupancy.shape[0]}")
    sampler = config.sampler()
    latent = inject_shape_prior(codec, model, occupancy, config.t, sampler, cond, config.seed, neg_cond)
    logits = codec.decode(latent)
    grid = logits[0, 0] > 0
    return RegeneratedStructure(grid, torch.argwhere(grid), latent, sampler.start_time(config.t), sampler.num_steps(config.t),
                                sampler.record(config.t))


def check_grid(occupancy: torch.Tensor, resolution: int) -> None:
    """ValueError unless ``occupancy`` is a (B, 1, R, R, R) grid with R = ``resolution``."""
    r = resolution
    if occupancy.dim() != 5 or occupancy.shape[1] != 1 or tuple(occupancy.shape[2:]) != (r, r, r):
        raise ValueError(f"occupancy must be (B, 1, {r}, {r}, {r}), got {tuple(occupancy.shape)}")
