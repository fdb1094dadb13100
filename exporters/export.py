"""``hiscene export``: scene dir -> a folder PyBullet, MuJoCo and Isaac Sim load as-is.

A scene without a floor under its objects gets a static ground plane at its lowest point in
URDF, MJCF and USD, recorded in export.json's ``ground`` (``exporters/ground.py``;
``ExportConfig.ground = False`` opts out).

The export dir is built in a temp sibling and renamed into place at the end, so a failed
export leaves nothing behind and a previous export stays intact until the new one is whole.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from exporters.config import ExportConfig
from exporters.glb import write_glb
from exporters.ground import GroundPlan, SceneBody, plan_ground
from exporters.layout import GLB_FILE, MANIFEST, PYBULLET_LOADER, ObjectFiles, write_object_files
from exporters.prepare import PreparedObject, prepare_scene
from hiscene_sim.atomic import atomic_directory, atomic_write_text, check_replaceable
from hiscene_sim.rotations import rotation_from_quaternion, unit_quaternion
from hiscene_sim.scene import SceneError, load_scene

log = logging.getLogger(__name__)

EXPORT_FORMAT = "hiscene-export"
EXPORT_VERSION = 1


@dataclass
class ExportResult:
    export_dir: Path
    objects: list[PreparedObject]
    files: dict[str, ObjectFiles]
    scene_files: dict[str, str]  # format -> path relative to export_dir
    ground: GroundPlan | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _articulation_record(obj: PreparedObject) -> dict:
    """export.json's ``articulation`` of an articulated object: per link its frame (joints at
    zero, in the object frame), mass properties and mesh work; the joints with their names in
    each format (``exporters/articulated.py``). The files are in the object's ``files.links``."""
    from exporters.articulated import joint_records
    from hiscene_sim.articulation import Frame

    return {
        "root": obj.articulation.root,
        "links": [{
            "name": link.name, "label": link.label, "frame": Frame.from_matrix(link.frame).to_json(),
            "mass": link.mass.mass, "mass_properties": asdict(link.mass),
            "watertight": {"method": link.repair_method, "faces": len(link.visual.faces), "volume": link.solid.volume},
            "collision": {"hulls": len(link.hulls), "from_cache": link.hulls_from_cache},
        } for link in obj.links],
        "joints": joint_records(obj),
    }


def _object_record(obj: PreparedObject, files: ObjectFiles, config: ExportConfig) -> dict:
    material, key = config.material(obj.label)
    extra = {"articulation": _articulation_record(obj)} if obj.articulation is not None else {}
    return {
        "id": obj.id,
        "label": obj.label,
        "background": obj.is_background,
        "position": list(obj.position),
        "orientation": list(obj.orientation),
        "scale_baked": list(obj.scale),
        "mass": 0.0 if obj.is_background else obj.mass.mass,
        "mass_properties": asdict(obj.mass),
        "material_key": key,
        "density": obj.mass.density,
        "static_friction": material.static_friction,
        "dynamic_friction": material.dynamic_friction,
        "restitution": material.restitution,
        "watertight": {"method": obj.repair_method, "faces": len(obj.visual.faces), "volume": obj.solid.volume},
        "collision": {"hulls": len(obj.hulls), "from_cache": obj.hulls_from_cache},
        "files": asdict(files),
        "seconds": {k: round(v, 4) for k, v in obj.seconds.items()},
        "warnings": obj.warnings,
        **extra,
    }


def _ground_record(ground: GroundPlan, config: ExportConfig) -> dict:
    record = ground.to_json()
    if ground.added:
        material, key = config.material(record["label"])
        record.update(material_key=key, static_friction=material.static_friction,
                      dynamic_friction=material.dynamic_friction, restitution=material.restitution)
    return record


def scene_bodies(prepared: list[PreparedObject]) -> list[SceneBody]:
    """Each object's collision-hull vertices in the world, for the ground decision."""
    out = []
    for obj in prepared:
        rot = rotation_from_quaternion(unit_quaternion(obj.orientation))
        local = [np.asarray(h.vertices, dtype=float) for h in obj.hulls]
        pts = np.concatenate(local) @ rot.T + np.asarray(obj.position, dtype=float) if local else np.zeros((0, 3))
        out.append(SceneBody(obj.id, obj.label, obj.is_background, pts))
    return out


