"""Load a hiscene-sim export into PyBullet, every object its own rigid body.

This file is also copied into every export dir as ``load_pybullet.py``, so it depends on
nothing but the standard library and pybullet:

    python load_pybullet.py            # opens the GUI if there is a display, else DIRECT
    # or, from Python:
    import pybullet as p; from load_pybullet import load_scene
    cid = p.connect(p.DIRECT); bodies = load_scene("path/to/export", cid)

Each object's URDF is loaded at its pose from ``export.json`` with
``URDF_USE_INERTIA_FROM_FILE`` (keep the exported inertia); background objects are loaded
with a fixed base, and so is the ground plane the export added under a scene without a
floor (``ground`` in export.json; ``ground=False`` leaves it out). Returns
``{object_id: body_unique_id}``, the ground plane under its id (``ground_plane``).

An articulated object is one multi-body (its URDF's links and joints). PyBullet drives every
joint with a velocity motor by default, which holds it stiff, and reads but does not apply a
joint's URDF friction: :func:`joint_friction` turns each motor into that friction (target
velocity 0, the friction as its largest force: PyBullet's documented way), so a joint moves
as its URDF says (a frictionless one swings freely; damping PyBullet applies itself).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load_scene(export_dir: str | Path, client: int = 0, gravity: bool = True, ground: bool = True) -> dict[str, int]:
    import pybullet as p

    export_dir = Path(export_dir)
    manifest = json.loads((export_dir / "export.json").read_text(encoding="utf-8"))
    if gravity:
        p.setGravity(0, 0, -9.81, physicsClientId=client)
    bodies: dict[str, int] = {}
    for obj in manifest["objects"]:
        urdf = obj["files"].get("urdf")
        if urdf is None:
            raise FileNotFoundError(f"{export_dir}: object {obj['id']!r} was exported without URDF (use --formats urdf)")
        w, x, y, z = obj["orientation"]
        bodies[obj["id"]] = p.loadURDF(
            str(export_dir / urdf),
            basePosition=obj["position"],
            baseOrientation=[x, y, z, w],
            useFixedBase=bool(obj["background"]),
            flags=p.URDF_USE_INERTIA_FROM_FILE,
            physicsClientId=client,
        )
        joint_friction(bodies[obj["id"]], client)
    plane = manifest.get("ground") or {}
    if ground and plane.get("added") and (plane.get("files") or {}).get("urdf"):
        x, y = plane["center"]
        bodies[plane["id"]] = p.loadURDF(
            str(export_dir / plane["files"]["urdf"]), basePosition=[x, y, plane["z"]], useFixedBase=True,
            physicsClientId=client,
        )
    return bodies


def joint_friction(body: int, client: int = 0) -> None:
    """Each revolute / prismatic joint's default motor becomes its URDF friction (see the module doc)."""
    import pybullet as p

    for j in range(p.getNumJoints(body, physicsClientId=client)):
        info = p.getJointInfo(body, j, physicsClientId=client)
        if info[2] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC):
            p.setJointMotorControl2(body, j, p.VELOCITY_CONTROL, targetVelocity=0.0, force=float(info[7]),
                                    physicsClientId=client)


def link_frame_pose(body: int, client: int = 0):
    """(position, orientation xyzw) of the body's URDF link frame, i.e. the object frame.

    PyBullet's getBasePositionAndOrientation reports the centre-of-mass frame; this undoes
    the inertial offset so the result compares with the poses in export.json."""
    import pybullet as p

    com_pos, com_orn = p.getBasePositionAndOrientation(body, physicsClientId=client)
    info = p.getDynamicsInfo(body, -1, physicsClientId=client)
    inv_pos, inv_orn = p.invertTransform(info[3], info[4])
    return p.multiplyTransforms(com_pos, com_orn, inv_pos, inv_orn)


if __name__ == "__main__":
    import pybullet as p

    here = Path(__file__).resolve().parent
    cid = p.connect(p.GUI if "--gui" in sys.argv else p.DIRECT)
    ids = load_scene(here, cid)
    for _ in range(240):
        p.stepSimulation(physicsClientId=cid)
    for name, body in ids.items():
        pos, _ = link_frame_pose(body, cid)
        print(f"{name:24s} body {body:3d} at {[round(v, 4) for v in pos]}")
