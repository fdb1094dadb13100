"""The validation report: ``validation.json`` (everything, machine-readable),
``validation.md`` (the same numbers for people) and pictures: isometric renders of the scene
before (as exported, before any repair) and after settling (the rest state of the final drop
test), and the per-object drift chart.

``validate_and_report`` is the one call for the CLI, the demo and pipelines.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hiscene_sim.atomic import atomic_write_text
from physics.config import ValidationConfig
from physics.manifest import read_manifest
from physics.render import drift_chart, isometric_camera, render, write_png
from physics.results import SimulatorResult, ValidationReport
from physics.validate import validate_export

JSON_FILE = "validation.json"
MARKDOWN_FILE = "validation.md"
BEFORE_PNG = "render_before.png"
AFTER_PNG = "render_after.png"
DRIFT_PNG = "drift.png"


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    markdown: Path
    images: dict[str, Path]  # "before" / "after" / "drift" -> file


def _clean(value):
    """JSON has no inf / nan: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def report_json(report: ValidationReport) -> dict:
    data = asdict(report)
    data["verdict"] = report.verdict
    return _clean(data)


# -- markdown -------------------------------------------------------------------------------

# Numbers in validation.md are validation.json's values in these units and formats.
MM = 1000.0


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value * scale:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _name(sim: SimulatorResult) -> str:
    return "PyBullet" if sim.simulator == "pybullet" else "MuJoCo"


SCENE_HEADER = ["simulator", "objects", "stable", "stable share", "collision pairs at t=0", "time to settle (s)",
                "timestep (s)", "simulated (s)", "wall (s)", "sim s / wall s", "verdict"]
OBJECT_HEADER = ["id", "label", "contact offset (mm)", "drift (mm)", "rotation (deg)", "penetration t=0 (mm)", "penetration rest (mm)",
                 "gap below t=0 (mm)", "speed (m/s)", "angular (rad/s)", "settle (s)", "support t=0", "support at rest",
                 "stable", "issues"]
AGREEMENT_HEADER = ["id", "PyBullet", "MuJoCo", "PyBullet drift (mm)", "MuJoCo drift (mm)", "PyBullet rotation (deg)",
                    "MuJoCo rotation (deg)", "motion difference (mm)", "rest distance (mm)", "rotation difference (deg)",
                    "drift difference (mm)", "same verdict", "agree"]


def _stable(value: bool) -> str:
    return "stable" if value else "unstable"


def _pass(value: bool | None) -> str:
    return "-" if value is None else "PASS" if value else "FAIL"


def _scene_row(sim: SimulatorResult) -> list[str]:
    return [
        _name(sim), str(sim.n_objects), str(sim.n_stable), _num(sim.stable_share, 1.0, 3),
        str(len(sim.penetrating_pairs_start)), _num(sim.settle_time_s, 1.0, 3), _num(sim.timestep_s, 1.0, 5),
        _num(sim.seconds, 1.0, 3), _num(sim.wall_seconds, 1.0, 3), _num(sim.realtime_factor, 1.0, 1),
        "PASS" if sim.passed else "FAIL",
    ]


def _object_rows(sim: SimulatorResult) -> list[list[str]]:
    return [[
        o.id, o.label, _num(o.contact_offset_m, MM), _num(o.drift_m, MM), _num(o.rotation_deg), _num(o.penetration_start_m, MM),
        _num(o.penetration_rest_m, MM), _num(o.gap_below_start_m, MM), _num(o.linear_speed, 1.0, 4),
        _num(o.angular_speed, 1.0, 4), _num(o.settle_time_s, 1.0, 3), ", ".join(o.support_start) or "-",
        ", ".join(o.support_rest) or "-", "yes" if o.stable else "no", ", ".join(o.codes) or "-",
    ] for o in sim.objects]


