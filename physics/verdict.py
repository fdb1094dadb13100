"""From what a simulator saw to a verdict: the same rules for PyBullet and MuJoCo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hiscene_sim.rotations import rotation_angle_deg
from physics.config import ValidationConfig
from physics.manifest import ExportManifest, Floor
from physics.results import (
    BELOW_FLOOR,
    DRIFT,
    FELL_THROUGH_FLOOR,
    FLOATING,
    LEFT_SUPPORT,
    MOVING,
    PENETRATION,
    ROTATION,
    UNSTABLE_CODES,
    BodyState,
    Issue,
    ObjectResult,
    PenetratingPair,
    SimulatorResult,
)


@dataclass
class Observation:
    """The raw measurements of one drop test."""

    simulator: str
    timestep_s: float
    steps: int
    wall_seconds: float
    start: dict[str, BodyState]  # every object, background included
    rest: dict[str, BodyState]
    speeds: dict[str, tuple[float, float]]  # foreground id -> (linear m/s, angular rad/s) at the end
    settle_times: dict[str, float | None]  # foreground id -> time it came to rest for good
    pairs_start: list[PenetratingPair]  # every overlapping pair, any depth
    pairs_rest: list[PenetratingPair]
    diverged: str | None = None  # why the simulation blew up, if it did
    contact_offsets: dict[str, float] = field(default_factory=dict)  # id -> z the start was raised by before
    #   stepping (PyBullet's hull padding, see physics.pybullet_check); drift is measured from there


class RestWatch:
    """What both drop tests record while stepping: when each body last moved faster than the rest
    speeds, and its mean velocity over the last ``rest_window_s`` (the speeds "at the end": a
    body vibrating in place on soft or padded contacts averages out, one that slides, rolls or
    topples keeps its mean)."""

    def __init__(self, ids: list[str], config: ValidationConfig, dt: float, steps: int):
        self.ids, self.config, self.dt, self.steps = ids, config, dt, steps
        self.window = min(steps, max(1, round(config.rest_window_s / dt)))
        self.last_moving = np.zeros(len(ids))
        self.velocity_sum = np.zeros((len(ids), 6))

    def _moving(self, velocity: np.ndarray) -> np.ndarray:
        return ((np.linalg.norm(velocity[:, :3], axis=1) > self.config.rest_linear_speed)
                | (np.linalg.norm(velocity[:, 3:], axis=1) > self.config.rest_angular_speed))

    def add(self, step: int, velocity: np.ndarray) -> None:
        """The (n, 6) linear + angular velocities of ``ids`` after step ``step`` (0-based)."""
        self.last_moving[self._moving(velocity)] = (step + 1) * self.dt
        if step >= self.steps - self.window:
            self.velocity_sum += velocity

    def speeds_and_settle(self) -> tuple[dict[str, tuple[float, float]], dict[str, float | None]]:
        """Per id: (linear, angular) mean speed over the window, and the time it came to rest for
        good (None: still moving at the end)."""
        mean = self.velocity_sum / self.window
        moving = self._moving(mean)
        speeds = {oid: (float(np.linalg.norm(mean[k, :3])), float(np.linalg.norm(mean[k, 3:]))) for k, oid in enumerate(self.ids)}
        settle = {oid: None if moving[k] else float(self.last_moving[k]) for k, oid in enumerate(self.ids)}
        return speeds, settle


def _cm(m: float) -> str:
    return f"{m * 100:.2f} cm"


def _mm(m: float) -> str:
    return f"{m * 1000:.1f} mm"


def judge_object(oid: str, label: str, start: BodyState, rest: BodyState, speed: tuple[float, float],
                 settle_time: float | None, floor: Floor, config: ValidationConfig, offset: float = 0.0) -> ObjectResult:
    origin = np.add(start.position, (0.0, 0.0, offset))
    drift = float(np.linalg.norm(np.subtract(rest.position, origin)))
    rotation = rotation_angle_deg(start.orientation, rest.orientation)
    height_change = float(rest.position[2] - origin[2])
    lin, ang = speed
    issues: list[Issue] = []

    if drift >= config.max_drift_m:
        issues.append(Issue(DRIFT, f"moved {_cm(drift)} from its exported pose (limit {_cm(config.max_drift_m)})"))
    if rotation >= config.max_rotation_deg:
        issues.append(Issue(ROTATION, f"turned {rotation:.1f} deg from its exported pose (limit {config.max_rotation_deg:g} deg)"))
    if lin > config.rest_linear_speed or ang > config.rest_angular_speed:
        issues.append(Issue(MOVING, f"still moving at the end: {lin:.3f} m/s, {ang:.3f} rad/s"))
    fell = rest.top_z < floor.z - config.max_penetration_m
    if fell:
        issues.append(Issue(FELL_THROUGH_FLOOR, f"ended below the floor (top at z={rest.top_z:.3f} m, floor at {floor.z:.3f} m)"))
    dropped = -height_change > config.max_drift_m
    left = bool(start.support) and (not set(start.support) & set(rest.support) or dropped)
    if left:
        where = ", ".join(rest.support) if rest.support else "nothing"
        why = f"dropped {_cm(-height_change)}" if dropped else "lost contact"
        issues.append(Issue(LEFT_SUPPORT, f"left its support {', '.join(start.support)} ({why}); at rest on {where}"))
    if start.penetration_m > config.max_penetration_m:
        issues.append(Issue(PENETRATION, f"overlaps another body by {_mm(start.penetration_m)} at t=0 "
                                         f"(limit {_mm(config.max_penetration_m)})"))
    below = start.bottom_z < floor.z - config.max_penetration_m
    if below:
        issues.append(Issue(BELOW_FLOOR, f"starts {_mm(floor.z - start.bottom_z)} below the floor (z={floor.z:.3f} m)"))
    floating = not start.support and not below
    if floating:
        gap = "nothing below it" if start.gap_below_m is None else f"{_mm(start.gap_below_m)} above what is below it"
        issues.append(Issue(FLOATING, f"touches nothing below at t=0: {gap} (tolerance {_mm(config.contact_tolerance_m)})"))

    return ObjectResult(
        id=oid, label=label,
        start_position=start.position, start_orientation=start.orientation,
        rest_position=rest.position, rest_orientation=rest.orientation, contact_offset_m=offset,
        drift_m=drift, rotation_deg=rotation, height_change_m=height_change,
        penetration_start_m=start.penetration_m, penetration_rest_m=rest.penetration_m,
        gap_below_start_m=start.gap_below_m,
        linear_speed=lin, angular_speed=ang, settle_time_s=settle_time,
        support_start=list(start.support), support_rest=list(rest.support),
        floating=floating, below_floor=below, fell_through_floor=fell, left_support=left,
        stable=not any(i.code in UNSTABLE_CODES for i in issues), issues=issues,
    )


def judge(manifest: ExportManifest, obs: Observation, floor: Floor, config: ValidationConfig) -> SimulatorResult:
    objects = [
        judge_object(o.id, o.label, obs.start[o.id], obs.rest[o.id], obs.speeds[o.id], obs.settle_times[o.id], floor,
                     config, obs.contact_offsets.get(o.id, 0.0))
        for o in manifest.foreground
    ]
    deep_start = sorted((p for p in obs.pairs_start if p.depth_m > config.max_penetration_m), key=lambda p: -p.depth_m)
    deep_rest = sorted((p for p in obs.pairs_rest if p.depth_m > config.max_penetration_m), key=lambda p: -p.depth_m)
    n = len(objects)
    stable = [o for o in objects if o.stable]
    share = len(stable) / n if n else 1.0
    times = [o.settle_time_s for o in objects]
    settle = None if any(t is None for t in times) else max(times, default=0.0)

    failures: list[str] = []
    if share < config.min_stable_share:
        bad = [o for o in objects if not o.stable]
        failures.append(f"{len(bad)} of {n} objects unstable: " + "; ".join(
            f"{o.id} ({', '.join(i.code for i in o.issues if i.code in UNSTABLE_CODES)})" for o in bad))
    if deep_start:
        failures.append(f"{len(deep_start)} pair(s) interpenetrate at t=0: " + ", ".join(
            f"{p.a}/{p.b} {_mm(p.depth_m)}" for p in deep_start))
    below = [o.id for o in objects if o.below_floor]
    if below:
        failures.append(f"below the floor at t=0: {', '.join(below)}")
    floating = [o.id for o in objects if o.floating]
    if floating:
        failures.append(f"floating at t=0 (no support within {_mm(config.contact_tolerance_m)}): {', '.join(floating)}")
    if obs.diverged:
        failures.append(f"the simulation diverged: {obs.diverged}")

    simulated = obs.steps * obs.timestep_s
    return SimulatorResult(
        simulator=obs.simulator, timestep_s=obs.timestep_s, seconds=simulated, steps=obs.steps,
        wall_seconds=obs.wall_seconds, realtime_factor=simulated / obs.wall_seconds if obs.wall_seconds > 0 else float("inf"),
        floor_z=floor.z, floor_source=floor.source,
        objects=objects, penetrating_pairs_start=deep_start, penetrating_pairs_rest=deep_rest,
        n_objects=n, n_stable=len(stable), stable_share=share, settle_time_s=settle,
        passed=not failures, failures=failures,
    )