def _writers(
    prepared: list[PreparedObject], files: dict[str, ObjectFiles], out: Path, config: ExportConfig, ground: GroundPlan
) -> dict[str, Callable[[], Path]]:
    """format -> a function writing it into ``out`` and returning the scene-level file.
    Writers are imported only when their format is asked for."""
    writers: dict[str, Callable[[], Path]] = {}
    if "urdf" in config.formats:
        from exporters import pybullet_loader
        from exporters.urdf import write_ground_urdf, write_urdfs

        def urdf() -> Path:
            write_urdfs(prepared, files, out, config)
            if ground.added:
                ground.files.update(write_ground_urdf(ground, out, config))
            atomic_write_text(out / PYBULLET_LOADER, Path(pybullet_loader.__file__).read_text(encoding="utf-8"))
            return out / PYBULLET_LOADER

        writers["urdf"] = urdf
    if "usd" in config.formats:
        from exporters.usd import write_usd

        writers["usd"] = lambda: write_usd(prepared, files, out, config, ground)
    if "mjcf" in config.formats:
        from exporters.mjcf import write_mjcf

        writers["mjcf"] = lambda: write_mjcf(prepared, files, out, config, ground)
    if "glb" in config.formats:
        writers["glb"] = lambda: write_glb(prepared, out / GLB_FILE)
    return writers


def export_scene(
    scene_dir: str | Path,
    out_dir: str | Path,
    config: ExportConfig | None = None,
    on_object: Callable[[PreparedObject], None] | None = None,
) -> ExportResult:
    """Export every object of the scene dir into ``out_dir`` in ``config.formats``."""
    config = config or ExportConfig()
    scene_dir, out_dir = Path(scene_dir), Path(out_dir)
    t_start = time.perf_counter()
    scene = load_scene(scene_dir)
    if not scene.all_objects():
        raise SceneError(f"{scene_dir / 'scene.json'}: the scene has no objects to export")
    try:
        check_replaceable(out_dir, MANIFEST, protect=scene_dir)
    except FileExistsError as exc:
        raise SceneError(str(exc)) from None

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare_scene(scene_dir, scene, config, on_done=on_object)
    seconds["prepare"] = time.perf_counter() - t0
    warnings = [w for o in prepared for w in o.warnings]
    for w in warnings:
        log.warning(w)
    ground = plan_ground(scene_bodies(prepared), config.ground, {o.id for o in prepared})
    if ground.added:
        log.info("ground plane: %s", ground.reason)

    scene_files: dict[str, str] = {}
    with atomic_directory(out_dir) as tmp:
        t0 = time.perf_counter()
        files = {o.id: write_object_files(o, tmp) for o in prepared}
        seconds["meshes"] = time.perf_counter() - t0
        writers = _writers(prepared, files, tmp, config, ground)
        for fmt, write in writers.items():
            t0 = time.perf_counter()
            scene_files[fmt] = write().relative_to(tmp).as_posix()
            seconds[fmt] = time.perf_counter() - t0
            log.info("wrote %s in %.2f s", scene_files[fmt], seconds[fmt])
        seconds["total"] = time.perf_counter() - t_start
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "scene": scene.name,
            "source": str(scene_dir.resolve()),
            "units": "meters",
            "up_axis": "Z",
            "orientation_convention": "wxyz",
            "formats": list(config.formats),
            "files": scene_files,
            "objects": [_object_record(o, files[o.id], config) for o in prepared],
            "ground": _ground_record(ground, config),
            "collision_config": asdict(config.collision),
            "material_overrides": {  # what the per-object values were looked up with (exporters/materials.py)
                "static_friction": config.static_friction, "dynamic_friction": config.dynamic_friction,
                "restitution": config.restitution, "materials": config.materials,
            },
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "warnings": warnings,
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return ExportResult(out_dir, prepared, files, scene_files, ground, seconds, warnings)
