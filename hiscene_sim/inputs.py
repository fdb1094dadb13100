"""The one front door for scene inputs: any file or folder a user hands to ``hiscene`` becomes
one typed :class:`SceneInput`, and every input error is raised here, naming the path.

Kinds of input (:class:`InputKind`):

* ``fused-mesh``: one welded surface (GLB / GLTF / OBJ / PLY / STL), as an image-to-3D model
  returns a scene; a file with several mesh nodes is flattened into one mesh in the file's
  frame when parsing is asked for (``mode="parse"``). Goes to parsing.
* ``gaussians``: a 3DGS PLY (header fields ``opacity``, ``scale_*``, ``rot_*``, as TRELLIS and
  3DGS tools write it). Goes to parsing.
* ``multi-node``: a GLB / GLTF / OBJ / PLY / STL with one mesh node per object, or a folder of
  such files without ``scene.json``, one object per file (named by the file). Goes to import.
* ``scene-dir``: a folder with ``scene.json`` (the contract between stages). Goes to export.
* ``urdf``: a URDF robot description, one articulated object (links, joints, meshes), read by
  :mod:`hiscene_sim.urdf_import` (+Z up by ROS convention unless ``--up`` says otherwise). Goes
  to import (``hiscene import``, ``hiscene add``); parsing refuses it.

``mode`` says what the caller wants of a mesh file: ``"auto"`` (several mesh nodes = one
object per node, one = fused), ``"parse"`` (always fused: ``hiscene parse``, ``generate
--from-scene``) or ``"import"`` (always one object per node: ``hiscene import``).

``frame`` (:class:`hiscene_sim.input_frame.InputFrame`: ``--up``, ``--units``, ``--scale``) puts
a mesh or splat input into the scene frame, metres and +Z up, before anything else sees it (glTF
is Y-up by its spec and trimesh keeps its coordinates as stored); what was chosen and why is
``SceneInput.frame``. A node named after its file (a single-mesh PLY / STL) is named by the
file's stem, so its label is the file's name.

The CLI (``parse``, ``import``, ``generate --from-scene``), ``hiscene batch`` and the demo all
read their inputs through :func:`read_scene_input`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.input_frame import FrameReport, InputFrame, frame_gaussians, frame_graph, frame_mesh, usual_up
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
    trimesh scene graph), ``scene`` (scene-dir) or ``asset`` (urdf: a
    :class:`hiscene_sim.urdf_import.UrdfAsset`). ``frame``: how a file's coordinates were
    put into the scene frame (None for a scene dir)."""

    path: Path
    kind: InputKind
    mesh: trimesh.Trimesh | None = None
    gaussians: object | None = None
    nodes: trimesh.Scene | None = None
    scene: Scene | None = None
    frame: FrameReport | None = None
    asset: object | None = None


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
        graph = trimesh.load(path, force="scene", process=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear error
        raise SceneError(f"{path}: cannot read scene file: {type(exc).__name__}: {exc}") from None
    if path.name in graph.graph.nodes_geometry and path.stem not in graph.graph.nodes:
        graph = _renamed(graph, {path.name: path.stem})  # trimesh names a lone mesh by its file: label it by the stem
    return graph


def _renamed(graph: trimesh.Scene, names: dict[str, str]) -> trimesh.Scene:
    """A flat copy of ``graph`` (world transforms) with nodes renamed."""
    out = trimesh.Scene()
    for node in graph.graph.nodes_geometry:
        transform, geom_name = graph.graph[node]
        out.geometry[geom_name] = graph.geometry[geom_name]
        out.graph.update(frame_to=names.get(node, node), frame_from=out.graph.base_frame, matrix=transform, geometry=geom_name)
    return out


def _mesh_files(path: Path) -> list[Path]:
    return sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in MESH_SUFFIXES)


