"""MJCF writer: the whole scene as one MuJoCo model, ``scene.xml`` in the export dir.

Layout of the model (MuJoCo 3.x / 4.x):

- ``<compiler meshdir="." texturedir=".">``: mesh and texture paths are relative to the
  export dir (where ``scene.xml`` lives); ``inertiafromgeom="false"`` because every moving
  body carries an explicit ``<inertial>``, so no geom contributes mass;
- every mesh asset has ``inertia="shell"`` (through the mesh default): MuJoCo computes each
  mesh's inertia to place it even when nothing uses that inertia, and a tiny or thin hull
  makes the default volume mode fail with "mesh volume is too small";
- foreground object -> ``<body name="<id>">`` at its pose with ``<freejoint name="<id>_joint">``,
  ``<inertial>`` at the centre of mass with the principal moments (``diaginertia``) and the
  principal axes as ``quat``; one collision geom (class ``collision``, group 3) per convex
  hull and the visual mesh as a non-colliding, massless geom (class ``visual``, group 2)
  with a per-object material (the texture, or the mesh's mean colour);
- articulated object -> its root link is that body; every other link is a body nested in its
  parent link's body at the joint origin (``<id>__<link>``), with a ``hinge`` (revolute,
  continuous) or ``slide`` (prismatic) joint ``<id>__<joint>`` on the URDF axis, ``range`` and
  ``limited="true"`` for revolute / prismatic joints (radians / metres), ``damping`` and
  ``frictionloss`` from the input (a stiff friction constraint, ``solreffriction`` /
  ``solimpfriction`` in the joint default, so friction holds what it should); a fixed joint is a
  nested body without joint (welded). The
  links of one object do not collide with each other (``<contact><exclude>`` per pair), as in
  PyBullet's ``loadURDF`` and Isaac's URDF importer by default;
- background object -> the same body without joint and inertial: it is welded to the world
  (a static collider); the floor comes from the background objects, and a scene without a
  floor under its objects gets a ground plane, ``<geom name="ground_plane" type="plane">``
  in the worldbody at the scene's lowest point (``exporters/ground.py``);
- the label of object ``<id>`` is ``<custom><text name="label:<id>" data="...">``, read it
  back with ``mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXT, "label:<id>")`` and
  ``model.text_data`` (see :func:`read_label`). MuJoCo keeps any UTF-8 text there; only the
  characters XML 1.0 cannot hold at all (C0 controls other than tab / newline / carriage
  return, U+FFFE/U+FFFF, lone surrogates) are replaced by U+FFFD.

Contact (``exporters/contact.py`` has the mapping against PyBullet's): every collision geom
carries its object's material (``ExportConfig.material`` of the label): a moving object's
``friction`` = (dynamic friction, torsional, rolling), ``condim`` 6 so that the rolling
coefficient acts; a static geom's friction is 0 0 0, the neutral element of MuJoCo's max, so
a contact with it takes the object's friction exactly (an XML comment in the body says so).
Restitution has no direct MuJoCo counterpart; it is approximated through the damping ratio of
``solref`` (a damped spring whose coefficient of restitution is the material's; 0 gives a
critically damped, non-bouncing contact; a contact mixes its two geoms' ``solref``).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from exporters.articulated import mjcf_body_names, mjcf_joint_name
from exporters.config import ExportConfig
from exporters.contact import (
    CONTACT_TIMECONST_S,
    MUJOCO_CONDIM,
    mujoco_friction,
)
from exporters.ground import GROUND_LABEL, GroundPlan
from exporters.layout import MJCF_FILE, ObjectFiles
from exporters.mesh_io import mean_color
from exporters.prepare import PreparedLink, PreparedObject
from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.rotations import quaternion_from_rotation, rotation_from_quaternion, unit_quaternion

TIMESTEP = 0.002  # s
CONTACT_TIMECONST = CONTACT_TIMECONST_S  # s; solref time constant, >= 2 x timestep as MuJoCo advises
SOLIMP = (0.95, 0.99, 0.001, 0.5, 2.0)  # stiff contacts: objects are centimetres in size
GROUND_RGBA = (0.75, 0.75, 0.72, 1.0)
COLLISION_RGBA = (0.5, 0.6, 0.8, 0.4)
# Joint friction (frictionloss) is a soft constraint: with MuJoCo's defaults a joint creeps under a load below
# its friction (a flap held by 2.5x its gravity torque sagged 8.7 deg in 2 s); this stiff one (time constant
# 2 x timestep, impedance 0.99..0.999) lets it creep 0.17 deg (tests/test_articulation.py's flap).
JOINT_FRICTION_SOLIMP = (0.99, 0.999, 0.001, 0.5, 2.0)
MIN_HULL_THICKNESS = 1e-6  # m; flatter hulls are dropped (when the object has others)
LABEL_PREFIX = "label:"

# Characters XML 1.0 cannot carry, not even as character references.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _num(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"non-finite number {v} cannot go into MJCF")
    return repr(v + 0.0)  # shortest round-trip form; + 0.0 turns -0.0 into 0.0


def _vec(values) -> str:
    return " ".join(_num(v) for v in values)


def xml_safe_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot represent replaced by U+FFFD."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def label_text_name(object_id: str) -> str:
    return f"{LABEL_PREFIX}{object_id}"


def read_label(model, object_id: str) -> str | None:
    """The label stored for ``object_id`` in a compiled ``mujoco.MjModel`` (None if absent)."""
    import mujoco

    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXT, label_text_name(object_id))
    if i < 0:
        return None
    adr, size = int(model.text_adr[i]), int(model.text_size[i])
    data = model.text_data
    raw = data[adr : adr + size] if isinstance(data, (bytes, bytearray)) else bytes(data[adr : adr + size])
    return raw.rstrip(b"\x00").decode("utf-8")


def restitution_dampratio(restitution: float) -> float:
    """Damping ratio of a linear spring-damper whose bounce has coefficient ``restitution``:
    e = exp(-zeta pi / sqrt(1 - zeta^2)). 0 (or less) gives 1 (critical damping)."""
    e = min(float(restitution), 0.99)
    if e <= 0.0:
        return 1.0
    log_e = math.log(e)
    return -log_e / math.sqrt(math.pi**2 + log_e**2)


def inertial_attributes(obj: PreparedObject | PreparedLink) -> dict[str, str]:
    """``<inertial>`` attributes: centre of mass, principal axes as a quat, principal moments.

    The moments are kept to the triangle inequality (A + B >= C) MuJoCo enforces; a mesh
    that is flat to rounding error could otherwise break it by a few ulps."""
    moments, axes = obj.mass.principal_axes()
    moments = np.array(moments, dtype=np.float64)
    order = np.argsort(moments)
    a, b, c = moments[order]
    if a + b < c:
        moments[order[2]] = a + b
    return {
        "pos": _vec(obj.mass.center_of_mass),
        "quat": _vec(quaternion_from_rotation(axes)),
        "mass": _num(obj.mass.mass),
        "diaginertia": _vec(moments),
    }


def _usable_hulls(obj: PreparedObject | PreparedLink, hull_files: list[str]) -> list[int]:
    """Indices of the hull files to use: hulls flatter than MIN_HULL_THICKNESS (or with fewer
    than 4 vertices) are dropped unless every hull of the object is like that."""
    if len(obj.hulls) != len(hull_files):
        return list(range(len(hull_files)))  # cannot judge; the files are what they are
    keep = []
    for i, hull in enumerate(obj.hulls):
        if len(hull.vertices) < 4:
            continue
        area = float(hull.area)
        thickness = 2.0 * abs(float(hull.volume)) / area if area > 0 else 0.0
        if thickness >= MIN_HULL_THICKNESS:
            keep.append(i)
    return keep or list(range(len(hull_files)))


def _world_bounds(objects: list[PreparedObject]) -> tuple[np.ndarray, np.ndarray] | None:
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for obj in objects:
        rot = rotation_from_quaternion(unit_quaternion(obj.orientation))
        pts = np.asarray(obj.visual.bounds, dtype=np.float64)  # local AABB corners
        corners = np.array([[pts[i, 0], pts[j, 1], pts[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        world = corners @ rot.T + np.asarray(obj.position, dtype=np.float64)
        lo, hi = np.minimum(lo, world.min(axis=0)), np.maximum(hi, world.max(axis=0))
    if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
        return None
    return lo, hi


def _contact(config: ExportConfig, label: str, static: bool) -> dict[str, str]:
    physics, _ = config.material(label)
    return {
        "friction": _vec(mujoco_friction(physics, static)),
        "solref": _vec((CONTACT_TIMECONST, restitution_dampratio(physics.restitution))),
    }


def mjcf_tree(
    objects: list[PreparedObject], files: dict[str, ObjectFiles], config: ExportConfig, model_name: str = "hiscene",
    ground: GroundPlan | None = None,
) -> ET.Element:
    """The ``<mujoco>`` element of the scene; paths in ``files`` are relative to the export dir."""
    root = ET.Element("mujoco", model=model_name)
    ET.SubElement(
        root, "compiler",
        angle="radian", meshdir=".", texturedir=".", autolimits="true", inertiafromgeom="false",
    )
    ET.SubElement(
        root, "option",
        gravity="0 0 -9.81", timestep=_num(TIMESTEP), integrator="implicitfast", cone="elliptic", impratio="10",
    )

    bounds = _world_bounds(objects)
    if bounds is not None:
        lo, hi = bounds
        extent = max(float(np.linalg.norm(hi - lo)) / 2.0, 0.05)
        ET.SubElement(root, "statistic", center=_vec((lo + hi) / 2.0), extent=_num(extent))

    default = ET.SubElement(root, "default")
    ET.SubElement(default, "mesh", inertia="shell")
    if any(o.articulation is not None for o in objects):
        ET.SubElement(default, "joint", solreffriction=_vec((2 * TIMESTEP, 1.0)), solimpfriction=_vec(JOINT_FRICTION_SOLIMP))
    ET.SubElement(default, "geom", solimp=_vec(SOLIMP))
    visual_class = ET.SubElement(default, "default", {"class": "visual"})
    ET.SubElement(visual_class, "geom", type="mesh", group="2", contype="0", conaffinity="0", mass="0", density="0")
    collision_class = ET.SubElement(default, "default", {"class": "collision"})
    ET.SubElement(
        collision_class, "geom",
        type="mesh", group="3", contype="1", conaffinity="1", condim=str(MUJOCO_CONDIM), rgba=_vec(COLLISION_RGBA),
    )

    asset = ET.SubElement(root, "asset")
    custom = ET.SubElement(root, "custom")
    world = ET.SubElement(root, "worldbody")
    ET.SubElement(world, "light", name="sun", pos="0 0 4", dir="0 0 -1", directional="true", diffuse="0.7 0.7 0.7")
    if ground is not None and ground.added:
        half = ground.size_m / 2.0  # the plane collides everywhere; the size is what is drawn
        ET.SubElement(world, "geom", {
            "name": ground.id, "type": "plane", "pos": _vec(ground.position), "size": _vec((half, half, 0.1)),
            "contype": "1", "conaffinity": "1", "condim": str(MUJOCO_CONDIM), "group": "0", "rgba": _vec(GROUND_RGBA),
            **_contact(config, GROUND_LABEL, static=True),
        })

    for obj in objects:
        if obj.id not in files:
            raise ValueError(f"{obj.describe()}: no mesh files were written for it")
        f = files[obj.id]
        ET.SubElement(custom, "text", name=label_text_name(obj.id), data=xml_safe_text(obj.label))
        body = ET.SubElement(
            world, "body", name=obj.id, pos=_vec(obj.position), quat=_vec(unit_quaternion(obj.orientation))
        )
        if not obj.is_background:
            ET.SubElement(body, "freejoint", name=f"{obj.id}_joint")
        contact = _contact(config, obj.label, obj.is_background)  # on the visual geom too, where it changes nothing
        if obj.is_background:
            own, _ = config.material(obj.label)
            body.append(ET.Comment(
                " static: friction 0 0 0, so a contact takes the moving object's (MuJoCo uses the larger); "
                f"this surface's own dynamic friction {own.dynamic_friction:g} is in export.json "
            ))
        if obj.articulation is None:
            _fill_body(body, asset, obj.id, obj, f, obj.describe(), not obj.is_background, contact)
        else:
            _articulated_bodies(body, asset, obj, f, contact)

    _exclude_self_contacts(root, objects)
    if len(custom) == 0:
        root.remove(custom)
    ET.indent(root)
    return root


def _fill_body(body: ET.Element, asset: ET.Element, prefix: str, part: PreparedObject | PreparedLink, f: ObjectFiles,
               who: str, inertial: bool, contact: dict[str, str]) -> None:
    """A body's inertial, its visual geom and one collision geom per hull, with their assets
    named ``<prefix>_visual`` / ``<prefix>_material`` / ``<prefix>_hull_NNN``."""
    hull_indices = _usable_hulls(part, f.hulls)
    if not hull_indices:
        raise ValueError(f"{who}: has no collision hulls; MJCF needs at least one")
    visual_mesh = f"{prefix}_visual"
    ET.SubElement(asset, "mesh", name=visual_mesh, file=f.visual_obj)
    material = f"{prefix}_material"
    if f.texture is not None:
        texture = f"{prefix}_texture"
        ET.SubElement(asset, "texture", name=texture, type="2d", file=f.texture)
        ET.SubElement(asset, "material", name=material, texture=texture, rgba="1 1 1 1")
    else:
        ET.SubElement(asset, "material", name=material, rgba=_vec(mean_color(part.visual)))
    for i in hull_indices:
        ET.SubElement(asset, "mesh", name=f"{prefix}_hull_{i:03d}", file=f.hulls[i])
    if inertial:
        ET.SubElement(body, "inertial", inertial_attributes(part))
    visual = {"name": visual_mesh, "class": "visual", "mesh": visual_mesh, "material": material}
    ET.SubElement(body, "geom", {**visual, **contact})
    for i in hull_indices:
        name = f"{prefix}_hull_{i:03d}"
        ET.SubElement(body, "geom", {"name": name, "class": "collision", "mesh": name, **contact})


def _articulated_bodies(root: ET.Element, asset: ET.Element, obj: PreparedObject, f: ObjectFiles,
                        contact: dict[str, str]) -> None:
    """The root link in ``root`` (the object's body), every other link a body nested in its
    parent's at its joint origin, with a hinge (revolute, continuous) or slide (prismatic)
    joint, or none (fixed: welded to the parent)."""
    art = obj.articulation
    names = mjcf_body_names(obj)
    links = {link.name: link for link in obj.links}
    bodies = {art.root: root}
    moving = not obj.is_background
    for name in art.order():
        link = links[name]
        if name != art.root:
            joint = art.parent_joint(name)
            body = ET.SubElement(bodies[joint.parent], "body", name=names[name], pos=_vec(joint.origin.position),
                                 quat=_vec(unit_quaternion(joint.origin.orientation)))
            bodies[name] = body
            if joint.moves and moving:
                attrs = {"name": mjcf_joint_name(obj, joint), "type": "slide" if joint.type == "prismatic" else "hinge",
                         "pos": "0 0 0", "axis": _vec(joint.axis), "damping": _num(joint.damping),
                         "frictionloss": _num(joint.friction)}
                if joint.limited:
                    attrs.update(limited="true", range=_vec((joint.lower, joint.upper)))
                else:
                    attrs["limited"] = "false"
                ET.SubElement(body, "joint", attrs)
        _fill_body(bodies[name], asset, names[name], link, f.links[name], f"{obj.describe()} link {name!r}", moving, contact)


def _exclude_self_contacts(root: ET.Element, objects: list[PreparedObject]) -> None:
    """``<contact><exclude>`` for every pair of links of each articulated object: its links do
    not collide with each other (MuJoCo filters parent / child pairs itself; siblings a hair
    apart, a door under a drawer, would otherwise rub), as in PyBullet's and Isaac's defaults."""
    pairs = []
    for obj in objects:
        if obj.articulation is not None and not obj.is_background:
            names = [mjcf_body_names(obj)[n] for n in obj.articulation.order()]
            pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if pairs:
        contact = ET.Element("contact")
        for a, b in pairs:
            ET.SubElement(contact, "exclude", body1=a, body2=b)
        root.insert(list(root).index(root.find("worldbody")) + 1, contact)


def write_mjcf(
    objects: list[PreparedObject], files: dict[str, ObjectFiles], export_dir: Path, config: ExportConfig,
    ground: GroundPlan | None = None,
) -> Path:
    """Write ``export_dir/scene.xml`` for ``objects`` (their mesh files, named in ``files``,
    must already be in ``export_dir``), with ``ground``'s plane if it was added. Returns the
    path written."""
    export_dir = Path(export_dir)
    root = mjcf_tree(objects, files, config, ground=ground)
    data = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
    path = export_dir / MJCF_FILE
    atomic_write_bytes(path, data)
    return path
