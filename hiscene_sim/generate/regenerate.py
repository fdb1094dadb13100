"""Per-object regeneration (paper 3.4) and the background (D): the parsed scene dir in, the
final scene dir out, every object at its original pose and scale.

Backends:

* ``geometry`` (default, CPU, no weights): the object's own parsed geometry, closed and made
  watertight (``exporters.watertight.make_watertight``: weld, MeshFix, voxel remesh). It adds no
  hidden geometry: where the fused scene welded the object to its support, the cut is closed
  flat.
* ``trellis``: Algorithm 3. The LRM (InstantMesh) reconstructs a shape prior from the object's
  selected, completed views and their cameras; it is voxelised in the object's frame, encoded by
  TRELLIS's sparse-structure encoder, noised to t in [0.2, 0.4] and denoised by TRELLIS's
  sparse-structure flow from there (``algorithm3_shape_prior.regenerate_structure``); the structured latent
  conditioned on the completed views is decoded to a mesh and placed back. Needs
  ``generate.instantmesh.weights`` and ``generate.trellis.weights``.

The background is the parsed background, kept as static geometry, except that a parsed floor
becomes a flat slab at the height of its top surface (``hiscene_sim.floor``): the fused scene's
floor carries a fillet around every object that stood on it (where the voxel surface welded
them), which would start those objects inside the floor. With image and 3D weights the next
stage adds a background generated from "A background of ..." (paper D,
``hiscene_sim.generate.background_section_d``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from exporters.mesh_io import load_mesh
from exporters.watertight import make_watertight
from hiscene_sim.atomic import atomic_directory, atomic_write_bytes
from hiscene_sim.floor import flat_floor
from hiscene_sim.scene import Provenance, Scene, SceneObject, load_scene, save_scene

log = logging.getLogger(__name__)


@dataclass
class RegeneratedObject:
    object_id: str
    backend: str
    method: str  # what the repair / model did
    faces: int
    watertight: bool
    seconds: float


def regenerate_geometry(mesh: trimesh.Trimesh, name: str) -> tuple[trimesh.Trimesh, str]:
    """The weight-free default: the object's own surface, closed."""
    repaired = make_watertight(mesh, name)
    return repaired.visual, repaired.method


def regenerate_scene(parsed_dir: Path, out_dir: Path, regenerate_one, backend: str, progress=None) -> list[RegeneratedObject]:
    """Write the final scene dir ``out_dir`` (scene.json + meshes/) from ``parsed_dir``:
    ``regenerate_one(object, mesh, parsed_dir) -> (mesh, method)`` for each foreground object,
    the background copied as it is. ``out_dir`` may hold other things (the export, the
    ledger): only its meshes/ folder and scene.json are replaced, each atomically."""
    scene: Scene = load_scene(parsed_dir)
    results, meshes, objects = [], {}, []
    for n, obj in enumerate(scene.objects):
        t0 = time.perf_counter()
        mesh = load_mesh(Path(parsed_dir) / obj.mesh, f"object {obj.id!r}")
        new, method = regenerate_one(obj, mesh, Path(parsed_dir))
        meshes[obj.id] = new
        record = {"backend": backend, "method": method, "source": obj.mesh}
        extra = {k: v for k, v in obj.extra.items() if k != "gaussians"}  # the splat no longer matches the new mesh
        extra["regeneration"] = record
        objects.append(SceneObject(obj.id, obj.label, f"meshes/{obj.id}.glb", obj.pose,
                                   Provenance("regenerate", backend, {"method": method}), extra))
        results.append(RegeneratedObject(obj.id, backend, method, len(new.faces), bool(new.is_watertight), time.perf_counter() - t0))
        log.info("regenerated %s (%s) with %s: %s, %d faces, %.1f s", obj.id, obj.label, backend, method, len(new.faces),
                 results[-1].seconds)
        if progress is not None:
            progress(n + 1, len(scene.objects), obj.id)
    background = []
    for obj in scene.background:
        mesh = load_mesh(Path(parsed_dir) / obj.mesh, f"background {obj.id!r}")
        method = "kept as parsed"
        if obj.label == "floor":
            mesh, method = flat_floor(mesh)
        meshes[obj.id] = mesh
        background.append(SceneObject(obj.id, obj.label, f"meshes/{obj.id}.glb", obj.pose,
                                      Provenance("background", "parsed", {"source": obj.mesh, "method": method}), dict(obj.extra)))
    final = Scene(objects=objects, background=background, provenance=list(scene.provenance), name=scene.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir / "meshes") as tmp:
        for oid, mesh in meshes.items():
            atomic_write_bytes(tmp / f"{oid}.glb", mesh.export(file_type="glb"))
    save_scene(final, out_dir)
    return results


def object_views(obj: SceneObject, parsed_dir: Path) -> tuple[list[np.ndarray], list]:
    """The selected, completed views of an object (images and cameras) that ``hiscene
    complete`` recorded: the LRM's input and the regeneration's condition."""
    import json

    from PIL import Image

    from hiscene_sim.render.cameras import Camera

    record = obj.extra.get("completion")
    if not record or not record.get("images"):
        raise ValueError(f"object {obj.id!r} has no completed views: run the completion stage first")
    cams = json.loads((parsed_dir / "completion" / obj.id / "cameras.json").read_text())["views"]
    by_index = {c["index"]: c for c in cams}
    images, cameras = [], []
    for rel in record["images"]:
        index = int(Path(rel).stem.split("_")[-1])
        c = by_index[index]
        images.append(np.asarray(Image.open(parsed_dir / rel).convert("RGB")))
        cameras.append(Camera(c["width"], c["height"], np.array(c["world_to_camera"]), projection="perspective",
                              fov_y_deg=c["fov_y_deg"], azimuth_deg=c["azimuth"], elevation_deg=c["elevation"]))
    return images, cameras
