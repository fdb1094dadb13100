"""The scene model: the one contract between stages.

A *scene dir* holds ``scene.json`` plus the files it names (meshes, images). Every stage
reads a scene dir and writes one. This module imports nothing of the stages.

Conventions (see ``docs/scene-format.md``): units metres, up axis +Z, quaternions
``[w, x, y, z]`` (converted by :mod:`hiscene_sim.rotations`). An object's mesh lives in its
local frame; its world geometry is ``p + R(q) @ (s * x)`` (the paper's C_i = {p_i, r_i, s_i, l_i}).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiscene_sim.articulation import Articulation, ArticulationError, articulation_from_json
from hiscene_sim.atomic import atomic_write_text
from hiscene_sim.rotations import quaternion_from_rotation, rotation_from_quaternion, stored_unit_quaternion

FORMAT_NAME = "hiscene-scene"
FORMAT_VERSION = 2  # 2: objects may carry an ``articulation`` (links and joints); version 1 files still load
SCENE_FILE = "scene.json"

#: Object ids are used as file, URDF link, MJCF body and USD prim names, so they are
#: restricted to what all of them accept.
ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class SceneError(ValueError):
    """A scene dir or scene.json that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Pose:
    """Object-to-world transform: world = position + R(orientation) @ (scale * local)."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # w, x, y, z
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def rotation_matrix(self) -> np.ndarray:
        """3x3 rotation matrix of the (normalised) orientation quaternion."""
        return rotation_from_quaternion(self.orientation)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous object-to-world matrix including scale."""
        m = np.eye(4)
        m[:3, :3] = self.rotation_matrix() * np.asarray(self.scale, dtype=float)[None, :]
        m[:3, 3] = self.position
        return m

    def rigid_matrix(self) -> np.ndarray:
        """4x4 object-to-world matrix without scale (the rigid body's frame)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation_matrix()
        m[:3, 3] = self.position
        return m

    @staticmethod
    def from_matrix(matrix: np.ndarray) -> "Pose":
        """Decompose a 4x4 affine matrix into position, rotation and per-axis scale.

        Shear cannot be represented; it is dropped by the polar decomposition
        (``scipy.linalg.polar``), which gives the closest rotation. A mirroring matrix
        (negative determinant) is expressed as a negative x scale.
        """
        from scipy.linalg import polar

        matrix = np.asarray(matrix, dtype=float)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise SceneError(f"transform is not a finite 4x4 matrix: {matrix!r}")
        linear = matrix[:3, :3]
        rot, stretch = polar(linear)  # linear = rot @ stretch
        scale = np.diag(stretch).copy()
        if np.linalg.det(rot) < 0:
            rot[:, 0] *= -1
            scale[0] *= -1
        if np.any(np.abs(scale) < 1e-12):
            raise SceneError(f"transform has a zero scale: {matrix.tolist()}")
        return Pose(
            position=tuple(float(v) for v in matrix[:3, 3]),
            orientation=quaternion_from_rotation(rot),
            scale=tuple(float(v) for v in scale),
        )

    def to_json(self) -> dict[str, list[float]]:
        return {"position": list(self.position), "orientation": list(self.orientation), "scale": list(self.scale)}


@dataclass(frozen=True)
class Provenance:
    """Which stage and backend made (or last changed) something, with its parameters."""

    stage: str
    backend: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    created: str | None = None  # ISO 8601 timestamp

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class SceneObject:
    """One object: its mesh in a local frame, its pose and its semantic label. A rigid body,
    or, with ``articulation`` set, links joined by joints (``hiscene_sim.articulation``): then
    the pose is the root link's, ``mesh`` is the whole object with its joints at zero (what
    stages that see objects as rigid use) and each link has its own mesh."""

    id: str
    label: str
    mesh: str  # path relative to the scene dir
    pose: Pose = field(default_factory=Pose)
    provenance: Provenance | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific records (e.g. completion)
    articulation: Articulation | None = None

    def files(self) -> list[str]:
        """Every file of the object, relative to the scene dir (mesh, Gaussians, link meshes)."""
        out = [self.mesh]
        if isinstance(self.extra.get("gaussians"), str):
            out.append(self.extra["gaussians"])
        if self.articulation is not None:
            out += [link.mesh for link in self.articulation.links]
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "label": self.label, "mesh": self.mesh, "pose": self.pose.to_json()}
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_json()
        if self.articulation is not None:
            out["articulation"] = self.articulation.to_json()
        out.update(self.extra)
        return out


@dataclass
class Scene:
    """A scene: foreground objects (rigid bodies) and background objects (static colliders)."""

    objects: list[SceneObject] = field(default_factory=list)
    background: list[SceneObject] = field(default_factory=list)
    provenance: list[Provenance] = field(default_factory=list)
    name: str = "scene"

    def all_objects(self) -> list[SceneObject]:
        return [*self.objects, *self.background]

    def get(self, object_id: str) -> SceneObject:
        for obj in self.all_objects():
            if obj.id == object_id:
                return obj
        raise KeyError(object_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "units": "meters",
            "up_axis": "Z",
            "objects": [o.to_json() for o in self.objects],
            "background": [o.to_json() for o in self.background],
            "provenance": [p.to_json() for p in self.provenance],
        }


# ----------------------------------------------------------------------------------------
# Loading and validation


def _vector(value: Any, length: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise SceneError(f"{where}: expected a list of {length} numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SceneError(f"{where}: expected finite numbers, got {value!r}")
        out.append(float(v))
    return tuple(out)


def _parse_pose(data: Any, where: str) -> Pose:
    if data is None:
        return Pose()
    if not isinstance(data, dict):
        raise SceneError(f"{where}: pose must be an object with position/orientation/scale")
    unknown = set(data) - {"position", "orientation", "scale"}
    if unknown:
        raise SceneError(f"{where}: unknown pose keys {sorted(unknown)}")
    position = _vector(data.get("position", [0, 0, 0]), 3, f"{where}.position")
    orientation = stored_unit_quaternion(_vector(data.get("orientation", [1, 0, 0, 0]), 4, f"{where}.orientation [w,x,y,z]"),
                                         f"{where}.orientation", SceneError)
    scale = _vector(data.get("scale", [1, 1, 1]), 3, f"{where}.scale")
    if any(abs(s) < 1e-9 for s in scale):
        raise SceneError(f"{where}.scale: every scale factor must be non-zero, got {list(scale)}")
    return Pose(position, orientation, scale)


def _parse_provenance(data: Any, where: str) -> Provenance:
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str) or not isinstance(data.get("backend"), str):
        raise SceneError(f"{where}: provenance needs string 'stage' and 'backend'")
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise SceneError(f"{where}.parameters: must be an object")
    return Provenance(data["stage"], data["backend"], params, data.get("seconds"), data.get("created"))


def check_relative_path(path: str, where: str) -> None:
    """A mesh path must be relative and stay inside the scene dir."""
    p = Path(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path:
        raise SceneError(f"{where}: mesh path {path!r} must be a relative path inside the scene dir (no '..')")


def _parse_object(data: Any, where: str) -> SceneObject:
    if not isinstance(data, dict):
        raise SceneError(f"{where}: expected an object, got {type(data).__name__}")
    for key in ("id", "label", "mesh"):
        if key not in data:
            raise SceneError(f"{where}: missing required key {key!r}")
    oid = data["id"]
    if not isinstance(oid, str) or not ID_PATTERN.match(oid):
        raise SceneError(
            f"{where}: id {oid!r} is not valid: use 1-64 characters [A-Za-z0-9_], not starting with a digit "
            "(ids name files, URDF links and USD prims)"
        )
    where = f"{where} (id {oid!r})"
    label = data["label"]
    if not isinstance(label, str) or not label.strip():
        raise SceneError(f"{where}: label must be a non-empty string, got {label!r}")
    mesh = data["mesh"]
    if not isinstance(mesh, str):
        raise SceneError(f"{where}: mesh must be a string path, got {mesh!r}")
    check_relative_path(mesh, f"{where}.mesh")
    pose = _parse_pose(data.get("pose"), f"{where}.pose")
    prov = _parse_provenance(data["provenance"], f"{where}.provenance") if "provenance" in data else None
    extra = {k: v for k, v in data.items() if k not in {"id", "label", "mesh", "pose", "provenance", "articulation"}}
    articulation = None
    if data.get("articulation") is not None:
        try:
            articulation = articulation_from_json(data["articulation"])
        except ArticulationError as exc:
            raise SceneError(f"{where}.articulation: {exc}") from None
        for link in articulation.links:
            check_relative_path(link.mesh, f"{where}.articulation link {link.name!r}.mesh")
        s = pose.scale
        if not (math.isclose(s[0], s[1], rel_tol=1e-6) and math.isclose(s[0], s[2], rel_tol=1e-6)) or s[0] < 0:
            raise SceneError(f"{where}.pose.scale: an articulated object takes one positive uniform scale "
                             f"(its joints would shear otherwise), got {list(s)}")
    if "gaussians" in extra:  # optional: the object's 3D Gaussians (3DGS PLY), same frame as its mesh
        if not isinstance(extra["gaussians"], str):
            raise SceneError(f"{where}: gaussians must be a string path, got {extra['gaussians']!r}")
        check_relative_path(extra["gaussians"], f"{where}.gaussians")
    return SceneObject(id=oid, label=label, mesh=mesh, pose=pose, provenance=prov, extra=extra, articulation=articulation)


def scene_from_json(data: Any, source: str = "scene.json") -> Scene:
    """Validate a parsed scene.json and build a Scene; raise SceneError at the first problem."""
    if not isinstance(data, dict):
        raise SceneError(f"{source}: top level must be a JSON object")
    if data.get("format") != FORMAT_NAME:
        raise SceneError(f"{source}: 'format' must be {FORMAT_NAME!r}, got {data.get('format')!r}")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise SceneError(f"{source}: unsupported version {version!r} (this build reads 1..{FORMAT_VERSION})")
    if data.get("units", "meters") not in ("meters", "metres", "m"):
        raise SceneError(f"{source}: units must be meters, got {data.get('units')!r}")
    if str(data.get("up_axis", "Z")).upper() != "Z":
        raise SceneError(f"{source}: up_axis must be Z, got {data.get('up_axis')!r}")
    objects_data = data.get("objects")
    if not isinstance(objects_data, list):
        raise SceneError(f"{source}: 'objects' must be a list")
    background_data = data.get("background", [])
    if not isinstance(background_data, list):
        raise SceneError(f"{source}: 'background' must be a list")
    objects = [_parse_object(o, f"{source}: objects[{i}]") for i, o in enumerate(objects_data)]
    background = [_parse_object(o, f"{source}: background[{i}]") for i, o in enumerate(background_data)]
    seen: dict[str, str] = {}
    for kind, items in (("objects", objects), ("background", background)):
        for i, obj in enumerate(items):
            if obj.id.lower() in seen:
                raise SceneError(
                    f"{source}: {kind}[{i}] id {obj.id!r} duplicates {seen[obj.id.lower()]} "
                    "(ids must be unique, ignoring case, as they name files)"
                )
            seen[obj.id.lower()] = f"{kind}[{i}]"
    provenance = [_parse_provenance(p, f"{source}: provenance[{i}]") for i, p in enumerate(data.get("provenance", []))]
    name = data.get("name", "scene")
    if not isinstance(name, str):
        raise SceneError(f"{source}: name must be a string")
    return Scene(objects=objects, background=background, provenance=provenance, name=name)


def load_scene(scene_dir: str | Path, check_files: bool = True) -> Scene:
    """Load and validate ``scene_dir/scene.json``; with check_files, every mesh must exist."""
    scene_dir = Path(scene_dir)
    path = scene_dir / SCENE_FILE
    if not scene_dir.is_dir():
        raise SceneError(f"{scene_dir}: not a directory (expected a scene dir with {SCENE_FILE})")
    if not path.is_file():
        raise SceneError(f"{path}: not found (a scene dir holds {SCENE_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SceneError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise SceneError(f"{path}: not UTF-8 text ({exc.reason})") from None
    scene = scene_from_json(data, str(path))
    if check_files:
        for obj in scene.all_objects():
            meshes = [obj.mesh, *(link.mesh for link in obj.articulation.links)] if obj.articulation else [obj.mesh]
            for rel in meshes:
                if not (scene_dir / rel).is_file():
                    raise SceneError(f"{path}: object {obj.id!r} ({obj.label!r}): mesh file {scene_dir / rel} not found")
    return scene


def save_scene(scene: Scene, scene_dir: str | Path) -> Path:
    """Validate and write ``scene_dir/scene.json`` atomically (temp file + rename)."""
    scene_dir = Path(scene_dir)
    data = scene.to_json()
    scene_from_json(json.loads(json.dumps(data)), str(scene_dir / SCENE_FILE))  # never write what we cannot read
    scene_dir.mkdir(parents=True, exist_ok=True)
    path = scene_dir / SCENE_FILE
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path
