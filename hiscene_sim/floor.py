"""Where a floor is: the one recipe for a floor's height, used wherever the pipeline needs it
(the flat floor slab of the regeneration stage, the generated background's fit, paper D).

A floor's height is the area-weighted median height of its upward-facing faces (normal
within ~25 deg of +Z) in the lowest fifth of their height range: a parsed floor carries
fillets around every object that stood on it (where the voxel surface welded them), and a
generated background carries walls and furniture tops; both are a small share of the area,
or above that band, so neither lifts the answer.
"""

from __future__ import annotations

import numpy as np
import trimesh

UP_NORMAL_Z = 0.9
LOWEST_SHARE = 0.2


def floor_height(mesh: trimesh.Trimesh) -> float:
    """Height of the mesh's floor (its lowest point when no face looks up)."""
    up = mesh.face_normals[:, 2] > UP_NORMAL_Z
    if not up.any():
        return float(mesh.bounds[0][2])
    z = mesh.triangles_center[up, 2]
    band = z <= z.min() + LOWEST_SHARE * (z.max() - z.min())
    z, areas = z[band], mesh.area_faces[up][band]
    order = np.argsort(z)
    cumulative = np.cumsum(areas[order])
    return float(z[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def flat_floor(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, str]:
    """A box spanning the parsed floor's footprint whose top is :func:`floor_height`, coloured
    with the floor's median vertex colour; and what was done."""
    if not (mesh.face_normals[:, 2] > UP_NORMAL_Z).any():
        return mesh, "kept (no upward-facing faces)"
    top = floor_height(mesh)
    lo, hi = mesh.bounds
    thickness = max(top - float(lo[2]), 0.01)
    slab = trimesh.creation.box((hi[0] - lo[0], hi[1] - lo[1], thickness))
    slab.apply_translation(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, top - thickness / 2))
    colors = getattr(mesh.visual, "vertex_colors", None)
    if colors is not None and len(colors):
        slab.visual.face_colors = np.median(np.asarray(colors), axis=0).astype(np.uint8)
    return slab, f"flat slab, top at z = {top:.4f} (fillets around objects removed)"
