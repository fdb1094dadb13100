"""Where files go in an export dir, and the per-object mesh files all writers share.

```
EXPORT/
  export.json                 manifest: objects, poses, masses, files per format, timings
  objects/<id>/visual.obj     watertight visual mesh (+ visual.mtl, texture.png if textured)
  objects/<id>/collision/hull_000.obj ...   one convex hull per file (CoACD)
  objects/<id>/<id>.urdf      standalone URDF of the object (body frame = object frame)
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


def object_folder(obj: PreparedObject) -> str:
    return f"objects/{obj.id}"


def write_object_files(obj: PreparedObject, export_dir: Path) -> ObjectFiles:
    """Write the visual OBJ (+ texture) and one OBJ per hull for ``obj``."""
    folder = object_folder(obj)
    root = export_dir / folder
    write_obj(obj.visual, root / "visual.obj", texture_name="texture.png")
    texture = f"{folder}/texture.png" if texture_image(obj.visual) is not None else None
    hulls = []
    for i, hull in enumerate(obj.hulls):
        rel = f"{folder}/collision/hull_{i:03d}.obj"
        write_hull_obj(hull, export_dir / rel)
        hulls.append(rel)
    return ObjectFiles(folder=folder, visual_obj=f"{folder}/visual.obj", texture=texture, hulls=hulls)
