"""One validation of an export dir: PyBullet drop test, MuJoCo cross-check, agreement, the
joints of articulated objects (``physics.joints``: hold under gravity and driven through their
range in both simulators, the USD's articulation read back by usd-core), verdict.

Both simulators get the same static bodies: the background objects and the ground plane the
export recorded (``physics.manifest``; ``config.ground = False`` leaves it out).
"""

from __future__ import annotations

import time
from pathlib import Path

from physics.config import ValidationConfig
from physics.joints import check_joints
from physics.manifest import ExportManifest, Floor, find_floor, read_manifest
from physics.mujoco_check import compare, observe_mujoco
from physics.pybullet_check import observe_pybullet
from physics.results import ValidationReport
from physics.verdict import judge

REPORT_FORMAT = "hiscene-validation"
REPORT_VERSION = 1


def validate_export(export_dir: str | Path, config: ValidationConfig | None = None) -> ValidationReport:
    """Drop-test the export in PyBullet (and MuJoCo unless ``config.mujoco`` is off)."""
    config = config or ValidationConfig()
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir, ground=config.ground)
    floor = find_floor(manifest)
    seconds: dict[str, float] = {}
    notes: list[str] = ground_notes(manifest, floor)

    t0 = time.perf_counter()
    pybullet = judge(manifest, observe_pybullet(manifest, config), floor, config)
    seconds["pybullet"] = time.perf_counter() - t0

    mujoco = agreement = None
    if config.mujoco:
        mjcf = manifest.path("mjcf")
        if mjcf is not None and mjcf.is_file():
            t0 = time.perf_counter()
            mujoco = judge(manifest, observe_mujoco(manifest, config), floor, config)
            agreement = compare(pybullet, mujoco, config)
            seconds["mujoco"] = time.perf_counter() - t0
        else:
            notes.append("MuJoCo cross-check skipped: the export has no MJCF (scene.xml)")
    else:
        notes.append("MuJoCo cross-check skipped (--no-mujoco)")

    failures = [f"PyBullet: {f}" for f in pybullet.failures]
    if mujoco is not None:
        failures += [f"MuJoCo: {f}" for f in mujoco.failures]
    if config.require_agreement and agreement is not None and not agreement.agree:
        disagree = [r.id for r in agreement.objects if not r.agree]
        failures.append(f"PyBullet and MuJoCo disagree on {', '.join(disagree) or 'the verdict'}")
    t0 = time.perf_counter()
    joints = check_joints(manifest, config)
    if joints is not None:
        seconds["joints"] = time.perf_counter() - t0
        failures += joints.failures
        notes.append(
            "Joints: each articulated object alone with its root fixed; hold = gravity for "
            f"{config.joint_hold_seconds:g} s from zero with the exported friction / damping (free: no friction, moved, "
            f"not a failure); drive = to the lower then the upper limit, reached within {config.joint_reach_deg:g} deg / "
            f"{config.joint_reach_m * 1000:g} mm, links under {config.joint_max_link_speed:g} m/s (physics/joints.py)"
        )
    notes.append(
        "PyBullet pads every hull by its collision margin "
        f"({config.pybullet_hull_margin * 1000:g} mm): resting bodies float "
        f"{2 * config.pybullet_hull_margin * 1000:g} mm per contact layer. Distances and penetrations here are "
        "geometric (padding removed), and PyBullet's drift is measured from the start raised by that float "
        "(the contact offset column)"
    )
    return ValidationReport(
        format=REPORT_FORMAT, version=REPORT_VERSION, scene=manifest.scene, export_dir=str(export_dir.resolve()),
        config=config, pybullet=pybullet, mujoco=mujoco, agreement=agreement, settle=None,
        passed=not failures, failures=failures, notes=notes, seconds={k: round(v, 4) for k, v in seconds.items()},
        ground=manifest.ground, joints=joints,
    )


def ground_notes(manifest: ExportManifest, floor: Floor) -> list[str]:
    """What the report says about the ground plane."""
    g, record = manifest.ground, manifest.ground_record
    if g is not None:
        who = "recorded by the export" if g.origin == "export" else "added by validation (the export predates ground planes)"
        return [f"Ground plane `{g.id}` at z={g.z:.4f} m in both simulators, {who}: {g.reason}"]
    if record is not None and record.added:
        return [f"The export's ground plane `{record.id}` (z={record.z:.4f} m) is left out of both simulators (--no-ground)"]
    if not floor.solid:
        why = record.reason if record is not None else "ground planes off (--no-ground)"
        return [f"No floor object and no ground plane ({why}): nothing stops a fall; the floor height for the "
                f"checks is the {floor.source} (z={floor.z:.4f} m)"]
    return []
