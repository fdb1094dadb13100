"""What every writer shares about an articulated object (``SceneObject.articulation``): the
names links and joints take in each format, the joint records of export.json and the frame turn
USD joints need. Each link is prepared as an object is (watertight visual, CoACD hulls, mass and
inertia) by ``exporters.prepare.prepare_articulated``:

Per link: the mesh is loaded in its link frame and scaled by the object's (uniform) scale;
mass properties are the link's ``<inertial>`` when the input gave one (mass x s^3, inertia x
s^5: the object is s times larger), else the watertight volume x the density of the *object's*
label (a cabinet's door is cabinet wood; the link's own label, ``door``, is a part name);
friction and restitution also come by the object's label. The size and mass plausibility
check is the object's, on the whole (``exporters/materials.py``).

Names: URDF keeps the scene's link and joint names (one robot per object, the root link named
after the object id, as for a rigid object); MJCF names are global, so non-root bodies are
``<id>__<link>`` and joints ``<id>__<joint>``; USD links are prims under the object's prim and
joints under ``<object>/joints``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hiscene_sim.articulation import Joint

if TYPE_CHECKING:  # the writers' prepared objects; a plain import would make a cycle with exporters.prepare
    from exporters.prepare import PreparedObject

USD_RESERVED = ("joints", "Looks", "visual", "collision")
MJCF_SEPARATOR = "__"


# ------------------------------------------------------------------------------ names
def urdf_link_names(obj: PreparedObject) -> dict[str, str]:
    """Scene link name -> URDF link name: the root link is named after the object id."""
    art = obj.articulation
    out = {art.root: obj.id}
    for link in art.links:
        if link.name != art.root:
            out[link.name] = link.name if link.name != obj.id else f"{link.name}_link"
    return out


def mjcf_body_names(obj: PreparedObject) -> dict[str, str]:
    art = obj.articulation
    return {link.name: obj.id if link.name == art.root else f"{obj.id}{MJCF_SEPARATOR}{link.name}" for link in art.links}


def mjcf_joint_name(obj: PreparedObject, joint: Joint) -> str:
    return f"{obj.id}{MJCF_SEPARATOR}{joint.name}"


def usd_link_names(obj: PreparedObject) -> dict[str, str]:
    """Scene link name -> prim name under the object's prim (names the writer uses there are avoided)."""
    return {link.name: f"{link.name}_link" if link.name in USD_RESERVED else link.name for link in obj.articulation.links}


def joint_records(obj: PreparedObject) -> list[dict]:
    """export.json's joints of an articulated object: the scene's record (SI units) and the
    name the joint has in each format."""
    out = []
    for j in obj.articulation.joints:
        record = j.to_json()
        record["names"] = {"urdf": j.name, "mjcf": mjcf_joint_name(obj, j), "usd": f"/World/Objects/{obj.id}/joints/{j.name}"}
        out.append(record)
    return out


# ------------------------------------------------------------------------------ frames
def axis_alignment(axis) -> np.ndarray:
    """3x3 rotation taking +X onto the unit vector ``axis`` (USD joints move about / along one
    of the joint frame's axes: the frame is turned so that X is the URDF axis)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    x = np.array([1.0, 0.0, 0.0])
    c = float(np.dot(x, a))
    if c > 1 - 1e-12:
        return np.eye(3)
    if c < -1 + 1e-12:
        return np.diag([-1.0, -1.0, 1.0])  # half a turn about Z
    v = np.cross(x, a)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k * (1.0 / (1.0 + c))
