"""Benchmark of ``hiscene batch``: scenes per minute through Ray with 2 workers against a plain
serial loop, measured in the same run on the same scenes.

The scenes: 10 small fused scenes (one welded surface each, as an image-to-3D model returns
a scene) of pybullet_data objects on a 0.8 m floor, 5 mm voxels, 1-2 objects each. Each
goes through every stage the batch runs for a fused file: parse -> export -> validate --settle
(renders included).

- serial: ``for job in jobs: run_scene(job, ...)`` in this process (the same stage code and
  settings the Ray tasks run; NumPy / torch keep their default thread counts);
- Ray: ``run_batch`` on a local Ray started here with ``--workers`` CPUs (one scene per CPU;
  Ray start-up and shut-down are included in its time).

Each mode starts with its own empty CoACD cache, so neither profits from the other's work.

    python benchmarks/bench_batch.py                  # 10 scenes, Ray with 2 workers
    python benchmarks/bench_batch.py --scenes 4 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from hiscene_sim.testing.fused_scenes import Placed, build_fused_scene, save_fused

VOXEL, FLOOR = 0.005, 0.8  # the fused test set's voxel size (hiscene_sim.testing.fused_scenes.DEFAULT_VOXEL); a small floor
LAYOUTS = [  # 1-2 objects each, footprints apart
    [Placed("jenga", 0.0, 0.0, 0.4)],
    [Placed("teddy", 0.0, 0.0, 0.4)],
    [Placed("mug", 0.0, 0.0, 1.4)],
    [Placed("duck", 0.05, 0.0, 0.4)],
    [Placed("jenga", 0.1, -0.1, 2.2)],
    [Placed("jenga", -0.15, 0.1, 0.5), Placed("duck", 0.15, -0.1, 2.0)],
    [Placed("cube", -0.15, 0.0, 0.3), Placed("jenga", 0.15, 0.1, 1.0)],
    [Placed("duck", -0.15, 0.0, 0.3), Placed("lego", 0.15, 0.1, 1.0)],
    [Placed("bunny", 0.0, 0.0, 0.4)],
    [Placed("teddy", -0.15, 0.0, 0.4), Placed("mug", 0.15, 0.05, 2.0)],
]


def build_inputs(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        layout = LAYOUTS[i % len(LAYOUTS)]
        name = f"fused_{i:02d}"
        paths.append(save_fused(build_fused_scene(layout, voxel_size=VOXEL, seed=i, name=name, floor_size=FLOOR), root / f"{name}.glb"))
    return paths


def run_serial(jobs, out: Path, config) -> tuple[float, list[dict]]:
    from hiscene_sim.batch.stages import run_scene

    t0 = time.perf_counter()
    records = [run_scene(job, out, config) for job in jobs]
    return time.perf_counter() - t0, records


def run_ray(jobs, out: Path, config, workers: int) -> tuple[float, list[dict], dict]:
    from hiscene_sim.batch.runner import run_batch

    t0 = time.perf_counter()
    result = run_batch(jobs, out, config, num_cpus=workers, contact_sheet=False)  # starts and stops its own Ray
    return time.perf_counter() - t0, result.records, result.seconds


def cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (default 2)")
    ap.add_argument("--order", choices=("serial-first", "ray-first"), default="serial-first")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    from hiscene_sim.batch.jobs import BatchConfig, discover_jobs

    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    t0 = time.perf_counter()
    inputs = build_inputs(root / "inputs", args.scenes)
    print(f"built {len(inputs)} fused scenes in {time.perf_counter() - t0:.0f} s ({root / 'inputs'})")
    config = BatchConfig()
    jobs = discover_jobs(inputs, config)
    load_before = os.getloadavg()
    results: dict[str, tuple] = {}
    modes = ["serial", "ray"] if args.order == "serial-first" else ["ray", "serial"]
    ray_parts: dict = {}
    for mode in modes:
        os.environ["HISCENE_CACHE_DIR"] = str(root / f"cache-{mode}")  # an empty CoACD cache per mode
        if mode == "serial":
            cpu0 = cpu_seconds()
            results[mode] = run_serial(jobs, root / "out-serial", config)
            serial_cores = (cpu_seconds() - cpu0) / results[mode][0]
        else:
            seconds, records, ray_parts = run_ray(jobs, root / "out-ray", config, args.workers)
            results[mode] = (seconds, records)
        seconds, records = results[mode]
        statuses = {s: sum(r.get("status") == s for r in records) for s in ("ok", "unstable", "failed")}
        work = sum((r.get("seconds") or {}).get("total", 0.0) for r in records)
        print(f"{mode:6s}: {seconds:7.1f} s for {len(records)} scenes = {len(records) / seconds * 60:6.2f} scenes/min  "
              f"{statuses}; sum of per-scene times {work:.1f} s")
    load_after = os.getloadavg()
    serial_s, ray_s = results["serial"][0], results["ray"][0]
    ratio = serial_s / ray_s
    print(f"Ray ({args.workers} workers) vs serial loop: {ratio:.2f}x scenes per minute (target >= 1.7x on 2 cores)")
    if ray_parts:
        print(f"  Ray time = start {ray_parts.get('start', 0):.1f} s + scenes {ray_parts.get('scenes', 0):.1f} s + "
              f"finish {ray_parts.get('finish', 0):.1f} s; without the start and finish: {serial_s / ray_parts['scenes']:.2f}x")
    print(f"  the serial loop used {serial_cores:.2f} CPU cores on average (so the ideal ratio on {args.workers} cores is "
          f"about {args.workers / max(serial_cores, 1e-9):.2f}x)")
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f} (other jobs on the machine lower both numbers and the ratio)")
    same = [a.get("status") for a in results["serial"][1]] == [b.get("status") for b in results["ray"][1]]
    print(f"same verdicts serial vs Ray: {'yes' if same else 'no'}")
    if args.json:
        args.json.write_text(json.dumps({
            "scenes": len(jobs), "workers": args.workers, "serial_s": serial_s, "ray_s": ray_s,
            "serial_scenes_per_min": len(jobs) / serial_s * 60, "ray_scenes_per_min": len(jobs) / ray_s * 60, "ratio": ratio,
            "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(), "ray_parts": ray_parts,
            "serial_cores": serial_cores,
        }, indent=2))


if __name__ == "__main__":
    main()
