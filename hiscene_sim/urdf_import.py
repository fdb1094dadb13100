"""URDF in: one articulated object (links, joints, meshes) in the scene frame.

Parsing is yourdfpy's (the URDF model: links, visuals, joints, limits, materials), after two
checks of ours that name the element, which yourdfpy's own errors do not: the XML must parse,
and every numeric attribute (``<origin xyz>``, ``<limit lower>``, ``<mass value>``, ``<box
size>``, ...) must hold finite numbers (``lower="abc"`` is ``joint 'door' <limit
lower="abc">: not a number``, with its line). Then, in order, each failing with a
:class:`hiscene_sim.scene.SceneError` that names the URDF file and the element:

1. the tree (``hiscene_sim.articulation.check_articulation``): a joint naming an unknown link, a
   link with two parents, a kinematic loop, lower > upper, a floating / planar joint;
2. the geometry of each link, in its link frame: its ``<visual>`` elements (its
   ``<collision>`` ones when it has no visual; the export makes its own collision hulls with
   CoACD), boxes, cylinders, spheres and meshes (OBJ / STL / DAE / anything trimesh reads,
   ``scale`` applied, ``package://`` and relative paths resolved against the URDF's folder and
   its parents), coloured by their ``<material>``; a missing mesh file is an error;
3. links without geometry joined by fixed joints are folded away (a ``world`` link fixed to
   the base is a ROS habit, scene-synthesizer writes one): the root's chain becomes the object
   pose, an inner one is merged into its parent. A link without geometry on a moving joint is
   an error (the export needs a mesh per moving link);
4. ``<inertial>`` is kept (rotated into the link frame), unless it is impossible for the link's
   geometry (a moment larger than the mass at the farthest point of the link would give): then
   the convex hull's centre of mass and inertia at the given mass replace it, with a warning. A link without
   ``<inertial>`` gets one at export, from its watertight mesh and the object's label
   (``exporters/mass.py``, ``exporters/materials.py``);
5. the frame (``--up``, ``--units``, ``--scale``, :mod:`hiscene_sim.input_frame`): URDF is +Z
   up by ROS convention (REP 103), so ``--up auto`` means ``z`` here. ``--units`` / ``--scale``
   convert lengths: meshes, joint origins, prismatic limits and centres of mass scale with the
   factor, inertia tensors with its square, masses stay.

Nothing is written here: :func:`materialize` turns the asset into a scene object and its mesh
files, which ``hiscene import`` and ``hiscene add`` write atomically.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.articulation import (
    JOINT_TYPES,
    Articulation,
    ArticulationError,
    Frame,
    Inertial,
    Joint,
    Link,
    check_articulation,
    check_inertial,
)
from hiscene_sim.input_frame import FrameReport, InputFrame, frame_graph
from hiscene_sim.naming import clean_label, safe_identifier
from hiscene_sim.scene import Pose, Provenance, SceneError, SceneObject

log = logging.getLogger(__name__)

#: numeric attributes by element, with how many numbers each holds (None: 1 or 3, mesh scale)
NUMERIC_ATTRIBUTES: dict[str, dict[str, int | None]] = {
    "origin": {"xyz": 3, "rpy": 3},
    "axis": {"xyz": 3},
    "limit": {"lower": 1, "upper": 1, "effort": 1, "velocity": 1},
    "dynamics": {"damping": 1, "friction": 1},
    "mass": {"value": 1},
    "inertia": {k: 1 for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")},
    "box": {"size": 3},
    "cylinder": {"radius": 1, "length": 1},
    "sphere": {"radius": 1},
    "mesh": {"scale": None},
    "color": {"rgba": 4},
    "mimic": {"multiplier": 1, "offset": 1},
}
DEFAULT_RGBA = (0.75, 0.75, 0.75, 1.0)
INERTIA_SLACK = 1.05  # a given moment may exceed mass x (farthest point)^2 by this much (rounding, thin shells)
CYLINDER_SECTIONS = 32
MAX_UNION_PIECES = 256  # a link of more closed pieces than this is left as it is (a soup, not a model)


@dataclass
class UrdfAsset:
    """A URDF read into the scene frame. ``articulation``'s link meshes are placeholders until
    :func:`materialize` names their files; ``meshes`` holds each link's mesh in its frame."""

    path: Path
    robot: str  # the URDF's robot name
    label: str
    articulation: Articulation
    meshes: dict[str, trimesh.Trimesh]
    root_pose: np.ndarray  # 4x4 rigid: root link frame -> scene frame
    frame: FrameReport | None = None
    warnings: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # URDF name -> scene name, where they differ

    def merged_mesh(self) -> trimesh.Trimesh:
        """The whole object with its joints at zero, in the root link's frame."""
        frames = self.articulation.link_frames()
        parts = [self.meshes[link.name].copy().apply_transform(frames[link.name]) for link in self.articulation.links]
        return _concatenate(parts)


