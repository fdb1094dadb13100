"""A PyBullet world holding an export as users load it, with geometric distance queries.

The scene is loaded by ``exporters.pybullet_loader.load_scene`` (the same code as the
``load_pybullet.py`` shipped in every export): one body per exported URDF at its pose from
export.json, background bodies fixed, ``URDF_USE_INERTIA_FROM_FILE``, and the ground plane
the export added (``manifest.ground``; for an export older than ground planes the same slab
is built here, with the neutral contact values of ``exporters/contact.py``). The ground is a
static body like the background ones, under its id (``ground_plane``). Poses are read and
written in the object (link) frame, not PyBullet's centre-of-mass frame.

PyBullet pads every convex hull by its collision margin (``config.pybullet_hull_margin``),
so its contact distances are 2 margins short of the geometric distance: two hulls that touch
report -2 mm and a resting body floats 2 mm above its support. Every distance this module
returns is geometric (the margins added back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exporters.contact import bullet_contact
from exporters.ground import GROUND_LABEL
from exporters.materials import material_for_label
from exporters.pybullet_loader import link_frame_pose, load_scene
from hiscene_sim.rotations import wxyz_to_xyzw, xyzw_to_wxyz
from physics.config import DEPTH_EPSILON_M, ValidationConfig
from physics.manifest import ExportManifest, Quat, Vec3, z_extent
from physics.results import BodyState, PenetratingPair

#: How far below an object distance queries look for what it stands on (for ``gap_below``).
GAP_SEARCH_M = 0.25


@dataclass(frozen=True)
class Proximity:
    """The nearest points of two bodies (one of several per pair for multi-hull bodies)."""

    a: str
    b: str
    distance_m: float  # geometric; negative = penetration depth
    normal: Vec3  # unit, from b towards a
    point_on_b: Vec3


class BulletWorld:
    """``with BulletWorld(manifest, config) as world: ...``: a DIRECT client, closed on exit."""

    def __init__(self, manifest: ExportManifest, config: ValidationConfig, gravity: bool = True):
        import pybullet as p

        self.p = p
        self.manifest = manifest
        self.config = config
        self.cid = p.connect(p.DIRECT)
        try:
            p.setPhysicsEngineParameter(
                fixedTimeStep=config.timestep, numSolverIterations=config.solver_iterations,
                deterministicOverlappingPairs=1, physicsClientId=self.cid,
                enableConeFriction=1,  # PyBullet's default, said out loud: an exact cone, as MuJoCo's elliptic one
            )
            self.bodies: dict[str, int] = load_scene(
                manifest.export_dir, self.cid, gravity=gravity, ground=manifest.ground is not None
            )
            if manifest.ground is not None and manifest.ground.id not in self.bodies:
                self.bodies[manifest.ground.id] = self._make_ground()
            if not gravity:
                p.setGravity(0, 0, 0, physicsClientId=self.cid)
        except BaseException:
            p.disconnect(self.cid)
            raise
        self.background = manifest.static_ids
        self._inertial = {
            oid: tuple(p.getDynamicsInfo(b, -1, physicsClientId=self.cid)[3:5]) for oid, b in self.bodies.items()
        }

    def _make_ground(self) -> int:
        """The ground slab of ``manifest.ground`` when the export has no URDF of it."""
        p, g = self.p, self.manifest.ground
        shape = p.createCollisionShape(p.GEOM_MESH, vertices=g.local_points().tolist(), physicsClientId=self.cid)
        body = p.createMultiBody(0.0, shape, basePosition=list(g.position), physicsClientId=self.cid)
        c = bullet_contact(material_for_label(GROUND_LABEL)[0], static=True)
        p.changeDynamics(body, -1, lateralFriction=c.lateral_friction, spinningFriction=c.spinning_friction,
                         rollingFriction=c.rolling_friction, restitution=c.restitution, physicsClientId=self.cid)
        return body

    def __enter__(self) -> "BulletWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.cid is not None and self.p.isConnected(self.cid):
            self.p.disconnect(self.cid)
        self.cid = None

    # -- poses and motion -----------------------------------------------------------------

    def step(self) -> None:
        self.p.stepSimulation(physicsClientId=self.cid)

    def pose(self, oid: str) -> tuple[Vec3, Quat]:
        pos, orn = link_frame_pose(self.bodies[oid], self.cid)
        return tuple(float(v) for v in pos), xyzw_to_wxyz(orn)

    def set_pose(self, oid: str, position, orientation) -> None:
        """Put the object frame at ``position`` / ``orientation`` [w,x,y,z], at rest."""
        p = self.p
        local_pos, local_orn = self._inertial[oid]
        com_pos, com_orn = p.multiplyTransforms(position, wxyz_to_xyzw(orientation), local_pos, local_orn)
        body = self.bodies[oid]
        p.resetBasePositionAndOrientation(body, com_pos, com_orn, physicsClientId=self.cid)
        p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.cid)

    def move(self, oid: str, delta) -> None:
        pos, orn = self.pose(oid)
        self.set_pose(oid, np.add(pos, delta), orn)

    def velocity(self, oid: str) -> np.ndarray:
        """(6,) linear then angular velocity of the body's base."""
        lin, ang = self.p.getBaseVelocity(self.bodies[oid], physicsClientId=self.cid)
        return np.concatenate([lin, ang])

    def speed(self, oid: str) -> tuple[float, float]:
        v = self.velocity(oid)
        return float(np.linalg.norm(v[:3])), float(np.linalg.norm(v[3:]))

    def z_extent(self, oid: str) -> tuple[float, float]:
        pos, orn = self.pose(oid)
        return z_extent(self.manifest.hull_points[oid], pos, orn)

    # -- distance queries ----------------------------------------------------------------

    def _candidate_pairs(self, ids: list[str], search: float) -> list[tuple[str, str]]:
        """Pairs (a in ids, b any other body, not both background) whose AABBs come within ``search``."""
        p = self.p
        boxes = {oid: np.asarray(p.getAABB(b, physicsClientId=self.cid)) for oid, b in self.bodies.items()}
        pairs, seen = [], set()
        for a in ids:
            lo_a, hi_a = boxes[a][0] - search, boxes[a][1] + search
            for b, box in boxes.items():
                if b == a or (a in self.background and b in self.background):
                    continue
                key = (a, b) if a < b else (b, a)
                if key in seen:
                    continue
                if np.all(lo_a <= box[1]) and np.all(box[0] <= hi_a):
                    seen.add(key)
                    pairs.append((a, b))
        return pairs

    def proximities(self, max_distance: float, ids: list[str] | None = None) -> list[Proximity]:
        """Nearest points, both ways round (a/b and b/a), of every pair of bodies within
        ``max_distance`` (geometric) of each other, for pairs involving ``ids`` (default all)."""
        p = self.p
        pad = 2.0 * self.config.pybullet_hull_margin
        out: list[Proximity] = []
        for a, b in self._candidate_pairs(list(ids if ids is not None else self.bodies), max_distance + pad):
            points = p.getClosestPoints(
                self.bodies[a], self.bodies[b], distance=max_distance - pad, physicsClientId=self.cid
            )
            for pt in points:
                normal = np.asarray(pt[7], dtype=float)  # on b, towards a
                d = float(pt[8]) + pad
                out.append(Proximity(a, b, d, tuple(normal), tuple(pt[6])))
                out.append(Proximity(b, a, d, tuple(-normal), tuple(pt[5])))
        return out

    def states(self) -> tuple[dict[str, BodyState], list[PenetratingPair]]:
        """The state of every body and every overlapping pair, now. Bodies with nothing
        within the contact tolerance below them are searched again up to GAP_SEARCH_M down
        for ``gap_below``."""
        cfg = self.config
        near = self.proximities(cfg.contact_tolerance_m)
        supported = {q.a for q in near if q.normal[2] >= cfg.support_normal_z and q.distance_m <= cfg.contact_tolerance_m}
        lonely = [o.id for o in self.manifest.foreground if o.id not in supported]
        far = [q for q in self.proximities(GAP_SEARCH_M, lonely) if q.a in lonely] if lonely else []
        by_a: dict[str, list[Proximity]] = {oid: [] for oid in self.bodies}
        for q in near:
            by_a[q.a].append(q)
        below_far: dict[str, list[Proximity]] = {oid: [] for oid in lonely}
        for q in far:
            if q.normal[2] >= cfg.support_normal_z:
                below_far[q.a].append(q)
        pairs: dict[tuple[str, str], float] = {}
        for q in near:
            if q.distance_m < -DEPTH_EPSILON_M and q.a < q.b:
                key = (q.a, q.b)
                pairs[key] = max(pairs.get(key, 0.0), -q.distance_m)
        states = {}
        for oid in self.bodies:
            pos, orn = self.pose(oid)
            bottom, top = z_extent(self.manifest.hull_points[oid], pos, orn)
            mine = by_a[oid]
            below = [q for q in mine if q.normal[2] >= cfg.support_normal_z] + below_far.get(oid, [])
            support = sorted({q.b for q in below if q.distance_m <= cfg.contact_tolerance_m})
            gap = min((q.distance_m for q in below), default=None)
            depth = max((-q.distance_m for q in mine if q.distance_m < -DEPTH_EPSILON_M), default=0.0)
            states[oid] = BodyState(pos, orn, bottom, top, depth, tuple(support), gap)
        return states, [PenetratingPair(a, b, d) for (a, b), d in sorted(pairs.items())]
