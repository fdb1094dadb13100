"""Per-object export work: load, bake scale, make watertight, decompose, mass properties,
and the plausibility of the object's size and mass for its label. An articulated object does
this per link (``exporters/articulated.py``).

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
from exporters.mass import MassProperties, combine_mass_properties, compute_mass_properties
from exporters.materials import Material, check_plausible
from exporters.mesh_io import load_mesh
from exporters.watertight import MeshError, RepairResult, make_watertight
from hiscene_sim.articulation import Articulation
from hiscene_sim.scene import Scene, SceneObject

log = logging.getLogger(__name__)


@dataclass
class PreparedLink:
    """One link of an articulated object, prepared like an object: geometry and mass in the
    link frame (metres, scale applied); ``frame``: 4x4 link-to-object transform with every joint
    at zero."""

    name: str
    label: str
    frame: np.ndarray
    visual: trimesh.Trimesh
    solid: trimesh.Trimesh
    hulls: list[trimesh.Trimesh]
    mass: MassProperties
    repair_method: str
    hulls_from_cache: bool


@dataclass
class PreparedObject:
    """Everything the writers need for one object. Geometry is in the object's rigid local
    frame (metres, scale already applied); the body frame is at ``position`` / ``orientation``.
    An articulated object (``articulation`` set, lengths scaled) also has its ``links``; then
    ``visual``, ``solid``, ``hulls`` and ``mass`` are the whole object's with its joints at zero
    (the ground plane, the GLB and validation's geometry use them; the writers use the links)."""

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
    articulation: Articulation | None = None
    links: list[PreparedLink] = field(default_factory=list)

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


@dataclass
class _Body:
    """One mesh made ready for the writers: watertight, its mass properties and its hulls."""

    repaired: RepairResult
    mass: MassProperties
    mass_warnings: list[str]
    hulls: list[trimesh.Trimesh]
    hulls_from_cache: bool


def _prepare_body(path: Path, scale, who: str, label: str, material_key: tuple[Material, str], config: ExportConfig,
                  seconds: dict[str, float], inertial=None) -> _Body:
    """Load ``path`` with ``scale`` baked in, make it watertight, take its mass properties
    (the input's ``inertial`` when it states them, else volume x the material's density) and
    decompose it; each step's time is added to ``seconds``. The steps of an object and of each
    link of an articulated one."""
    def timed(step: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - t0
        return out

    mesh = timed("load", lambda: bake_scale(load_mesh(path, who), scale))
    repaired = timed("watertight", make_watertight, mesh, who, config.repair)

    def mass_of():
        if inertial is not None:
            return _given_mass(inertial, repaired.solid), []
        material, key = material_key
        try:
            return compute_mass_properties(repaired.solid, label, material.density, key)
        except ValueError as exc:
            raise MeshError(f"{who}: {exc}") from None

    mass, mass_warnings = timed("mass", mass_of)
    hulls, cached = timed("collision", decompose, repaired.solid, config.collision, config.resolved_cache_dir())
    return _Body(repaired, mass, list(mass_warnings), hulls, cached)


def prepare_object(task: ObjectTask) -> PreparedObject:
    obj, config = task.obj, task.config
    if obj.articulation is not None:
        return prepare_articulated(task)
    who = f"object {obj.id!r} ({obj.label!r})"
    seconds: dict[str, float] = {}
    material, key = task.material or config.material(obj.label)
    body = _prepare_body(task.scene_dir / obj.mesh, obj.pose.scale, who, obj.label, (material, key), config, seconds)
    repaired, mass_warnings = body.repaired, body.mass_warnings
    if not task.is_background:
        # largest extent of the local bounding box: within sqrt(3) of the oriented box's, which PLAUSIBLE_MARGIN covers
        size = float(np.max(repaired.visual.extents))
        mass_warnings += check_plausible(obj.label, size, body.mass.mass, obj.id, (material, key))

    return PreparedObject(
        id=obj.id,
        label=obj.label,
        is_background=task.is_background,
        position=obj.pose.position,
        orientation=obj.pose.orientation,
        scale=obj.pose.scale,
        visual=repaired.visual,
        solid=repaired.solid,
        hulls=body.hulls,
        mass=body.mass,
        repair_method=repaired.method,
        hulls_from_cache=body.hulls_from_cache,
        seconds=seconds,
        warnings=[*repaired.warnings, *mass_warnings],
    )


def _given_mass(e, solid: trimesh.Trimesh) -> MassProperties:
    """An input ``<inertial>`` (hiscene_sim.articulation.Inertial) as the link's mass properties."""
    volume = float(solid.volume)
    return MassProperties(mass=float(e.mass), center_of_mass=tuple(e.center_of_mass), inertia=tuple(e.inertia),
                          volume=volume, density=float(e.mass) / volume if volume > 0 else 0.0,
                          density_source="input <inertial>")


def prepare_articulated(task: ObjectTask) -> PreparedObject:
    """Every link of ``task.obj`` prepared, and the whole object at joint zero (``exporters/articulated.py``
    says how masses, materials and the size check go per link)."""
    obj, config = task.obj, task.config
    who = f"object {obj.id!r} ({obj.label!r})"
    s = float(obj.pose.scale[0])
    articulation = obj.articulation.scaled(s, s**3)  # s times larger: masses x s^3, inertia x s^5
    material, key = task.material or config.material(obj.label)
    frames = articulation.link_frames()
    seconds: dict[str, float] = {}
    links: list[PreparedLink] = []
    warnings: list[str] = []
    for link in articulation.links:
        part = f"{who} link {link.name!r}"
        body = _prepare_body(task.scene_dir / link.mesh, (s, s, s), part, obj.label, (material, key), config, seconds,
                             link.inertial)
        repaired = body.repaired
        warnings += [f"{part}: {n}" for n in body.mass_warnings]
        warnings += [f"{part}: {w}" if not w.startswith(who) else w for w in repaired.warnings]
        links.append(PreparedLink(link.name, link.label, frames[link.name], repaired.visual, repaired.solid, body.hulls,
                                  body.mass, repaired.method, body.hulls_from_cache))

    def whole(meshes: list[tuple[trimesh.Trimesh, np.ndarray]]) -> trimesh.Trimesh:
        return trimesh.util.concatenate([m.copy().apply_transform(t) for m, t in meshes])

    visual = whole([(link.visual, link.frame) for link in links])
    solid = whole([(link.solid, link.frame) for link in links])
    hulls = [h.copy().apply_transform(link.frame) for link in links for h in link.hulls]
    mass = combine_mass_properties([(link.mass, link.frame) for link in links], "links")
    if not task.is_background:
        warnings += check_plausible(obj.label, float(np.max(visual.extents)), mass.mass, obj.id, (material, key))
    methods = sorted({link.repair_method for link in links})
    return PreparedObject(
        id=obj.id, label=obj.label, is_background=task.is_background, position=obj.pose.position,
        orientation=obj.pose.orientation, scale=obj.pose.scale, visual=visual, solid=solid, hulls=hulls, mass=mass,
        repair_method="links: " + ", ".join(methods), hulls_from_cache=all(link.hulls_from_cache for link in links),
        seconds=seconds, warnings=warnings, articulation=articulation, links=links,
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
