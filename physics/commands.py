"""``hiscene validate``: the CLI face of the physics checks.

Wiring (in ``hiscene_sim.cli.build_parser``)::

    from physics.commands import add_validate_parser
    add_validate_parser(sub)          # sets func=cmd_validate on the subparser

``cmd_validate`` returns 0 when the scene passes and 1 when it fails validation, so a data
generation job can gate on the exit status; errors (no export, unreadable files) raise
SceneError / ValueError, which ``main`` turns into exit status 2. ``demo_validation``
settles + validates an export in place and prints one verdict line (the demo itself now
validates through the orchestrator's settle and validate stages).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from physics.config import ValidationConfig

VALIDATE_BACKENDS = (
    "backends (CPU): drop test in PyBullet from the exported URDFs, cross-check in MuJoCo from the exported MJCF; "
    "renders with PyBullet's software renderer, charts with matplotlib"
)


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
            if not value > 0:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        return value

    return parse


def add_validate_parser(subparsers) -> Callable[[argparse.Namespace], int]:
    """Define the ``validate`` subcommand on ``subparsers``; returns its handler."""
    d = ValidationConfig()
    p = subparsers.add_parser(
        "validate", help="drop-test an export in PyBullet and MuJoCo; --settle repairs the placement",
        description="Load the exported URDFs into PyBullet (gravity on, fixed step, background static) and measure per "
        "object the drift from its exported pose to rest, penetrations at t=0 and at rest, final speed, falling "
        "through the floor and leaving its support; cross-check in MuJoCo from the MJCF. Writes validation.json, "
        "validation.md and pictures. Exit status 0 = pass, 1 = the scene fails. " + VALIDATE_BACKENDS,
    )
    p.add_argument("export_dir", type=Path, help="a `hiscene export` output dir")
    p.add_argument("--seconds", type=_positive(float), default=d.seconds, help=f"simulated seconds (default {d.seconds:g})")
    p.add_argument("--hz", type=_positive(float), default=d.hz, help=f"PyBullet steps per second (default {d.hz:g})")
    p.add_argument("--json", action="store_true", help="print validation.json to stdout instead of the summary")
    p.add_argument("--settle", action="store_true",
                   help="repair the placement: separate overlaps, drop floating objects, simulate to rest, write the "
                   "poses into the scene dir, re-export, repeat until stable")
    p.add_argument("--scene-dir", type=Path, default=None, help="scene dir to repair (default: the export's source)")
    p.add_argument("--iterations", type=int, default=d.settle_iterations, help=f"--settle rounds at most (default {d.settle_iterations})")
    p.add_argument("--max-drift-cm", type=_positive(float), default=d.max_drift_m * 100,
                   help=f"stable: moves less than this (default {d.max_drift_m * 100:g})")
    p.add_argument("--max-rot-deg", type=_positive(float), default=d.max_rotation_deg,
                   help=f"stable: turns less than this (default {d.max_rotation_deg:g})")
    p.add_argument("--max-penetration-mm", type=_positive(float), default=d.max_penetration_m * 1000,
                   help=f"deeper overlaps at t=0 fail the scene (default {d.max_penetration_m * 1000:g})")
    p.add_argument("--no-mujoco", action="store_true", help="skip the MuJoCo cross-check")
    p.add_argument("--no-ground", action="store_true",
                   help="validate without a ground plane, even where the export added one under a scene without a floor")
    p.add_argument("--require-agreement", action="store_true", help="also fail when PyBullet and MuJoCo disagree")
    p.add_argument("--no-render", action="store_true", help="skip the isometric renders (the drift chart is kept)")
    p.add_argument("--report-dir", type=Path, default=None, help="where the report goes (default: the export dir)")
    p.set_defaults(func=cmd_validate)
    return cmd_validate


def config_from_args(args: argparse.Namespace) -> ValidationConfig:
    if args.iterations < 0:
        raise ValueError(f"--iterations must be >= 0, got {args.iterations}")
    return replace(
        ValidationConfig(),
        seconds=args.seconds, hz=args.hz, max_drift_m=args.max_drift_cm / 100.0, max_rotation_deg=args.max_rot_deg,
        max_penetration_m=args.max_penetration_mm / 1000.0, mujoco=not args.no_mujoco, ground=not args.no_ground,
        require_agreement=args.require_agreement, render=not args.no_render, settle_iterations=args.iterations,
    )


def print_summary(report, paths, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, soft_wrap=True)  # soft wrap: paths stay on one line
    sims = [s for s in (report.pybullet, report.mujoco) if s is not None]
    table = Table(title=f"validate: {report.export_dir}")
    for col in ("id", *(f"{s.simulator} cm/deg" for s in sims), "pen t=0 mm", "issues"):
        table.add_column(col)
    for o in report.pybullet.objects:
        cells = [o.id]
        codes: list[str] = []
        for s in sims:
            r = s.get(o.id)
            mark = "" if r.stable else " !"
            cells.append(f"{r.drift_m * 100:.2f} / {r.rotation_deg:.1f}{mark}")
            codes += [c for c in r.codes if c not in codes]
        cells += [f"{o.penetration_start_m * 1000:.1f}", ", ".join(codes) or "-"]
        table.add_row(*cells)
    console.print(table)
    for s in sims:
        settle = "never" if s.settle_time_s is None else f"{s.settle_time_s:.2f} s"
        console.print(f"  {s.simulator:8s} stable {s.n_stable}/{s.n_objects} ({s.stable_share:.0%}), "
                      f"collision pairs at t=0: {len(s.penetrating_pairs_start)}, settled after {settle}, "
                      f"{s.realtime_factor:.1f} simulated s per wall s")
    if report.agreement is not None:
        a = report.agreement
        console.print(f"  agreement: {a.share_agreeing:.0%} of objects, largest difference "
                      f"{a.max_position_difference_m * 100:.2f} cm / {a.max_rotation_difference_deg:.1f} deg")
    if report.ground is not None:
        console.print(f"  ground plane {report.ground.id} at z={report.ground.z:.4f} m ({report.ground.origin})")
    if report.joints is not None:
        for sim in (report.joints.pybullet, report.joints.mujoco):
            if sim is not None:
                held = sum(j.hold == "holds" for j in sim.joints)
                console.print(f"  joints in {sim.simulator}: {sum(j.passed for j in sim.joints)}/{len(sim.joints)} pass "
                              f"(hold: {held} hold, {sum(j.hold == 'free' for j in sim.joints)} free; driven lower -> upper)")
        if report.joints.usd is not None:
            console.print(f"  USD articulations: {len(report.joints.usd.articulations)}, joints read back: "
                          f"{sum(r.passed for r in report.joints.usd.joints)}/{len(report.joints.usd.joints)}")
    if report.settle is not None:
        st = report.settle
        moved = sorted({m.id for it in st.iterations for m in it.moves})
        stages = ", ".join(f"{it.index}: {'+'.join(it.simulators)}" for it in st.iterations)
        console.print(f"  settle: {len(st.iterations)} round(s) ({stages or '-'}), moved {', '.join(moved) or 'nothing'}")
        for u in st.unresolved:
            console.print(f"  [red]could not make {u.id} stable[/red]: " + "; ".join(u.reasons), markup=True)
    for f in report.failures:
        console.print(f"  [red]{f}[/red]")
    color = "green" if report.passed else "red"
    console.print(f"[bold {color}]{report.verdict}[/bold {color}]  report: {paths.markdown}")


def cmd_validate(args: argparse.Namespace) -> int:
    from physics.report import report_json, validate_and_report

    config = config_from_args(args)
    report, paths = validate_and_report(
        args.export_dir, config, settle=args.settle, scene_dir=args.scene_dir, report_dir=args.report_dir,
    )
    if args.json:
        print(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        print_summary(report, paths)
    return 0 if report.passed else 1


def demo_validation(export_dir: Path, scene_dir: Path, step: int = 4, echo: Callable[[str], None] = print):
    """The demo's last step: settle + validate the demo export and print the verdict and
    the report's path. Returns the ValidationReport."""
    from physics.report import validate_and_report

    report, paths = validate_and_report(export_dir, ValidationConfig(), settle=True, scene_dir=scene_dir)
    pb, mj = report.pybullet, report.mujoco
    sims = f"PyBullet {pb.n_stable}/{pb.n_objects} stable" + (f", MuJoCo {mj.n_stable}/{mj.n_objects} stable" if mj else "")
    moved = sorted({m.id for it in report.settle.iterations for m in it.moves}) if report.settle else []
    echo(f"{step}. validated (settled {len(moved)} object(s)): {report.verdict} ({sims})")
    for f in report.failures:
        echo(f"   {f}")
    echo(f"   report: {paths.markdown}")
    return report
