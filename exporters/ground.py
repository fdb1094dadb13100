"""The ground plane of a scene without a floor.

A scene gets a static ground plane when none of its background objects is a floor
(labelled floor / ground / terrain / plane) under its objects: a floor object exists but
lies beside or above every foreground object, or there is none at all (a tabletop scene
with only a table, the parse stage's catch-all background). The plane's top is the lowest
point of the scene's collision hulls, so nothing starts below it and what stands lowest
stands on it.

Every format carries it (``ExportConfig.ground = False`` opts out):

- URDF: ``ground/ground.urdf``, one static link whose collider is a thin square slab
  (``ground/ground.obj``, a convex hull like every other collider, so PyBullet pads it by
  the same margin as a floor object); ``load_pybullet.py`` loads it with a fixed base;
- MJCF: ``<geom type="plane">`` in the worldbody, named ``GROUND_ID``;
- USD: ``/World/Ground``, a ``UsdGeom.Plane`` (axis Z) with ``CollisionAPI`` and no rigid
  body: a static collider, what Isaac Sim's own ground plane is;
- export.json: ``"ground": {"added", "z", "reason", ...}`` (also when not added, with why).

GLB (for viewing) has no ground. Validation (``physics.manifest``) builds the same plane for
an export made before ground planes existed, with this module's ``plan_ground``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

#: Background objects whose label starts with one of these words are a floor.
FLOOR_WORDS = ("floor", "ground", "terrain", "plane")
GROUND_ID = "ground_plane"  # body / link / geom / prim name; not a label the id rule would give an object
GROUND_LABEL = "ground"  # its material (exporters/materials.py: the floor's surface)
GROUND_FOLDER = "ground"
GROUND_MIN_SIZE_M = 20.0  # side of the square slab at least, m...
GROUND_SCENE_FACTOR = 4.0  # ...and at least this many times the scene's footprint
GROUND_THICKNESS_M = 0.1  # of the URDF slab; MuJoCo's and USD's planes are infinite colliders


def is_floor_label(label: str) -> bool:
    words = re.findall(r"[a-z]+", label.lower())
    return bool(words) and words[0] in FLOOR_WORDS


@dataclass(frozen=True)
class SceneBody:
    """What the decision needs of one object: its world-frame collision-hull vertices."""

    id: str
    label: str
    background: bool
    points: np.ndarray  # (n, 3)


@dataclass(frozen=True)
class GroundPlan:
    """Whether the scene gets a ground plane, where, and why (export.json's ``ground``)."""

    added: bool
    z: float | None  # top of the plane; else the floor top it stands on (None: neither)
    reason: str
    enabled: bool = True  # ExportConfig.ground
    id: str = GROUND_ID
    center: tuple[float, float] = (0.0, 0.0)  # of the slab, world x / y
    size_m: float = 0.0  # side of the square slab
    thickness_m: float = GROUND_THICKNESS_M
    files: dict[str, str] = field(default_factory=dict)  # "urdf" / "hull" -> path relative to the export dir
    origin: str = "export"  # "export", or "validation" when validation made it for an older export

    @property
    def position(self) -> tuple[float, float, float]:
        """World position of the slab's frame: the centre of its top face."""
        return (self.center[0], self.center[1], float(self.z if self.z is not None else 0.0))

    def local_points(self) -> np.ndarray:
        """The slab's 8 corners in its frame (top face at z = 0)."""
        h, t = self.size_m / 2.0, self.thickness_m
        return np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-t, 0.0)], dtype=float)

    def to_json(self) -> dict:
        data = {"added": self.added, "z": self.z, "reason": self.reason, "enabled": self.enabled}
        if self.added:
            data.update(id=self.id, center=list(self.center), size_m=self.size_m, thickness_m=self.thickness_m,
                        label=GROUND_LABEL, files=dict(self.files))
        return data

    @staticmethod
    def from_json(data: dict) -> "GroundPlan":
        z = data.get("z")
        return GroundPlan(
            added=bool(data.get("added", False)), z=None if z is None else float(z), reason=str(data.get("reason", "")),
            enabled=bool(data.get("enabled", True)), id=str(data.get("id", GROUND_ID)),
            center=tuple(float(v) for v in data.get("center", (0.0, 0.0))), size_m=float(data.get("size_m", 0.0)),
            thickness_m=float(data.get("thickness_m", GROUND_THICKNESS_M)), files=dict(data.get("files") or {}),
        )


def _xy_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a[:, :2].min(axis=0) <= b[:, :2].max(axis=0)) and np.all(b[:, :2].min(axis=0) <= a[:, :2].max(axis=0)))


def floor_under_objects(bodies: list[SceneBody]) -> tuple[list[SceneBody], list[SceneBody]]:
    """(floor objects, those of them under at least one foreground object: overlapping it in
    x / y with their top below the object's top). With no foreground object every floor counts."""
    floors = [b for b in bodies if b.background and is_floor_label(b.label) and len(b.points)]
    fg = [b for b in bodies if not b.background and len(b.points)]
    if not fg:
        return floors, floors
    under = [f for f in floors
             if any(_xy_overlap(f.points, o.points) and f.points[:, 2].max() <= o.points[:, 2].max() for o in fg)]
    return floors, under


def plan_ground(bodies: list[SceneBody], enabled: bool = True, id_taken: set[str] | None = None) -> GroundPlan:
    """The ground decision for a scene (see the module doc)."""
    floors, under = floor_under_objects(bodies)
    if under:
        top = max(float(f.points[:, 2].max()) for f in under)
        names = ", ".join(f.id for f in under)
        return GroundPlan(False, top, f"floor object {names} is under the objects (top at z={top:.4f} m)", enabled)
    if not enabled:
        return GroundPlan(False, None, "disabled (ExportConfig.ground = False, --no-ground)", enabled)
    if floors:
        reason = f"floor object {', '.join(f.id for f in floors)} is under none of the objects"
    else:
        reason = "no background object labelled " + " / ".join(FLOOR_WORDS)
    pts = [b.points for b in bodies if len(b.points)]
    allp = np.concatenate(pts) if pts else np.zeros((1, 3))
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    gid = GROUND_ID
    while id_taken and gid in id_taken:
        gid += "_"
    return GroundPlan(
        True, float(lo[2]), reason + f": ground plane at the scene's lowest point (z={lo[2]:.4f} m)", enabled, gid,
        (float((lo[0] + hi[0]) / 2.0), float((lo[1] + hi[1]) / 2.0)), max(GROUND_MIN_SIZE_M, GROUND_SCENE_FACTOR * extent),
    )


def slab_mesh(plan: GroundPlan):
    """The slab as a trimesh box in the ground's frame (top face at z = 0)."""
    import trimesh

    box = trimesh.creation.box(extents=(plan.size_m, plan.size_m, plan.thickness_m))
    box.apply_translation((0.0, 0.0, -plan.thickness_m / 2.0))
    return box
