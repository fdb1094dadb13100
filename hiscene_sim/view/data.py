"""What the page shows, read from an export dir (``export.json`` + ``validation.json``) or a
scene dir (``scene.json``): typed records, no HTML.

Poses are ``(x, y, z, qw, qx, qy, qz)`` in metres, +Z up, the object (link) frame of
export.json. An export that was validated gives these pose sets:

- ``before``: as first exported, before ``validate --settle`` repaired any placement. The
  settle stage records each object it moved (``settle.iterations[].moves[]`` in
  validation.json) with the pose before the move; the first move of an object holds its
  original pose, and an object never moved kept its pose, so the final drop test's start
  pose is its original pose.
- ``after``: where each object came to rest in the final PyBullet drop test (what
  ``render_after.png`` shows); ``after_mujoco`` the same in MuJoCo.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from hiscene_sim.scene import SCENE_FILE, SceneError
from hiscene_sim.view.config import ViewConfig
from hiscene_sim.view.meshes import ViewMesh, face_allowances, hull_mesh, load_mesh, view_mesh

log = logging.getLogger(__name__)

VALIDATION_FILE = "validation.json"
EXPORT_FILE = "export.json"
SIMULATORS = {"pybullet": "PyBullet", "mujoco": "MuJoCo"}
Pose7 = tuple[float, float, float, float, float, float, float]


@dataclass
class ObjectCheck:
    """One object in one simulator's final drop test."""

    stable: bool
    drift_m: float | None
    rotation_deg: float | None
    issues: list[str]  # messages for people


@dataclass
class ViewObject:
    id: str
    label: str
    background: bool
    mass_kg: float | None  # None: a scene dir (not exported) or a background object
    hulls: int | None  # None: a scene dir
    poses: dict[str, Pose7]  # pose set -> pose
    checks: dict[str, ObjectCheck] = field(default_factory=dict)  # simulator -> result
    moves: list[str] = field(default_factory=list)  # what the settle repair did to it
    visual: ViewMesh | None = None
    collision: ViewMesh | None = None

    @property
    def verdict(self) -> str:
        """``static`` (background), ``stable`` in every simulator that ran, ``unstable``, or
        ``-`` (not validated)."""
        if self.background:
            return "static"
        if not self.checks:
            return "-"
        return "stable" if all(c.stable for c in self.checks.values()) else "unstable"


@dataclass
class ViewScene:
    name: str
    kind: str  # "export" or "scene"
    source: Path
    objects: list[ViewObject]
    pose_sets: dict[str, str]  # key -> caption, in display order
    default_pose: str
    verdict: str | None = None  # "PASS" / "FAIL"; None: not validated
    failures: list[str] = field(default_factory=list)
    simulators: list[str] = field(default_factory=list)  # that ran, in order
    summary: list[str] = field(default_factory=list)  # lines under the verdict
    notes: list[str] = field(default_factory=list)
    ground_z: float | None = None  # the export's ground plane, when it added one


def _pose(position, orientation) -> Pose7:
    values = [float(v) for v in (*position, *orientation)]
    if len(values) != 7 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"not a pose: position {position!r}, orientation {orientation!r}")
    return tuple(round(v, 6) for v in values)  # type: ignore[return-value]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path}: not readable JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise SceneError(f"{path}: expected a JSON object at the top level")
    return data


@dataclass(frozen=True)
class _MeshFiles:
    visual: Path | None  # None: export.json names no visual mesh (the object is listed, not drawn)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # a scene dir's pose scale (an export has it baked in)
    hulls: tuple[Path, ...] = ()


def load_view_scene(path: str | Path, config: ViewConfig | None = None) -> ViewScene:
    """An export dir (export.json, with validation.json when it was validated) or a scene dir
    (scene.json); SceneError names the file and the problem for anything else."""
    path = Path(path)
    config = config or ViewConfig()
    if (path / EXPORT_FILE).is_file():
        scene, files = _export_scene(path)
    elif (path / SCENE_FILE).is_file():
        scene, files = _scene_dir_scene(path)
    elif not path.is_dir():
        raise SceneError(f"{path}: not a directory (expected an export dir or a scene dir)")
    else:
        raise SceneError(f"{path}: neither an export dir ({EXPORT_FILE}) nor a scene dir ({SCENE_FILE})")
    _load_meshes(scene, files, config)
    return scene


# -- export dir ---------------------------------------------------------------------------------


def _export_scene(export_dir: Path) -> tuple[ViewScene, dict[str, _MeshFiles]]:
    from physics.manifest import read_manifest

    manifest = read_manifest(export_dir, ground=False)
    raw = _read_json(export_dir / EXPORT_FILE)["objects"]
    visuals = {str(r["id"]): (r.get("files") or {}).get("visual_obj") for r in raw}
    objects, files = [], {}
    for o in sorted(manifest.objects, key=lambda o: o.background):  # foreground first, in export order
        objects.append(ViewObject(o.id, o.label, o.background, None if o.background else o.mass, len(o.hulls),
                                  {"export": _pose(o.position, o.orientation)}))
        visual = export_dir / visuals[o.id] if visuals.get(o.id) else None
        files[o.id] = _MeshFiles(visual, hulls=tuple(export_dir / h for h in o.hulls))
    record = manifest.ground_record
    scene = ViewScene(manifest.scene, "export", export_dir, objects, {"export": "as exported"}, "export",
                      ground_z=record.z if record is not None and record.added else None)
    validation = export_dir / VALIDATION_FILE
    if validation.is_file():
        _add_validation(scene, _read_json(validation), validation)
    else:
        scene.notes.append(f"not validated: no {VALIDATION_FILE} (run `hiscene validate {export_dir} --settle`)")
    n_bg = sum(o.background for o in objects)
    scene.summary.insert(0, f"{len(objects) - n_bg} objects, {n_bg} background")
    scene.notes.insert(0, f"export dir: {export_dir}")
    return scene, files


