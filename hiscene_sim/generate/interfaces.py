"""The typed boundaries between the generation stages (paper 3.2 scene initialisation, 3.4, D)
and the neural models behind them. Adapters (FLUX, TRELLIS, InstantMesh) implement these
protocols; the pipeline and the shape-prior injection (Algorithm 3) code against them only,
so tiny models in tests and real checkpoints on a GPU go through the same code.

Arrays: images are (H, W, 3) uint8 RGB; meshes are trimesh.Trimesh in metres, +Z up, unless
an adapter documents its own frame (TRELLIS returns Z-up in [-0.5, 0.5]^3 and exports Y-up GLB / PLY files: its adapter converts all three).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh

    from hiscene_sim.render.cameras import Camera
    from hiscene_sim.render.gaussians import Gaussians


# ----------------------------------------------------------------------------- text -> image
@dataclass(eq=False)
class ImageCandidate:
    image: np.ndarray  # (H, W, 3) uint8
    seed: int
    score: float | None = None  # e.g. CLIP similarity to the prompt, when a scorer is configured


class TextToImage(Protocol):
    """FLUX-like: a prompt (already prefixed "Isometric view of ...") -> one image per seed."""

    name: str

    def generate(self, prompt: str, seeds: list[int]) -> list[ImageCandidate]: ...


class ImageScorer(Protocol):
    """CLIP-like: how well each image matches the prompt (higher is better)."""

    name: str

    def score(self, prompt: str, images: list[np.ndarray]) -> list[float]: ...


# ----------------------------------------------------------------------------- image -> 3D
@dataclass(eq=False)
class Generated3D:
    """What an image-to-3D model returns for a scene or an object, Z-up, metres (the adapter
    converts from its own frame and records the scale it used)."""

    mesh: trimesh.Trimesh
    gaussians: Gaussians | None = None
    glb: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ImageTo3D(Protocol):
    """TRELLIS-like: one or several views of the same thing -> a 3D asset."""

    name: str

    def generate(self, images: list[np.ndarray], seed: int) -> Generated3D: ...


# --------------------------------------------------- Algorithm 3: the sparse-structure stage
class VelocityModel(Protocol):
    """A rectified-flow velocity field v(x_t, t | cond), t in [0, 1] (1 = noise, 0 = data), with
    TRELLIS's convention x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps and target
    v = (1 - sigma_min) eps - x0. ``t`` is a float in [0, 1] (an adapter rescales it, e.g. x1000)."""

    def __call__(self, x_t: torch.Tensor, t: float, cond: Any) -> torch.Tensor: ...


class StructureCodec(Protocol):
    """The sparse-structure VAE: a (B, 1, R, R, R) occupancy grid <-> (B, C, r, r, r) latent
    (TRELLIS: R = 64, C = 8, r = 16). ``decode`` returns logits (occupied where > 0)."""

    resolution: int

    def encode(self, occupancy: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...


# ------------------------------------------------------------------ sparse views -> mesh (LRM)
class SparseViewReconstructor(Protocol):
    """InstantMesh-like LRM: posed views of one object -> a mesh in the cameras' world frame
    (the shape prior of Algorithm 3, line 2)."""

    name: str

    def reconstruct(self, images: list[np.ndarray], cameras: list[Camera]) -> trimesh.Trimesh: ...
