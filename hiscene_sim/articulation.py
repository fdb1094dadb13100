"""Articulated objects in the scene model: links joined by joints into one tree.

An articulated object is a :class:`hiscene_sim.scene.SceneObject` whose ``articulation`` is set.
Its pose is the pose of the **root link**; every link has its own mesh in its own frame; a joint
places its child link in its parent link's frame, URDF's way: the joint frame is ``origin`` in
the parent link's frame, the child link's frame *is* the joint frame when the joint is at zero,
and the joint moves the child about (revolute, continuous) or along (prismatic) ``axis``, a unit
vector in the joint frame.

Units (SI, as URDF): lengths in metres, revolute / continuous positions and limits in radians,
prismatic ones in metres; ``effort`` in N m or N, ``velocity`` in rad/s or m/s, ``damping`` in
N m s/rad or N s/m (viscous), ``friction`` in N m or N (Coulomb, the force a joint resists
motion with). Orientations are ``[w, x, y, z]``.

Every check here raises :class:`ArticulationError` with a message that names the element
(``joint 'door_hinge'``, ``link 'drawer'``); callers add the file (scene.json or the URDF).
This module imports nothing of the scene module (which imports it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hiscene_sim.rotations import quaternion_from_rotation, rotation_from_quaternion, stored_unit_quaternion

JOINT_TYPES = ("revolute", "prismatic", "continuous", "fixed")
MOVING_TYPES = ("revolute", "prismatic", "continuous")
ANGULAR_TYPES = ("revolute", "continuous")

#: Link and joint names become URDF link / joint names, MJCF body names and USD prim names:
#: the same rule as scene object ids (``hiscene_sim.scene.ID_PATTERN``).
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class ArticulationError(ValueError):
    """An articulation that cannot be used; the message names the link or joint."""


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Frame:
    """A rigid transform: ``position`` (m) and ``orientation`` ``[w, x, y, z]``."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = rotation_from_quaternion(self.orientation)
        m[:3, 3] = self.position
        return m

    @staticmethod
    def from_matrix(matrix: np.ndarray) -> "Frame":
        matrix = np.asarray(matrix, dtype=float)
        return Frame(tuple(float(v) for v in matrix[:3, 3]), quaternion_from_rotation(matrix[:3, :3]))

    def to_json(self) -> dict[str, list[float]]:
        return {"position": list(self.position), "orientation": list(self.orientation)}


@dataclass(frozen=True)
class Inertial:
    """A link's mass properties as given (URDF ``<inertial>``): ``mass`` (kg), centre of mass
    in the link frame (m) and the 3x3 inertia tensor about it in the link's axes (kg m^2)."""

    mass: float
    center_of_mass: tuple[float, float, float]
    inertia: tuple[tuple[float, float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"mass": self.mass, "center_of_mass": list(self.center_of_mass), "inertia": [list(r) for r in self.inertia]}


@dataclass(frozen=True)
class Link:
    """One rigid part: its mesh (path relative to the scene dir) in the link frame, a
    semantic label for the part (``door``, ``drawer``) and, when the input gave one, its
    inertial (else the export estimates it from the mesh and the object's label)."""

    name: str
    mesh: str
    label: str
    inertial: Inertial | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.label, "mesh": self.mesh}
        if self.inertial is not None:
            out["inertial"] = self.inertial.to_json()
        return out


@dataclass(frozen=True)
class Joint:
    """A joint (see the module doc for frames and units). ``lower`` / ``upper`` are required
    for revolute and prismatic joints and absent for continuous and fixed ones; ``effort`` and
    ``velocity`` are the input's actuator limits (None when not given)."""

    name: str
    type: str
    parent: str
    child: str
    origin: Frame = Frame()
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    lower: float | None = None
    upper: float | None = None
    effort: float | None = None
    velocity: float | None = None
    damping: float = 0.0
    friction: float = 0.0

    @property
    def moves(self) -> bool:
        return self.type in MOVING_TYPES

    @property
    def angular(self) -> bool:
        return self.type in ANGULAR_TYPES

    @property
    def limited(self) -> bool:
        return self.type in ("revolute", "prismatic")

    def motion(self, q: float) -> np.ndarray:
        """4x4 child-link motion in the joint frame at position ``q`` (rad or m)."""
        m = np.eye(4)
        if not self.moves or q == 0.0:
            return m
        axis = np.asarray(self.axis, dtype=float)
        if self.angular:
            from scipy.spatial.transform import Rotation

            m[:3, :3] = Rotation.from_rotvec(axis * q).as_matrix()
        else:
            m[:3, 3] = axis * q
        return m

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "parent": self.parent, "child": self.child,
                               "origin": self.origin.to_json()}
        if self.moves:
            out["axis"] = list(self.axis)
            limit = {k: getattr(self, k) for k in ("lower", "upper", "effort", "velocity") if getattr(self, k) is not None}
            if limit:
                out["limit"] = limit
            out["damping"] = self.damping
            out["friction"] = self.friction
        return out


