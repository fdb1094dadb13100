"""The output of every renderer: :class:`RenderResult`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .cameras import Camera

__all__ = ["RenderResult"]


@dataclass(eq=False)
class RenderResult:
    """One rendered view. H, W = ``camera.height``, ``camera.width``; pixel index ``i * W + j``.

    Attributes:
        color: (H, W, 3) float32 in [0, 1]; the background colour where nothing is hit (Gaussians:
            composited over it, ``sum_k w_k c_k + (1 - alpha) * background``).
        depth: (H, W) float32, world units along the view axis (camera-frame z); the expected
            depth ``sum w z / sum w`` for Gaussians; ``+inf`` where no primitive contributes.
        normal: (H, W, 3) float32 world-space unit normals, oriented towards the camera; 0 where no
            primitive contributes.
        primitive: (H, W) int64 id of the front (mesh: the hit face) or dominant (Gaussians: largest
            blending weight) primitive; -1 where none contributes (or where the backend cannot say,
            see :func:`~hiscene_sim.render.gaussians.render_gaussians_gsplat`).
        weights: (H*W, n_primitives) float32 CSR matrix of pixel -> primitive contribution weights
            (mesh: one-hot of the hit face; Gaussians: ``T_k * alpha_k``); each row sums to the
            pixel's opacity (``alpha``), empty rows for the background. ``None`` when the backend
            does not produce it.
        alpha: (H, W) float32 opacity / coverage in [0, 1] (mesh: 1 on hits, 0 elsewhere).
        camera: the camera it was rendered with.
    """

    color: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    primitive: np.ndarray
    weights: sp.csr_matrix | None
    alpha: np.ndarray
    camera: Camera

    def __post_init__(self) -> None:
        h, w = self.camera.height, self.camera.width
        checks = {
            "color": (self.color, (h, w, 3)),
            "depth": (self.depth, (h, w)),
            "normal": (self.normal, (h, w, 3)),
            "primitive": (self.primitive, (h, w)),
            "alpha": (self.alpha, (h, w)),
        }
        for name, (arr, shape) in checks.items():
            if arr.shape != shape:
                raise ValueError(f"RenderResult.{name} has shape {arr.shape}, expected {shape}")
        if self.weights is not None and self.weights.shape[0] != h * w:
            raise ValueError(f"RenderResult.weights has {self.weights.shape[0]} rows, expected {h * w}")

    @property
    def height(self) -> int:
        return self.camera.height

    @property
    def width(self) -> int:
        return self.camera.width

    @property
    def n_primitives(self) -> int | None:
        """Number of primitives (columns of ``weights``), or None without weights."""
        return None if self.weights is None else int(self.weights.shape[1])

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """(H, W) bool silhouette: ``alpha > threshold``."""
        return self.alpha > threshold

    def color_uint8(self) -> np.ndarray:
        """(H, W, 3) uint8 image, e.g. for 2D segmentation or saving with Pillow."""
        return np.clip(np.rint(self.color * 255.0), 0, 255).astype(np.uint8)