# ------------------------------------------------------------------------------ XML checks
def _owner(element) -> str:
    for node in element.iterancestors():
        if node.tag in ("link", "joint") and node.get("name") is not None:
            return f"{node.tag} {node.get('name')!r}"
    return "robot"


def _check_numbers(path: Path, root) -> None:
    """Every numeric attribute holds finite numbers (see the module doc)."""
    for element in root.iter():
        spec = NUMERIC_ATTRIBUTES.get(element.tag) if isinstance(element.tag, str) else None
        for name, count in (spec or {}).items():
            text = element.get(name)
            if text is None:
                continue
            where = f"{path}: line {element.sourceline}: {_owner(element)} <{element.tag} {name}=\"{text}\">"
            parts = text.split()
            try:
                values = [float(v) for v in parts]
            except ValueError:
                raise SceneError(f"{where}: not a number") from None
            if not all(math.isfinite(v) for v in values):
                raise SceneError(f"{where}: not a finite number")
            if (count is None and len(values) not in (1, 3)) or (count is not None and len(values) != count):
                raise SceneError(f"{where}: expected {count or '1 or 3'} number(s), got {len(values)}")


def _parse_xml(path: Path):
    from lxml import etree

    if not path.is_file():
        raise SceneError(f"{path}: URDF file not found")
    if path.stat().st_size == 0:
        raise SceneError(f"{path}: URDF file is empty (0 bytes)")
    try:
        tree = etree.parse(str(path), etree.XMLParser(remove_comments=True))
    except etree.XMLSyntaxError as exc:
        raise SceneError(f"{path}: not valid XML: {exc}") from None
    root = tree.getroot()
    if root.tag != "robot":
        raise SceneError(f"{path}: a URDF's top element is <robot>, got <{root.tag}>")
    _check_numbers(path, root)
    return root


# ------------------------------------------------------------------------------ geometry
def resolve_mesh_path(filename: str, urdf_path: Path) -> tuple[Path | None, list[Path]]:
    """(the file a URDF ``<mesh filename>`` names, or None; the places looked at).
    ``package://PKG/rel`` is looked for as ``rel`` and ``PKG/rel`` in the URDF's folder and its
    parents (no ROS workspace is needed); ``file://`` is a plain path; anything else is relative
    to the URDF's folder."""
    base = urdf_path.resolve().parent
    if filename.startswith("package://"):
        package, _, rel = filename[len("package://"):].partition("/")
        tried = []
        for folder in [base, *list(base.parents)[:4]]:
            tried += [folder / rel, folder / package / rel]
        if base.name == package:
            tried.insert(0, base / rel)
    elif filename.startswith("file://"):
        tried = [Path(filename[len("file://"):])]
    else:
        p = Path(filename)
        tried = [p if p.is_absolute() else base / p]
    return next((t for t in tried if t.is_file()), None), tried


def _color_of(material, robot_materials: dict) -> tuple[float, ...] | None:
    if material is None:
        return None
    color = material.color if material.color is not None else getattr(robot_materials.get(material.name), "color", None)
    return tuple(float(v) for v in color.rgba) if color is not None and color.rgba is not None else None


def _paint(mesh: trimesh.Trimesh, rgba: tuple[float, ...] | None) -> trimesh.Trimesh:
    """Give a mesh without its own colours or texture the URDF material's colour (or grey)."""
    if getattr(mesh.visual, "kind", None) is not None:
        return mesh
    rgba = np.clip(np.asarray(rgba or DEFAULT_RGBA, dtype=float) * 255, 0, 255).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=np.tile(rgba, (len(mesh.faces), 1)))
    return mesh


