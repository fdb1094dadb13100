"""Where files go in an export dir, and the per-object mesh files all writers share.

```
EXPORT/
  export.json                 manifest: objects, poses, masses, files per format, timings
  objects/<id>/visual.obj     watertight visual mesh (+ visual.mtl, texture.png if textured)
  objects/<id>/collision/hull_000.obj ...   one convex hull per file (CoACD)
  objects/<id>/<id>.urdf      standalone URDF of the object (body frame = object frame)
  objects/<id>/links/<link>/visual.obj, collision/hull_000.obj ...   an articulated object's links,
                              each in its link frame (the object-level files above are then the
                              whole object with its joints at zero)
  scene.usda                  one USD stage, geometry inline, textures referenced
  scene.xml                   MJCF of the whole scene
  scene.glb                   the whole scene for viewing
  load_pybullet.py            loads every URDF at its pose as an independent body
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from exporters.mesh_io import texture_image, write_hull_obj, write_obj
from exporters.prepare import PreparedObject

MANIFEST = "export.json"
USD_FILE = "scene.usda"
MJCF_FILE = "scene.xml"
GLB_FILE = "scene.glb"
PYBULLET_LOADER = "load_pybullet.py"


@dataclass
class ObjectFiles:
    """Paths relative to the export dir."""

    folder: str
    visual_obj: str
    texture: str | None
    hulls: list[str] = field(default_factory=list)
    urdf: str | None = None
    links: dict[str, "ObjectFiles"] = field(default_factory=dict)  # articulated: link name -> its files


def object_folder(obj: PreparedObject) -> str:
    return f"objects/{obj.id}"


def _write_mesh_files(visual, hulls, folder: str, export_dir: Path) -> ObjectFiles:
    write_obj(visual, export_dir / folder / "visual.obj", texture_name="texture.png")
    texture = f"{folder}/texture.png" if texture_image(visual) is not None else None
    written = []
    for i, hull in enumerate(hulls):
        rel = f"{folder}/collision/hull_{i:03d}.obj"
        write_hull_obj(hull, export_dir / rel)
        written.append(rel)
    return ObjectFiles(folder=folder, visual_obj=f"{folder}/visual.obj", texture=texture, hulls=written)


def write_object_files(obj: PreparedObject, export_dir: Path) -> ObjectFiles:
    """Write the visual OBJ (+ texture) and one OBJ per hull for ``obj``, and for each link of
    an articulated object the same in ``links/<link>/``."""
    folder = object_folder(obj)
    files = _write_mesh_files(obj.visual, obj.hulls, folder, export_dir)
    for link in obj.links:
        files.links[link.name] = _write_mesh_files(link.visual, link.hulls, f"{folder}/links/{link.name}", export_dir)
    return files
