"""Solid voxel occupancy of any triangle soup: the one voxeliser shared by the watertight
repair (exporters/watertight.py) and the fused test scenes (hiscene_sim/fused.py).

Surface voxels are marked from dense, seeded surface samples (much faster than trimesh's
recursive subdivision voxeliser on 2 cores), then the inside is filled with scipy; holes up
to about ``2 * close_voxels`` wide are sealed first (dilate, fill, erode back), so a surface
with missing triangles still gives a solid instead of a hollow, leaky shell.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh


def solid_occupancy(mesh: trimesh.Trimesh, origin: np.ndarray, pitch: float, close_voxels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(boolean block, integer index of its first voxel on the grid anchored at ``origin``).

    Voxel ``block[i, j, k]`` spans ``origin + (lo + (i, j, k)) * pitch`` to ``+ pitch``."""
    from scipy import ndimage

    count = int(min(math.ceil(6.0 * mesh.area / pitch**2), 5_000_000))
    samples, _ = trimesh.sample.sample_surface(mesh, max(count, 1), seed=seed)
    points = np.vstack([samples, mesh.vertices])
    index = np.floor((points - origin) / pitch).astype(np.int64)
    pad = close_voxels + 1
    lo = index.min(axis=0) - pad
    shape = index.max(axis=0) - lo + 1 + pad
    block = np.zeros(shape, dtype=bool)
    block[tuple((index - lo).T)] = True
    if close_voxels > 0:
        structure = ndimage.generate_binary_structure(3, 1)
        block = ndimage.binary_dilation(block, structure, iterations=close_voxels)
        block = ndimage.binary_fill_holes(block)
        block = ndimage.binary_erosion(block, structure, iterations=close_voxels, border_value=0)
    else:
        block = ndimage.binary_fill_holes(block)
    return block, lo