def _geometry_mesh(geometry, who: str, urdf_path: Path) -> trimesh.Trimesh:
    if geometry.box is not None:
        return trimesh.creation.box(extents=np.asarray(geometry.box.size, dtype=float))
    if geometry.cylinder is not None:
        return trimesh.creation.cylinder(radius=float(geometry.cylinder.radius), height=float(geometry.cylinder.length),
                                         sections=CYLINDER_SECTIONS)
    if geometry.sphere is not None:
        return trimesh.creation.icosphere(subdivisions=2, radius=float(geometry.sphere.radius))
    if geometry.mesh is not None:
        file, tried = resolve_mesh_path(geometry.mesh.filename or "", urdf_path)
        if file is None:
            raise SceneError(f"{urdf_path}: {who} <mesh filename=\"{geometry.mesh.filename}\">: mesh file not found "
                             f"(looked at {', '.join(str(t) for t in tried[:4])}{' ...' if len(tried) > 4 else ''})")
        from exporters.mesh_io import load_mesh
        from exporters.watertight import MeshError

        try:
            mesh = load_mesh(file, f"{urdf_path}: {who}").copy()
        except MeshError as exc:
            raise SceneError(str(exc)) from None
        scale = geometry.mesh.scale
        if scale is not None:
            mesh.apply_scale(np.broadcast_to(np.asarray(scale, dtype=float), (3,)))
        return mesh
    raise SceneError(f"{urdf_path}: {who}: <geometry> holds no box, cylinder, sphere or mesh")


