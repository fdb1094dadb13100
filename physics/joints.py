"""The joints of articulated objects, checked in PyBullet and MuJoCo from the exported files.

Each articulated object is loaded **alone**, its root link fixed at its exported pose (the
drop test already checks that the object as a whole rests; here the joints are the subject,
and nothing else in the scene may push them): PyBullet from its URDF with a fixed base, MuJoCo
from the export's MJCF with every other body, the ground and the object's free joint removed
(``mujoco.MjSpec``; its links' contacts are excluded by the MJCF itself, so welding the root to
the world, which MuJoCo's parent / child filter would not cover, changes no contact).
The links of one object do not collide with each other, as exported (the default of PyBullet's
``loadURDF`` and of Isaac's URDF importer; ``<contact><exclude>`` in the MJCF,
``physxArticulation:enabledSelfCollisions = false`` in the USD). Two tests per simulator:

1. **Hold**: gravity on, every joint at zero (closed, as exported), nothing driven, each joint's
   friction and damping as exported (MuJoCo ``frictionloss`` / ``damping``; PyBullet's damping
   and ``exporters.pybullet_loader.joint_friction``, what users load), for
   ``joint_hold_seconds``. A joint that moved less than ``joint_hold_deg`` / ``joint_hold_m``
   **holds**. One that moved more is **free** when it has no friction (a passive joint does
   what gravity asks; reported, not a failure: a frictionless lid falls open) and **slips**
   when its friction should have held it (a failure).
2. **Drive**: each moving joint alone, from zero to its lower then its upper limit (a
   continuous joint to -90 and +90 deg), the target moving at ``joint_drive_speed_*`` and held
   ``joint_drive_settle_seconds`` at each end, the other joints held at zero. PyBullet uses
   ``POSITION_CONTROL`` with a force of 20 x the gravity load of what the joint carries (plus
   its friction; the input's effort is a rating, not what a check needs); MuJoCo a PD
   controller (2 Hz, critically damped, from the joint's effective inertia) plus gravity
   compensation (``qfrc_bias``) through ``qfrc_applied``, stiffer where the joint's friction asks
   for it (friction / stiffness at most a quarter of the tolerance). A joint **reached** a target within
   ``joint_reach_deg`` / ``joint_reach_m``.

Throughout, every link's speed is watched: one faster than ``joint_max_link_speed`` /
``joint_max_link_angular_speed``, or a non-finite state, is an explosion (self-collision of
overlapping links, a bad inertia) and fails the joint. Angles are reported in degrees,
prismatic positions in metres.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiscene_sim.rotations import rotation_from_quaternion, wxyz_to_xyzw
from physics.config import ValidationConfig
from physics.manifest import ExportedObject, ExportManifest

log = logging.getLogger(__name__)

GRAVITY = 9.81
DRIVE_LOAD_FACTOR = 20.0  # PyBullet's drive force: this many times the gravity load of the moved links
MIN_DRIVE_FORCE = 1.0  # N or N m
PD_HZ = 2.0  # MuJoCo's PD bandwidth (raised where the joint's friction needs a stiffer controller)
PD_MAX_OMEGA_DT = 0.5
CONTINUOUS_SWEEP_RAD = math.pi / 2
SPEED_SAMPLE_EVERY = 4  # steps between link speed samples
HOLDS, FREE, SLIPS = "holds", "free", "slips"


@dataclass
class JointCheck:
    """One joint in one simulator (angles in degrees, prismatic positions in metres: ``unit``)."""

    object_id: str
    joint: str
    type: str
    unit: str  # "deg" | "m"
    lower: float | None
    upper: float | None
    damping: float
    friction: float
    hold_moved: float  # |position| after the hold
    hold_max: float  # largest |position| during it
    hold: str  # holds | free | slips
    drive_force: float | None  # PyBullet's motor force (None in MuJoCo: PD + gravity compensation)
    lower_error: float | None  # |position - target| after driving to the lower limit (None: not run)
    upper_error: float | None
    max_link_speed: float  # m/s over both tests
    max_link_angular_speed: float  # rad/s
    finite: bool
    passed: bool
    issues: list[str] = field(default_factory=list)


@dataclass
class JointSimResult:
    simulator: str  # pybullet | mujoco
    joints: list[JointCheck]
    simulated_seconds: float
    wall_seconds: float
    passed: bool
    failures: list[str]


@dataclass
class UsdJointCheck:
    object_id: str
    joint: str
    usd_type: str  # the UsdPhysics joint type found
    frame_error_m: float  # |body0 * local0 - body1 * local1| at zero, translation
    frame_error_deg: float  # ... rotation
    lower: float | None  # as authored (deg / m)
    upper: float | None
    passed: bool
    issues: list[str] = field(default_factory=list)


@dataclass
class UsdArticulationCheck:
    """What usd-core's UsdPhysics parser (the one PhysX's loader shares) finds in scene.usda."""

    articulations: list[str]  # articulation root prims found
    joints: list[UsdJointCheck]
    passed: bool
    failures: list[str]


@dataclass
class JointReport:
    pybullet: JointSimResult | None
    mujoco: JointSimResult | None
    usd: UsdArticulationCheck | None
    passed: bool
    failures: list[str]


# ------------------------------------------------------------------------------ joint facts
@dataclass(frozen=True)
class _Spec:
    name: str  # scene name (URDF name)
    mjcf: str
    type: str
    lower: float | None  # rad / m
    upper: float | None
    damping: float
    friction: float
    load: float  # gravity load of what it carries (N m or N)

    @property
    def angular(self) -> bool:
        return self.type in ("revolute", "continuous")

    def shown(self, q: float | None) -> float | None:
        return None if q is None else (math.degrees(q) if self.angular else q)

    def targets(self) -> list[float]:
        if self.type == "continuous":
            return [-CONTINUOUS_SWEEP_RAD, CONTINUOUS_SWEEP_RAD]
        return [float(self.lower), float(self.upper)]


def _frame(record: dict) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_from_quaternion(record["orientation"])
    m[:3, 3] = record["position"]
    return m


def joint_specs(obj: ExportedObject) -> list[_Spec]:
    """The moving joints of an exported articulated object, with the gravity load each carries
    (from export.json's link masses and frames: the moved links' mass x g, times the distance of
    their centre of mass from the axis for a revolute joint)."""
    art = obj.articulation or {}
    links = {link["name"]: link for link in art.get("links", [])}
    joints = art.get("joints", [])
    children: dict[str, list[str]] = {}
    for j in joints:
        children.setdefault(j["parent"], []).append(j["child"])
    out = []
    for j in joints:
        if j["type"] not in ("revolute", "prismatic", "continuous"):
            continue
        below, stack = [], [j["child"]]
        while stack:
            name = stack.pop()
            below.append(name)
            stack.extend(children.get(name, []))
        mass = sum(float(links[n]["mass"]) for n in below)
        load = mass * GRAVITY
        if j["type"] != "prismatic" and mass > 0:
            com = sum(float(links[n]["mass"]) * (_frame(links[n]["frame"]) @ np.append(
                links[n]["mass_properties"]["center_of_mass"], 1.0))[:3] for n in below) / mass
            child = _frame(links[j["child"]]["frame"])
            axis = child[:3, :3] @ np.asarray(j["axis"], dtype=float)
            r = com - child[:3, 3]
            load *= max(float(np.linalg.norm(r - np.dot(r, axis) * axis)), 0.05)
        limit = j.get("limit") or {}
        out.append(_Spec(j["name"], (j.get("names") or {}).get("mjcf", j["name"]), j["type"], limit.get("lower"),
                         limit.get("upper"), float(j.get("damping", 0.0)), float(j.get("friction", 0.0)), load))
    return out


# ------------------------------------------------------------------------------ simulators
class _BulletJoints:
    """One articulated object alone in PyBullet (see the module doc)."""

    def __init__(self, manifest: ExportManifest, obj: ExportedObject, specs: list[_Spec], config: ValidationConfig):
        import pybullet as p

        from exporters.pybullet_loader import joint_friction

        self.p, self.specs, self.config = p, specs, config
        self.cid = p.connect(p.DIRECT)
        p.setPhysicsEngineParameter(fixedTimeStep=config.timestep, numSolverIterations=config.solver_iterations,
                                    deterministicOverlappingPairs=1, physicsClientId=self.cid)
        p.setGravity(0, 0, -GRAVITY, physicsClientId=self.cid)
        self.body = p.loadURDF(str(manifest.export_dir / obj.urdf), basePosition=obj.position,
                               baseOrientation=wxyz_to_xyzw(obj.orientation), useFixedBase=True,
                               flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=self.cid)
        self.friction = lambda: joint_friction(self.body, self.cid)
        n = p.getNumJoints(self.body, physicsClientId=self.cid)
        by_name = {p.getJointInfo(self.body, j, physicsClientId=self.cid)[1].decode(): j for j in range(n)}
        self.index = {s.name: by_name[s.name] for s in specs}
        self.links = list(range(n))
        self.dt = config.timestep
        self.force = {s.name: max(DRIVE_LOAD_FACTOR * s.load, MIN_DRIVE_FORCE) + s.friction for s in specs}

    def close(self) -> None:
        self.p.disconnect(self.cid)

    def reset(self) -> None:
        for j in self.index.values():
            self.p.resetJointState(self.body, j, 0.0, 0.0, physicsClientId=self.cid)

    def passive(self) -> None:
        self.friction()

    def drive(self, targets: dict[str, float]) -> None:
        for name, q in targets.items():
            self.p.setJointMotorControl2(self.body, self.index[name], self.p.POSITION_CONTROL, targetPosition=q,
                                         targetVelocity=0.0, force=self.force[name], physicsClientId=self.cid)

    def step(self) -> None:
        self.p.stepSimulation(physicsClientId=self.cid)

    def position(self, name: str) -> float:
        return float(self.p.getJointState(self.body, self.index[name], physicsClientId=self.cid)[0])

    def speeds(self) -> tuple[float, float]:
        if not self.links:
            return 0.0, 0.0
        states = self.p.getLinkStates(self.body, self.links, computeLinkVelocity=1, physicsClientId=self.cid)
        lin = max(float(np.linalg.norm(s[6])) for s in states)
        ang = max(float(np.linalg.norm(s[7])) for s in states)
        return lin, ang


class _MujocoJoints:
    """One articulated object alone in MuJoCo: the export's MJCF without the other bodies, the
    ground and the object's free joint (see the module doc)."""

    def __init__(self, manifest: ExportManifest, obj: ExportedObject, specs: list[_Spec], config: ValidationConfig):
        import mujoco

        self.mj, self.specs = mujoco, specs
        spec = mujoco.MjSpec.from_file(str(manifest.path("mjcf")))
        for body in list(spec.worldbody.bodies):
            if body.name != obj.id:
                spec.delete(body)
        for geom in list(spec.worldbody.geoms):
            spec.delete(geom)
        for joint in list(spec.body(obj.id).joints):
            if joint.type == mujoco.mjtJoint.mjJNT_FREE:
                spec.delete(joint)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.jid = {s.name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, s.mjcf) for s in specs}
        missing = [s.mjcf for s in specs if self.jid[s.name] < 0]
        if missing:
            raise ValueError(f"{manifest.path('mjcf')}: no joint named {', '.join(missing)}")
        self.qadr = {n: int(m.jnt_qposadr[j]) for n, j in self.jid.items()}
        self.dof = {n: int(m.jnt_dofadr[j]) for n, j in self.jid.items()}
        self.bodies = [b for b in range(1, m.nbody)]
        self.dt = float(m.opt.timestep)
        mujoco.mj_forward(m, self.data)
        full = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, self.data, full)
        self.kp, self.kv = {}, {}
        for s in specs:
            inertia = float(full[self.dof[s.name], self.dof[s.name]])
            tol = math.radians(config.joint_reach_deg) if s.angular else config.joint_reach_m
            # stiff enough that the joint's friction leaves a quarter of the tolerance, soft enough to stay
            # stable with the PD integrated explicitly (omega x dt <= PD_MAX_OMEGA_DT)
            kp = max(inertia * (2 * math.pi * PD_HZ) ** 2, 4.0 * s.friction / tol)
            kp = min(kp, inertia * (PD_MAX_OMEGA_DT / self.dt) ** 2)
            self.kp[s.name], self.kv[s.name] = kp, 2.0 * math.sqrt(kp * inertia)
        self.targets: dict[str, float] = {}
        self.force: dict[str, float] | None = None  # a PD controller, not a force-limited motor
        self._v = np.zeros(6)

    def close(self) -> None:
        pass

    def reset(self) -> None:
        self.mj.mj_resetData(self.model, self.data)
        self.mj.mj_forward(self.model, self.data)

    def passive(self) -> None:
        self.targets = {}
        self.data.qfrc_applied[:] = 0.0

    def drive(self, targets: dict[str, float]) -> None:
        self.targets = dict(targets)

    def step(self) -> None:
        d = self.data
        for name, q in self.targets.items():
            dof = self.dof[name]
            d.qfrc_applied[dof] = (self.kp[name] * (q - d.qpos[self.qadr[name]]) - self.kv[name] * d.qvel[dof]
                                   + d.qfrc_bias[dof])
        self.mj.mj_step(self.model, d)

    def position(self, name: str) -> float:
        return float(self.data.qpos[self.qadr[name]])

    def speeds(self) -> tuple[float, float]:
        lin = ang = 0.0
        for b in self.bodies:
            self.mj.mj_objectVelocity(self.model, self.data, self.mj.mjtObj.mjOBJ_BODY, b, self._v, 0)
            ang = max(ang, float(np.linalg.norm(self._v[:3])))
            lin = max(lin, float(np.linalg.norm(self._v[3:])))
        return lin, ang


