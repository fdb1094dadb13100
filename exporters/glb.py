"""GLB of the whole scene for viewing: every visual mesh at its pose, one node per object
named by its id, the label in the node's extras. glTF is Y-up by its spec, so the scene's +Z
becomes the file's +Y (a glTF viewer shows it upright; ``hiscene import`` turns it back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from exporters.prepare import PreparedObject
from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.scene import Pose

# -90 deg about X: y -> -z, z -> y
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def write_glb(objects: list[PreparedObject], path: Path) -> Path:
    scene = trimesh.Scene()
    for obj in objects:
        mesh = obj.visual.copy()
        mesh.metadata = {"label": obj.label, "id": obj.id, "background": obj.is_background}
        transform = Z_UP_TO_Y_UP @ Pose(obj.position, obj.orientation).rigid_matrix()
        scene.add_geometry(mesh, node_name=obj.id, geom_name=obj.id, transform=transform)
    atomic_write_bytes(path, scene.export(file_type="glb"))
    return path