def _concatenate(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    if not parts:
        return trimesh.Trimesh()
    if len(parts) == 1:
        return parts[0]
    textured = [p for p in parts if getattr(p.visual, "kind", None) == "texture"]
    if textured:  # one mesh holds one texture: several become vertex colours
        parts = [p.copy() if p not in textured else _as_colored(p) for p in parts]
    return trimesh.util.concatenate(parts)


def _as_colored(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    out = mesh.copy()
    out.visual = mesh.visual.to_color()
    return out


def _closed_pieces(mesh: trimesh.Trimesh) -> list[trimesh.Trimesh]:
    """``mesh``'s connected pieces when it has several and each of them (at most
    MAX_UNION_PIECES) is closed; else ``[mesh]``."""
    if len(mesh.faces) == 0 or mesh.body_count < 2:
        return [mesh]
    pieces = mesh.split(only_watertight=False)
    if 1 < len(pieces) <= MAX_UNION_PIECES and all(p.is_volume for p in pieces):
        return list(pieces)
    return [mesh]


def _union(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Several closed parts as one closed surface (manifold3d's boolean union, through trimesh),
    coloured by the closest part's colour; parts that are not all closed are concatenated.

    Why a union: a link built of boxes that touch (a cabinet's panels) is closed part by part,
    but welding the concatenation joins parts at shared corners into a non-manifold soup, which
    the export could only voxel-remesh, and overlapping parts would count their volume twice.
    A mesh file that holds several closed pieces in one mesh is split into them first."""
    parts = [c for p in parts for c in _closed_pieces(p)]
    if len(parts) < 2 or not all(p.is_volume for p in parts):
        return _concatenate(parts)
    try:
        union = trimesh.boolean.union(parts, engine="manifold")
    except Exception as exc:  # noqa: BLE001 - any failure of the boolean keeps the parts as they are
        log.debug("union of %d parts failed (%s); concatenating", len(parts), exc)
        return _concatenate(parts)
    if not union.is_volume:
        return _concatenate(parts)
    source = _concatenate([_as_colored(p) if getattr(p.visual, "kind", None) == "texture" else p for p in parts])
    colors = np.asarray(source.visual.face_colors)
    _, _, tri = trimesh.proximity.closest_point(source, union.triangles_center)
    union.visual = trimesh.visual.ColorVisuals(union, face_colors=colors[tri])
    return union


def _link_mesh(link, urdf_path: Path, robot_materials: dict) -> trimesh.Trimesh:
    """The link's geometry in its frame: its visuals, else its collisions, as one surface (:func:`_union`)."""
    elements = link.visuals or link.collisions
    kind = "visual" if link.visuals else "collision"
    parts = []
    for i, element in enumerate(elements):
        who = f"link {link.name!r} <{kind}{' name=' + repr(element.name) if element.name else ''}>"
        if element.geometry is None:
            raise SceneError(f"{urdf_path}: {who}: no <geometry>")
        mesh = _geometry_mesh(element.geometry, who, urdf_path)
        rgba = _color_of(getattr(element, "material", None), robot_materials)
        mesh = _paint(mesh, rgba)
        if element.origin is not None:
            mesh.apply_transform(np.asarray(element.origin, dtype=float))
        parts.append(mesh)
    return _union(parts)


# ------------------------------------------------------------------------------ structure
def _joint(j, urdf_path: Path) -> Joint:
    who = f"joint {j.name!r}"
    if j.type not in JOINT_TYPES:
        raise SceneError(f"{urdf_path}: {who}: type {j.type!r} is not supported (use {', '.join(JOINT_TYPES)})")
    origin = Frame.from_matrix(j.origin) if j.origin is not None else Frame()
    axis = np.asarray(j.axis if j.axis is not None else (1.0, 0.0, 0.0), dtype=float)
    if j.type != "fixed":
        norm = float(np.linalg.norm(axis))
        if norm < 1e-9:
            raise SceneError(f"{urdf_path}: {who} <axis xyz=\"{' '.join(f'{v:g}' for v in axis)}\">: a zero axis")
        axis = axis / norm
    limit, dynamics = j.limit, j.dynamics
    lower = upper = None
    if j.type in ("revolute", "prismatic"):
        if limit is None:
            raise SceneError(f"{urdf_path}: {who}: a {j.type} joint needs a <limit> (URDF requires it)")
        lower = 0.0 if limit.lower is None else float(limit.lower)  # URDF's defaults
        upper = 0.0 if limit.upper is None else float(limit.upper)
    effort = None if limit is None or limit.effort is None else float(limit.effort)
    velocity = None if limit is None or limit.velocity is None else float(limit.velocity)
    damping = float(dynamics.damping or 0.0) if dynamics is not None else 0.0
    friction = float(dynamics.friction or 0.0) if dynamics is not None else 0.0
    if j.mimic is not None:
        log.warning("%s: %s mimics %r: the mimic is not kept (the joint moves on its own)", urdf_path, who, j.mimic.joint)
    return Joint(j.name, j.type, j.parent, j.child, origin, tuple(float(v) for v in axis), lower, upper, effort, velocity,
                 damping, friction)


def _inertial(link, mesh: trimesh.Trimesh, urdf_path: Path, warnings: list[str]) -> Inertial | None:
    e = link.inertial
    if e is None or e.mass is None:
        return None
    who = f"link {link.name!r} <inertial>"
    origin = np.asarray(e.origin, dtype=float) if e.origin is not None else np.eye(4)
    rot = origin[:3, :3]
    tensor = np.zeros((3, 3)) if e.inertia is None else np.asarray(e.inertia, dtype=float)
    tensor = rot @ tensor @ rot.T
    inertial = Inertial(float(e.mass), tuple(float(v) for v in origin[:3, 3]), tuple(tuple(float(v) for v in r) for r in tensor))
    if inertial.mass == 0:  # PyBullet's way of saying "static"; an object's links all move with it
        warnings.append(f"{urdf_path}: {who}: mass 0 ignored; the export estimates the link's mass from its mesh")
        return None
    if inertial.mass < 0:
        raise SceneError(f"{urdf_path}: {who} <mass value=\"{e.mass:g}\">: the mass must not be negative")
    if len(mesh.faces) == 0:
        return inertial
    reach = float(np.max(np.linalg.norm(np.asarray(mesh.vertices) - np.asarray(inertial.center_of_mass), axis=1)))
    moments = np.linalg.eigvalsh(tensor) if np.all(np.isfinite(tensor)) else np.array([np.inf])
    bound = inertial.mass * reach**2 * INERTIA_SLACK
    bad = moments.max() > bound
    try:
        check_inertial(inertial, who)  # symmetric, positive definite, triangle inequality
    except ArticulationError as exc:
        bad, why = True, str(exc).split(": ", 1)[-1]
    else:
        why = (f"a principal moment of {moments.max():.3g} kg m^2 is impossible for {inertial.mass:.3g} kg within "
               f"{reach:.3g} m of the centre of mass (at most {bound:.3g})")
    if not bad:
        return inertial
    hull = mesh.convex_hull
    if hull.volume <= 0:
        return inertial
    hull.density = inertial.mass / hull.volume
    fixed = Inertial(inertial.mass, tuple(float(v) for v in hull.center_mass),
                     tuple(tuple(float(v) for v in r) for r in np.asarray(hull.moment_inertia)))
    warnings.append(f"{urdf_path}: {who}: {why}; replaced by the centre of mass and inertia of the link's convex hull "
                    f"at the given mass ({inertial.mass:.3g} kg)")
    return fixed


def _fold_geometryless(links: dict[str, Link], joints: list[Joint], meshes: dict[str, trimesh.Trimesh], root: str,
                       urdf_path: Path, warnings: list[str]) -> tuple[str, list[Joint], np.ndarray]:
    """Fold away links without geometry on fixed joints (module doc, step 3); returns (root,
    joints, root pose in the URDF's frame)."""
    pose = np.eye(4)

    def empty(name: str) -> bool:
        return len(meshes[name].faces) == 0

    def dropped(name: str) -> None:
        if links[name].inertial is not None and links[name].inertial.mass > 0:
            warnings.append(f"{urdf_path}: link {name!r} has an <inertial> but no geometry; it was folded into "
                            "its neighbour and its mass dropped")
        del links[name]

    while empty(root):
        out = [j for j in joints if j.parent == root]
        if len(out) != 1 or out[0].type != "fixed":
            raise SceneError(f"{urdf_path}: root link {root!r} has no geometry and is not fixed to exactly one other "
                             "link; hiscene needs geometry on the root link (its frame is the object's)")
        pose = pose @ out[0].origin.matrix()
        joints = [j for j in joints if j is not out[0]]
        dropped(root)
        root = out[0].child
    changed = True
    while changed:
        changed = False
        for name in list(links):
            if name == root or not empty(name):
                continue
            parent = next(j for j in joints if j.child == name)
            if parent.type != "fixed":
                raise SceneError(f"{urdf_path}: link {name!r} has no geometry (no <visual> or <collision>) and moves on "
                                 f"{parent.type} joint {parent.name!r}; hiscene needs a mesh on every moving link")
            through = parent.origin.matrix()
            joints = [replace(j, parent=parent.parent, origin=Frame.from_matrix(through @ j.origin.matrix()))
                      if j.parent == name else j for j in joints if j is not parent]
            dropped(name)
            changed = True
    return root, joints, pose


def _names(original: list[str]) -> dict[str, str]:
    """URDF name -> a name valid in the scene (``NAME_PATTERN``), unique."""
    out: dict[str, str] = {}
    for name in original:
        out[name] = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) and name.lower() not in \
            {v.lower() for v in out.values()} else safe_identifier(name, out.values())
    return out


def _part_label(link_name: str, object_label: str, robot: str) -> str:
    label = clean_label(link_name)
    for prefix in {object_label, clean_label(robot)}:
        if label.startswith(prefix + " ") and len(label) > len(prefix) + 1:
            label = label[len(prefix) + 1:]
    return label


# ------------------------------------------------------------------------------ the reader
def read_urdf(path: str | Path, frame: InputFrame | None = None) -> UrdfAsset:
    """Read and check a URDF (see the module doc); raise SceneError naming the file and the
    element at the first problem."""
    import yourdfpy

    path = Path(path)
    frame = frame or InputFrame()
    frame.check(str(path))
    _parse_xml(path)
    try:
        urdf = yourdfpy.URDF.load(str(path), build_scene_graph=False, load_meshes=False)
    except Exception as exc:  # noqa: BLE001 - the parser's failures become one clear error
        raise SceneError(f"{path}: cannot read URDF: {type(exc).__name__}: {exc}") from None
    robot = urdf.robot
    if not robot.links:
        raise SceneError(f"{path}: the URDF has no <link>")
    joints = [_joint(j, path) for j in robot.joints]
    placeholder = [Link(link.name, "", "part") for link in robot.links]
    try:  # the tree first, with the URDF's own names: a bad reference fails before any mesh is read
        root = check_articulation(placeholder, joints, check_names=False)
    except ArticulationError as exc:
        raise SceneError(f"{path}: {exc}") from None

    warnings: list[str] = []
    robot_materials = {m.name: m for m in (robot.materials or []) if m.name}
    meshes = {link.name: _link_mesh(link, path, robot_materials) for link in robot.links}
    links = {link.name: Link(link.name, "", "part", _inertial(link, meshes[link.name], path, warnings))
             for link in robot.links}
    root, joints, root_pose = _fold_geometryless(links, joints, meshes, root, path, warnings)

    label = clean_label(path.stem)
    rename, rename_joints = _names(list(links)), _names([j.name for j in joints])  # URDF: two namespaces
    links_out = [replace(links[n], name=rename[n], label=_part_label(n, label, robot.name or "")) for n in links]
    joints_out = [replace(j, name=rename_joints[j.name], parent=rename[j.parent], child=rename[j.child]) for j in joints]
    meshes = {rename[n]: meshes[n] for n in links}
    articulation = Articulation(rename[root], tuple(links_out), tuple(joints_out))
    try:
        check_articulation(articulation.links, articulation.joints)
    except ArticulationError as exc:
        raise SceneError(f"{path}: {exc}") from None

    asset = UrdfAsset(path, robot.name or path.stem, label, articulation, meshes, root_pose, warnings=warnings,
                      renamed={k: v for k, v in {**rename, **rename_joints}.items() if k != v})
    asset = _into_frame(asset, frame)
    for w in asset.warnings:
        log.warning("%s", w)
    log.info("%s: %d links, %d joints (%s), root %r", path, len(articulation.links), len(articulation.joints),
             ", ".join(f"{j.name} {j.type}" for j in articulation.moving_joints) or "none moving", articulation.root)
    return asset


def _into_frame(asset: UrdfAsset, frame: InputFrame) -> UrdfAsset:
    """Apply ``--up`` / ``--units`` / ``--scale`` (module doc, step 5), deciding through the front
    door's frame logic (size checks by label) on the whole object at its root pose."""
    up = "z" if frame.up == "auto" else frame.up
    graph = trimesh.Scene()
    whole = asset.merged_mesh().copy().apply_transform(asset.root_pose)
    graph.add_geometry(whole, node_name=asset.label.replace(" ", "_"), geom_name="whole")
    _, report = frame_graph(str(asset.path), graph, replace(frame, up=up), ("+Z", "+Y"))
    if frame.up == "auto":
        report.reason = "URDF: +Z up by ROS convention (REP 103); --up y turns a Y-up file"
    asset.frame = report
    asset.warnings += list(report.warnings)
    f = frame.metres_per_unit
    turn = report.transform()  # rotation x f
    pose = np.eye(4)
    pose[:3, :3] = turn[:3, :3] / f @ asset.root_pose[:3, :3]
    pose[:3, 3] = turn[:3, :3] @ asset.root_pose[:3, 3]
    asset.root_pose = pose
    if f != 1.0:
        asset.articulation = asset.articulation.scaled(f)
        asset.meshes = {n: m.copy().apply_scale(f) for n, m in asset.meshes.items()}
    return asset


def materialize(asset: UrdfAsset, object_id: str, pose: Pose | None = None, source: str | None = None
                ) -> tuple[SceneObject, dict[str, trimesh.Trimesh]]:
    """The scene object of ``asset`` under ``object_id`` and its files (path relative to the
    scene dir -> mesh): ``meshes/<id>.glb`` (the whole object, joints at zero) and
    ``meshes/<id>/<link>.glb`` (each link in its frame)."""
    links = tuple(replace(link, mesh=f"meshes/{object_id}/{link.name}.glb") for link in asset.articulation.links)
    articulation = replace(asset.articulation, links=links)
    files = {f"meshes/{object_id}.glb": asset.merged_mesh()}
    files.update({link.mesh: asset.meshes[link.name] for link in links})
    parameters = {"source": source or str(asset.path.resolve()), "robot": asset.robot,
                  "links": len(links), "joints": len(articulation.joints)}
    if asset.renamed:
        parameters["renamed"] = asset.renamed
    if asset.frame is not None:
        parameters["frame"] = asset.frame.to_json()
    obj = SceneObject(
        id=object_id, label=asset.label, mesh=f"meshes/{object_id}.glb",
        pose=pose or Pose.from_matrix(asset.root_pose), articulation=articulation,
        provenance=Provenance("import", "yourdfpy+trimesh", parameters),
    )
    return obj, files