# ------------------------------------------------------------------------------ the tests
class _Watch:
    """Largest link speeds and whether the state stayed finite."""

    def __init__(self, sim, config: ValidationConfig):
        self.sim, self.config = sim, config
        self.lin = self.ang = 0.0
        self.finite = True
        self.n = 0

    def step(self) -> bool:
        """One step; False once the state is no longer finite."""
        self.sim.step()
        self.n += 1
        if self.n % SPEED_SAMPLE_EVERY == 0:
            lin, ang = self.sim.speeds()
            if not (math.isfinite(lin) and math.isfinite(ang)):
                self.finite = False
            else:
                self.lin, self.ang = max(self.lin, lin), max(self.ang, ang)
        if not all(math.isfinite(self.sim.position(s.name)) for s in self.sim.specs):
            self.finite = False
        return self.finite


def _hold(sim, config: ValidationConfig) -> tuple[dict[str, float], dict[str, float], _Watch]:
    """Every joint's |position| at the end of the hold and its largest during it (rad / m)."""
    sim.reset()
    sim.passive()
    watch = _Watch(sim, config)
    largest = {s.name: 0.0 for s in sim.specs}
    for _ in range(max(1, round(config.joint_hold_seconds / sim.dt))):
        if not watch.step():
            break
        for s in sim.specs:
            largest[s.name] = max(largest[s.name], abs(sim.position(s.name)))
    final = {s.name: abs(sim.position(s.name)) for s in sim.specs}
    return final, largest, watch