def _read_mesh_dir(files: list[Path]) -> trimesh.Scene:
    """A folder's mesh files as one scene: one node per file, named by the file's stem (a
    second ``mug`` becomes ``mug_2``), each file flattened into one mesh in its own frame."""
    from exporters.mesh_io import load_mesh
    from exporters.watertight import MeshError

    out = trimesh.Scene()
    for file in files:
        if file.stat().st_size == 0:
            raise SceneError(f"{file}: scene file is empty (0 bytes)")
        if is_gaussian_ply(file):
            raise SceneError(f"{file}: a 3DGS PLY in a folder of meshes; import meshes, or parse the PLY on its own")
        try:
            mesh = load_mesh(file, f"mesh file {file}")
        except MeshError as exc:
            raise SceneError(str(exc)) from None
        node, n = file.stem, 1
        while node in out.graph.nodes:
            n += 1
            node = f"{file.stem}_{n}"
        out.geometry[node] = mesh
        out.graph.update(frame_to=node, frame_from=out.graph.base_frame, matrix=np.eye(4), geometry=node)
    return out


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


def read_scene_input(path: str | Path, mode: str = "auto", frame: InputFrame | None = None) -> SceneInput:
    """Read and check ``path``; raise :class:`SceneError` naming it on any problem. ``frame``
    (default: ``InputFrame()``, up axis guessed, metres) puts a mesh or splat into the scene frame."""
    if mode not in MODES:
        raise ValueError(f"input mode must be one of {', '.join(MODES)}, got {mode!r}")
    path, frame = Path(path), frame or InputFrame()
    if path.is_dir():
        if (path / SCENE_FILE).is_file():
            return SceneInput(path, InputKind.SCENE_DIR, scene=load_scene(path))
        files = _mesh_files(path)
        if not files:
            raise SceneError(f"{path}: a folder without {SCENE_FILE} and without mesh files ({', '.join(MESH_SUFFIXES)}) "
                             "is neither a scene dir nor a folder of meshes")
        if mode == "parse":
            raise SceneError(f"{path}: a folder of meshes is imported (one object per file), not parsed")
        frame.check(str(path))
        return _multi_node(path, _read_mesh_dir(files), frame, usual_up(f.suffix for f in files))
    if not path.exists():
        raise SceneError(f"{path}: scene file not found")
    suffix = path.suffix.lower()
    if suffix in URDF_SUFFIXES:
        if mode == "parse":
            raise SceneError(f"{path}: a URDF is an articulated object to import (hiscene import / hiscene add), not a "
                             "fused scene to parse")
        from hiscene_sim.urdf_import import read_urdf

        asset = read_urdf(path, frame)
        return SceneInput(path, InputKind.URDF, asset=asset, frame=asset.frame)
    if suffix not in MESH_SUFFIXES:
        raise SceneError(f"{path}: unsupported scene file type {path.suffix!r}; expected a scene dir, a folder of meshes "
                         f"or one of {', '.join(MESH_SUFFIXES + URDF_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise SceneError(f"{path}: scene file is empty (0 bytes)")
    frame.check(str(path))
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
        gaussians, report = frame_gaussians(str(path), gaussians, frame)
        return SceneInput(path, InputKind.GAUSSIANS, gaussians=gaussians, frame=report)
    if mode == "parse":
        return _fused_input(path, frame)
    graph = _read_graph(path)
    if mode == "import" or len(mesh_nodes(graph)) > 1:
        return _multi_node(path, graph, frame)
    if not mesh_nodes(graph):
        raise SceneError(f"{path}: no node holds a triangle mesh")
    return _fused_input(path, frame)


def _multi_node(path: Path, graph: trimesh.Scene, frame: InputFrame, usual: tuple[str, ...] | None = None) -> SceneInput:
    if not mesh_nodes(graph):
        raise SceneError(f"{path}: no node holds a triangle mesh")
    nodes, report = frame_graph(str(path), graph, frame, usual or usual_up([path.suffix]))
    return SceneInput(path, InputKind.MULTI_NODE, nodes=nodes, frame=report)


def _fused_input(path: Path, frame: InputFrame) -> SceneInput:
    mesh, report = frame_mesh(str(path), _fused(path), frame, usual_up([path.suffix]))
    return SceneInput(path, InputKind.FUSED_MESH, mesh=mesh, frame=report)
