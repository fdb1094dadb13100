"""Scene dirs built from pybullet_data meshes (``hiscene_sim.pybullet_assets``) for the
validation's tests, benchmarks and examples: a floor plus objects placed by rule (resting on
the floor or on another object, optionally lifted, sunk, tilted or overlapping).

Each asset's mesh is written once as ``meshes/<asset>.glb``; per-object sizes are pose
scales, as in any scene dir.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.pybullet_assets import asset_mesh
from hiscene_sim.rotations import rpy_to_matrix, rpy_to_quaternion
from hiscene_sim.scene import Pose, Provenance, Scene, SceneObject, save_scene

FLOOR_ID = "floor"
FLOOR_THICKNESS = 0.05
FLOOR_RGBA = (205, 200, 185, 255)
#: Assets whose CoACD decomposition is quick (convex or few hulls), for scenes built in tests.
QUICK_ASSETS = ("cube", "jenga", "duck", "mug")


@dataclass(frozen=True)
class Placement:
    """One object: ``asset`` at ``xy`` resting on ``on`` (the floor or another object's id),
    turned by ``rpy_deg`` (roll, pitch, yaw), raised by ``lift`` (negative sinks it); ``z``
    (the object frame's height) overrides the resting rule."""

    id: str
    asset: str
    xy: tuple[float, float] = (0.0, 0.0)
    rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] | None = None  # default: the asset's real size
    on: str = FLOOR_ID
    lift: float = 0.0
    z: float | None = None
    label: str | None = None


def _linear(rpy_deg, scale) -> np.ndarray:
    return rpy_to_matrix(rpy_deg, degrees=True) @ np.diag(scale)


def build_scene(scene_dir: str | Path, placements: list[Placement], floor_size: float = 2.0, name: str = "synthetic") -> Scene:
    """Write a scene dir: a ``floor_size`` square floor (a unit box scaled, top at z = 0,
    background) and the placements."""
    scene_dir = Path(scene_dir)
    (scene_dir / "meshes").mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def mesh_file(asset: str) -> str:
        if asset not in written:
            mesh, _ = asset_mesh(asset)
            rel = f"meshes/{asset}.glb"
            atomic_write_bytes(scene_dir / rel, trimesh.Scene(mesh).export(file_type="glb"))
            written[asset] = rel
        return written[asset]

    prov = Provenance("synthetic", "hiscene_sim.testing.physics_scenes", {"floor_size": floor_size})
    floor_mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    floor_mesh.visual = trimesh.visual.ColorVisuals(floor_mesh, vertex_colors=np.tile(FLOOR_RGBA, (len(floor_mesh.vertices), 1)))
    atomic_write_bytes(scene_dir / "meshes" / "floor.glb", trimesh.Scene(floor_mesh).export(file_type="glb"))
    floor = SceneObject(
        FLOOR_ID, "floor", "meshes/floor.glb",
        Pose((0.0, 0.0, -FLOOR_THICKNESS / 2), (1.0, 0.0, 0.0, 0.0), (floor_size, floor_size, FLOOR_THICKNESS)),
        provenance=prov,
    )
    tops = {FLOOR_ID: 0.0}
    objects = []
    for pl in placements:
        if pl.on not in tops:
            raise ValueError(f"placement {pl.id!r}: support {pl.on!r} is not placed before it")
        mesh, asset_scale = asset_mesh(pl.asset)
        scale = tuple(float(s) for s in (pl.scale or asset_scale))
        world = np.asarray(mesh.vertices) @ _linear(pl.rpy_deg, scale).T
        if pl.z is None:
            z = tops[pl.on] - float(world[:, 2].min()) + pl.lift
        else:
            z = float(pl.z)
        tops[pl.id] = z + float(world[:, 2].max())
        pose = Pose((float(pl.xy[0]), float(pl.xy[1]), z), rpy_to_quaternion(pl.rpy_deg, degrees=True), scale)
        objects.append(SceneObject(pl.id, pl.label or pl.asset, mesh_file(pl.asset), pose, provenance=prov))
    scene = Scene(objects=objects, background=[floor], provenance=[prov], name=name)
    save_scene(scene, scene_dir)
    return scene


def grid_placements(n: int, assets: tuple[str, ...] = QUICK_ASSETS, spacing: float = 0.25, stack_every: int = 0) -> list[Placement]:
    """``n`` objects on a square grid on the floor, cycling through ``assets`` with varied yaw;
    with ``stack_every`` k > 0, every k-th object is a jenga block laid on the previous one."""
    side = max(1, math.ceil(math.sqrt(n)))
    out: list[Placement] = []
    for i in range(n):
        if stack_every and i % stack_every == stack_every - 1 and out and out[-1].on == FLOOR_ID and out[-1].asset in ("cube", "jenga"):
            below = out[-1]
            out.append(Placement(f"obj_{i:03d}", "jenga", below.xy, (0.0, 0.0, 90.0), on=below.id))
            continue
        row, col = divmod(i, side)
        xy = ((col - (side - 1) / 2) * spacing, (row - (side - 1) / 2) * spacing)
        asset = assets[i % len(assets)]
        out.append(Placement(f"obj_{i:03d}", asset, xy, (0.0, 0.0, (37.0 * i) % 360.0)))
    return out