def _drive(sim, spec: _Spec, config: ValidationConfig) -> tuple[list[float | None], _Watch]:
    """Drive ``spec`` to each of its targets in turn (the others held at zero); the error at each."""
    sim.reset()
    hold_others = {s.name: 0.0 for s in sim.specs if s.name != spec.name}
    speed = math.radians(config.joint_drive_speed_deg) if spec.angular else config.joint_drive_speed_m
    watch = _Watch(sim, config)
    errors: list[float | None] = []
    start = 0.0
    settle = max(1, round(config.joint_drive_settle_seconds / sim.dt))
    for target in spec.targets():
        moving = max(1, math.ceil(abs(target - start) / speed / sim.dt))
        for i in range(moving + settle):
            q = start + (target - start) * min(1.0, (i + 1) / moving)
            sim.drive({**hold_others, spec.name: q})
            if not watch.step():
                break
        if not watch.finite:
            errors.append(None)
            break
        errors.append(abs(sim.position(spec.name) - target))
        start = target
    return errors + [None] * (2 - len(errors)), watch


def _judge(obj_id: str, spec: _Spec, moved: float, largest: float, errors: list[float | None], lin: float, ang: float,
           finite: bool, force: float | None, config: ValidationConfig) -> JointCheck:
    unit = "deg" if spec.angular else "m"
    hold_tol = math.radians(config.joint_hold_deg) if spec.angular else config.joint_hold_m
    reach_tol = math.radians(config.joint_reach_deg) if spec.angular else config.joint_reach_m
    shown_tol = config.joint_hold_deg if spec.angular else config.joint_hold_m
    issues = []
    status = HOLDS if moved <= hold_tol else FREE if spec.friction == 0 else SLIPS
    if status == SLIPS:
        issues.append(f"moved {spec.shown(moved):.3g} {unit} under gravity despite friction {spec.friction:g} "
                      f"(holds within {shown_tol:g} {unit})")
    for which, error, target in zip(("lower", "upper"), errors, spec.targets()):
        if error is None:
            issues.append(f"drive to the {which} target {spec.shown(target):.4g} {unit} did not finish")
        elif error > reach_tol:
            issues.append(f"driven to the {which} target {spec.shown(target):.4g} {unit}, stopped "
                          f"{spec.shown(error):.3g} {unit} short")
    if not finite:
        issues.append("the state became non-finite (the simulation blew up)")
    if lin > config.joint_max_link_speed or ang > config.joint_max_link_angular_speed:
        issues.append(f"a link reached {lin:.2f} m/s, {ang:.2f} rad/s (limits {config.joint_max_link_speed:g} m/s, "
                      f"{config.joint_max_link_angular_speed:g} rad/s): the model blows up")
    return JointCheck(
        object_id=obj_id, joint=spec.name, type=spec.type, unit=unit, lower=spec.shown(spec.lower),
        upper=spec.shown(spec.upper), damping=spec.damping, friction=spec.friction, hold_moved=spec.shown(moved),
        hold_max=spec.shown(largest), hold=status, drive_force=force,
        lower_error=spec.shown(errors[0]), upper_error=spec.shown(errors[1]), max_link_speed=lin,
        max_link_angular_speed=ang, finite=finite, passed=not issues, issues=issues,
    )


