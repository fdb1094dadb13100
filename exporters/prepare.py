"""Per-object export work: load, bake scale, make watertight, decompose, mass properties,
and the plausibility of the object's size and mass for its label.

Objects are independent, so they are spread over processes (``ExportConfig.workers``).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from exporters.collision import decompose
from exporters.config import ExportConfig
from exporters.mass import MassProperties, compute_mass_properties
from exporters.materials import Material, check_plausible
from exporters.mesh_io import load_mesh
from exporters.watertight import MeshError, make_watertight
from hiscene_sim.scene import Scene, SceneObject

log = logging.getLogger(__name__)


@dataclass
class PreparedObject:
    """Everything the writers need for one object. Geometry is in the object's rigid local
    frame (metres, scale already applied); the body frame is at ``position`` / ``orientation``."""

    id: str
    label: str
    is_background: bool
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]  # w, x, y, z
    scale: tuple[float, float, float]  # as in the scene; already baked into the geometry
    visual: trimesh.Trimesh
    solid: trimesh.Trimesh
    hulls: list[trimesh.Trimesh]
    mass: MassProperties
    repair_method: str
    hulls_from_cache: bool
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.id} ({self.label!r})"


@dataclass(frozen=True)
class ObjectTask:
    scene_dir: Path
    obj: SceneObject
    is_background: bool
    config: ExportConfig
    material: tuple[Material, str] | None = None  # config.material(label), looked up once by the caller


def bake_scale(mesh: trimesh.Trimesh, scale: tuple[float, float, float]) -> trimesh.Trimesh:
    s = np.asarray(scale, dtype=np.float64)
    if np.allclose(s, 1.0):
        return mesh
    mesh = mesh.copy()
    mesh.apply_transform(np.diag([*s, 1.0]))  # flips winding itself when det < 0
    return mesh


def prepare_object(task: ObjectTask) -> PreparedObject:
    obj, config = task.obj, task.config
    who = f"object {obj.id!r} ({obj.label!r})"
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    mesh = bake_scale(load_mesh(task.scene_dir / obj.mesh, who), obj.pose.scale)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    repaired = make_watertight(mesh, who, config.repair)
    seconds["watertight"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    material, key = task.material or config.material(obj.label)
    try:
        mass, mass_warnings = compute_mass_properties(repaired.solid, obj.label, material.density, key)
    except ValueError as exc:
        raise MeshError(f"{who}: {exc}") from None
    if not task.is_background:
        # largest extent of the local bounding box: within sqrt(3) of the oriented box's, which PLAUSIBLE_MARGIN covers
        size = float(np.max(repaired.visual.extents))
        mass_warnings += check_plausible(obj.label, size, mass.mass, obj.id, (material, key))
    seconds["mass"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hulls, cached = decompose(repaired.solid, config.collision, config.resolved_cache_dir())
    seconds["collision"] = time.perf_counter() - t0

    return PreparedObject(
        id=obj.id,
        label=obj.label,
        is_background=task.is_background,
        position=obj.pose.position,
        orientation=obj.pose.orientation,
        scale=obj.pose.scale,
        visual=repaired.visual,
        solid=repaired.solid,
        hulls=hulls,
        mass=mass,
        repair_method=repaired.method,
        hulls_from_cache=cached,
        seconds=seconds,
        warnings=[*repaired.warnings, *mass_warnings],
    )


def prepare_scene(
    scene_dir: Path,
    scene: Scene,
    config: ExportConfig,
    on_done: Callable[[PreparedObject], None] | None = None,
) -> list[PreparedObject]:
    """Prepare every object (foreground then background), in scene order.

    Runs in ``config.resolved_workers()`` processes when there is more than one object.
    The first object that fails stops the export with its error.
    """
    # materials are looked up here, so an unknown label is warned about once, in this process
    materials = {o.label: config.material(o.label) for o in scene.all_objects()}
    tasks = [ObjectTask(Path(scene_dir), o, False, config, materials[o.label]) for o in scene.objects]
    tasks += [ObjectTask(Path(scene_dir), o, True, config, materials[o.label]) for o in scene.background]
    workers = min(config.resolved_workers(), len(tasks))
    results: list[PreparedObject] = []
    if workers <= 1:
        for task in tasks:
            results.append(prepare_object(task))
            if on_done:
                on_done(results[-1])
        return results
    # spawn, not fork: the parent may hold threads (BLAS, rich's progress refresher)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(prepare_object, t) for t in tasks]
        try:
            for future in futures:
                results.append(future.result())
                if on_done:
                    on_done(results[-1])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