def _ground(report: ValidationReport) -> str:
    g = report.ground
    if g is None:
        return "none" + ("" if report.config.ground else " (--no-ground)")
    return f"`{g.id}` at z = {g.z:.4f} m ({'added by the export' if g.origin == 'export' else 'added by validation'})"


JOINT_HEADER = ["object", "joint", "type", "range", "damping / friction", "hold: moved (max)", "hold",
                "drive force", "error at lower", "error at upper", "max link speed (m/s, rad/s)", "verdict"]


def _joint_rows(sim) -> list[list[str]]:
    rows = []
    for j in sim.joints:
        digits = 2 if j.unit == "deg" else 4
        rng = "-" if j.lower is None else f"{_num(j.lower, 1.0, digits)} .. {_num(j.upper, 1.0, digits)} {j.unit}"
        rows.append([
            j.object_id, j.joint, j.type, rng, f"{j.damping:g} / {j.friction:g}",
            f"{_num(j.hold_moved, 1.0, digits)} ({_num(j.hold_max, 1.0, digits)}) {j.unit}", j.hold,
            "-" if j.drive_force is None else f"{j.drive_force:.3g}",
            f"{_num(j.lower_error, 1.0, digits)} {j.unit}", f"{_num(j.upper_error, 1.0, digits)} {j.unit}",
            f"{_num(j.max_link_speed)}, {_num(j.max_link_angular_speed)}", "PASS" if j.passed else "FAIL",
        ])
    return rows


def _joint_lines(report: ValidationReport) -> list[str]:
    joints = report.joints
    lines = ["## Joints of articulated objects", "",
             f"Each articulated object alone, its root fixed at its pose. Hold: gravity for "
             f"{report.config.joint_hold_seconds:g} s from zero with the exported damping and friction; it holds when it "
             f"moves less than {report.config.joint_hold_deg:g} deg / {report.config.joint_hold_m * MM:g} mm, is free "
             "when it moved and has no friction (not a failure), slips when its friction did not hold it. Drive: to the "
             "lower then the upper limit (PyBullet POSITION_CONTROL; MuJoCo PD + gravity compensation), the error is what "
             f"is left after {report.config.joint_drive_settle_seconds:g} s at the target (limit "
             f"{report.config.joint_reach_deg:g} deg / {report.config.joint_reach_m * MM:g} mm). "
             f"Verdict: **{'PASS' if joints.passed else 'FAIL'}**.", ""]
    for sim in (joints.pybullet, joints.mujoco):
        if sim is not None:
            lines += [f"### {'PyBullet' if sim.simulator == 'pybullet' else 'MuJoCo'} ({sim.simulated_seconds:g} s "
                      f"simulated in {sim.wall_seconds:g} s)", ""] + _table(JOINT_HEADER, _joint_rows(sim)) + [""]
    if joints.usd is not None:
        u = joints.usd
        lines += ["### USD (usd-core's UsdPhysics parser)", "",
                  f"Articulation roots: {', '.join(f'`{r}`' for r in u.articulations) or 'none'}.", ""]
        lines += _table(["object", "joint", "USD type", "frames apart at zero (mm, deg)", "limits", "verdict"], [[
            r.object_id, r.joint, r.usd_type, f"{_num(r.frame_error_m, MM, 4)}, {_num(r.frame_error_deg, 1.0, 4)}",
            "-" if r.lower is None else f"{r.lower:g} .. {r.upper:g}", "PASS" if r.passed else "FAIL"] for r in u.joints]) + [""]
    lines += [f"- {f}" for f in joints.failures] + ([""] if joints.failures else [])
    return lines