def _add_validation(scene: ViewScene, report: dict, path: Path) -> None:
    try:
        _apply_validation(scene, report)
    except (KeyError, TypeError, ValueError) as exc:
        raise SceneError(f"{path}: not a validation report this viewer reads ({type(exc).__name__}: {exc})") from None


def _apply_validation(scene: ViewScene, report: dict) -> None:
    by_id = {o.id: o for o in scene.objects}
    scene.verdict = "PASS" if report["passed"] else "FAIL"
    scene.failures = [str(f) for f in report.get("failures") or []]
    sims = [s for s in SIMULATORS if isinstance(report.get(s), dict)]
    scene.simulators = sims
    stale = []
    for sim in sims:
        result = report[sim]
        scene.summary.append(f"{SIMULATORS[sim]}: {result['n_stable']} of {result['n_objects']} stable, "
                             f"{'PASS' if result['passed'] else 'FAIL'}")
        for rec in result["objects"]:
            obj = by_id.get(rec["id"])
            if obj is None:
                stale.append(rec["id"])
                continue
            obj.checks[sim] = ObjectCheck(bool(rec["stable"]), rec.get("drift_m"), rec.get("rotation_deg"),
                                          [str(i["message"]) for i in rec.get("issues") or []])
            obj.poses["after" if sim == "pybullet" else f"after_{sim}"] = _pose(rec["rest_position"], rec["rest_orientation"])
            if sim == "pybullet":
                obj.poses["before"] = _pose(rec["start_position"], rec["start_orientation"])
    settle = report.get("settle")
    if isinstance(settle, dict):
        first_move: set[str] = set()
        for it in settle.get("iterations") or []:
            for move in it.get("moves") or []:
                obj = by_id.get(move["id"])
                if obj is None:
                    continue
                if move["id"] not in first_move:
                    first_move.add(move["id"])
                    obj.poses["before"] = _pose(move["before_position"], move["before_orientation"])
                obj.moves.append(f"round {it['index']}: moved {move['translation_m'] * 1000:.1f} mm, turned "
                                 f"{move['rotation_deg']:.1f} deg: " + "; ".join(move.get("actions") or []))
        rounds = len(settle.get("iterations") or [])
        scene.summary.append(f"settle: {rounds} round(s), {len(first_move)} object(s) moved"
                             + (f" ({', '.join(sorted(first_move))})" if first_move else ""))
    if stale:
        scene.notes.append(f"validation.json names objects the export does not have ({', '.join(stale)}): "
                           "it is older than the export; run `hiscene validate` again")
    for o in scene.objects:  # background objects do not move: every pose set is the exported pose
        for key in ("before", "after", *(f"after_{s}" for s in sims if s != "pybullet")):
            o.poses.setdefault(key, o.poses["export"])
    scene.pose_sets = {"before": "before settling", "after": "after settling (PyBullet rest)"}
    if "mujoco" in sims:
        scene.pose_sets["after_mujoco"] = "after settling (MuJoCo rest)"
    scene.pose_sets["export"] = "exported placement"
    scene.default_pose = "after"


# -- scene dir ----------------------------------------------------------------------------------


def _scene_dir_scene(scene_dir: Path) -> tuple[ViewScene, dict[str, _MeshFiles]]:
    from hiscene_sim.scene import load_scene

    loaded = load_scene(scene_dir)
    objects, files = [], {}
    for o, background in [(o, False) for o in loaded.objects] + [(o, True) for o in loaded.background]:
        objects.append(ViewObject(o.id, o.label, background, None, None, {"scene": _pose(o.pose.position, o.pose.orientation)}))
        files[o.id] = _MeshFiles(scene_dir / o.mesh, scale=o.pose.scale)
    n_bg = len(loaded.background)
    scene = ViewScene(loaded.name, "scene", scene_dir, objects, {"scene": "scene poses"}, "scene",
                      summary=[f"{len(objects) - n_bg} objects, {n_bg} background; a scene dir: no physics yet (export and "
                               "validate it for masses, hulls and verdicts)"], notes=[f"scene dir: {scene_dir}"])
    export = scene_dir / "export" / EXPORT_FILE
    if export.is_file():
        scene.notes.append(f"its export: `hiscene view {export.parent}`")
    return scene, files


# -- meshes -------------------------------------------------------------------------------------


def _load_meshes(scene: ViewScene, files: dict[str, _MeshFiles], config: ViewConfig) -> None:
    sources = []
    for o in scene.objects:
        visual = files[o.id].visual
        if visual is not None and not visual.is_file():
            raise SceneError(f"{visual}: not found (the visual mesh of object {o.id!r})")
        sources.append(load_mesh(visual) if visual is not None else None)
    missing = [o.id for o, m in zip(scene.objects, sources) if m is None]
    if missing:
        scene.notes.append(f"not drawn: {', '.join(missing)} (export.json names no visual mesh for them)")
    allowances = face_allowances([len(m.faces) if m is not None else 0 for m in sources], config.max_faces,
                                 config.max_faces_per_object, config.min_faces_per_object)
    for o, mesh, allowance in zip(scene.objects, sources, allowances):
        o.visual = view_mesh(mesh, allowance, scale=files[o.id].scale) if mesh is not None else None
        o.collision = hull_mesh(list(files[o.id].hulls))
    drawn = [o.visual for o in scene.objects if o.visual is not None]
    shown, total = sum(v.n_faces for v in drawn), sum(v.source_faces for v in drawn)
    if shown < total:
        scene.notes.append(f"visual meshes decimated for the viewer: {shown:,} of {total:,} faces shown")