@dataclass(frozen=True)
class Articulation:
    """Links and joints forming one tree; ``root`` is the link whose frame is the object's."""

    root: str
    links: tuple[Link, ...]
    joints: tuple[Joint, ...]

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def joint(self, name: str) -> Joint:
        for joint in self.joints:
            if joint.name == name:
                return joint
        raise KeyError(name)

    @property
    def moving_joints(self) -> list[Joint]:
        return [j for j in self.joints if j.moves]

    def parent_joint(self, link: str) -> Joint | None:
        return next((j for j in self.joints if j.child == link), None)

    def children(self, link: str) -> list[Joint]:
        return [j for j in self.joints if j.parent == link]

    def order(self) -> list[str]:
        """Link names, root first, every parent before its children (depth first, in file order)."""
        out, stack = [], [self.root]
        while stack:
            name = stack.pop()
            out.append(name)
            stack.extend(reversed([j.child for j in self.children(name)]))
        return out

    def subtree(self, link: str) -> list[str]:
        """``link`` and every link below it."""
        out, stack = [], [link]
        while stack:
            name = stack.pop()
            out.append(name)
            stack.extend(j.child for j in self.children(name))
        return out

    def link_frames(self, positions: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """link name -> 4x4 link-to-object transform with the joints at ``positions`` (joint
        name -> rad or m; missing joints at zero)."""
        positions = positions or {}
        frames = {self.root: np.eye(4)}
        for name in self.order()[1:]:
            joint = self.parent_joint(name)
            frames[name] = frames[joint.parent] @ joint.origin.matrix() @ joint.motion(positions.get(joint.name, 0.0))
        return frames

    def scaled(self, factor: float, mass_factor: float = 1.0) -> "Articulation":
        """The articulation with every length times ``factor`` (joint origins, prismatic
        limits and speeds, centres of mass) and every given mass times ``mass_factor``; inertia
        tensors scale by ``mass_factor x factor^2``. A change of units keeps masses
        (``mass_factor`` 1); an object made ``s`` times larger has ``mass_factor = s^3``. Link
        meshes live in files: scaling them is the caller's."""
        if factor == 1.0 and mass_factor == 1.0:
            return self
        joints = []
        for j in self.joints:
            origin = Frame(tuple(factor * v for v in j.origin.position), j.origin.orientation)
            kw: dict[str, Any] = {"origin": origin}
            if j.type == "prismatic":
                kw.update(lower=_times(j.lower, factor), upper=_times(j.upper, factor), velocity=_times(j.velocity, factor))
            joints.append(replace(j, **kw))
        links = tuple(link if link.inertial is None else replace(link, inertial=Inertial(
            link.inertial.mass * mass_factor, tuple(factor * v for v in link.inertial.center_of_mass),
            tuple(tuple(mass_factor * factor**2 * v for v in row) for row in link.inertial.inertia)))
            for link in self.links)
        return replace(self, links=links, joints=tuple(joints))

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "links": [link.to_json() for link in self.links],
                "joints": [j.to_json() for j in self.joints]}


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


