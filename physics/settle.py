"""Placement repair (``hiscene validate --settle``): make a scene physically plausible by
moving its objects, writing the new poses into the scene dir and re-exporting.

One repair round, in PyBullet on the export's own URDFs (``repair_poses``):

1. lift objects that start below the floor onto it;
2. separate interpenetrating pairs along their minimal separating direction (PyBullet's
   contact normal): an object overlapping a background body moves out of it; of two
   objects, one on top of the other (normal within 45 deg of vertical) the upper one moves
   up, side by side both move apart horizontally, half each; repeated until no pair
   overlaps by more than 0.1 mm;
3. drop every object straight down onto what is below it, lowest first;
4. simulate to rest (gravity, same step as the drop test, the start raised by the contact
   offsets of ``physics.pybullet_check``) until everything rested ``settle_rest_seconds``
   or ``settle_max_seconds`` passed;
5. drop again, lowest first: PyBullet rests bodies on hulls padded by the collision margin
   (2 mm per contact), so rest poses float; this puts them back on the actual geometry,
   ``settle_clearance_m`` above it.

Only poses that changed by more than ``write_epsilon_m`` / ``write_epsilon_deg`` are written
(the rest is solver noise; untouched objects keep their poses bit for bit).
``settle_scene`` loops round -> ``save_scene`` -> ``export_scene`` (same formats and
settings, into the same export dir, replaced atomically) -> validate until the scene passes
or ``settle_iterations`` rounds were made, and lists the objects it could not make stable
with the reasons.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hiscene_sim.rotations import rotation_angle_deg
from physics.bullet import BulletWorld
from physics.config import ValidationConfig
from physics.manifest import ExportManifest, find_floor, read_manifest
from physics.pybullet_check import contact_offsets
from physics.results import ObjectMove, SettleIteration, SettleResult, UnresolvedObject, ValidationReport
from physics.validate import validate_export

log = logging.getLogger(__name__)

SEPARATION_SLOP_M = 1e-4  # overlaps shallower than this are left to the solver
SEPARATION_ROUNDS = 40
VERTICAL_NORMAL_Z = math.cos(math.radians(45))  # pairs whose normal is this close to vertical stack
DROP_SEARCH_M = 1.0  # how far below an object its support is looked for
DROP_STEPS = 25


@dataclass
class RepairPlan:
    moves: list[ObjectMove]
    simulated_seconds: float
    still_moving: list[str]
    lost: dict[str, str] = field(default_factory=dict)  # id -> why its pose was not written


def _cm(m: float) -> str:
    return f"{m * 100:.1f} cm"


def _separate(world: BulletWorld, fg: list[str], config: ValidationConfig, actions: dict[str, list[str]]) -> None:
    overlap: dict[tuple[str, str], float] = {}  # pair -> depth when first seen
    for _ in range(SEPARATION_ROUNDS):
        deepest: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
        for q in world.proximities(0.0, fg):
            if q.a < q.b and q.distance_m < -SEPARATION_SLOP_M:
                key = (q.a, q.b)
                if key not in deepest or q.distance_m < deepest[key][0]:
                    deepest[key] = (q.distance_m, np.asarray(q.normal, dtype=float))
        if not deepest:
            break
        moves: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3))
        for (a, b), (dist, n) in deepest.items():  # n: from b towards a
            need = -dist + config.settle_clearance_m
            overlap.setdefault((a, b), -dist)
            a_free, b_free = a not in world.background, b not in world.background
            if not b_free:
                moves[a] += n * need
            elif not a_free:
                moves[b] -= n * need
            elif abs(n[2]) >= VERTICAL_NORMAL_Z:
                upper, sign = (a, 1.0) if n[2] > 0 else (b, -1.0)
                moves[upper] += sign * n * need
            else:
                h = np.array([n[0], n[1], 0.0])
                hn = float(np.linalg.norm(h))
                shift = h / hn * (need / hn) / 2.0
                moves[a] += shift
                moves[b] -= shift
        for oid, delta in moves.items():
            world.move(oid, delta)
    for (a, b), amount in overlap.items():
        for oid, other in ((a, b), (b, a)):
            if oid not in world.background:
                actions[oid].append(f"separated from {other} (overlap {_cm(amount)})")


def _drop(world: BulletWorld, oid: str, config: ValidationConfig) -> tuple[float, list[str]]:
    """Lower ``oid`` straight down until it is ``settle_clearance_m`` above what is below it
    (never into a neighbour). Returns (distance lowered, ids below it)."""
    total = 0.0
    support: list[str] = []
    for _ in range(DROP_STEPS):
        for search in (2.0 * config.contact_tolerance_m, DROP_SEARCH_M):  # near first: most objects rest already
            near = [q for q in world.proximities(search, [oid]) if q.a == oid]
            below = [q for q in near if q.normal[2] >= config.support_normal_z]
            if below:
                break
        if not below:
            break
        gap = min(q.distance_m for q in below)
        support = sorted({q.b for q in below if q.distance_m <= gap + config.contact_tolerance_m})
        step = gap - config.settle_clearance_m
        if step <= 1e-6:
            break
        worst_before = min((q.distance_m for q in near), default=math.inf)
        world.move(oid, (0.0, 0.0, -step))
        worst = min((q.distance_m for q in world.proximities(0.0, [oid]) if q.a == oid), default=math.inf)
        if worst < min(-SEPARATION_SLOP_M, worst_before):  # would sink into something beside it
            world.move(oid, (0.0, 0.0, step))
            break
        total += step
    return total, support


def _drop_all(world: BulletWorld, fg: list[str], config: ValidationConfig, actions: dict[str, list[str]] | None) -> None:
    for oid in sorted(fg, key=lambda i: world.z_extent(i)[0]):
        lowered, support = _drop(world, oid, config)
        if actions is not None and lowered > config.contact_tolerance_m:
            actions[oid].append(f"dropped {_cm(lowered)} onto {', '.join(support) or 'its support'}")


def _simulate_to_rest(world: BulletWorld, fg: list[str], config: ValidationConfig) -> tuple[float, list[str]]:
    calm_needed = max(1, round(config.settle_rest_seconds * config.hz))
    max_steps = max(1, round(config.settle_max_seconds * config.hz))
    calm = 0
    moving: list[str] = []
    steps = 0
    for steps in range(1, max_steps + 1):
        world.step()
        moving = [
            oid for oid in fg
            if (s := world.speed(oid))[0] > config.rest_linear_speed or s[1] > config.rest_angular_speed
        ]
        calm = 0 if moving else calm + 1
        if calm >= calm_needed:
            break
    return steps * config.timestep, moving


def repair_poses(manifest: ExportManifest, config: ValidationConfig) -> RepairPlan:
    """New poses for the export's foreground objects (see the module doc); nothing is written."""
    fg = [o.id for o in manifest.foreground]
    floor = find_floor(manifest)
    actions: dict[str, list[str]] = defaultdict(list)
    with BulletWorld(manifest, config) as world:
        before = {oid: world.pose(oid) for oid in fg}
        if floor.source.startswith("floor object"):
            for oid in fg:
                bottom, _ = world.z_extent(oid)
                if bottom < floor.z - SEPARATION_SLOP_M:
                    world.move(oid, (0.0, 0.0, floor.z - bottom + config.settle_clearance_m))
                    actions[oid].append(f"raised {_cm(floor.z - bottom)} out of the floor")
        _separate(world, fg, config, actions)
        _drop_all(world, fg, config, actions)
        for oid, dz in contact_offsets(world).items():  # start on the padded hulls: no pop-up (see pybullet_check)
            if dz > 0.0:
                world.move(oid, (0.0, 0.0, dz))
        simulated, still_moving = _simulate_to_rest(world, fg, config)
        _drop_all(world, fg, config, None)
        after = {oid: world.pose(oid) for oid in fg}
        tops = {oid: world.z_extent(oid)[1] for oid in fg}

    labels = {o.id: o.label for o in manifest.foreground}
    moves: list[ObjectMove] = []
    lost: dict[str, str] = {}
    for oid in fg:
        (p0, q0), (p1, q1) = before[oid], after[oid]
        if tops[oid] < floor.z:
            lost[oid] = f"fell below the floor ({floor.source}) while settling: nothing holds it at x={p0[0]:.2f}, y={p0[1]:.2f}"
            continue
        if oid in still_moving:
            lost[oid] = f"still moving after {simulated:.1f} s of settling"
        dp = float(np.linalg.norm(np.subtract(p1, p0)))
        dr = rotation_angle_deg(q0, q1)
        if dp <= config.write_epsilon_m and dr <= config.write_epsilon_deg:
            continue
        todo = list(actions.get(oid, []))
        todo.append(f"simulated to rest: moved {_cm(dp)}, turned {dr:.1f} deg in all")
        moves.append(ObjectMove(oid, labels[oid], p0, q0, p1, q1, dp, dr, todo))
    return RepairPlan(moves, simulated, still_moving, lost)


