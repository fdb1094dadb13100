"""``hiscene add``: put one asset (a URDF, or a mesh file: GLB / GLTF / OBJ / PLY / STL) into an
existing scene dir, standing on the floor or on a named support.

The asset is read through the front door (:mod:`hiscene_sim.inputs`: ``--up``, ``--units``,
``--scale``; a URDF becomes one articulated object, a mesh file one rigid object, all its nodes
together), turned by ``yaw`` about +Z, and placed:

* x, y: the centre of its footprint (its bounding box seen from above, after the turn) at the
  ``at`` point;
* z: with a third coordinate in ``at``, its lowest point at that height; else standing on what
  is under its footprint: the ``on`` object's top surface (rays cast straight down over the
  footprint onto that object's mesh; the highest hit is where it rests; the support must be
  under all of the footprint, or the asset would tip over its edge), or the floor (background
  objects labelled floor / ground ...; the same rule), or, where no floor is under it at all,
  the scene's lowest point (where the export puts its ground plane).

Its id is made from its label (the file's name) and unique; an overlap of its bounding box with
another object's is warned about (``hiscene validate --settle`` separates them). The scene dir
is changed atomically: the new mesh files are written to a hidden folder in the scene dir and
moved into place, then ``scene.json`` is replaced; on any error the new files are removed and
the scene is as it was.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.inputs import InputKind, read_scene_input
from hiscene_sim.naming import clean_label, safe_identifier
from hiscene_sim.scene import Pose, Provenance, Scene, SceneError, SceneObject, load_scene, save_scene

log = logging.getLogger(__name__)

FOOTPRINT_SAMPLES = 9  # rays per side over the footprint
SHRINK = 0.02  # rays start this share inside the footprint's edges
MIN_COVER = 0.98  # share of the footprint's rays that must hit the support


@dataclass
class AddResult:
    scene_dir: Path
    object: SceneObject
    rests_on: str  # "table_1", "the floor (floor)", "the ground (the scene's lowest point)", "z given"
    warnings: list[str] = field(default_factory=list)


def _yaw(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def world_mesh(scene_dir: Path, obj: SceneObject) -> trimesh.Trimesh:
    """An object's mesh in the world (``Pose.matrix``: scale, rotation, position)."""
    from exporters.mesh_io import load_mesh
    from exporters.watertight import MeshError

    try:
        mesh = load_mesh(scene_dir / obj.mesh, f"object {obj.id!r}")
    except MeshError as exc:
        raise SceneError(str(exc)) from None
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).apply_transform(obj.pose.matrix())


def _surface_height(supports: list[trimesh.Trimesh], lo: np.ndarray, hi: np.ndarray) -> tuple[float | None, float]:
    """(the highest point of ``supports`` straight under the rectangle ``lo``..``hi`` (x, y), or
    None; the share of the rectangle's sample points that have the support under them)."""
    if not supports:
        return None, 0.0
    mesh = trimesh.util.concatenate(supports)
    pad = (hi - lo) * SHRINK
    xs = np.linspace(lo[0] + pad[0], hi[0] - pad[0], FOOTPRINT_SAMPLES)
    ys = np.linspace(lo[1] + pad[1], hi[1] - pad[1], FOOTPRINT_SAMPLES)
    top = float(mesh.bounds[1, 2]) + 1.0
    origins = np.array([[x, y, top] for x in xs for y in ys])
    directions = np.tile([0.0, 0.0, -1.0], (len(origins), 1))
    hits, rays, _ = mesh.ray.intersects_location(origins, directions, multiple_hits=False)
    share = len(set(rays.tolist())) / len(origins)
    return (float(hits[:, 2].max()) if len(hits) else None), share


def _check_under(what: str, share: float, bounds: np.ndarray, at, allow_none: bool) -> None:
    """The support must be under all of the footprint (``MIN_COVER``): an asset hanging over an
    edge tips off it. A floor under none of it is allowed (the ground plane then holds it)."""
    if share >= MIN_COVER or (allow_none and share == 0.0):
        return
    where = f"x {bounds[0, 0]:.2f}..{bounds[1, 0]:.2f}, y {bounds[0, 1]:.2f}..{bounds[1, 1]:.2f}"
    if share == 0.0:
        raise SceneError(f"{what} is not under the asset's footprint at {at[0]:g},{at[1]:g} (it spans {where})")
    raise SceneError(f"{what} is under only {share:.0%} of the asset's footprint at {at[0]:g},{at[1]:g}, so it would tip "
                     f"over the edge (the support spans {where}); choose another --at")


def _read_asset(path: Path, frame: InputFrame):
    """(label, local mesh, rotation of its frame in the scene, URDF asset or None)."""
    if path.suffix.lower() == ".urdf":
        source = read_scene_input(path, "import", frame)
        asset = source.asset
        return asset.label, asset.merged_mesh(), asset.root_pose[:3, :3], asset, source
    source = read_scene_input(path, "parse", frame)  # a mesh file: everything in it, one object
    if source.kind is not InputKind.FUSED_MESH:
        raise SceneError(f"{path}: {source.kind.value} input cannot be added as one object; add a URDF or a mesh file")
    return clean_label(path.stem), source.mesh, np.eye(3), None, source


def _free_id(scene_dir: Path, scene: Scene, label: str) -> str:
    taken = [o.id for o in scene.all_objects()]
    while True:
        oid = safe_identifier(label.replace(" ", "_"), taken)
        if not (scene_dir / "meshes" / f"{oid}.glb").exists() and not (scene_dir / "meshes" / oid).exists():
            return oid
        taken.append(oid)


