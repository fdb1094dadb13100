"""Occlusion analysis + amodal completion on parsed fused scenes.

    python benchmarks/bench_complete.py               # the 10 parse test scenes (seed 0)
    python benchmarks/bench_complete.py --scenes 3

Each fused test scene (hiscene_sim.testing.fused_scenes.test_set) is parsed into a scene dir (the CPU
default parse), then `hiscene complete` runs on it with the default backends (geometric judge,
geometric completion). Per scene: views that A.3 selected and completed, the occluder pixels
inside the completed objects' full masks before completion and how many are left after it
(an occluded pixel counts as left when the completion kept the occluded view's colour where
the object alone has another; counted over the object's front surface, where its own colour
is known, not over holes that parsing cut where it was welded to a neighbour), and the
seconds per object. The baseline is the uncompleted
view: every occluded pixel is an occluder pixel left.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hiscene_sim.complete.stage import CompleteConfig, complete_scene
from hiscene_sim.parse import ParseConfig, parse_mesh, parts_of_mesh, write_parsed_scene
from hiscene_sim.testing.fused_scenes import build_fused_scene, test_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"{'scene':22s} {'objects':>7s} {'selected':>8s} {'completed':>9s} {'occluded px':>11s} {'left px':>7s} {'s/object':>8s}")
    totals = [0, 0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in test_specs(args.scenes, args.seed):
            fused = build_fused_scene(spec)
            config = ParseConfig()
            parsed = parse_mesh(fused.mesh, config)
            scene_dir = Path(tmp) / spec.name
            write_parsed_scene(parts_of_mesh(fused.mesh, parsed.labels), parsed, scene_dir, Path(f"{spec.name}.glb"), config)
            t0 = time.perf_counter()
            results = complete_scene(scene_dir, CompleteConfig())
            seconds = (time.perf_counter() - t0) / max(len(results), 1)
            sel = sum(r.n_selected for r in results)
            done = sum(r.n_completed for r in results)
            occluded = sum(r.occluded_pixels for r in results)
            left = sum(r.occluder_pixels_left for r in results)
            for k, v in enumerate((sel, done, occluded, left)):
                totals[k] += v
            print(f"{spec.name:22s} {len(results):7d} {sel:8d} {done:9d} {occluded:11d} {left:7d} {seconds:8.2f}", flush=True)
    sel, done, occluded, left = totals
    print(f"total: {sel} views selected, {done} completed; occluder pixels inside the full masks: {occluded} before "
          f"completion (baseline), {left} left after ({left / max(occluded, 1):.2%})")


if __name__ == "__main__":
    main()
