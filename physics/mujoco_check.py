"""The same drop test in MuJoCo, from the export dir's MJCF (``scene.xml``), and how far
the two simulators agree.

MuJoCo runs at the model's own timestep (``<option timestep>`` of the export, what users
get) for the same simulated time. Each foreground object is the body named after its id
with a free joint; the body frame is the object frame, so ``xpos`` / ``xquat`` compare with
export.json directly. MuJoCo's hulls carry no margin (the export sets none), so its
distances are geometric already. Distances before and after the run come from
``mujoco.mj_geomDistance`` per pair of collision geoms (its contact generation misses
hulls that touch exactly, which is how a well-placed scene starts).

The ground plane is the MJCF's ``<geom type="plane" name="ground_plane">`` (a static body of
id ``ground_plane`` here); an export older than ground planes gets it added to the model
(``mujoco.MjSpec``) when validation adds one (``physics.manifest``), and with ``--no-ground``
the exported plane is switched off (its contype / conaffinity set to 0).
"""

from __future__ import annotations

import time

import numpy as np

from hiscene_sim.rotations import rotation_angle_deg
from hiscene_sim.scene import SceneError
from physics.bullet import GAP_SEARCH_M
from physics.config import DEPTH_EPSILON_M, ValidationConfig
from physics.manifest import ExportManifest, z_extent
from physics.results import Agreement, BodyState, ObjectAgreement, PenetratingPair, SimulatorResult
from physics.verdict import Observation, RestWatch


