"""A closed, vertex-coloured surface mesh from a set of 3D Gaussians.

The export layer needs a mesh per object (watertight visual mesh, CoACD collision, mass); a
parsed Gaussian-splat object has only Gaussians. No library here extracts a surface from
3D Gaussians on CPU, so: splat each Gaussian's centre and a few points along its two largest
axes into a voxel grid, close small gaps and fill the inside, then one marching-cubes surface
(both from :mod:`hiscene_sim.voxels`), coloured by the nearest Gaussian.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from exporters.watertight import weld
from hiscene_sim.voxels import occupancy_surface, solid_from_points


def default_pitch(means: np.ndarray) -> float:
    """Voxel size from the Gaussians' spacing: 1.5x the median nearest-neighbour distance, so
    the splatted shell has no pinholes."""
    if len(means) < 2:
        raise ValueError("need at least 2 Gaussians to build a surface")
    d, _ = cKDTree(means).query(means, k=2)
    return float(max(1.5 * np.median(d[:, 1]), 1e-4))


def mesh_from_gaussians(gaussians, pitch: float | None = None, close_voxels: int = 2) -> trimesh.Trimesh:
    """Closed surface around ``gaussians`` (a :class:`~hiscene_sim.render.gaussians.Gaussians`).

    Surfaces come out about half a voxel outside the Gaussians' centres, like any voxel
    surface; vertex colours are the nearest Gaussian's colour.
    """
    means = np.asarray(gaussians.means, dtype=np.float64)
    pitch = pitch or default_pitch(means)
    # points along each Gaussian's two largest axes at +-1 sigma fill the disc it stands for
    r = gaussians.rotation_matrices()
    order = np.argsort(-gaussians.scales, axis=1)[:, :2]
    rows = np.arange(len(means))
    offsets = [means]
    for a in range(2):
        axis = r[rows, :, order[:, a]] * gaussians.scales[rows, order[:, a]][:, None]
        offsets += [means + axis, means - axis]
    points = np.vstack(offsets)
    block, lo = solid_from_points(points, np.zeros(3), pitch, close_voxels, pad=close_voxels + 2)
    if not block.any():
        raise ValueError("the Gaussians occupy no voxel")
    # the blurred surface can still pinch a sheet one voxel thin, so it is thickened by a voxel
    # until the surface is closed
    structure = ndimage.generate_binary_structure(3, 1)
    for _ in range(3):
        mesh = weld(occupancy_surface(block, pitch, first_voxel=lo, pad=1))  # voxel centres at (index + 0.5) * pitch
        if mesh.is_watertight:
            break
        block = ndimage.binary_dilation(block, structure)
    else:
        raise ValueError(f"no closed surface around {len(means)} Gaussians at voxel size {pitch:.4g}")
    _, nearest = cKDTree(means).query(mesh.vertices)
    rgb = np.clip(np.asarray(gaussians.colors)[nearest], 0.0, 1.0)
    mesh.visual.vertex_colors = np.hstack([np.round(rgb * 255), np.full((len(rgb), 1), 255)]).astype(np.uint8)
    return mesh
