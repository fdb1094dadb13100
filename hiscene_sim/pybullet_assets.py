"""Real meshes that ship with pybullet (``pybullet_data``), made Z-up, for demos, tests and
benchmarks. Scales are those of pybullet_data's own URDFs, so sizes are real-world."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.rotations import rpy_to_matrix


@dataclass(frozen=True)
class Asset:
    label: str
    mesh: str  # path inside pybullet_data
    scale: tuple[float, float, float]  # from the pybullet_data URDF
    up_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rotation that makes the mesh Z-up
    rgba: tuple[int, int, int, int] | None = None  # the URDF's colour, for meshes without texture


Y_UP = (math.pi / 2, 0.0, 0.0)

ASSETS: dict[str, Asset] = {
    "mug": Asset("mug", "objects/mug.obj", (1.0, 1.0, 1.0), rgba=(255, 51, 51, 255)),
    "duck": Asset("duck", "duck.obj", (0.05, 0.05, 0.05), Y_UP),
    # the teddy's own rest pose on a plane (measured in PyBullet), so it sits without tipping
    "teddy": Asset("teddy", "teddy2_VHACD_CHs.obj", (0.1, 0.1, 0.1), (-0.17, -0.04, 0.0), rgba=(255, 102, 102, 255)),
    "lego": Asset("lego", "lego/lego.obj", (0.1, 0.1, 0.1), Y_UP, rgba=(255, 255, 102, 255)),
    "bunny": Asset("bunny", "bunny.obj", (0.05, 0.05, 0.05), Y_UP, rgba=(220, 210, 190, 255)),
    "jenga": Asset("jenga", "jenga/jenga.obj", (0.15, 0.05, 0.03)),
    "tray": Asset("tray", "tray/tray_textured.obj", (0.5, 0.5, 0.5)),
    "cube": Asset("cube", "cube.obj", (0.05, 0.05, 0.05)),
}

# table/table.urdf: a unit cube scaled into a top and four legs (box, scale, centre)
TABLE_PARTS = (
    ((1.5, 1.0, 0.05), (0.0, 0.0, 0.6)),
    ((0.1, 0.1, 0.58), (-0.65, -0.4, 0.29)),
    ((0.1, 0.1, 0.58), (-0.65, 0.4, 0.29)),
    ((0.1, 0.1, 0.58), (0.65, -0.4, 0.29)),
    ((0.1, 0.1, 0.58), (0.65, 0.4, 0.29)),
)


def data_path() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath())


@lru_cache(maxsize=32)
def _load(rel: str) -> trimesh.Trimesh:
    return trimesh.load(data_path() / rel, force="mesh", process=False)


def asset_mesh(name: str) -> tuple[trimesh.Trimesh, tuple[float, float, float]]:
    """(mesh in its native units, made Z-up; the scale that gives it real size)."""
    if name == "table":
        return table_mesh(), (1.0, 1.0, 1.0)
    asset = ASSETS[name]
    mesh = _load(asset.mesh).copy()
    if any(asset.up_rpy):
        rotation = np.eye(4)
        rotation[:3, :3] = rpy_to_matrix(asset.up_rpy)
        mesh.apply_transform(rotation)
    if asset.rgba is not None and mesh.visual.kind is None:
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile(asset.rgba, (len(mesh.vertices), 1)))
    return mesh, asset.scale


def table_mesh() -> trimesh.Trimesh:
    """pybullet_data's table (1.5 x 1.0 x 0.625 m), one textured mesh, feet at z = 0."""
    cube = _load("table/table.obj")
    parts = []
    for size, centre in TABLE_PARTS:
        part = cube.copy()
        part.apply_transform(np.diag([*size, 1.0]))
        part.apply_translation(centre)
        parts.append(part)
    return trimesh.util.concatenate(parts)


def placement(mesh: trimesh.Trimesh, scale, x: float, y: float, yaw: float, support_z: float) -> np.ndarray:
    """Node transform T = translate @ Rz(yaw) @ diag(scale) that puts the mesh's lowest point on support_z."""
    linear = rpy_to_matrix((0.0, 0.0, yaw)) @ np.diag(scale)
    lowest = float(np.min((mesh.vertices @ linear.T)[:, 2]))
    transform = np.eye(4)
    transform[:3, :3] = linear
    transform[:3, 3] = (x, y, support_z - lowest)
    return transform


def names() -> list[str]:
    return ["table", *ASSETS]