# ------------------------------------------------------------------------------ checks
def check_articulation(links: list[Link] | tuple[Link, ...], joints: list[Joint] | tuple[Joint, ...],
                       check_names: bool = True) -> str:
    """Check that ``links`` and ``joints`` form one tree with usable joints; return the root
    link's name. Raises :class:`ArticulationError` naming the first bad element: a duplicate
    name, a joint naming an unknown link, a link with two parent joints or a kinematic loop, no
    root or several, a bad joint type, axis or limit (lower > upper, a revolute joint without
    limits), a negative damping or friction, a bad inertial. ``check_names=False`` accepts any name
    (a URDF's, before they are made valid)."""
    if not links:
        raise ArticulationError("no links")
    link_names: set[str] = set()
    for link in links:
        if check_names:
            _check_name(link.name, "link")
        if link.name in link_names:
            raise ArticulationError(f"link {link.name!r} is defined twice")
        link_names.add(link.name)
        if link.inertial is not None:
            check_inertial(link.inertial, f"link {link.name!r} <inertial>")
    parent_of: dict[str, str] = {}
    joint_names: set[str] = set()
    for j in joints:
        if check_names:
            _check_name(j.name, "joint")
        if j.name in joint_names:
            raise ArticulationError(f"joint {j.name!r} is defined twice")
        joint_names.add(j.name)
        who = f"joint {j.name!r}"
        if j.type not in JOINT_TYPES:
            raise ArticulationError(f"{who}: type {j.type!r} is not supported (use {', '.join(JOINT_TYPES)})")
        for role, link in (("parent", j.parent), ("child", j.child)):
            if link not in link_names:
                raise ArticulationError(f"{who}: {role} link {link!r} is not a link of this articulation "
                                        f"(links: {', '.join(sorted(link_names))})")
        if j.parent == j.child:
            raise ArticulationError(f"{who}: joins link {j.parent!r} to itself (a kinematic loop)")
        if j.child in parent_of:
            raise ArticulationError(f"{who}: link {j.child!r} already has parent joint {parent_of[j.child]!r}; a link "
                                    "with two parents closes a kinematic loop, which URDF and these simulators cannot "
                                    "represent as a tree")
        parent_of[j.child] = j.name
        _check_joint(j, who)
    roots = [link.name for link in links if link.name not in parent_of]
    if not roots:
        raise ArticulationError("every link is the child of a joint: the joints form a kinematic loop")
    if len(roots) > 1:
        raise ArticulationError(f"{len(roots)} links have no parent joint ({', '.join(roots)}): the links do not form "
                                "one tree (a joint is missing, or the joints form a loop elsewhere)")
    # every link must be reachable from the root (a loop among non-root links is unreachable)
    children: dict[str, list[str]] = {}
    for j in joints:
        children.setdefault(j.parent, []).append(j.child)
    seen, stack = set(), [roots[0]]
    while stack:
        name = stack.pop()
        seen.add(name)
        stack.extend(c for c in children.get(name, []) if c not in seen)
    lost = [link.name for link in links if link.name not in seen]
    if lost:
        loop = [parent_of[n] for n in lost]
        raise ArticulationError(f"joints {', '.join(repr(n) for n in loop)} form a kinematic loop (links "
                                f"{', '.join(lost)} cannot be reached from the root link {roots[0]!r})")
    return roots[0]


def _check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ArticulationError(f"{kind} name {name!r} is not valid: use 1-64 characters [A-Za-z0-9_], not starting "
                                "with a digit (names become URDF, MJCF and USD names)")


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArticulationError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _check_joint(j: Joint, who: str) -> None:
    axis = np.asarray(j.axis, dtype=float)
    if j.moves and (axis.shape != (3,) or not np.all(np.isfinite(axis)) or abs(np.linalg.norm(axis) - 1.0) > 1e-6):
        raise ArticulationError(f"{who}: axis {list(j.axis)} must be a unit vector")
    for name in ("lower", "upper", "effort", "velocity"):
        value = getattr(j, name)
        if value is not None:
            _finite(value, f"{who} limit {name}")
    for name in ("damping", "friction", "effort", "velocity"):
        value = getattr(j, name)
        if value is not None and _finite(value, f"{who} {name}") < 0:
            raise ArticulationError(f"{who}: {name} must not be negative, got {value}")
    if j.limited:
        if j.lower is None or j.upper is None:
            raise ArticulationError(f"{who}: a {j.type} joint needs lower and upper limits")
        if j.lower > j.upper:
            raise ArticulationError(f"{who}: lower limit {j.lower:g} > upper limit {j.upper:g}")
    elif j.lower is not None or j.upper is not None:
        raise ArticulationError(f"{who}: a {j.type} joint has no lower / upper limits")