def add_asset(scene_dir: str | Path, asset_path: str | Path, at: tuple[float, ...], yaw_deg: float = 0.0,
              on: str | None = None, frame: InputFrame | None = None) -> AddResult:
    """Add ``asset_path`` to the scene dir (see the module doc); returns what was added."""
    t0 = time.perf_counter()
    scene_dir, asset_path = Path(scene_dir), Path(asset_path)
    scene = load_scene(scene_dir)
    if len(at) not in (2, 3) or not all(math.isfinite(v) for v in at):
        raise SceneError(f"--at must be X,Y or X,Y,Z in metres, got {','.join(str(v) for v in at)}")
    if not math.isfinite(yaw_deg):
        raise SceneError(f"--yaw must be a finite number of degrees, got {yaw_deg}")
    support = None
    if on is not None:
        try:
            support = scene.get(on)
        except KeyError:
            raise SceneError(f"{scene_dir / 'scene.json'}: --on {on!r}: no such object (objects: "
                             f"{', '.join(o.id for o in scene.all_objects())})") from None
    label, local, base, urdf, source = _read_asset(asset_path, frame or InputFrame())
    rotation = _yaw(yaw_deg) @ base
    turned = np.asarray(local.vertices) @ rotation.T
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    xy = np.asarray(at[:2], dtype=float) - (lo[:2] + hi[:2]) / 2.0
    foot_lo, foot_hi = lo[:2] + xy, hi[:2] + xy

    warnings: list[str] = list(source.frame.warnings) if source.frame else []
    if len(at) == 3:
        z, rests_on = float(at[2]), "z given"
    elif support is not None:
        mesh = world_mesh(scene_dir, support)
        z, share = _surface_height([mesh], foot_lo, foot_hi)
        _check_under(f"--on {on}: {on}", share, mesh.bounds, at, allow_none=False)
        rests_on = on
    else:
        from exporters.ground import is_floor_label

        floors = [o for o in scene.background if is_floor_label(o.label)]
        meshes = [world_mesh(scene_dir, o) for o in floors]
        z, share = _surface_height(meshes, foot_lo, foot_hi)
        rests_on = f"the floor ({', '.join(o.id for o in floors)})"
        if meshes:
            _check_under(f"the floor ({', '.join(o.id for o in floors)})", share,
                         trimesh.util.concatenate(meshes).bounds, at, allow_none=True)
        if z is None:
            lows = [float(world_mesh(scene_dir, o).bounds[0, 2]) for o in scene.all_objects()]
            z = min(lows) if lows else 0.0
            rests_on = "the ground (the scene's lowest point, where the export puts its ground plane)"
    position = np.array([xy[0], xy[1], z - lo[2]])

    oid = _free_id(scene_dir, scene, label)
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, position
    pose = Pose.from_matrix(transform)
    parameters = {"source": str(asset_path.resolve()), "at": list(at), "yaw_deg": yaw_deg, "on": on, "rests_on": rests_on}
    if source.frame is not None:
        parameters["frame"] = source.frame.to_json()
    if urdf is not None:
        from hiscene_sim.urdf_import import materialize

        obj, files = materialize(urdf, oid, pose)
        obj.provenance = Provenance("add", "yourdfpy+trimesh", {**obj.provenance.parameters, **parameters})
        warnings += urdf.warnings
    else:
        obj = SceneObject(oid, label, f"meshes/{oid}.glb", pose, Provenance("add", "trimesh", parameters))
        files = {obj.mesh: local}

    w_lo, w_hi = lo + position, hi + position
    for other in scene.objects:
        if other is support:
            continue
        b = world_mesh(scene_dir, other).bounds
        if np.all(w_lo < b[1] - 1e-4) and np.all(b[0] + 1e-4 < w_hi):
            warnings.append(f"{oid}: its bounding box overlaps {other.id}'s; `hiscene validate --settle` separates them")

    scene.objects.append(obj)
    scene.provenance.append(Provenance("add", "yourdfpy+trimesh" if urdf is not None else "trimesh",
                                       {**parameters, "object": oid}, seconds=round(time.perf_counter() - t0, 3),
                                       created=datetime.now(timezone.utc).isoformat()))
    _write(scene_dir, scene, files)
    for w in warnings:
        log.warning("%s", w)
    log.info("added %s (%s) at %s on %s in %.2f s", oid, label, [round(float(v), 4) for v in position], rests_on,
             time.perf_counter() - t0)
    return AddResult(scene_dir, obj, rests_on, warnings)


def _write(scene_dir: Path, scene: Scene, files: dict[str, trimesh.Trimesh]) -> None:
    """The new files, then scene.json; nothing new is left behind on failure (module doc)."""
    staging = Path(tempfile.mkdtemp(prefix=".add-", dir=scene_dir))
    placed: list[Path] = []
    made: list[Path] = []
    try:
        for rel in files:
            atomic_write_bytes(staging / rel, files[rel].export(file_type="glb"))
        for rel in files:
            target = scene_dir / rel
            for parent in reversed(target.relative_to(scene_dir).parents[:-1]):
                if not (scene_dir / parent).exists():
                    (scene_dir / parent).mkdir()
                    made.append(scene_dir / parent)
            if target.exists():
                raise SceneError(f"{target}: exists already; not overwriting a file the scene dir holds")
            os.replace(staging / rel, target)
            placed.append(target)
        save_scene(scene, scene_dir)
    except BaseException:
        for target in placed:
            target.unlink(missing_ok=True)
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
