"""``hiscene demo``: a desk scene from real pybullet_data meshes, imported and exported.

Steps: build a multi-node GLB (a floor, pybullet_data's table, a mug, a duck, a teddy, a
lego brick, a bunny and two jenga blocks, each node with its pose and scale) ->
``hiscene import`` -> ``hiscene export``. Later stages (validation) extend it.

The default demo (the desk fused into one surface and parsed) then shows one articulated object:
:func:`add_demo_cabinet` puts a small cabinet with a drawer and a door (a URDF with OBJ / STL
meshes, :mod:`hiscene_sim.testing.articulated_assets`) on the parsed floor behind the table with
``hiscene add``'s function, re-exports and settles + validates the scene, joints included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.pybullet_assets import asset_mesh, placement
from hiscene_sim.testing.fused_scenes import Placed, build_fused_scene, save_fused

TABLE_TOP = 0.625
# on the parsed floor (it spans about -1..1 m) behind the table (y -0.5..0.5), turned to open away from it
CABINET_AT, CABINET_YAW_DEG, CABINET_SIZE = (0.0, 0.76), 180.0, (0.4, 0.3, 0.45)  # width, depth, height (m)

# node name, asset, x, y, yaw (radians); z is computed so the object rests on its support
DESK_LAYOUT: tuple[tuple[str, str, float, float, float], ...] = (
    ("table", "table", 0.0, 0.0, 0.0),
    ("mug_1", "mug", -0.45, 0.25, 0.3),
    ("duck", "duck", 0.0, -0.2, 1.0),
    ("teddy", "teddy", 0.45, 0.2, -0.5),
    ("lego", "lego", -0.15, 0.05, 0.7),
    ("bunny", "bunny", -0.4, -0.22, 2.0),
    ("jenga_1", "jenga", 0.35, -0.25, 0.4),
    ("jenga_2", "jenga", 0.2, 0.3, -0.2),
)


@dataclass
class DemoPaths:
    root: Path
    source_glb: Path
    scene_dir: Path
    export_dir: Path


def build_desk_glb(path: Path) -> Path:
    """The demo's input: one GLB, one node per object, real pybullet_data meshes."""
    scene = trimesh.Scene()
    floor = trimesh.creation.box(extents=(3.0, 3.0, 0.05))
    floor.visual = trimesh.visual.ColorVisuals(floor, vertex_colors=np.tile([150, 150, 160, 255], (len(floor.vertices), 1)))
    scene.add_geometry(floor, node_name="floor", geom_name="floor", transform=trimesh.transformations.translation_matrix((0, 0, -0.025)))
    for node, asset, x, y, yaw in DESK_LAYOUT:
        mesh, scale = asset_mesh(asset)
        support = 0.0 if asset == "table" else TABLE_TOP
        scene.add_geometry(mesh, node_name=node, geom_name=node, transform=placement(mesh, scale, x, y, yaw, support))
    atomic_write_bytes(path, scene.export(file_type="glb"))
    return path


def demo_paths(root: Path) -> DemoPaths:
    return DemoPaths(root, root / "desk_scene.glb", root / "scene", root / "scene" / "export")


def desk_layout():
    """DESK_LAYOUT as a fused-scene layout (hiscene_sim.testing.fused_scenes.Placed): the table
    on the floor, everything else on the table."""
    return [Placed(asset, x, y, yaw, "floor" if asset == "table" else "table", name=node) for node, asset, x, y, yaw in DESK_LAYOUT]


def build_fused_desk(path: Path, seed: int = 0):
    """The demo desk as a voxel-based image-to-3D model returns a scene: ONE welded
    marching-cubes surface with vertex colours (hiscene_sim.testing.fused_scenes), saved with its
    ground truth beside it. Returns the FusedScene."""
    fused = build_fused_scene(desk_layout(), seed=seed, name="desk")
    save_fused(fused, path)
    return fused




def add_demo_cabinet(paths: DemoPaths, export_config=None, echo=print):
    """The demo's articulated object (see the module doc): returns the validation report. A
    scene that already holds an articulated object (a demo re-run into the same folder) keeps it."""
    from exporters.export import export_scene
    from hiscene_sim.add_asset import add_asset
    from hiscene_sim.scene import load_scene
    from hiscene_sim.testing.articulated_assets import write_cabinet_urdf
    from physics.config import ValidationConfig
    from physics.report import validate_and_report

    scene = load_scene(paths.scene_dir)
    present = [o for o in scene.objects if o.articulation is not None]
    if present:
        echo(f"kept the articulated {present[0].id} added by an earlier run")
    else:
        width, depth, height = CABINET_SIZE
        urdf = write_cabinet_urdf(paths.root / "cabinet_urdf", width=width, depth=depth, height=height)
        added = add_asset(paths.scene_dir, urdf, at=CABINET_AT, yaw_deg=CABINET_YAW_DEG)
        echo(f"hiscene add {paths.scene_dir} {urdf} --at {CABINET_AT[0]:g},{CABINET_AT[1]:g} --yaw {CABINET_YAW_DEG:g}: "
             f"{added.object.id} (drawer on a prismatic joint, door on a revolute one) standing on {added.rests_on}")
    export_scene(paths.scene_dir, paths.export_dir, export_config)
    report, report_paths = validate_and_report(paths.export_dir, ValidationConfig(), settle=True, scene_dir=paths.scene_dir,
                                               export_config=export_config)
    joints = report.joints
    for sim in (joints.pybullet, joints.mujoco) if joints is not None else ():
        if sim is None:
            continue
        rows = "; ".join(f"{j.joint} {j.hold}, reached {j.lower:g} / {j.upper:g} {j.unit} within "
                         f"{max(j.lower_error or 0, j.upper_error or 0):.2g} {j.unit}" for j in sim.joints)
        echo(f"joints in {'PyBullet' if sim.simulator == 'pybullet' else 'MuJoCo'}: {rows}")
    return report
