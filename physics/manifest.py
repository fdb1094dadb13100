"""What validation reads from an export dir: ``export.json`` as typed records, the hull
geometry of every object, the ground plane, and where the floor is.

Only the exported files are read (what users load), never the scene dir's meshes.

The ground plane (``exporters/ground.py``): validation puts into both simulators the plane
the export recorded (``ground.added``). An export made before ground planes existed (no
``ground`` in export.json) gets the plane the export would have added, built here
(``origin`` "validation"); an export made with ``ExportConfig.ground = False`` gets none,
and ``read_manifest(..., ground=False)`` (``hiscene validate --no-ground``) drops any.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import trimesh

from exporters.config import CollisionConfig
from exporters.ground import FLOOR_WORDS, GroundPlan, SceneBody, is_floor_label, plan_ground
from exporters.layout import MANIFEST
from hiscene_sim.rotations import rotation_from_quaternion
from hiscene_sim.scene import SceneError

__all__ = ["FLOOR_WORDS", "ExportManifest", "ExportedObject", "Floor", "find_floor", "read_manifest"]

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]  # w, x, y, z


@dataclass(frozen=True)
class ExportedObject:
    id: str
    label: str
    background: bool
    position: Vec3
    orientation: Quat  # w, x, y, z
    mass: float
    density: float | None
    urdf: str | None  # relative to the export dir
    hulls: tuple[str, ...]  # relative to the export dir (an articulated object's: the whole, joints at zero)
    articulation: dict | None = None  # export.json's record of an articulated object (links, joints)

    @property
    def is_floor(self) -> bool:
        return self.background and is_floor_label(self.label)

    @property
    def joints(self) -> list[dict]:
        """The joints of an articulated object as export.json records them (empty for a rigid one)."""
        return list((self.articulation or {}).get("joints", []))


@dataclass(frozen=True)
class ExportManifest:
    export_dir: Path
    scene: str
    source: Path | None  # the scene dir it was exported from
    formats: tuple[str, ...]
    files: dict[str, str]  # format -> scene-level file, relative to export_dir
    objects: tuple[ExportedObject, ...]
    collision: CollisionConfig  # the CoACD settings it was exported with
    # the material overrides it was exported with (ExportConfig's; None = by label)
    static_friction: float | None
    dynamic_friction: float | None
    restitution: float | None
    materials: dict[str, dict]
    ground: GroundPlan | None = None  # the plane validation adds to both simulators (added), else None
    ground_record: GroundPlan | None = None  # export.json's ``ground`` as written (None: an older export)

    @property
    def foreground(self) -> list[ExportedObject]:
        return [o for o in self.objects if not o.background]

    @property
    def background(self) -> list[ExportedObject]:
        return [o for o in self.objects if o.background]

    def get(self, object_id: str) -> ExportedObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(object_id)

    def path(self, fmt: str) -> Path | None:
        rel = self.files.get(fmt)
        return self.export_dir / rel if rel else None

    def export_config(self):
        """The ExportConfig this export was made with, as far as export.json records it:
        formats, CoACD settings, the material overrides, and every density that differs from
        the density table as a per-label override (so each object keeps its mass)."""
        from exporters.config import ExportConfig
        from exporters.mass import MIN_MASS
        from exporters.materials import density_for_label

        densities: dict[str, float] = {}
        for o in self.objects:
            if o.density is None or o.mass <= MIN_MASS * 1.0001:  # clamped masses say nothing
                continue
            if not math.isclose(density_for_label(o.label)[0], o.density, rel_tol=1e-9):
                densities[o.label] = o.density  # an override (or --default-density): keep it per label
        return ExportConfig(
            formats=self.formats, collision=self.collision, densities=densities, materials=self.materials,
            static_friction=self.static_friction, dynamic_friction=self.dynamic_friction, restitution=self.restitution,
            ground=self.ground_record.enabled if self.ground_record is not None else True,
        )

    @cached_property
    def hull_points(self) -> dict[str, np.ndarray]:
        """object id -> (n, 3) vertices of all its collision hulls, in its local frame; the
        ground plane's slab under its id when there is one."""
        out = {}
        for o in self.objects:
            pts = [obj_vertices(self.export_dir / h) for h in o.hulls]
            out[o.id] = np.concatenate(pts) if pts else np.zeros((0, 3))
        if self.ground is not None:
            out[self.ground.id] = self.ground.local_points()
        return out

    @property
    def static_ids(self) -> set[str]:
        """Ids of the bodies that do not move: background objects and the ground plane."""
        return {o.id for o in self.background} | ({self.ground.id} if self.ground is not None else set())


def obj_vertices(path: Path) -> np.ndarray:
    """The ``v`` lines of an OBJ file as an (n, 3) array (a hull file has nothing else we need)."""
    rows = [line.split()[1:4] for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("v ")]
    if not rows:
        return np.asarray(trimesh.load(path, force="mesh", process=False).vertices, dtype=float)
    return np.asarray(rows, dtype=float)


