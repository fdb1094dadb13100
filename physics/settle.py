"""Placement repair (``hiscene validate --settle``): make a scene physically plausible in
both simulators by moving its objects, writing the new poses into the scene dir and
re-exporting.

One repair round (``repair_poses``) has up to two stages, chosen by the validation that
started the round:

- the PyBullet stage, when PyBullet fails the scene (steps 1-5 below, on the export's own
  URDFs);
- the MuJoCo stage, when MuJoCo fails it (``physics.mujoco_repair``): MuJoCo is started from
  the poses the PyBullet stage left (or the exported ones, when PyBullet passed), simulated
  to rest, and the objects it moved take their MuJoCo rest poses; those are put back on the
  actual geometry in PyBullet (steps 2 and 5: MuJoCo's soft contacts rest a hair inside
  their supports). This is what repairs an object PyBullet holds but MuJoCo does not (one
  balanced on an edge: PyBullet's solver keeps it there, MuJoCo lets it fall).

PyBullet stage:

1. lift objects that start below the floor (or ground plane) onto it;
2. separate interpenetrating pairs along their minimal separating direction (PyBullet's
   contact normal): an object overlapping a background body moves out of it; of two
   objects, one on top of the other (normal within 45 deg of vertical) the upper one moves
   up, side by side both move apart horizontally, half each; repeated until no pair
   overlaps by more than 0.1 mm;
3. drop every object straight down onto what is below it, lowest first;
4. simulate to rest (gravity, same step as the drop test, the start raised by the contact
   offsets of ``physics.pybullet_check``) for the drop test's ``seconds`` at least (what
   starts moving late, as an object balanced on an edge does, is seen), then until
   everything rested ``settle_rest_seconds`` or ``settle_max_seconds`` passed;
5. drop again, lowest first: PyBullet rests bodies on hulls padded by the collision margin
   (2 mm per contact), so rest poses float; this puts them back on the actual geometry,
   ``settle_clearance_m`` above it.

Only poses that changed by more than ``write_epsilon_m`` / ``write_epsilon_deg`` are written
(the rest is solver noise; untouched objects keep their poses bit for bit).
``settle_scene`` loops round -> ``save_scene`` -> ``export_scene`` (same formats and
settings, into the same export dir, replaced atomically) -> validate in both simulators
until the scene passes in both or ``settle_iterations`` rounds were made. The verdict is
PASS only when both pass. A pose one simulator rests an object in is re-checked by the
other in the next round, so an object the two cannot agree on (each one's rest pose fails
in the other) ends in ``unresolved`` with both verdicts, the rounds that moved it and by
which simulator.
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
from physics.mujoco_repair import mujoco_rest
from physics.pybullet_check import contact_offsets
from physics.rest import run_to_rest
from physics.results import (
    ObjectMove,
    SettleIteration,
    SettleResult,
    SimulatorResult,
    UnresolvedObject,
    ValidationReport,
)
from physics.validate import validate_export

log = logging.getLogger(__name__)

SEPARATION_SLOP_M = 1e-4  # overlaps shallower than this are left to the solver
SEPARATION_ROUNDS = 40
VERTICAL_NORMAL_Z = math.cos(math.radians(45))  # pairs whose normal is this close to vertical stack
DROP_SEARCH_M = 1.0  # how far below an object its support is looked for
DROP_STEPS = 25
SIMULATOR_NAMES = {"pybullet": "PyBullet", "mujoco": "MuJoCo"}


@dataclass
class RepairPlan:
    moves: list[ObjectMove]
    simulated_seconds: float
    still_moving: list[str]
    lost: dict[str, str] = field(default_factory=dict)  # id -> why its pose was not written
    simulators: list[str] = field(default_factory=list)  # the stages that ran: "pybullet", "mujoco"


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
    def moving() -> list[str]:
        return [oid for oid in fg if (s := world.speed(oid))[0] > config.rest_linear_speed or s[1] > config.rest_angular_speed]

    return run_to_rest(world.step, moving, config.timestep, config)


def _pybullet_stage(world: BulletWorld, fg: list[str], floor, config: ValidationConfig,
                    actions: dict[str, list[str]]) -> tuple[float, list[str]]:
    """Steps 1-5 of the module doc in ``world``; returns (simulated seconds, still moving)."""
    if floor.solid:
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
    return simulated, still_moving


def _mujoco_stage(world: BulletWorld, manifest: ExportManifest, fg: list[str], config: ValidationConfig,
                  actions: dict[str, list[str]], lost: dict[str, str]) -> tuple[float, list[str]]:
    """The MuJoCo stage of the module doc, from the poses in ``world``; the moved objects'
    MuJoCo rest poses end up in ``world``. Returns (simulated seconds, still moving)."""
    start = {oid: world.pose(oid) for oid in fg}
    rest = mujoco_rest(manifest, config, start)
    if rest.diverged:  # nothing of MuJoCo's run is usable; what the PyBullet stage did stands
        for oid in fg:
            lost.setdefault(oid, rest.diverged)
        return rest.simulated_seconds, []
    moved = []
    for oid in fg:
        (p0, q0), (p1, q1) = start[oid], rest.poses[oid]
        dp, dr = float(np.linalg.norm(np.subtract(p1, p0))), rotation_angle_deg(q0, q1)
        if dp > config.write_epsilon_m or dr > config.write_epsilon_deg:
            world.set_pose(oid, p1, q1)
            moved.append(oid)
            actions[oid].append(f"took MuJoCo's rest pose ({_cm(dp)}, {dr:.1f} deg from where MuJoCo started it)")
    if moved:  # MuJoCo rests a hair inside its supports: back onto the geometry, with the clearance
        _separate(world, fg, config, actions)
        for oid in sorted(moved, key=lambda i: world.z_extent(i)[0]):
            _lift_onto(world, oid, config)
        _drop_all(world, fg, config, None)
    return rest.simulated_seconds, rest.still_moving


def _lift_onto(world: BulletWorld, oid: str, config: ValidationConfig) -> None:
    """Raise ``oid`` to ``settle_clearance_m`` above what it rests on when it sits lower (a
    shallow overlap ``_separate`` leaves to the solver)."""
    below = [q.distance_m for q in world.proximities(config.contact_tolerance_m, [oid])
             if q.a == oid and q.normal[2] >= config.support_normal_z]
    if below and min(below) < config.settle_clearance_m:
        world.move(oid, (0.0, 0.0, config.settle_clearance_m - min(below)))


def repair_poses(manifest: ExportManifest, config: ValidationConfig, report: ValidationReport | None = None) -> RepairPlan:
    """New poses for the export's foreground objects (see the module doc); nothing is
    written. ``report``: the validation that started the round; it picks the stages (without
    one, the PyBullet stage only)."""
    fg = [o.id for o in manifest.foreground]
    floor = find_floor(manifest)
    actions: dict[str, list[str]] = defaultdict(list)
    lost: dict[str, str] = {}
    pybullet = report is None or not report.pybullet.passed
    mujoco = (report is not None and report.mujoco is not None and not report.mujoco.passed
              and manifest.path("mjcf") is not None)
    simulators: list[str] = []
    simulated, still_moving = 0.0, []
    with BulletWorld(manifest, config) as world:
        before = {oid: world.pose(oid) for oid in fg}
        if pybullet:
            simulators.append("pybullet")
            simulated, still_moving = _pybullet_stage(world, fg, floor, config, actions)
        if mujoco:
            simulators.append("mujoco")
            seconds, moving = _mujoco_stage(world, manifest, fg, config, actions, lost)
            simulated += seconds
            still_moving = sorted(set(still_moving) | set(moving))
        after = {oid: world.pose(oid) for oid in fg}
        tops = {oid: world.z_extent(oid)[1] for oid in fg}

    labels = {o.id: o.label for o in manifest.foreground}
    moves: list[ObjectMove] = []
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
        names = " then ".join(SIMULATOR_NAMES[s] for s in simulators)
        todo.append(f"simulated to rest in {names}: moved {_cm(dp)}, turned {dr:.1f} deg in all")
        moves.append(ObjectMove(oid, labels[oid], p0, q0, p1, q1, dp, dr, todo))
    return RepairPlan(moves, simulated, still_moving, lost, simulators)


def _apply(scene_dir: Path, moves: list[ObjectMove], iteration: int, seconds: float, simulators: list[str]) -> None:
    from hiscene_sim.scene import Pose, Provenance, load_scene, save_scene

    scene = load_scene(scene_dir)
    for move in moves:
        obj = scene.get(move.id)
        obj.pose = Pose(tuple(move.after_position), tuple(move.after_orientation), obj.pose.scale)
    scene.provenance.append(Provenance(
        stage="settle", backend="+".join(simulators) or "pybullet",
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


def _verdict(sim: SimulatorResult, oid: str) -> str:
    o = sim.get(oid)
    return (f"{'stable' if o.stable else 'unstable'} in {SIMULATOR_NAMES[sim.simulator]} "
            f"(drift {_cm(o.drift_m)}, turned {o.rotation_deg:.1f} deg)")


def _unresolved(report: ValidationReport, lost: dict[str, str], iterations: list[SettleIteration],
                rounds: int) -> list[UnresolvedObject]:
    """Why each object still flagged could not be repaired: each simulator's issues, both
    verdicts side by side, and which rounds moved it with which simulator."""
    reasons: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, str] = {}
    for sim in (report.pybullet, report.mujoco):
        if sim is None:
            continue
        for o in sim.objects:
            labels[o.id] = o.label
            for issue in o.issues:
                reasons[o.id].append(f"{SIMULATOR_NAMES[sim.simulator]}: {issue.message}")
    if not report.passed:
        for oid, why in lost.items():
            reasons[oid].insert(0, f"repair: {why}")
    sims = [s for s in (report.pybullet, report.mujoco) if s is not None]
    for oid, why in reasons.items():
        history = [f"round {it.index} ({' then '.join(SIMULATOR_NAMES[s] for s in it.simulators)})"
                   for it in iterations if any(m.id == oid for m in it.moves)]
        moved = "moved in " + ", ".join(history) if history else "not moved"
        left = f"; no rounds left (at most {rounds})" if len(iterations) >= rounds else ""
        why.append(f"cross-check after {len(iterations)} round(s), {moved}{left}: "
                   + "; ".join(_verdict(s, oid) for s in sims))
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
        plan = repair_poses(read_manifest(export_dir, ground=config.ground), config, report)
        lost = plan.lost
        if not plan.moves:
            log.info("settle round %d: nothing left to move (%s)", index, " then ".join(plan.simulators))
            break
        _apply(scene_dir, plan.moves, index, time.perf_counter() - t0, plan.simulators)
        t0 = time.perf_counter()
        export_scene(scene_dir, export_dir, export_config)
        export_seconds = time.perf_counter() - t0
        report = validate_export(export_dir, config)
        iteration = SettleIteration(index, failing, plan.moves, round(export_seconds, 3), report.passed,
                                    simulators=plan.simulators, pybullet_passed=report.pybullet.passed,
                                    mujoco_passed=None if report.mujoco is None else report.mujoco.passed)
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
        unresolved=[] if report.passed else _unresolved(report, lost, iterations, config.settle_iterations),
        warnings=warnings,
    )
    return initial, report