def _apply(scene_dir: Path, moves: list[ObjectMove], iteration: int, seconds: float) -> None:
    from hiscene_sim.scene import Pose, Provenance, load_scene, save_scene

    scene = load_scene(scene_dir)
    for move in moves:
        obj = scene.get(move.id)
        obj.pose = Pose(tuple(move.after_position), tuple(move.after_orientation), obj.pose.scale)
    scene.provenance.append(Provenance(
        stage="settle", backend="pybullet",
        parameters={"iteration": iteration, "moved": [m.id for m in moves]},
        seconds=round(seconds, 3), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ))
    save_scene(scene, scene_dir)


def _failing(report: ValidationReport) -> list[str]:
    """Ids of the objects either simulator flagged, in scene order."""
    ids: list[str] = []
    for sim in (report.pybullet, report.mujoco):
        for o in sim.objects if sim is not None else []:
            if o.issues and o.id not in ids:
                ids.append(o.id)
    return ids


def _unresolved(report: ValidationReport, lost: dict[str, str]) -> list[UnresolvedObject]:
    reasons: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, str] = {}
    for sim in (report.pybullet, report.mujoco):
        if sim is None:
            continue
        name = "PyBullet" if sim.simulator == "pybullet" else "MuJoCo"
        for o in sim.objects:
            labels[o.id] = o.label
            for issue in o.issues:
                reasons[o.id].append(f"{name}: {issue.message}")
    if not report.passed:
        for oid, why in lost.items():
            reasons[oid].insert(0, f"repair: {why}")
    return [UnresolvedObject(oid, labels.get(oid, oid), r) for oid, r in reasons.items()]


