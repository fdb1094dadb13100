"""Object meshes for the parsing test sets, from three generators none of which is the demo's.

* ``synth:*`` - NVIDIA's ``scene-synthesizer`` procedural assets (tables, shelves, cabinets,
  a refrigerator, mugs, bowls, plates, glasses), drawn with random dimensions.
* ``pybullet:*`` - pybullet_data meshes (the table, mug, duck, teddy, lego, jenga, tray, and
  random objects from ``random_urdfs``).
* ``proc:*`` - furniture this module builds from boxes and cylinders (chairs, sofas,
  armchairs, coffee tables, potted plants, floor lamps), because neither package has seating
  or plants.

Every asset comes back in its own frame: footprint centred on the origin, lowest point at
z = 0, +Z up, metres; with a ``material`` naming the procedural texture it gets after fusing
(:mod:`hiscene_sim.testing.textures`) and its base colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

PALETTE = {
    "wood": [(150, 105, 60), (120, 80, 45), (185, 140, 90), (95, 65, 40), (200, 170, 120)],
    "fabric": [(90, 100, 120), (140, 60, 55), (70, 110, 80), (160, 150, 135), (60, 60, 70), (180, 120, 60)],
    "ceramic": [(235, 235, 228), (200, 215, 230), (230, 200, 180), (170, 200, 170), (60, 70, 110)],
    "metal": [(170, 170, 175), (90, 90, 95), (200, 195, 185)],
    "plant": [(60, 120, 50), (80, 140, 60), (45, 100, 55)],
    "plastic": [(220, 60, 50), (240, 200, 60), (60, 120, 200), (240, 240, 240), (40, 40, 40)],
}


@dataclass
class Asset:
    name: str  # "synth:table", "proc:chair", ...
    label: str  # category: "table", "chair", ...
    mesh: trimesh.Trimesh  # own frame: footprint centred, lowest point z = 0
    material: str  # key of PALETTE (the texture kind)
    color: tuple[int, int, int]
    keep_texture: bool = False  # pybullet assets with a real texture keep it under the noise


def _grounded(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    lo, hi = mesh.bounds
    mesh.apply_translation([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return mesh


def _box(extents, center) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(center)
    return box


def _cylinder(radius, height, center, sections=24) -> trimesh.Trimesh:
    cyl = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    cyl.apply_translation(center)
    return cyl


def _union(parts) -> trimesh.Trimesh:
    # overlapping closed parts: the voxeliser of the fusing step solidifies their union
    return trimesh.util.concatenate(parts)


def _color(rng: np.random.Generator, material: str) -> tuple[int, int, int]:
    options = PALETTE[material]
    return tuple(int(c) for c in options[int(rng.integers(len(options)))])


# ------------------------------------------------------------------------ proc: furniture


def chair(rng) -> tuple[trimesh.Trimesh, str]:
    w, d = rng.uniform(0.40, 0.50), rng.uniform(0.40, 0.48)
    seat_h, seat_t, leg = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.045)
    back_h = rng.uniform(0.35, 0.5)
    parts = [_box((w, d, seat_t), (0, 0, seat_h - seat_t / 2))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((leg, leg, seat_h - seat_t), (sx * (w - leg) / 2, sy * (d - leg) / 2, (seat_h - seat_t) / 2)))
    back_t = rng.uniform(0.025, 0.045)
    parts.append(_box((w, back_t, back_h), (0, d / 2 - back_t / 2, seat_h + back_h / 2)))  # back on +y
    return _union(parts), "wood"


def sofa(rng, width=None) -> tuple[trimesh.Trimesh, str]:
    w = width if width is not None else rng.uniform(1.6, 2.4)
    d, base_h, back_h, arm_h = rng.uniform(0.8, 0.95), rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
    arm, back_t = rng.uniform(0.12, 0.2), rng.uniform(0.15, 0.22)
    parts = [
        _box((w, d, base_h), (0, 0, base_h / 2)),
        _box((w, back_t, back_h), (0, d / 2 - back_t / 2, back_h / 2)),  # back on +y
        _box((arm, d, arm_h), (-(w - arm) / 2, 0, arm_h / 2)),
        _box((arm, d, arm_h), ((w - arm) / 2, 0, arm_h / 2)),
    ]
    n_cushions = max(1, round((w - 2 * arm) / 0.6))
    cw = (w - 2 * arm) / n_cushions
    for i in range(n_cushions):
        x = -(w - 2 * arm) / 2 + cw * (i + 0.5)
        parts.append(_box((cw * 0.96, d - back_t - 0.02, 0.12), (x, -back_t / 2, base_h + 0.05)))
    return _union(parts), "fabric"


def armchair(rng) -> tuple[trimesh.Trimesh, str]:
    return sofa(rng, width=rng.uniform(0.8, 1.0))


def coffee_table(rng) -> tuple[trimesh.Trimesh, str]:
    w, d, h = rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.7), rng.uniform(0.38, 0.48)
    t, leg = rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.06)
    parts = [_box((w, d, t), (0, 0, h - t / 2))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((leg, leg, h - t), (sx * (w / 2 - leg), sy * (d / 2 - leg), (h - t) / 2)))
    if rng.random() < 0.5:  # a lower shelf
        parts.append(_box((w - 2 * leg, d - 2 * leg, 0.02), (0, 0, 0.12)))
    return _union(parts), "wood"


def potted_plant(rng) -> tuple[trimesh.Trimesh, str]:
    r, h = rng.uniform(0.11, 0.18), rng.uniform(0.22, 0.35)
    parts = [_cylinder(r, h, (0, 0, h / 2)), _cylinder(0.015, 0.35, (0, 0, h + 0.15), sections=8)]
    for i in range(int(rng.integers(8, 15))):
        length, width = rng.uniform(0.2, 0.35), rng.uniform(0.05, 0.09)
        leaf = _box((length, width, 0.012), (length / 2, 0, 0))
        tilt = rng.uniform(-0.6, 0.5)  # up or down from horizontal
        leaf.apply_transform(trimesh.transformations.rotation_matrix(tilt, (0, 1, 0)))
        leaf.apply_transform(trimesh.transformations.rotation_matrix(2 * math.pi * i / 11 + rng.uniform(-0.3, 0.3), (0, 0, 1)))
        leaf.apply_translation((0, 0, h + rng.uniform(0.05, 0.3)))
        parts.append(leaf)
    return _union(parts), "plant"


def floor_lamp(rng) -> tuple[trimesh.Trimesh, str]:
    h = rng.uniform(1.3, 1.7)
    parts = [
        _cylinder(rng.uniform(0.13, 0.18), 0.03, (0, 0, 0.015)),
        _cylinder(0.015, h, (0, 0, h / 2), sections=10),
        _cylinder(rng.uniform(0.16, 0.22), 0.25, (0, 0, h + 0.1)),
    ]
    return _union(parts), "metal"


def storage_box(rng) -> tuple[trimesh.Trimesh, str]:
    e = rng.uniform([0.3, 0.25, 0.2], [0.6, 0.45, 0.4])
    return _box(e, (0, 0, e[2] / 2)), "plastic"


PROC = {
    "chair": chair, "sofa": sofa, "armchair": armchair, "coffee_table": coffee_table,
    "plant": potted_plant, "lamp": floor_lamp, "box": storage_box,
}


# ------------------------------------------------------------------------ scene-synthesizer


def _synth(asset) -> trimesh.Trimesh:
    scene = asset.as_trimesh_scene()
    mesh = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def synth_mesh(kind: str, rng) -> tuple[trimesh.Trimesh, str]:
    from scene_synthesizer import procedural_assets as pa

    u = rng.uniform
    if kind == "table":
        return _synth(pa.TableAsset(u(1.1, 1.8), u(0.7, 0.95), u(0.72, 0.78), thickness=u(0.03, 0.05),
                                    leg_thickness=u(0.04, 0.07), leg_margin=u(0.05, 0.15))), "wood"
    if kind == "desk":
        return _synth(pa.TableAsset(u(0.9, 1.4), u(0.55, 0.75), u(0.72, 0.76), leg_as_box=True)), "wood"
    if kind == "bar_table":
        return _synth(pa.TableWithBarsAsset(u(1.0, 1.4), u(0.6, 0.8), u(0.72, 0.76))), "wood"
    if kind == "shelf":
        return _synth(pa.ShelfAsset(u(0.7, 1.2), u(0.3, 0.4), u(1.0, 1.8), int(rng.integers(3, 6)),
                                    backboard_thickness=0.02, cylindrical_columns=bool(rng.random() < 0.5))), "wood"
    if kind == "cabinet":
        return _synth(pa.RecursivelyPartitionedCabinetAsset(u(0.6, 1.2), u(0.4, 0.55), u(0.6, 1.0),
                                                            seed=int(rng.integers(1 << 30)))), "wood"
    if kind == "fridge":
        return _synth(pa.RefrigeratorAsset(width=u(0.65, 0.8), depth=u(0.65, 0.75), height=u(1.5, 1.8))), "metal"
    if kind == "mug":
        return _synth(pa.MugAsset(width=u(0.08, 0.11), height=u(0.09, 0.12))), "ceramic"
    if kind == "bowl":
        return _synth(pa.BowlAsset(width=u(0.14, 0.22), height=u(0.06, 0.09))), "ceramic"
    if kind == "plate":
        return _synth(pa.PlateAsset(width=u(0.22, 0.28), height=u(0.025, 0.035))), "ceramic"
    if kind == "glass":
        return _synth(pa.GlassAsset(width=u(0.07, 0.09), height=u(0.12, 0.17))), "ceramic"
    raise KeyError(kind)


SYNTH = ("table", "desk", "bar_table", "shelf", "cabinet", "fridge", "mug", "bowl", "plate", "glass")

# ------------------------------------------------------------------------ pybullet_data

PYBULLET_MATERIAL = {"table": "wood", "mug": "ceramic", "duck": "plastic", "teddy": "fabric", "lego": "plastic",
                     "jenga": "wood", "tray": "plastic", "bunny": "ceramic"}


def pybullet_mesh(kind: str, rng) -> tuple[trimesh.Trimesh, str, bool]:
    import pybullet_data

    from hiscene_sim.pybullet_assets import asset_mesh

    if kind == "random":
        index = int(rng.integers(1000))
        path = f"{pybullet_data.getDataPath()}/random_urdfs/{index:03d}/{index:03d}.obj"
        mesh = trimesh.load(path, force="mesh", process=False)
        mesh = trimesh.Trimesh(mesh.vertices * 0.015, mesh.faces, process=False)
        return mesh, "plastic", False
    mesh, scale = asset_mesh(kind)
    mesh = mesh.copy()
    mesh.apply_transform(np.diag([*scale, 1.0]))
    textured = mesh.visual is not None and mesh.visual.kind == "texture"
    return mesh, PYBULLET_MATERIAL.get(kind, "plastic"), textured


PYBULLET = ("table", "mug", "duck", "teddy", "lego", "jenga", "tray", "random")


def make_asset(name: str, rng: np.random.Generator) -> Asset:
    """``name`` is ``source:kind`` (``synth:shelf``, ``pybullet:duck``, ``proc:chair``)."""
    source, kind = name.split(":", 1)
    keep = False
    if source == "proc":
        mesh, material = PROC[kind](rng)
    elif source == "synth":
        mesh, material = synth_mesh(kind, rng)
    elif source == "pybullet":
        mesh, material, keep = pybullet_mesh(kind, rng)
    else:
        raise KeyError(name)
    label = {"random": "object", "bar_table": "table", "desk": "table"}.get(kind, kind)
    return Asset(name, label, _grounded(mesh), material, _color(rng, material), keep)