def _vec(value, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, (int, float)) for v in value):
        raise SceneError(f"{where}: expected {n} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _collision_config(data: dict) -> CollisionConfig:
    known = set(CollisionConfig.__dataclass_fields__)
    return CollisionConfig(**{k: v for k, v in data.items() if k in known})


def read_manifest(export_dir: str | Path, ground: bool = True) -> ExportManifest:
    """Parse ``export_dir/export.json``; raise SceneError naming the file on any problem.
    ``ground=False``: no ground plane, whatever the export recorded (see the module doc)."""
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise SceneError(f"{path}: not found; is {export_dir} a `hiscene export` output dir?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        objects = []
        for i, rec in enumerate(data["objects"]):
            where = f"{path}: objects[{i}]"
            files = rec.get("files", {})
            mass_props = rec.get("mass_properties") or {}
            objects.append(ExportedObject(
                id=str(rec["id"]), label=str(rec["label"]), background=bool(rec["background"]),
                position=_vec(rec["position"], 3, f"{where}.position"),
                orientation=_vec(rec["orientation"], 4, f"{where}.orientation"),
                mass=float(rec.get("mass", 0.0)), density=mass_props.get("density"),
                urdf=files.get("urdf"), hulls=tuple(files.get("hulls", [])),
                articulation=rec.get("articulation"),
            ))
        # exports before per-label materials had one friction / restitution for all objects
        first = data["objects"][0] if data["objects"] else {}
        legacy = {k: first.get(k) for k in ("static_friction", "dynamic_friction", "restitution")}
        overrides = data.get("material_overrides", legacy)
        record = GroundPlan.from_json(data["ground"]) if isinstance(data.get("ground"), dict) else None
        manifest = ExportManifest(
            export_dir=export_dir,
            scene=str(data.get("scene", "scene")),
            source=Path(data["source"]) if data.get("source") else None,
            formats=tuple(data.get("formats", ())),
            files=dict(data.get("files", {})),
            objects=tuple(objects),
            collision=_collision_config(data.get("collision_config", {})),
            static_friction=_optional_float(overrides.get("static_friction")),
            dynamic_friction=_optional_float(overrides.get("dynamic_friction")),
            restitution=_optional_float(overrides.get("restitution")),
            materials=dict(overrides.get("materials") or {}),
            ground_record=record,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SceneError):
            raise
        raise SceneError(f"{path}: not a readable export manifest ({type(exc).__name__}: {exc})") from None
    return replace(manifest, ground=_validation_ground(manifest) if ground else None)


def _validation_ground(manifest: ExportManifest) -> GroundPlan | None:
    record = manifest.ground_record
    if record is not None:
        return record if record.added else None
    pts = manifest.hull_points
    bodies = [SceneBody(o.id, o.label, o.background, world_points(pts[o.id], o.position, o.orientation))
              for o in manifest.objects]
    plan = plan_ground(bodies, True, {o.id for o in manifest.objects})
    return replace(plan, origin="validation") if plan.added else None


# ----------------------------------------------------------------------------------------
# Geometry helpers (quaternions are [w, x, y, z]; conversions in hiscene_sim.rotations)


def world_points(points: np.ndarray, position, orientation) -> np.ndarray:
    return points @ rotation_from_quaternion(orientation).T + np.asarray(position, dtype=float)


def z_extent(points: np.ndarray, position, orientation) -> tuple[float, float]:
    """(lowest, highest) world z of the local ``points`` at the pose."""
    if len(points) == 0:
        z = float(position[2])
        return z, z
    z = points @ rotation_from_quaternion(orientation)[2] + float(position[2])
    return float(z.min()), float(z.max())


@dataclass(frozen=True)
class Floor:
    z: float  # height of the floor's top surface
    source: str  # "ground plane <id> ...", "floor object <id>" or "lowest point of the scene"
    solid: bool = True  # a body is there (ground plane or floor object), not just a height


def find_floor(manifest: ExportManifest) -> Floor:
    """The ground plane, else the top of the floor objects (background labelled
    floor/ground/...), else the lowest point of the exported scene."""
    if manifest.ground is not None:
        g = manifest.ground
        who = "added by the export" if g.origin == "export" else "added by validation: the export predates ground planes"
        return Floor(float(g.z), f"ground plane {g.id} ({who})")
    pts = manifest.hull_points
    floors = [o for o in manifest.objects if o.is_floor]
    if floors:
        tops = [(z_extent(pts[o.id], o.position, o.orientation)[1], o.id) for o in floors]
        z, oid = max(tops)
        return Floor(z, f"floor object {oid}")
    lows = [z_extent(pts[o.id], o.position, o.orientation)[0] for o in manifest.objects]
    return Floor(min(lows) if lows else 0.0, "lowest point of the scene", solid=False)
