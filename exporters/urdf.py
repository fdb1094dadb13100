"""URDF writer: one standalone URDF per object, the PyBullet / Isaac URDF importer conventions.

- one link named after the object id; its frame is the object frame (pose in export.json);
- ``<inertial>`` at the centre of mass, rotated to the principal axes with a diagonal
  tensor (PyBullet reads only ixx/iyy/izz, so an off-diagonal tensor would be silently lost);
- one ``<visual>`` (the watertight OBJ, texture through its MTL, plus a flat colour);
- one ``<collision>`` per convex hull (PyBullet takes each OBJ's convex hull, which is exact
  here);
- PyBullet's ``<contact>`` extension (``exporters/contact.py`` has the mapping): the label
  gives ``lateral_friction`` (its dynamic friction) and ``restitution``
  (``ExportConfig.material``), plus the torsional (``spinning_friction``) and rolling
  coefficients every contact gets; a static body's frictions are the neutral element of
  PyBullet's combinations (lateral 1, spinning / rolling 0), so a contact with it takes the
  moving object's friction, as in MuJoCo (an XML comment in its URDF says so and names its
  own friction, which export.json records);
- background objects get mass 0, which PyBullet treats as static (load with useFixedBase);
- an articulated object is one robot: a link per link (the root named after the object id,
  its frame the object frame), each with its inertial, visual and hulls as above, and a
  ``<joint>`` per joint with ``<origin>``, ``<axis>``, ``<limit lower upper effort velocity>``
  (radians / metres; effort and velocity only where the input gave them) and ``<dynamics
  damping friction>``. PyBullet applies the damping itself and not the friction:
  ``load_pybullet.py`` turns each joint's default motor into the friction (a velocity motor
  with target 0 and the friction as its force, PyBullet's documented way);
- the ground plane of a scene without a floor (``exporters/ground.py``): ``ground/ground.urdf``,
  a static link whose collider is a thin slab (top face at its link origin).
Load with ``flags=pybullet.URDF_USE_INERTIA_FROM_FILE`` or PyBullet recomputes the inertia
from the collision shapes.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from exporters.articulated import urdf_link_names
from exporters.config import ExportConfig
from exporters.contact import bullet_contact
from exporters.ground import GROUND_FOLDER, GROUND_LABEL, GroundPlan, slab_mesh
from exporters.layout import ObjectFiles
from exporters.mass import MassProperties
from exporters.mesh_io import mean_color, write_hull_obj
from exporters.prepare import PreparedObject
from hiscene_sim.articulation import Joint
from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.rotations import matrix_to_rpy


def _fmt(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in values)


def _contact(link: ET.Element, material, static: bool) -> None:
    values = bullet_contact(material, static)
    if static:
        link.append(ET.Comment(
            " static body: neutral friction (PyBullet multiplies the two bodies' friction), so a contact takes "
            f"the moving object's; this surface's own dynamic friction {material.dynamic_friction:g} is in export.json "
        ))
    contact = ET.SubElement(link, "contact")
    ET.SubElement(contact, "lateral_friction", value=f"{values.lateral_friction:g}")
    ET.SubElement(contact, "rolling_friction", value=f"{values.rolling_friction:g}")
    ET.SubElement(contact, "spinning_friction", value=f"{values.spinning_friction:g}")
    ET.SubElement(contact, "restitution", value=f"{values.restitution:g}")


def _rpy(rotation) -> np.ndarray:
    with warnings.catch_warnings():
        # at gimbal lock scipy zeroes the third angle; the angles still give the same rotation
        warnings.simplefilter("ignore", UserWarning)
        return matrix_to_rpy(rotation)  # URDF rpy = fixed-axis roll, pitch, yaw


def _link(robot: ET.Element, name: str, mass: MassProperties, static: bool, visual_mesh, files: ObjectFiles,
          material, rel) -> ET.Element:
    """One ``<link>``: contact, inertial at the centre of mass in principal axes, visual, one collision per hull."""
    link = ET.SubElement(robot, "link", name=name)
    _contact(link, material, static)

    inertial = ET.SubElement(link, "inertial")
    moments, axes = mass.principal_axes()
    ET.SubElement(inertial, "origin", xyz=_fmt(mass.center_of_mass), rpy=_fmt(_rpy(axes)))
    ET.SubElement(inertial, "mass", value=f"{0.0 if static else mass.mass:.9g}")
    ET.SubElement(
        inertial, "inertia",
        ixx=f"{moments[0]:.9g}", ixy="0", ixz="0", iyy=f"{moments[1]:.9g}", iyz="0", izz=f"{moments[2]:.9g}",
    )

    visual = ET.SubElement(link, "visual", name="visual")
    ET.SubElement(visual, "origin", xyz="0 0 0", rpy="0 0 0")
    ET.SubElement(ET.SubElement(visual, "geometry"), "mesh", filename=rel(files.visual_obj))
    color = ET.SubElement(visual, "material", name=f"{name}_material")
    rgba = (1.0, 1.0, 1.0, 1.0) if files.texture else mean_color(visual_mesh)
    ET.SubElement(color, "color", rgba=_fmt(rgba))

    for i, hull in enumerate(files.hulls):
        collision = ET.SubElement(link, "collision", name=f"hull_{i:03d}")
        ET.SubElement(collision, "origin", xyz="0 0 0", rpy="0 0 0")
        ET.SubElement(ET.SubElement(collision, "geometry"), "mesh", filename=rel(hull))
    return link


def _joint(robot: ET.Element, joint: Joint, names: dict[str, str]) -> None:
    element = ET.SubElement(robot, "joint", name=joint.name, type=joint.type)
    ET.SubElement(element, "parent", link=names[joint.parent])
    ET.SubElement(element, "child", link=names[joint.child])
    origin = joint.origin.matrix()
    ET.SubElement(element, "origin", xyz=_fmt(origin[:3, 3]), rpy=_fmt(_rpy(origin[:3, :3])))
    if not joint.moves:
        return
    ET.SubElement(element, "axis", xyz=_fmt(joint.axis))
    limit = {k: f"{getattr(joint, k):.9g}" for k in ("lower", "upper", "effort", "velocity") if getattr(joint, k) is not None}
    if limit or joint.limited:
        ET.SubElement(element, "limit", limit)
    ET.SubElement(element, "dynamics", damping=f"{joint.damping:.9g}", friction=f"{joint.friction:.9g}")


def urdf_tree(obj: PreparedObject, files: ObjectFiles, urdf_dir: str, config: ExportConfig) -> ET.ElementTree:
    """The URDF of one object (one robot, a link per link for an articulated one); mesh paths
    are relative to ``urdf_dir`` (relative to the export dir)."""

    def rel(path: str) -> str:
        return Path(os.path.relpath(path, urdf_dir)).as_posix()

    robot = ET.Element("robot", name=obj.id)
    material, _ = config.material(obj.label)
    if obj.articulation is None:
        _link(robot, obj.id, obj.mass, obj.is_background, obj.visual, files, material, rel)
    else:
        names = urdf_link_names(obj)
        links = {link.name: link for link in obj.links}
        for name in obj.articulation.order():
            link = links[name]
            _link(robot, names[name], link.mass, obj.is_background, link.visual, files.links[name], material, rel)
        for joint in obj.articulation.joints:
            _joint(robot, joint, names)
    ET.indent(robot)
    return ET.ElementTree(robot)


def write_urdfs(objects: list[PreparedObject], files: dict[str, ObjectFiles], export_dir: Path, config: ExportConfig) -> None:
    """Write ``objects/<id>/<id>.urdf`` for every object and record it in ``files``."""
    for obj in objects:
        f = files[obj.id]
        rel_path = f"{f.folder}/{obj.id}.urdf"
        tree = urdf_tree(obj, f, f.folder, config)
        data = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(tree.getroot(), encoding="utf-8") + b"\n"
        atomic_write_bytes(export_dir / rel_path, data)
        f.urdf = rel_path



def write_ground_urdf(plan: GroundPlan, export_dir: Path, config: ExportConfig) -> dict[str, str]:
    """``ground/ground.obj`` (the slab) and ``ground/ground.urdf``; returns their paths
    relative to the export dir ("hull", "urdf"). The link origin is the centre of the slab's
    top face: load it at ``plan.position``."""
    hull_rel, urdf_rel = f"{GROUND_FOLDER}/ground.obj", f"{GROUND_FOLDER}/ground.urdf"
    write_hull_obj(slab_mesh(plan), export_dir / hull_rel)
    robot = ET.Element("robot", name=plan.id)
    link = ET.SubElement(robot, "link", name=plan.id)
    material, _ = config.material(GROUND_LABEL)
    _contact(link, material, static=True)
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "origin", xyz="0 0 0", rpy="0 0 0")
    ET.SubElement(inertial, "mass", value="0")
    ET.SubElement(inertial, "inertia", ixx="0", ixy="0", ixz="0", iyy="0", iyz="0", izz="0")
    for tag in ("visual", "collision"):
        element = ET.SubElement(link, tag, name=tag)
        ET.SubElement(element, "origin", xyz="0 0 0", rpy="0 0 0")
        ET.SubElement(ET.SubElement(element, "geometry"), "mesh", filename="ground.obj")
        if tag == "visual":
            ET.SubElement(ET.SubElement(element, "material", name="ground_material"), "color", rgba="0.75 0.75 0.72 1")
    ET.indent(robot)
    data = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(robot, encoding="utf-8") + b"\n"
    atomic_write_bytes(export_dir / urdf_rel, data)
    return {"hull": hull_rel, "urdf": urdf_rel}