def _check_object(sim_class, manifest: ExportManifest, obj: ExportedObject, config: ValidationConfig
                  ) -> tuple[list[JointCheck], float]:
    specs = joint_specs(obj)
    if not specs:
        return [], 0.0
    sim = sim_class(manifest, obj, specs, config)
    simulated = 0.0
    try:
        moved, largest, hold_watch = _hold(sim, config)
        simulated += hold_watch.n * sim.dt
        out = []
        for spec in specs:
            errors, watch = _drive(sim, spec, config)
            simulated += watch.n * sim.dt
            force = sim.force[spec.name] if sim.force is not None else None
            out.append(_judge(obj.id, spec, moved[spec.name], largest[spec.name], errors, max(hold_watch.lin, watch.lin),
                              max(hold_watch.ang, watch.ang), hold_watch.finite and watch.finite, force, config))
    finally:
        sim.close()
    return out, simulated


def check_simulator(simulator: str, manifest: ExportManifest, config: ValidationConfig) -> JointSimResult | None:
    """The hold and drive tests of every articulated object in one simulator; None when the
    scene has none."""
    objects = [o for o in manifest.foreground if o.joints]
    if not objects:
        return None
    sim_class = _BulletJoints if simulator == "pybullet" else _MujocoJoints
    t0 = time.perf_counter()
    joints, simulated = [], 0.0
    for obj in objects:
        checks, seconds = _check_object(sim_class, manifest, obj, config)
        joints += checks
        simulated += seconds
    name = "PyBullet" if simulator == "pybullet" else "MuJoCo"
    failures = [f"{name}: joint {j.object_id}/{j.joint}: " + "; ".join(j.issues) for j in joints if not j.passed]
    wall = time.perf_counter() - t0
    log.info("%s joints: %d checked, %d pass, %.1f s simulated in %.1f s", name, len(joints),
             sum(j.passed for j in joints), simulated, wall)
    return JointSimResult(simulator, joints, round(simulated, 3), round(wall, 3), not failures, failures)


