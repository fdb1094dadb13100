"""Articulated test assets written as URDF files with their mesh files, for tests and the demo.

:func:`write_cabinet_urdf` builds a small cabinet from boxes: a carcass (OBJ), a drawer in
the top compartment on a prismatic joint (OBJ) and a door on a vertical revolute hinge below it
(STL), with damping and friction on both joints and **no** ``<inertial>`` (the export estimates
mass and inertia from the meshes and the label). The front is -Y, the base at z = 0, both
joints closed at zero: the drawer slides out along -Y (0 .. 0.8 x depth), the door swings out
about -Z at its left edge (0 .. 100 deg). ``write_broken_urdfs`` writes one URDF per kind of bad
input the importer must refuse.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import trimesh

PANEL = 0.018  # m, board thickness
GAP = 0.003  # m, clearance around a drawer or a door


def _box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return trimesh.creation.box(extents=hi - lo).apply_translation((lo + hi) / 2.0)


def _colored(parts: list[trimesh.Trimesh], rgb) -> trimesh.Trimesh:
    mesh = trimesh.util.concatenate(parts)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=np.tile([*rgb, 255], (len(mesh.faces), 1)))
    return mesh


def cabinet_meshes(width: float = 0.5, depth: float = 0.4, height: float = 0.6, drawer_height: float = 0.15):
    """(carcass, drawer, door, drawer joint origin, door joint origin): meshes in their link
    frames (the carcass's is the cabinet's: base centre at the origin)."""
    w, d, h, t = width / 2.0, depth / 2.0, height, PANEL
    shelf = h - t - drawer_height - t  # underside of the shelf between the two compartments
    carcass = _colored([
        _box((-w, -d, 0.0), (-w + t, d, h)), _box((w - t, -d, 0.0), (w, d, h)),  # sides
        _box((-w + t, -d, 0.0), (w - t, d, t)), _box((-w + t, -d, h - t), (w - t, d, h)),  # bottom, top
        _box((-w + t, d - t, t), (w - t, d, h - t)),  # back
        _box((-w + t, -d, shelf), (w - t, d - t, shelf + t)),  # shelf
    ], (150, 110, 70))
    # drawer: front board flush with the carcass front, an open box behind it, a handle
    inner = (w - t - GAP, shelf + t + GAP, h - t - GAP)
    box_depth = depth - 2 * t - 0.02
    drawer = _colored([
        _box((-w + GAP, -t, shelf + t + GAP), (w - GAP, 0.0, h - GAP)),  # front board, at y in [-t, 0]
        _box((-inner[0], 0.0, inner[1]), (-inner[0] + 0.01, box_depth, inner[2] - 0.02)),
        _box((inner[0] - 0.01, 0.0, inner[1]), (inner[0], box_depth, inner[2] - 0.02)),
        _box((-inner[0], box_depth - 0.01, inner[1]), (inner[0], box_depth, inner[2] - 0.02)),
        _box((-inner[0], 0.0, inner[1]), (inner[0], box_depth, inner[1] + 0.01)),
        _box((-0.06, -t - 0.025, (shelf + h) / 2 - 0.01), (0.06, -t, (shelf + h) / 2 + 0.01)),  # handle
    ], (170, 130, 85))
    drawer_origin = np.array([0.0, -d, 0.0])  # the drawer frame sits at the carcass front
    # door: hinge at the left front edge; the board spans +x from it, in front of the carcass
    door_h = shelf - GAP - GAP
    door = _colored([
        _box((GAP, -t, 0.0), (2 * w - GAP, 0.0, door_h)),
        _box((2 * w - 0.06, -t - 0.025, door_h / 2 - 0.06), (2 * w - 0.04, -t, door_h / 2 + 0.06)),  # handle
    ], (160, 120, 80))
    door_origin = np.array([-w, -d, GAP])
    return carcass, drawer, door, drawer_origin, door_origin


def write_cabinet_urdf(folder: str | Path, name: str = "cabinet", width: float = 0.5, depth: float = 0.4,
                       height: float = 0.6) -> Path:
    """``folder/<name>.urdf`` with ``meshes/carcass.obj``, ``meshes/drawer.obj``, ``meshes/door.stl``
    (the door's mesh referenced as ``package://<folder name>/meshes/door.stl``). Returns the URDF."""
    folder = Path(folder)
    (folder / "meshes").mkdir(parents=True, exist_ok=True)
    carcass, drawer, door, drawer_origin, door_origin = cabinet_meshes(width, depth, height)
    carcass.export(folder / "meshes" / "carcass.obj")
    drawer.export(folder / "meshes" / "drawer.obj")
    door.export(folder / "meshes" / "door.stl")
    travel = 0.8 * depth

    def xyz(v) -> str:
        return " ".join(f"{x:.6g}" for x in v)

    text = f"""<?xml version="1.0"?>
<robot name="{name}">
  <material name="wood"><color rgba="0.6 0.45 0.3 1"/></material>
  <link name="carcass">
    <visual><geometry><mesh filename="meshes/carcass.obj"/></geometry></visual>
    <collision><geometry><mesh filename="meshes/carcass.obj"/></geometry></collision>
  </link>
  <link name="drawer">
    <visual><geometry><mesh filename="meshes/drawer.obj"/></geometry></visual>
  </link>
  <link name="door">
    <visual><geometry><mesh filename="package://{folder.name}/meshes/door.stl"/></geometry><material name="wood"/></visual>
  </link>
  <joint name="drawer_slide" type="prismatic">
    <parent link="carcass"/><child link="drawer"/>
    <origin xyz="{xyz(drawer_origin)}" rpy="0 0 0"/>
    <axis xyz="0 -1 0"/>
    <limit lower="0" upper="{travel:.6g}" effort="50" velocity="0.5"/>
    <dynamics damping="1.0" friction="0.5"/>
  </joint>
  <joint name="door_hinge" type="revolute">
    <parent link="carcass"/><child link="door"/>
    <origin xyz="{xyz(door_origin)}" rpy="0 0 0"/>
    <axis xyz="0 0 -1"/>
    <limit lower="0" upper="{math.radians(100):.6g}" effort="10" velocity="1.5"/>
    <dynamics damping="0.05" friction="0.02"/>
  </joint>
</robot>
"""
    path = folder / f"{name}.urdf"
    path.write_text(text)
    return path


def write_broken_urdfs(folder: str | Path) -> dict[str, tuple[Path, str]]:
    """One bad URDF per case the importer must refuse: case -> (path, a fragment its error names)."""
    folder = Path(folder)
    good = write_cabinet_urdf(folder / "good").read_text()
    base = folder / "good"
    cases = {
        "missing_mesh": (good.replace("meshes/drawer.obj", "meshes/no_such_drawer.obj"), "no_such_drawer.obj"),
        "unknown_link": (good.replace('<child link="door"/>', '<child link="dor"/>'), "'dor'"),
        "two_parents": (good.replace('<parent link="carcass"/><child link="door"/>', '<parent link="carcass"/><child link="drawer"/>'),
                        "two parents"),
        "loop": (good.replace('<parent link="carcass"/><child link="drawer"/>', '<parent link="door"/><child link="carcass"/>'),
                 "loop"),
        "lower_above_upper": (good.replace('<limit lower="0" upper="1.74533"', '<limit lower="2" upper="1.74533"'),
                              "door_hinge"),
        "not_a_number": (good.replace('<dynamics damping="1.0"', '<dynamics damping="one"'), 'damping="one"'),
    }
    out = {}
    for case, (text, fragment) in cases.items():
        assert text != good, case
        path = base / f"{case}.urdf"
        path.write_text(text)
        out[case] = (path, fragment)
    return out
