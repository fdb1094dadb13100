"""Voxel solids and their surfaces: the one voxeliser and the one voxel mesher, shared by the
watertight repair (exporters/watertight.py), the Gaussian-splat mesher
(hiscene_sim/gaussian_mesh.py), Algorithm 3's shape prior
(hiscene_sim/generate/algorithm3_shape_prior.py) and the fused test scenes
(hiscene_sim/testing/fused_scenes.py).

Voxeliser (:func:`solid_occupancy` for a triangle soup, :func:`solid_from_points` for a point
set): surface voxels are marked from points (for a mesh, dense seeded surface samples, much
faster than trimesh's recursive subdivision voxeliser on 2 cores), then the inside is filled
with scipy; holes up to about ``2 * close_voxels`` wide are sealed first (dilate, fill, erode
back), so a surface with missing triangles still gives a solid instead of a hollow, leaky shell.

Mesher (:func:`occupancy_surface`): a slight Gaussian blur of the occupancy joins voxels that
touch only along an edge or corner (where marching cubes on the raw binary grid makes
non-manifold edges), then one scikit-image marching-cubes surface at level 0.35, in world
coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh
from numpy.typing import ArrayLike


def solid_from_points(points: np.ndarray, origin: ArrayLike, pitch: float, close_voxels: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(boolean block, integer index of its first voxel on the grid anchored at ``origin``): the
    voxels holding ``points`` (N, 3), closed by ``close_voxels`` and filled; ``pad`` empty
    voxels are left around the points (at least ``close_voxels + 1`` keeps the closing off
    the block's border).

    Voxel ``block[i, j, k]`` spans ``origin + (lo + (i, j, k)) * pitch`` to ``+ pitch``."""
    from scipy import ndimage

    index = np.floor((points - origin) / pitch).astype(np.int64)
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


def solid_occupancy(mesh: trimesh.Trimesh, origin: np.ndarray, pitch: float, close_voxels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(boolean block, integer index of its first voxel on the grid anchored at ``origin``) of the
    solid that ``mesh`` bounds: :func:`solid_from_points` of seeded surface samples (about 6 per
    voxel face area) and the vertices, with ``close_voxels + 1`` voxels of padding.

    Voxel ``block[i, j, k]`` spans ``origin + (lo + (i, j, k)) * pitch`` to ``+ pitch``."""
    count = int(min(math.ceil(6.0 * mesh.area / pitch**2), 5_000_000))
    samples, _ = trimesh.sample.sample_surface(mesh, max(count, 1), seed=seed)
    points = np.vstack([samples, mesh.vertices])
    return solid_from_points(points, origin, pitch, close_voxels, pad=close_voxels + 1)


def occupancy_surface(
    occupancy: np.ndarray,
    pitch: float,
    origin: ArrayLike | None = None,
    first_voxel: ArrayLike | None = None,
    pad: int = 0,
    sigma: float = 0.6,
    level: float = 0.35,
) -> trimesh.Trimesh:
    """The closed surface around a boolean voxel block, in world coordinates, as marching cubes
    returns it (``process=False``; callers weld it, e.g. ``exporters.watertight.weld``).

    occupancy: (X, Y, Z) bool; voxel ``ijk`` is centred at ``origin + (first_voxel + ijk + 0.5) *
        pitch`` (``origin`` / ``first_voxel`` None: zero).
    pad: empty voxels added around the block before the blur, so a solid touching the block's
        border still closes.
    sigma, level: the blur (voxels) and the marching-cubes level on the blurred occupancy.
    """
    from scipy import ndimage
    from skimage import measure

    grid = np.pad(occupancy, pad) if pad else occupancy
    field = ndimage.gaussian_filter(grid.astype(np.float32), sigma=sigma)
    del grid
    verts, faces, _, _ = measure.marching_cubes(field, level)
    del field
    # offsets are added only when given: marching cubes' float32 vertices keep that precision
    # until an offset array promotes them
    if pad:
        verts = verts - pad
    if first_voxel is not None:
        verts = verts + first_voxel
    verts = (verts + 0.5) * pitch
    if origin is not None:
        verts = verts + origin
    return trimesh.Trimesh(verts, faces, process=False)