def settle_scene(
    export_dir: str | Path,
    scene_dir: str | Path | None = None,
    config: ValidationConfig | None = None,
    export_config=None,
    on_iteration: Callable[[SettleIteration], None] | None = None,
    initial: ValidationReport | None = None,
) -> tuple[ValidationReport, ValidationReport]:
    """Repair the scene until it validates or ``config.settle_iterations`` rounds were made.

    ``scene_dir`` defaults to the export's ``source``; ``export_config`` to the settings the
    export recorded (``ExportManifest.export_config``). Returns (initial report, final
    report); the final one carries the ``SettleResult`` in ``.settle``.
    """
    from exporters.export import export_scene
    from hiscene_sim.scene import SceneError

    config = config or ValidationConfig()
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if scene_dir is None:
        if manifest.source is None:
            raise SceneError(f"{export_dir}/export.json names no source scene dir; pass --scene-dir")
        scene_dir = manifest.source
    scene_dir = Path(scene_dir)
    if not (scene_dir / "scene.json").is_file():
        raise SceneError(f"{scene_dir}: not a scene dir (no scene.json); pass --scene-dir")
    export_config = export_config or manifest.export_config()
    masses = {o.id: o.mass for o in manifest.objects}

    initial = initial or validate_export(export_dir, config)
    report = initial
    iterations: list[SettleIteration] = []
    lost: dict[str, str] = {}
    warnings: list[str] = []
    for index in range(1, config.settle_iterations + 1):
        if report.passed:
            break
        failing = _failing(report)
        t0 = time.perf_counter()
        plan = repair_poses(read_manifest(export_dir), config)
        lost = plan.lost
        if not plan.moves:
            log.info("settle round %d: nothing left to move", index)
            break
        _apply(scene_dir, plan.moves, index, time.perf_counter() - t0)
        t0 = time.perf_counter()
        export_scene(scene_dir, export_dir, export_config)
        export_seconds = time.perf_counter() - t0
        report = validate_export(export_dir, config)
        iteration = SettleIteration(index, failing, plan.moves, round(export_seconds, 3), report.passed)
        iterations.append(iteration)
        log.info("settle round %d: moved %s; %s", index, ", ".join(m.id for m in plan.moves), report.verdict)
        if on_iteration:
            on_iteration(iteration)

    if iterations:
        for o in read_manifest(export_dir).objects:
            if o.id in masses and not math.isclose(o.mass, masses[o.id], rel_tol=1e-6, abs_tol=1e-9):
                warnings.append(f"{o.id}: mass changed on re-export ({masses[o.id]:.4g} -> {o.mass:.4g} kg)")
    report.settle = SettleResult(
        scene_dir=str(scene_dir.resolve()), export_dir=str(export_dir.resolve()),
        initially_passed=initial.passed, initial_failures=list(initial.failures),
        iterations=iterations, passed=report.passed,
        unresolved=[] if report.passed else _unresolved(report, lost), warnings=warnings,
    )
    return initial, report