def check_inertial(inertial: Inertial, who: str) -> None:
    """Positive mass, finite centre of mass, a symmetric positive definite tensor whose
    principal moments satisfy the triangle inequality (what every simulator requires)."""
    if _finite(inertial.mass, f"{who} mass") <= 0:
        raise ArticulationError(f"{who}: mass must be positive, got {inertial.mass}")
    for v in inertial.center_of_mass:
        _finite(v, f"{who} centre of mass")
    tensor = np.asarray(inertial.inertia, dtype=float)
    if tensor.shape != (3, 3) or not np.all(np.isfinite(tensor)):
        raise ArticulationError(f"{who}: inertia must be a finite 3x3 tensor")
    if not np.allclose(tensor, tensor.T, atol=1e-12 + 1e-9 * np.abs(tensor).max()):
        raise ArticulationError(f"{who}: inertia tensor is not symmetric")
    moments = np.linalg.eigvalsh(tensor)
    if moments.min() <= 0:
        raise ArticulationError(f"{who}: inertia tensor is not positive definite (principal moments {moments.tolist()})")
    a, b, c = np.sort(moments)
    if a + b < c * (1 - 1e-6):
        raise ArticulationError(f"{who}: principal moments {[a, b, c]} break the triangle inequality (no rigid body has them)")


# ------------------------------------------------------------------------------ JSON
def _vector(value: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ArticulationError(f"{what}: expected a list of {n} numbers, got {value!r}")
    return tuple(_finite(v, what) for v in value)


def _frame(data: Any, what: str) -> Frame:
    if data is None:
        return Frame()
    if not isinstance(data, dict) or set(data) - {"position", "orientation"}:
        raise ArticulationError(f"{what}: expected an object with position and orientation [w,x,y,z]")
    position = _vector(data.get("position", [0, 0, 0]), 3, f"{what}.position")
    q = _vector(data.get("orientation", [1, 0, 0, 0]), 4, f"{what}.orientation")
    return Frame(position, stored_unit_quaternion(q, f"{what}.orientation", ArticulationError))


def _optional(data: dict, key: str, what: str) -> float | None:
    return None if data.get(key) is None else _finite(data[key], f"{what}.{key}")


def articulation_from_json(data: Any) -> Articulation:
    """Build and check an :class:`Articulation` from scene.json's ``articulation`` object."""
    if not isinstance(data, dict):
        raise ArticulationError("expected an object with root, links and joints")
    links_data, joints_data = data.get("links"), data.get("joints", [])
    if not isinstance(links_data, list) or not isinstance(joints_data, list):
        raise ArticulationError("'links' and 'joints' must be lists")
    links = []
    for i, d in enumerate(links_data):
        what = f"links[{i}]"
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("name", "mesh", "label")):
            raise ArticulationError(f"{what}: needs string 'name', 'mesh' and 'label'")
        inertial = None
        if d.get("inertial") is not None:
            e = d["inertial"]
            if not isinstance(e, dict):
                raise ArticulationError(f"{what}.inertial: expected an object")
            rows = e.get("inertia")
            if not isinstance(rows, list) or len(rows) != 3:
                raise ArticulationError(f"{what}.inertial.inertia: expected a 3x3 list")
            inertial = Inertial(_finite(e.get("mass"), f"{what}.inertial.mass"),
                                _vector(e.get("center_of_mass", [0, 0, 0]), 3, f"{what}.inertial.center_of_mass"),
                                tuple(_vector(r, 3, f"{what}.inertial.inertia") for r in rows))
        links.append(Link(d["name"], d["mesh"], d["label"], inertial))
    joints = []
    for i, d in enumerate(joints_data):
        what = f"joints[{i}]"
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("name", "type", "parent", "child")):
            raise ArticulationError(f"{what}: needs string 'name', 'type', 'parent' and 'child'")
        limit = d.get("limit") or {}
        if not isinstance(limit, dict):
            raise ArticulationError(f"{what}.limit: expected an object")
        joints.append(Joint(
            d["name"], d["type"], d["parent"], d["child"], _frame(d.get("origin"), f"{what}.origin"),
            _vector(d.get("axis", [1, 0, 0]), 3, f"{what}.axis"),
            _optional(limit, "lower", f"{what}.limit"), _optional(limit, "upper", f"{what}.limit"),
            _optional(limit, "effort", f"{what}.limit"), _optional(limit, "velocity", f"{what}.limit"),
            _finite(d.get("damping", 0.0), f"{what}.damping"), _finite(d.get("friction", 0.0), f"{what}.friction"),
        ))
    root = check_articulation(links, joints)
    if data.get("root", root) != root:
        raise ArticulationError(f"root {data.get('root')!r} is not the root of the joint tree ({root!r} is)")
    return Articulation(root, tuple(links), tuple(joints))