class MujocoScene:
    def __init__(self, manifest: ExportManifest):
        import mujoco

        self.mj = mujoco
        path = manifest.path("mjcf")
        if path is None or not path.is_file():
            raise SceneError(f"{manifest.export_dir}: no MJCF in this export (re-export with --formats ...,mjcf)")
        self.manifest = manifest
        self.model = self._load(path)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.body: dict[str, int] = {}
        for o in manifest.objects:
            b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, o.id)
            if b < 0:
                raise SceneError(f"{path}: no body named {o.id!r} (the MJCF does not match export.json)")
            self.body[o.id] = b
        self.id_of_body = {b: oid for oid, b in self.body.items()}
        for b in range(m.nbody):  # an articulated object's links are bodies nested in its own: they are it
            root = int(m.body_rootid[b])
            if b not in self.id_of_body and root in self.id_of_body:
                self.id_of_body[b] = self.id_of_body[root]
        self.dof = {o.id: int(m.jnt_dofadr[m.body_jntadr[self.body[o.id]]]) for o in manifest.foreground}
        self.background = manifest.static_ids
        self.colliding = np.flatnonzero((m.geom_contype != 0) | (m.geom_conaffinity != 0))
        self.ground_geom = -1
        if manifest.ground is not None:
            self.ground_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, manifest.ground.id)
        mujoco.mj_forward(m, self.data)

    def _load(self, path):
        """The model of ``path`` with the ground plane validation wants (see the module doc)."""
        mj, manifest = self.mj, self.manifest
        record, ground = manifest.ground_record, manifest.ground
        if ground is not None and ground.origin != "export":
            from exporters.contact import MUJOCO_CONDIM, mujoco_friction
            from exporters.ground import GROUND_LABEL
            from exporters.materials import material_for_label
            from exporters.mjcf import CONTACT_TIMECONST, restitution_dampratio

            spec = mj.MjSpec.from_file(str(path))
            material, _ = material_for_label(GROUND_LABEL)
            geom = spec.worldbody.add_geom()
            geom.name, geom.type = ground.id, mj.mjtGeom.mjGEOM_PLANE
            geom.pos, geom.size = list(ground.position), [ground.size_m / 2.0, ground.size_m / 2.0, 0.1]
            geom.condim = MUJOCO_CONDIM
            geom.friction = list(mujoco_friction(material, static=True))
            geom.solref = [CONTACT_TIMECONST, restitution_dampratio(material.restitution)]
            return spec.compile()
        model = mj.MjModel.from_xml_path(str(path))
        if ground is None and record is not None and record.added:  # --no-ground: switch the exported plane off
            g = mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, record.id)
            if g >= 0:
                model.geom_contype[g] = model.geom_conaffinity[g] = 0
        return model

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def step(self) -> None:
        self.mj.mj_step(self.model, self.data)

    def pose(self, oid: str):
        b = self.body[oid]
        q = np.asarray(self.data.xquat[b], dtype=float)
        q = q / np.linalg.norm(q)
        if q[0] < 0:
            q = -q
        return tuple(float(v) for v in self.data.xpos[b]), tuple(float(v) for v in q)

    def velocities(self, ids: list[str]) -> np.ndarray:
        """(len(ids), 6) free-joint velocities of ``ids`` at once: 3 linear, then 3 angular."""
        dofs = np.array([self.dof[oid] for oid in ids], dtype=int).reshape(-1, 1)
        return np.asarray(self.data.qvel)[dofs + np.arange(6)]

    def speeds(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(linear, angular) speeds of ``ids`` at once."""
        return _speeds(self.velocities(ids))

    def proximities(self, search: float) -> list[tuple[str, str, float, float]]:
        """(a, b, geometric distance, z of the unit normal from b towards a) for both orders
        of every pair of collision geoms of different bodies (not both background) within
        ``search`` of each other. The normal's z is the derivative of the distance as a is
        raised, which is well defined for touching and overlapping geoms too."""
        mj, m, d = self.mj, self.model, self.data
        geoms = self.colliding
        owner = {int(g): self.id_of_body.get(int(m.geom_bodyid[g])) for g in geoms}
        if self.ground_geom >= 0:
            owner[self.ground_geom] = self.manifest.ground.id
        body = np.array([owner[int(g)] for g in geoms], dtype=object)
        static = np.array([b is None or b in self.background for b in body])
        centre = np.asarray(d.geom_xpos[geoms], dtype=float)
        radius = np.asarray(m.geom_rbound[geoms], dtype=float)
        gap = np.linalg.norm(centre[:, None, :] - centre[None, :, :], axis=2) - radius[:, None] - radius[None, :]
        for k in np.flatnonzero(geoms == self.ground_geom):  # a plane has no bounding sphere: height above it
            gap[k, :] = gap[:, k] = centre[:, 2] - radius - centre[k, 2]
        i_idx, j_idx = np.nonzero(np.triu(gap <= search, k=1))
        out = []
        delta = 1e-4
        for i, j in zip(i_idx, j_idx):
            a, b = body[i], body[j]
            if a is None or b is None or a == b or (static[i] and static[j]):
                continue
            g1, g2 = int(geoms[i]), int(geoms[j])
            dist = mj.mj_geomDistance(m, d, g1, g2, search + 2 * delta, None)
            if dist > search:
                continue
            d.geom_xpos[g1][2] += delta
            try:
                raised = mj.mj_geomDistance(m, d, g1, g2, search + 2 * delta, None)
            finally:
                d.geom_xpos[g1][2] -= delta
            nz = float(np.clip((raised - dist) / delta, -1.0, 1.0))
            out.append((a, b, float(dist), nz))
            out.append((b, a, float(dist), -nz))
        return out

    def states(self, config: ValidationConfig) -> tuple[dict[str, BodyState], list[PenetratingPair]]:
        near = self.proximities(config.contact_tolerance_m)
        supported = {a for a, _, dist, nz in near if nz >= config.support_normal_z and dist <= config.contact_tolerance_m}
        lonely = [o.id for o in self.manifest.foreground if o.id not in supported]
        far = [c for c in self.proximities(GAP_SEARCH_M) if c[0] in lonely] if lonely else []
        pts = self.manifest.hull_points
        pairs: dict[tuple[str, str], float] = {}
        states = {}
        for oid in self.body:
            pos, orn = self.pose(oid)
            bottom, top = z_extent(pts[oid], pos, orn)
            mine = [c for c in near if c[0] == oid]
            below = [c for c in (*mine, *(c for c in far if c[0] == oid)) if c[3] >= config.support_normal_z]
            support = sorted({c[1] for c in below if c[2] <= config.contact_tolerance_m})
            gap = min((c[2] for c in below), default=None)
            depth = max((-c[2] for c in mine if c[2] < -DEPTH_EPSILON_M), default=0.0)
            states[oid] = BodyState(pos, orn, bottom, top, depth, tuple(support), gap)
            for a, b, dist, _ in mine:
                if dist < -DEPTH_EPSILON_M and a < b:
                    pairs[(a, b)] = max(pairs.get((a, b), 0.0), -dist)
        return states, [PenetratingPair(a, b, dd) for (a, b), dd in sorted(pairs.items())]


def _speeds(velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(linear, angular) speeds of (n, 6) free-joint velocities."""
    return np.linalg.norm(velocity[:, :3], axis=1), np.linalg.norm(velocity[:, 3:], axis=1)


def observe_mujoco(manifest: ExportManifest, config: ValidationConfig) -> Observation:
    scene = MujocoScene(manifest)
    start, pairs_start = scene.states(config)
    fg = [o.id for o in manifest.foreground]
    dt = scene.timestep
    steps = max(1, round(config.seconds / dt))
    watch = RestWatch(fg, config, dt, steps)
    t0 = time.perf_counter()
    for i in range(steps):
        scene.step()
        if fg:
            watch.add(i, scene.velocities(fg))
    wall = time.perf_counter() - t0
    bad = {w: int(scene.data.warning[getattr(scene.mj.mjtWarning, w)].number)
           for w in ("mjWARN_BADQACC", "mjWARN_BADQPOS", "mjWARN_BADQVEL")}
    diverged = None  # MuJoCo resets a diverged state to the initial pose: its "rest" would look perfect
    if any(bad.values()):
        diverged = "MuJoCo reported " + ", ".join(f"{w} x{n}" for w, n in bad.items() if n)
    elif not (np.all(np.isfinite(scene.data.qpos)) and np.all(np.isfinite(scene.data.qvel))):
        diverged = "non-finite MuJoCo state"
    speeds, settle = watch.speeds_and_settle()
    rest, pairs_rest = scene.states(config)
    return Observation("mujoco", dt, steps, wall, start, rest, speeds, settle, pairs_start, pairs_rest, diverged)


def compare(pybullet: SimulatorResult, mujoco: SimulatorResult, config: ValidationConfig) -> Agreement:
    """Per object: how differently the two simulators moved it (displacement from the start,
    each simulator's contact offset removed, and rest orientation), and whether both call it
    stable."""
    rows = []
    mj = {o.id: o for o in mujoco.objects}

    def displacement(o):
        return np.subtract(o.rest_position, np.add(o.start_position, (0.0, 0.0, o.contact_offset_m)))

    for a in pybullet.objects:
        b = mj[a.id]
        dp = float(np.linalg.norm(displacement(a) - displacement(b)))
        dr = rotation_angle_deg(a.rest_orientation, b.rest_orientation)
        same = a.stable == b.stable
        rows.append(ObjectAgreement(
            id=a.id, pybullet_stable=a.stable, mujoco_stable=b.stable, pybullet_drift_m=a.drift_m, mujoco_drift_m=b.drift_m,
            pybullet_rotation_deg=a.rotation_deg, mujoco_rotation_deg=b.rotation_deg, position_difference_m=dp,
            rest_distance_m=float(np.linalg.norm(np.subtract(a.rest_position, b.rest_position))),
            rotation_difference_deg=dr,
            drift_difference_m=abs(a.drift_m - b.drift_m), same_verdict=same,
            agree=same and dp < config.agreement_m and dr < config.agreement_deg,
        ))
    n = len(rows)
    same_scene = pybullet.passed == mujoco.passed
    return Agreement(
        objects=rows,
        max_position_difference_m=max((r.position_difference_m for r in rows), default=0.0),
        max_rotation_difference_deg=max((r.rotation_difference_deg for r in rows), default=0.0),
        share_agreeing=sum(r.agree for r in rows) / n if n else 1.0,
        same_scene_verdict=same_scene,
        agree=same_scene and all(r.agree for r in rows),
    )