def render_markdown(report: ValidationReport) -> str:
    cfg = report.config
    sims = [s for s in (report.pybullet, report.mujoco) if s is not None]
    lines = [
        f"# Physical validation: {report.scene}",
        "",
        f"**Verdict: {report.verdict}**",
        "",
        f"- export: `{report.export_dir}`",
        f"- drop test: {cfg.seconds:g} s with gravity; PyBullet at {cfg.hz:g} Hz, MuJoCo at the MJCF's timestep",
        f"- stable: drift < {cfg.max_drift_m * 100:g} cm and rotation < {cfg.max_rotation_deg:g} deg from the "
        f"exported pose, at rest at the end (< {cfg.rest_linear_speed:g} m/s, < {cfg.rest_angular_speed:g} rad/s; mean velocity over the last {cfg.rest_window_s:g} s), "
        "on the floor, on its support",
        f"- collision pair: overlap > {cfg.max_penetration_m * MM:g} mm at t=0; floating: nothing within "
        f"{cfg.contact_tolerance_m * MM:g} mm below at t=0",
        f"- ground plane: {_ground(report)}",
        "",
    ]
    if report.failures:
        lines += ["## Why it fails", ""] + [f"- {f}" for f in report.failures] + [""]
    lines += ["## Scene", ""] + _table(SCENE_HEADER, [_scene_row(s) for s in sims]) + [""]
    for sim in sims:
        lines += [f"## {_name(sim)} objects", ""] + _table(OBJECT_HEADER, _object_rows(sim)) + [""]
        issues = [(o.id, i.message) for o in sim.objects for i in o.issues]
        if issues:
            lines += [f"{_name(sim)} issues:", ""] + [f"- `{oid}`: {msg}" for oid, msg in issues] + [""]
        if sim.penetrating_pairs_start:
            lines += [f"{_name(sim)} interpenetrating pairs at t=0: " + ", ".join(
                f"`{p.a}`/`{p.b}` {_num(p.depth_m, MM)} mm" for p in sim.penetrating_pairs_start), ""]
    if report.agreement is not None:
        ag = report.agreement
        lines += [
            "## PyBullet vs MuJoCo", "",
            "Per object: each simulator's verdict, drift and rotation from the exported pose, and how far apart they are. "
            f"The two simulators move the objects alike (displacement to rest within {cfg.agreement_m * 100:g} cm, "
            f"rest orientation within {cfg.agreement_deg:g} deg, same verdict) for "
            f"{_num(ag.share_agreeing * 100, 1.0, 1)} % of the objects; largest difference "
            f"{_num(ag.max_position_difference_m, MM)} mm, {_num(ag.max_rotation_difference_deg)} deg; "
            f"same scene verdict: {'yes' if ag.same_scene_verdict else 'no'}. The rest distance includes "
            "PyBullet's contact offset.", "",
        ]
        lines += _table(AGREEMENT_HEADER, [[
            r.id, _stable(r.pybullet_stable), _stable(r.mujoco_stable), _num(r.pybullet_drift_m, MM), _num(r.mujoco_drift_m, MM),
            _num(r.pybullet_rotation_deg), _num(r.mujoco_rotation_deg),
            _num(r.position_difference_m, MM), _num(r.rest_distance_m, MM), _num(r.rotation_difference_deg),
            _num(r.drift_difference_m, MM),
            "yes" if r.same_verdict else "no", "yes" if r.agree else "no",
        ] for r in ag.objects]) + [""]
    if report.joints is not None:
        lines += _joint_lines(report)
    if report.settle is not None:
        st = report.settle
        lines += ["## Placement repair (--settle)", "",
                  f"Scene dir `{st.scene_dir}`; {len(st.iterations)} round(s); "
                  f"before: {'PASS' if st.initially_passed else 'FAIL'}, after: {'PASS' if st.passed else 'FAIL'}.", ""]
        for it in st.iterations:
            after = f"PyBullet {_pass(it.pybullet_passed)}" + ("" if it.mujoco_passed is None else f", MuJoCo {_pass(it.mujoco_passed)}")
            stages = " then ".join("PyBullet" if s == "pybullet" else "MuJoCo" for s in it.simulators) or "-"
            lines += [f"Round {it.index} (flagged: {', '.join(it.failing_before) or '-'}; repaired in {stages}; re-export "
                      f"{it.export_seconds:.1f} s; then {'PASS' if it.passed_after else 'FAIL'}: {after}):", ""]
            lines += [f"- `{m.id}` moved {_num(m.translation_m, MM)} mm, turned {_num(m.rotation_deg)} deg: "
                      + "; ".join(m.actions) for m in it.moves] + [""]
        if st.unresolved:
            lines += ["Could not be made stable:", ""]
            lines += [f"- `{u.id}` ({u.label}): " + "; ".join(u.reasons) for u in st.unresolved] + [""]
        lines += [f"- warning: {w}" for w in st.warnings]
    if report.images:
        lines += ["## Pictures", ""]
        captions = {"before": "before settling (as exported)", "after": "after settling (rest state)",
                    "drift": "per-object drift"}
        lines += [f"![{captions.get(k, k)}]({v})" for k, v in report.images.items()] + [""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


# -- writing --------------------------------------------------------------------------------


def write_report(report: ValidationReport, report_dir: Path) -> ReportPaths:
    """validation.json and validation.md into ``report_dir`` (images are written before)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report_dir / JSON_FILE, report_dir / MARKDOWN_FILE
    atomic_write_text(json_path, json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return ReportPaths(json_path, md_path, {k: report_dir / v for k, v in report.images.items()})


def validate_and_report(
    export_dir: str | Path,
    config: ValidationConfig | None = None,
    *,
    settle: bool = False,
    scene_dir: str | Path | None = None,
    report_dir: str | Path | None = None,
    export_config=None,
) -> tuple[ValidationReport, ReportPaths]:
    """``hiscene validate [--settle]``: with ``settle``, the settle stage first, in place as the
    command always did (``physics.settle.settle_scene``: the scene dir's poses and the export
    are repaired), then the report. Without it, only reads the export and reports."""
    from physics.settle import settle_scene

    config = config or ValidationConfig()
    t_start = time.perf_counter()
    initial = final = None
    if settle:
        initial, final = settle_scene(export_dir, scene_dir, config, export_config)
    return report_validation(export_dir, config, initial=initial, final=final, report_dir=report_dir, t_start=t_start)


def report_validation(
    export_dir: str | Path,
    config: ValidationConfig | None = None,
    *,
    initial: ValidationReport | None = None,
    final: ValidationReport | None = None,
    report_dir: str | Path | None = None,
    t_start: float | None = None,
) -> tuple[ValidationReport, ReportPaths]:
    """The validate stage: read ``export_dir``, validate it (unless a settle stage that just
    ran hands over its ``initial`` / ``final`` reports) and write the report into
    ``report_dir`` (default: beside the export). Changes nothing of the export's assets."""
    config = config or ValidationConfig()
    export_dir = Path(export_dir)
    t_start = time.perf_counter() if t_start is None else t_start
    initial = initial or validate_export(export_dir, config)
    report = final or initial
    before = {o.id: (o.start_position, o.start_orientation) for o in initial.pybullet.objects}
    report_dir = Path(report_dir) if report_dir is not None else export_dir
    report_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    images: dict[str, str] = {}
    if config.render:
        manifest = read_manifest(export_dir, ground=config.ground)
        after = {o.id: (o.rest_position, o.rest_orientation) for o in report.pybullet.objects}
        camera = isometric_camera(manifest, before)
        write_png(render(manifest, before, camera, config), report_dir / BEFORE_PNG)
        write_png(render(manifest, after, camera, config), report_dir / AFTER_PNG)
        images["before"], images["after"] = BEFORE_PNG, AFTER_PNG
    sims = [s for s in (report.pybullet, report.mujoco) if s is not None]
    drift_chart(sims, config, report_dir / DRIFT_PNG)
    images["drift"] = DRIFT_PNG
    report.images = images
    report.seconds["pictures"] = round(time.perf_counter() - t0, 4)
    report.seconds["total"] = round(time.perf_counter() - t_start, 4)
    return report, write_report(report, report_dir)
