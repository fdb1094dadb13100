"""Benchmark of ``hiscene validate``: scenes of 5, 20 and 50 objects (pybullet_data cube, duck,
mug and jenga meshes on a floor, some jenga blocks stacked on others), exported once, then
validated. Reports per scene: simulated seconds per wall second of the stepping in PyBullet
and MuJoCo, the time of each phase and the total validate time (drop test + cross-check),
and the time with the report (renders, chart, files).

    python benchmarks/bench_validate.py                 # sizes 5,20,50, 2 simulated seconds
    python benchmarks/bench_validate.py --sizes 5,20 --seconds 1 --json results.json

CoACD results are cached (``$HISCENE_CACHE_DIR`` or ~/.cache/hiscene-sim), so only the first
run pays for decomposing the four meshes; the export time is printed but not part of the
validate numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from exporters.config import ExportConfig
from exporters.export import export_scene
from hiscene_sim.testing.physics_scenes import build_scene, grid_placements
from physics.config import ValidationConfig
from physics.report import validate_and_report
from physics.validate import validate_export

ASSETS = ("cube", "duck", "mug", "jenga")
SPACING = 0.25


@dataclass
class Row:
    objects: int
    hulls: int
    export_s: float
    validate_s: float  # validate_export: PyBullet drop test + MuJoCo cross-check + verdict
    pybullet_s: float
    mujoco_s: float
    pybullet_sim_per_wall: float  # simulated s per wall s of stepping alone
    mujoco_sim_per_wall: float
    report_s: float  # validate_and_report: validation + renders + chart + json/md
    passed: bool
    stable_share: float


def run(n: int, root: Path, seconds: float) -> Row:
    scene_dir, export_dir = root / f"scene_{n}", root / f"export_{n}"
    placements = grid_placements(n, ASSETS, SPACING, stack_every=5)
    side = math.ceil(math.sqrt(n))
    build_scene(scene_dir, placements, floor_size=side * SPACING + 1.0, name=f"bench_{n}")
    t0 = time.perf_counter()
    exported = export_scene(scene_dir, export_dir, ExportConfig(formats=("urdf", "mjcf")))
    export_s = time.perf_counter() - t0

    config = ValidationConfig(seconds=seconds)
    t0 = time.perf_counter()
    report = validate_export(export_dir, config)
    validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    validate_and_report(export_dir, config, report_dir=root / f"report_{n}")
    report_s = time.perf_counter() - t0
    return Row(
        objects=n, hulls=sum(len(o.hulls) for o in exported.objects if not o.is_background),
        export_s=round(export_s, 2), validate_s=round(validate_s, 2),
        pybullet_s=round(report.seconds["pybullet"], 2), mujoco_s=round(report.seconds["mujoco"], 2),
        pybullet_sim_per_wall=round(report.pybullet.realtime_factor, 1),
        mujoco_sim_per_wall=round(report.mujoco.realtime_factor, 1),
        report_s=round(report_s, 2), passed=report.passed, stable_share=round(report.pybullet.stable_share, 3),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5,20,50", help="comma list of object counts (default 5,20,50)")
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per drop test (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        for n in sizes:
            rows.append(run(n, Path(tmp), args.seconds))
            r = rows[-1]
            print(f"{r.objects:3d} objects ({r.hulls} hulls): validate {r.validate_s:.2f} s "
                  f"[PyBullet {r.pybullet_s:.2f} s, {r.pybullet_sim_per_wall:.1f} sim s/wall s; "
                  f"MuJoCo {r.mujoco_s:.2f} s, {r.mujoco_sim_per_wall:.1f} sim s/wall s]; "
                  f"with report {r.report_s:.2f} s; export {r.export_s:.2f} s; "
                  f"{'PASS' if r.passed else 'FAIL'} ({r.stable_share:.0%} stable)", flush=True)

    header = ("objects", "hulls", "validate s", "PyBullet s", "PB sim s/wall s", "MuJoCo s", "MJ sim s/wall s", "with report s")
    print()
    print(f"{args.seconds:g} simulated s, PyBullet at 240 Hz, MuJoCo at the MJCF timestep; {platform.processor() or platform.machine()}")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in rows:
        print(f"| {r.objects} | {r.hulls} | {r.validate_s:.2f} | {r.pybullet_s:.2f} | {r.pybullet_sim_per_wall:.1f} | "
              f"{r.mujoco_s:.2f} | {r.mujoco_sim_per_wall:.1f} | {r.report_s:.2f} |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
