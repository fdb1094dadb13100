"""``hiscene import``: a scene file with one node per object, or a URDF -> a scene dir.

Every node that carries a triangle mesh becomes one object: its label is the cleaned node
name (``chair_2`` -> ``chair``), its pose the node's world transform (decomposed into
position, rotation and per-axis scale), its mesh the node's geometry in the local frame,
saved as GLB so textures and vertex colours survive. Nodes whose label starts with a
background word (floor, ground, wall, ceiling, background, room, terrain, plane) become
background objects (static colliders). The front door has already put the file into the scene
frame (``--up``, ``--units``, ``--scale``); what it chose is recorded in the scene's import
provenance (``frame``). A folder of mesh files imports one object per file, named by the file.
A URDF imports as one articulated object (``hiscene_sim.urdf_import``), labelled by the file's
name, at the pose its root link has in the file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes, check_replaceable
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.inputs import InputKind, SceneInput, read_scene_input
from hiscene_sim.naming import clean_label, safe_identifier
from hiscene_sim.scene import SCENE_FILE, Pose, Provenance, Scene, SceneError, SceneObject, save_scene

log = logging.getLogger(__name__)

BACKGROUND_WORDS = ("floor", "ground", "wall", "ceiling", "background", "room", "terrain", "plane")


@dataclass
class ImportResult:
    scene_dir: Path
    scene: Scene
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the front door's: implausible sizes for the labels


def is_background_label(label: str) -> bool:
    first = label.split(" ")[0] if label else ""
    return first in BACKGROUND_WORDS


def import_scene(path: str | Path | SceneInput, out_dir: str | Path, frame: InputFrame | None = None) -> ImportResult:
    """Convert a scene file or a folder of meshes (a path, read through the front door with
    ``frame``, or an already read multi-node :class:`SceneInput`) into a scene dir at ``out_dir``
    (written atomically)."""
    t0 = time.perf_counter()
    scene_input = path if isinstance(path, SceneInput) else read_scene_input(path, "import", frame)
    if scene_input.kind is InputKind.URDF:
        return _import_urdf(scene_input, Path(out_dir), t0)
    if scene_input.kind is not InputKind.MULTI_NODE:
        raise SceneError(f"{scene_input.path}: a {scene_input.kind.value} input has no mesh nodes to import")
    path, out_dir, source = scene_input.path, Path(out_dir), scene_input.nodes
    try:
        check_replaceable(out_dir, SCENE_FILE)
    except FileExistsError as exc:
        raise SceneError(str(exc)) from None

    taken: list[str] = []
    skipped: list[str] = []
    objects: list[SceneObject] = []
    background: list[SceneObject] = []
    meshes: dict[str, trimesh.Trimesh] = {}
    for node in sorted(source.graph.nodes_geometry):  # sorted: the graph holds a set
        transform, geom_name = source.graph[node]
        geometry = source.geometry[geom_name]
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            skipped.append(f"{node}: {type(geometry).__name__} without triangles")
            continue
        try:
            pose = Pose.from_matrix(transform)
        except SceneError as exc:
            raise SceneError(f"{path}: node {node!r}: {exc}") from None
        label = clean_label(str(node))
        oid = safe_identifier(str(node), taken)
        taken.append(oid)
        obj = SceneObject(
            id=oid,
            label=label,
            mesh=f"meshes/{oid}.glb",
            pose=pose,
            provenance=Provenance("import", "trimesh", {"source": path.name, "node": str(node)}),
        )
        (background if is_background_label(label) else objects).append(obj)
        meshes[oid] = geometry
    if not meshes:
        raise SceneError(f"{path}: no node holds a triangle mesh ({'; '.join(skipped) or 'the file is empty'})")
    for message in skipped:
        log.warning("%s: skipped node %s", path, message)

    parameters = {"source": str(path.resolve())}
    if scene_input.frame is not None:
        parameters["frame"] = scene_input.frame.to_json()
    scene = Scene(
        objects=objects,
        background=background,
        name=safe_identifier(path.stem),
        provenance=[
            Provenance(
                "import", "trimesh", parameters,
                seconds=round(time.perf_counter() - t0, 3), created=datetime.now(timezone.utc).isoformat(),
            )
        ],
    )
    with atomic_directory(out_dir) as tmp:
        for oid, mesh in meshes.items():
            if not np.all(np.isfinite(mesh.vertices)):
                log.warning("%s: object %s has NaN/inf vertices; the export will drop those faces", path, oid)
            atomic_write_bytes(tmp / "meshes" / f"{oid}.glb", mesh.export(file_type="glb"))
        save_scene(scene, tmp)
    log.info("imported %d objects + %d background from %s in %.2f s", len(objects), len(background), path, time.perf_counter() - t0)
    return ImportResult(out_dir, scene, skipped, list(scene_input.frame.warnings) if scene_input.frame else [])


def _import_urdf(scene_input: SceneInput, out_dir: Path, t0: float) -> ImportResult:
    """One articulated object from the URDF read by the front door."""
    from hiscene_sim.urdf_import import materialize

    asset, path = scene_input.asset, scene_input.path
    try:
        check_replaceable(out_dir, SCENE_FILE)
    except FileExistsError as exc:
        raise SceneError(str(exc)) from None
    oid = safe_identifier(asset.label.replace(" ", "_"))
    obj, files = materialize(asset, oid)
    parameters = {"source": str(path.resolve()), "kind": "urdf"}
    if scene_input.frame is not None:
        parameters["frame"] = scene_input.frame.to_json()
    scene = Scene(objects=[obj], name=safe_identifier(path.stem), provenance=[
        Provenance("import", "yourdfpy+trimesh", parameters, seconds=round(time.perf_counter() - t0, 3),
                   created=datetime.now(timezone.utc).isoformat())])
    with atomic_directory(out_dir) as tmp:
        for rel, mesh in files.items():
            atomic_write_bytes(tmp / rel, mesh.export(file_type="glb"))
        save_scene(scene, tmp)
    art = obj.articulation
    log.info("imported %s: articulated object %s (%d links, %d joints) in %.2f s", path, oid, len(art.links),
             len(art.joints), time.perf_counter() - t0)
    return ImportResult(out_dir, scene, [], list(asset.warnings))
