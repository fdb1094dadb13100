"""Every knob of ``hiscene validate``, named, in one frozen dataclass.

Units are SI (metres, seconds, radians per second) except angles in degrees, which are what
people read and type. The defaults are the issue's: an object is stable when it moves less
than 1 cm and turns less than 5 degrees between its exported pose and its rest pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

#: PyBullet's collision margin for the convex-hull meshes of a URDF (``gUrdfDefaultCollisionMargin``).
#: Every hull is padded by it, so two hulls that touch geometrically are reported 2 mm deep
#: and a body resting on another floats 2 mm above it. Penetrations and gaps measured in
#: PyBullet are corrected by it so they are geometric (tests/test_physics_validate.py checks
#: the value against PyBullet itself).
PYBULLET_HULL_MARGIN = 0.001

#: Overlaps shallower than this (1 micrometre) are rounding error, not penetration.
DEPTH_EPSILON_M = 1e-6


@dataclass(frozen=True)
class ValidationConfig:
    # simulation
    seconds: float = 2.0  # simulated time of the drop test
    hz: float = 240.0  # PyBullet fixed step (its default); MuJoCo uses the MJCF's own timestep
    solver_iterations: int = 50  # PyBullet's default
    # pass / fail thresholds
    max_drift_m: float = 0.01  # translation from the exported pose to rest
    max_rotation_deg: float = 5.0  # rotation from the exported pose to rest
    max_penetration_m: float = 0.002  # deeper overlaps at t=0 are collision pairs
    contact_tolerance_m: float = 0.003  # a body this close (geometrically) below an object supports it
    rest_linear_speed: float = 0.01  # m/s; slower is at rest
    rest_angular_speed: float = 0.1  # rad/s; slower is at rest
    # the speeds "at the end" are the mean velocity over this last stretch (both simulators). MuJoCo's soft contacts
    # leave a resting body vibrating in place (the demo's duck: 0.18 rad/s at the last step, 0.03 deg
    # turned over the 2 s), which the last step's speed would call moving; a body that slides, rolls
    # or topples keeps its mean velocity.
    rest_window_s: float = 0.1
    support_normal_z: float = 0.5  # a contact whose normal has z >= this (60 deg from vertical) supports
    min_stable_share: float = 1.0  # share of foreground objects that must be stable for a pass
    # ground plane: use the one the export recorded (or would have added, for older exports);
    # False (--no-ground) validates without any
    ground: bool = True
    # MuJoCo cross-check
    mujoco: bool = True
    agreement_m: float = 0.01  # the two simulators agree on an object when its rest poses are this close
    agreement_deg: float = 5.0
    require_agreement: bool = False  # also fail the scene when the simulators disagree
    # placement repair (--settle)
    settle_iterations: int = 3  # repair + re-export + validate rounds at most
    settle_max_seconds: float = 6.0  # simulated time allowed for the repair's run to rest
    settle_rest_seconds: float = 0.25  # the repair's run stops once everything rested this long
    settle_clearance_m: float = 0.0002  # gap left between repaired objects and what they touch
    write_epsilon_m: float = 0.001  # repaired poses closer than this (and write_epsilon_deg) to the
    write_epsilon_deg: float = 0.5  #   old ones are not written back: that is solver noise
    # PyBullet contact model
    pybullet_hull_margin: float = PYBULLET_HULL_MARGIN
    # joints of articulated objects (physics.joints): each object alone, its root fixed at its pose
    joints: bool = True  # run the joint checks
    joint_hold_seconds: float = 2.0  # gravity on, joints at zero (closed), nothing driven
    joint_hold_deg: float = 2.0  # a closed revolute joint holds when it moved less than this...
    joint_hold_m: float = 0.005  # ...a prismatic one less than this
    joint_reach_deg: float = 2.0  # a driven joint reached its target within this...
    joint_reach_m: float = 0.005  # ...or this
    joint_drive_speed_deg: float = 60.0  # how fast the drive's target moves (deg/s, m/s)
    joint_drive_speed_m: float = 0.25
    joint_drive_settle_seconds: float = 0.75  # held at each target this long before the error is read
    joint_max_link_speed: float = 5.0  # m/s; a faster link means the model blew up (self-collision, bad inertia)
    joint_max_link_angular_speed: float = 30.0  # rad/s
    # pictures
    render: bool = True
    render_width: int = 640
    render_height: int = 480

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"validation setting {f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"validation setting {f.name} must not be negative, got {value!r}")
        for name in ("seconds", "hz", "max_drift_m", "max_rotation_deg", "rest_linear_speed", "rest_angular_speed"):
            if getattr(self, name) <= 0:
                raise ValueError(f"validation setting {name} must be positive, got {getattr(self, name)!r}")
        if not 0.0 <= self.min_stable_share <= 1.0:
            raise ValueError(f"min_stable_share must be within 0..1, got {self.min_stable_share}")
        if not 0.0 < self.support_normal_z <= 1.0:
            raise ValueError(f"support_normal_z must be within (0, 1], got {self.support_normal_z}")
        if self.solver_iterations < 1 or self.render_width < 16 or self.render_height < 16:
            raise ValueError("solver_iterations must be >= 1 and the render size at least 16 x 16 pixels")

    @property
    def steps(self) -> int:
        """PyBullet steps of the drop test."""
        return max(1, round(self.seconds * self.hz))

    @property
    def timestep(self) -> float:
        return 1.0 / self.hz