# ------------------------------------------------------------------------------ USD
def check_usd(manifest: ExportManifest, tolerance_m: float = 1e-4, tolerance_deg: float = 0.05) -> UsdArticulationCheck | None:
    """Read scene.usda with usd-core's UsdPhysics parser: one articulation per articulated
    object rooted at its prim, every joint found with its bodies, its two local frames meeting
    at zero (``body0 x localPose0 == body1 x localPose1``), limits as export.json's (degrees
    for revolute joints), and no rigid body nested under another. None when the export has no
    USD or no articulated object."""
    path = manifest.path("usd")
    objects = [o for o in manifest.foreground if o.joints]
    if path is None or not path.is_file() or not objects:
        return None
    from pxr import Gf, Usd, UsdGeom, UsdPhysics

    stage = Usd.Stage.Open(str(path))
    load = getattr(UsdPhysics, "UsdPhysicsLoadStageFromPrimRange", None) or UsdPhysics.LoadUsdPhysicsFromRange
    parsed = load(stage, ["/"])
    found: dict[str, object] = {}
    for key, (paths, descs) in parsed.items():
        for prim_path, desc in zip(paths, descs):
            found[str(prim_path)] = (key, desc)
    cache = UsdGeom.XformCache()
    roots = [p for p, (k, _) in found.items() if str(k).endswith("Articulation")]
    failures: list[str] = []
    rows: list[UsdJointCheck] = []
    bodies = {p for p, (k, _) in found.items() if str(k).endswith("RigidBody")}
    for body in bodies:
        nested = [b for b in bodies if b != body and body.startswith(b + "/")]
        if nested:
            failures.append(f"USD: rigid body {body} is nested under rigid body {nested[0]}")
    for obj in objects:
        root = f"/World/Objects/{obj.id}"
        if root not in roots:
            failures.append(f"USD: no articulation rooted at {root}")
        for record in obj.joints:
            usd_path = (record.get("names") or {}).get("usd", f"{root}/joints/{record['name']}")
            issues: list[str] = []
            kind, desc = found.get(usd_path, (None, None))
            if desc is None:
                rows.append(UsdJointCheck(obj.id, record["name"], "-", math.inf, math.inf, None, None, False,
                                          [f"no joint at {usd_path}"]))
                failures.append(f"USD: joint {obj.id}/{record['name']}: no joint at {usd_path}")
                continue

            def world(body, position, orientation):
                m = Gf.Matrix4d().SetTransform(Gf.Rotation(Gf.Quatd(orientation)), Gf.Vec3d(position))
                return m * cache.GetLocalToWorldTransform(stage.GetPrimAtPath(body))

            a = world(desc.body0, desc.localPose0Position, desc.localPose0Orientation)
            b = world(desc.body1, desc.localPose1Position, desc.localPose1Orientation)
            dt = float((a.ExtractTranslation() - b.ExtractTranslation()).GetLength())
            rel = (a.RemoveScaleShear() * b.RemoveScaleShear().GetInverse()).ExtractRotation()
            dr = abs(float(rel.GetAngle()))
            dr = min(dr, 360.0 - dr)
            lower = upper = None
            limit = record.get("limit") or {}
            if record["type"] in ("revolute", "prismatic"):
                lower, upper = float(desc.limit.lower), float(desc.limit.upper)
                want = [limit.get("lower"), limit.get("upper")]
                if record["type"] == "revolute":
                    want = [math.degrees(v) for v in want]
                if not (math.isclose(lower, want[0], abs_tol=1e-3) and math.isclose(upper, want[1], abs_tol=1e-3)):
                    issues.append(f"limits {lower:g}..{upper:g} differ from the export's {want[0]:g}..{want[1]:g}")
            expected = {"revolute": "RevoluteJoint", "continuous": "RevoluteJoint", "prismatic": "PrismaticJoint",
                        "fixed": "FixedJoint"}[record["type"]]
            if not str(kind).endswith(expected):
                issues.append(f"is a {kind}, expected {expected}")
            if dt > tolerance_m or dr > tolerance_deg:
                issues.append(f"its two frames are {dt * 1000:.3f} mm, {dr:.3f} deg apart at zero")
            rows.append(UsdJointCheck(obj.id, record["name"], str(kind).split(".")[-1], dt, dr, lower, upper, not issues, issues))
            failures += [f"USD: joint {obj.id}/{record['name']}: {i}" for i in issues]
    return UsdArticulationCheck(sorted(roots), rows, not failures, failures)


def check_joints(manifest: ExportManifest, config: ValidationConfig) -> JointReport | None:
    """All joint checks of an export (see the module doc); None when it has no articulated object."""
    if not config.joints or not any(o.joints for o in manifest.foreground):
        return None
    pybullet = check_simulator("pybullet", manifest, config)
    mujoco = None
    mjcf = manifest.path("mjcf")
    if config.mujoco and mjcf is not None and Path(mjcf).is_file():
        mujoco = check_simulator("mujoco", manifest, config)
    usd = check_usd(manifest)
    failures = [f for r in (pybullet, mujoco, usd) if r is not None for f in r.failures]
    return JointReport(pybullet, mujoco, usd, not failures, failures)
