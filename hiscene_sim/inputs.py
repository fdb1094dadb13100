"""The one front door for scene inputs: any file or folder a user hands to ``hiscene`` becomes
one typed :class:`SceneInput`, and every input error is raised here, naming the path.

Kinds of input (:class:`InputKind`):

* ``fused-mesh``: one welded surface (GLB / GLTF / OBJ / PLY / STL), as an image-to-3D model
  returns a scene; a file with several mesh nodes is flattened into one mesh in the file's
  frame when parsing is asked for (``mode="parse"``). Goes to parsing.
* ``gaussians``: a 3DGS PLY (header fields ``opacity``, ``scale_*``, ``rot_*``, as TRELLIS and
  3DGS tools write it). Goes to parsing.
* ``multi-node``: a GLB / GLTF / OBJ / PLY with one mesh node per object. Goes to import.
* ``scene-dir``: a folder with ``scene.json`` (the contract between stages). Goes to export.
* ``urdf``: recognised and refused with a clear error until the URDF importer lands.

``mode`` says what the caller wants of a mesh file: ``"auto"`` (several mesh nodes = one
object per node, one = fused), ``"parse"`` (always fused: ``hiscene parse``, ``generate
--from-scene``) or ``"import"`` (always one object per node: ``hiscene import``).

The CLI (``parse``, ``import``, ``generate --from-scene``), ``hiscene batch`` and the demo all
read their inputs through :func:`read_scene_input`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import trimesh

from hiscene_sim.scene import SCENE_FILE, Scene, SceneError, load_scene

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
URDF_SUFFIXES = (".urdf",)
MODES = ("auto", "parse", "import")
MIN_FACES = 4  # fewer faces than a tetrahedron: nothing to parse
MIN_GAUSSIANS = 100


class InputKind(str, enum.Enum):
    FUSED_MESH = "fused-mesh"
    GAUSSIANS = "gaussians"
    MULTI_NODE = "multi-node"
    SCENE_DIR = "scene-dir"
    URDF = "urdf"


@dataclass(eq=False)
class SceneInput:
    """A scene input, read and checked. Exactly one payload is set, as ``kind`` says:
    ``mesh`` (fused-mesh, processed: vertices merged), ``gaussians`` (a
    :class:`hiscene_sim.render.gaussians.Gaussians`), ``nodes`` (multi-node: the file as a
    trimesh scene graph) or ``scene`` (scene-dir)."""

    path: Path
    kind: InputKind
    mesh: trimesh.Trimesh | None = None
    gaussians: object | None = None
    nodes: trimesh.Scene | None = None
    scene: Scene | None = None


def mesh_nodes(loaded: trimesh.Scene) -> list[str]:
    """The nodes of a scene graph that carry a triangle mesh with faces."""
    out = []
    for node in loaded.graph.nodes_geometry:
        geometry = loaded.geometry.get(loaded.graph[node][1])
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            out.append(node)
    return out


def is_gaussian_ply(path: Path) -> bool:
    from hiscene_sim.render.gaussians import is_3dgs_ply

    return path.suffix.lower() == ".ply" and path.is_file() and is_3dgs_ply(path)


def _read_graph(path: Path) -> trimesh.Scene:
    try:
        # OBJ: one object per `o`/`g` group, not merged by material
        kwargs = {"split_objects": True, "group_material": False} if path.suffix.lower() == ".obj" else {}
        return trimesh.load(path, force="scene", process=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear error
        raise SceneError(f"{path}: cannot read scene file: {type(exc).__name__}: {exc}") from None


def _fused(path: Path) -> trimesh.Trimesh:
    """The whole file as one mesh in the file's frame, vertices merged."""
    from exporters.mesh_io import load_mesh
    from exporters.watertight import MeshError

    try:
        mesh = load_mesh(path, f"scene file {path}")
    except MeshError as exc:
        raise SceneError(str(exc)) from None
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=mesh.visual, process=True)
    if len(mesh.faces) < MIN_FACES:
        raise SceneError(f"scene file {path}: {len(mesh.faces)} faces, too few to parse")
    return mesh


def read_scene_input(path: str | Path, mode: str = "auto") -> SceneInput:
    """Read and check ``path``; raise :class:`SceneError` naming it on any problem."""
    if mode not in MODES:
        raise ValueError(f"input mode must be one of {', '.join(MODES)}, got {mode!r}")
    path = Path(path)
    if path.is_dir():
        if not (path / SCENE_FILE).is_file():
            raise SceneError(f"{path}: a folder without {SCENE_FILE} is not a scene dir")
        return SceneInput(path, InputKind.SCENE_DIR, scene=load_scene(path))
    if not path.exists():
        raise SceneError(f"{path}: scene file not found")
    suffix = path.suffix.lower()
    if suffix in URDF_SUFFIXES:
        raise SceneError(f"{path}: URDF input is not supported yet; convert it to a GLB with one node per link, "
                         "or pass a scene dir")
    if suffix not in MESH_SUFFIXES:
        raise SceneError(f"{path}: unsupported scene file type {path.suffix!r}; expected a scene dir or one of "
                         f"{', '.join(MESH_SUFFIXES + URDF_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise SceneError(f"{path}: scene file is empty (0 bytes)")
    if is_gaussian_ply(path):
        if mode == "import":
            raise SceneError(f"{path}: a 3DGS PLY has no mesh nodes to import; parse it instead")
        from hiscene_sim.render.gaussians import load_3dgs_ply

        try:
            gaussians = load_3dgs_ply(path)
        except (ValueError, OSError) as exc:
            raise SceneError(f"scene file {path}: {exc}") from None
        if len(gaussians) < MIN_GAUSSIANS:
            raise SceneError(f"scene file {path}: only {len(gaussians)} Gaussians, too few to parse")
        return SceneInput(path, InputKind.GAUSSIANS, gaussians=gaussians)
    if mode == "parse":
        return SceneInput(path, InputKind.FUSED_MESH, mesh=_fused(path))
    graph = _read_graph(path)
    nodes = mesh_nodes(graph)
    if not nodes:
        raise SceneError(f"{path}: no node holds a triangle mesh")
    if mode == "import" or len(nodes) > 1:
        return SceneInput(path, InputKind.MULTI_NODE, nodes=graph)
    return SceneInput(path, InputKind.FUSED_MESH, mesh=_fused(path))
