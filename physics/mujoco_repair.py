"""The MuJoCo half of ``--settle``: run the exported MJCF to rest from given poses and
return where MuJoCo puts each object.

``physics.settle`` uses it for objects MuJoCo flags: it starts MuJoCo from the poses the
PyBullet repair left (or the exported ones), simulates with gravity for the drop test's
``seconds`` at least (an object balanced on an edge sits still for a second before it
falls: stopping at the first calm moment would miss it), then until everything rested
``settle_rest_seconds`` or ``settle_max_seconds`` passed (MuJoCo's own timestep, as in the
drop test), and takes the rest poses of the objects that moved. Those poses are then cleaned
up geometrically in PyBullet (separated, dropped onto their supports) and re-checked by both
simulators in the next validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from physics.config import ValidationConfig
from physics.manifest import ExportManifest, Quat, Vec3
from physics.mujoco_check import MujocoScene
from physics.rest import run_to_rest


@dataclass
class MujocoRest:
    poses: dict[str, tuple[Vec3, Quat]]  # foreground id -> rest pose (object frame, [w, x, y, z])
    simulated_seconds: float
    still_moving: list[str]
    diverged: str | None = None  # why MuJoCo's run cannot be used, if it cannot


def set_pose(scene: MujocoScene, oid: str, position, orientation) -> None:
    """Put a free body's frame (the object frame) at the pose, at rest."""
    m, d = scene.model, scene.data
    joint = int(m.body_jntadr[scene.body[oid]])
    adr, dof = int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint])
    q = np.asarray(orientation, dtype=float)
    d.qpos[adr : adr + 3] = position
    d.qpos[adr + 3 : adr + 7] = q / np.linalg.norm(q)
    d.qvel[dof : dof + 6] = 0.0


def mujoco_rest(manifest: ExportManifest, config: ValidationConfig,
                start: dict[str, tuple[Vec3, Quat]] | None = None) -> MujocoRest:
    """Simulate the export's MJCF to rest from ``start`` (default: the exported poses)."""
    scene = MujocoScene(manifest)
    mj, m, d = scene.mj, scene.model, scene.data
    fg = [o.id for o in manifest.foreground]
    for oid, (pos, orn) in (start or {}).items():
        if oid in scene.dof:
            set_pose(scene, oid, pos, orn)
    mj.mj_forward(m, d)
    dt = scene.timestep

    def moving() -> list[str]:
        lin, ang = scene.speeds(fg)
        fast = (lin > config.rest_linear_speed) | (ang > config.rest_angular_speed)
        return [oid for oid, f in zip(fg, fast) if f]

    if fg:
        simulated, moving_ids = run_to_rest(scene.step, moving, dt, config)
    else:
        scene.step()
        simulated, moving_ids = dt, []
    bad = {w: int(d.warning[getattr(mj.mjtWarning, w)].number) for w in ("mjWARN_BADQACC", "mjWARN_BADQPOS", "mjWARN_BADQVEL")}
    diverged = None
    if any(bad.values()) or not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))):
        diverged = "MuJoCo diverged while settling (" + (", ".join(f"{w} x{n}" for w, n in bad.items() if n) or "non-finite state") + ")"
    poses = {oid: scene.pose(oid) for oid in fg}
    return MujocoRest(poses, simulated, moving_ids, diverged)
