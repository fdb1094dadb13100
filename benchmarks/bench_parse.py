"""Scene parsing on the fused test set, and the time to parse a ~200k-face scene.

    python benchmarks/bench_parse.py                 # the 10 test scenes (seed 0) + the 200k-face timing
    python benchmarks/bench_parse.py --scenes 3      # fewer scenes
    python benchmarks/bench_parse.py --no-large      # skip the 200k-face timing

For each fused scene (pybullet_data objects welded into one marching-cubes surface,
hiscene_sim.testing.fused_scenes.test_set): mean matched IoU over foreground objects (area-weighted over
the fused surface, Hungarian matching), predicted vs true object count, parse seconds by
stage and the lifting step's time per iteration. The baseline for the large scene is the
time limit the issue sets (3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hiscene_sim.parse import ParseConfig, parse_mesh
from hiscene_sim.testing.fused_scenes import build_fused_scene, test_specs
from hiscene_sim.testing.parse_metrics import score_face_labels

LIMIT_S = 180.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=ParseConfig().resolution)
    ap.add_argument("--no-large", action="store_true")
    args = ap.parse_args()
    config = ParseConfig(resolution=args.resolution)

    rows = []
    print(f"{'scene':22s} {'faces':>7s} {'IoU':>6s} {'pred/true':>9s}  {'parse s':>7s}  {'ms/it':>6s}  per object")
    for spec in test_specs(args.scenes, args.seed):
        fused = build_fused_scene(spec)
        t0 = time.perf_counter()
        parsed = parse_mesh(fused.mesh, config)
        seconds = time.perf_counter() - t0
        score = score_face_labels(fused, parsed.labels, parsed.background)
        rows.append((score.mean_iou, score.count_exact, seconds))
        per = ", ".join(f"{r.gt_name} {r.iou:.2f}" for r in score.rows)
        print(f"{spec.name:22s} {len(fused.mesh.faces):7d} {score.mean_iou:6.3f} {score.n_pred:4d}/{score.n_gt:<4d}  "
              f"{seconds:7.1f}  {parsed.lift_seconds_per_iteration * 1000:6.1f}  {per}", flush=True)
    ious = np.array([r[0] for r in rows])
    print(f"mean matched IoU {ious.mean():.3f} (target >= 0.8); object count exact in {sum(r[1] for r in rows)}/{len(rows)} "
          f"(target >= 8/10); mean parse time {np.mean([r[2] for r in rows]):.1f} s")

    if not args.no_large:
        spec = test_specs(args.scenes, args.seed)[0]
        fused = build_fused_scene(spec, simplify_tolerance=0.002)  # keep more of the marching-cubes surface
        t0 = time.perf_counter()
        parsed = parse_mesh(fused.mesh, config)
        seconds = time.perf_counter() - t0
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in parsed.seconds.items())
        print(f"large scene: {len(fused.mesh.faces)} faces parsed in {seconds:.1f} s ({stages}); "
              f"lifting {parsed.lift_seconds_per_iteration * 1000:.1f} ms/iteration; "
              f"{seconds / LIMIT_S:.2f} of the {LIMIT_S:.0f} s limit")


if __name__ == "__main__":
    main()
