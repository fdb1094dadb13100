"""Collision export benchmark over the pybullet_data objects: our tuned CoACD pipeline
against CoACD's own default parameters, measured side by side in the same run.

Run from the repository root::

    python benchmarks/bench_collision.py                      # all objects, full baseline
    python benchmarks/bench_collision.py --objects mug,duck   # a subset
    python benchmarks/bench_collision.py --quick              # skip the slow defaults run on lego (~90 s)
    python benchmarks/bench_collision.py --workers 4 --json results.json

(``python -m benchmarks.bench_collision`` works too.)

What it measures, per object (mesh from ``hiscene_sim.pybullet_assets``, scale baked in):

- ``faces``: faces of the watertight solid that collision is built from;
- ``watertight s``: ``make_watertight`` once (shared by both configurations, timed alone);
- (a) ``defaults``: ``decompose(solid, CollisionConfig.coacd_defaults(), cache_dir=None)``,
  CoACD's own defaults (no part splitting, no pre-simplification): seconds, hull count,
  volume IoU of the hull union against the watertight solid (``hull_union_iou``);
- (b) ``ours``: the same with ``CollisionConfig()`` (our tuned defaults);
- ``ratio``: defaults seconds / ours seconds.

(a) and (b) run serially in this process, one object after the other, so their timings
are comparable. Then, for our config only:

- (c) ``parallel``: every object decomposed in a ``ProcessPoolExecutor`` (spawn context, as
  ``exporters.prepare`` does) with ``--workers`` processes; wall time from creating the pool
  to the last result (pool start-up included), divided by the number of objects;
- (d) ``cached``: ``decompose`` with a temporary ``cache_dir``: one run fills the cache,
  the second (timed) run is the re-export, which reads hulls instead of decomposing.

The summary gives totals and per-object means, the geometric mean of the per-object ratios,
the overall ratio (sum defaults / sum ours), how many objects reach IoU >= 0.9 under each
configuration, and the parallel and cached per-object times with their ratio to the
defaults. The project's target: >= 5x less time per object than CoACD's defaults at a
hull-union volume IoU >= 0.9.

Deterministic: CoACD's seed comes from the config (``seed=0``) and ``hull_union_iou`` is
exact (manifold3d) or seeded; only the timings vary between runs and machines.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import trimesh

from exporters.collision import decompose, hull_union_iou
from exporters.config import CollisionConfig
from exporters.prepare import bake_scale
from exporters.watertight import make_watertight
from hiscene_sim import pybullet_assets

DEFAULT_OBJECTS = ("table", "mug", "duck", "teddy", "lego", "bunny", "jenga", "tray")
QUICK_SKIP_DEFAULTS = ("lego",)  # CoACD's defaults take ~90 s on lego
IOU_TARGET = 0.9
SPEED_TARGET = 5.0


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def _warm_up() -> None:
    """Import the lazily imported libraries now, so no object's timing pays for them."""
    import coacd  # noqa: F401
    import manifold3d  # noqa: F401

    try:
        import fast_simplification  # noqa: F401  (trimesh's quadric decimation backend)
    except ImportError:
        pass


def load_solid(name: str) -> tuple[trimesh.Trimesh, float, int]:
    """(watertight solid, seconds spent in make_watertight, faces of the scaled input mesh)."""
    mesh, scale = pybullet_assets.asset_mesh(name)
    mesh = bake_scale(mesh, scale)
    t0 = time.perf_counter()
    repaired = make_watertight(mesh, name)
    return repaired.solid, time.perf_counter() - t0, len(mesh.faces)


def measure(solid: trimesh.Trimesh, config: CollisionConfig) -> dict:
    t0 = time.perf_counter()
    hulls, from_cache = decompose(solid, config, cache_dir=None)
    seconds = time.perf_counter() - t0
    assert not from_cache
    return {"seconds": seconds, "hulls": len(hulls), "iou": hull_union_iou(solid, hulls)}


def _parallel_job(job: tuple[str, trimesh.Trimesh, CollisionConfig]) -> tuple[str, float, int]:
    """Worker: decompose one object (no cache); (name, seconds inside the worker, hull count)."""
    name, solid, config = job
    t0 = time.perf_counter()
    hulls, _ = decompose(solid, config, cache_dir=None)
    return name, time.perf_counter() - t0, len(hulls)


def measure_parallel(solids: dict[str, trimesh.Trimesh], config: CollisionConfig, workers: int) -> dict:
    jobs = [(name, solid, config) for name, solid in solids.items()]
    workers = max(1, min(workers, len(jobs)))
    context = multiprocessing.get_context("spawn")  # as exporters.prepare: spawn, not fork
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = list(pool.map(_parallel_job, jobs))
    wall = time.perf_counter() - t0
    return {
        "workers": workers,
        "wall_seconds": wall,
        "per_object_seconds": wall / len(jobs),
        "in_worker_seconds": {name: s for name, s, _ in results},
        "hulls": {name: n for name, _, n in results},
    }


def measure_cached(solids: dict[str, trimesh.Trimesh], config: CollisionConfig) -> dict:
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_collision_cache_") as tmp:
        for name, solid in solids.items():
            _, hit = decompose(solid, config, cache_dir=Path(tmp))  # fill
            assert not hit
            t0 = time.perf_counter()
            _, hit = decompose(solid, config, cache_dir=Path(tmp))  # re-export
            seconds[name] = time.perf_counter() - t0
            assert hit, f"{name}: second run missed the cache"
    return {"seconds": seconds, "total_seconds": sum(seconds.values()), "per_object_seconds": sum(seconds.values()) / len(seconds)}


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def render(rows: list[dict], parallel: dict, cached: dict, meta: dict) -> str:
    lines: list[str] = []
    lines.append(
        f"Collision benchmark: ours = CollisionConfig() vs CoACD defaults = CollisionConfig.coacd_defaults()  "
        f"(coacd {meta['coacd']}, python {meta['python']}, {meta['cpus']} CPUs)"
    )
    header = (
        f"{'object':<8} {'faces':>7} {'wt s':>6} | {'def s':>8} {'hulls':>5} {'IoU':>6} | "
        f"{'ours s':>7} {'hulls':>5} {'IoU':>6} | {'ratio':>7} | {'par s':>6} {'cache ms':>8}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for r in rows:
        d, o = r["defaults"], r["ours"]
        lines.append(
            f"{r['name']:<8} {r['faces']:>7d} {r['watertight_seconds']:>6.2f} | "
            f"{_fmt(d and d['seconds'], '8.2f', 'skipped'.rjust(8))} {_fmt(d and d['hulls'], '5d', '-'.rjust(5))} "
            f"{_fmt(d and d['iou'], '6.3f', '-'.rjust(6))} | "
            f"{o['seconds']:>7.2f} {o['hulls']:>5d} {o['iou']:>6.3f} | "
            f"{_fmt(r['ratio'], '6.1f', '-'.rjust(6))}x | "
            f"{parallel['in_worker_seconds'][r['name']]:>6.2f} {cached['seconds'][r['name']] * 1000:>8.1f}"
        )
    lines.append("-" * len(header))
    lines.append("wt s = make_watertight; par s = ours inside a pool worker; cache ms = cached re-export")

    n = len(rows)
    both = [r for r in rows if r["defaults"] is not None]
    nb = len(both)
    ours_total = sum(r["ours"]["seconds"] for r in rows)
    wt_total = sum(r["watertight_seconds"] for r in rows)
    def_total_b = sum(r["defaults"]["seconds"] for r in both)
    ours_total_b = sum(r["ours"]["seconds"] for r in both)
    ratios = [r["ratio"] for r in both]
    def_mean = def_total_b / nb if nb else float("nan")
    skipped = [r["name"] for r in rows if r["defaults"] is None]
    scope = f" (over the {nb} objects with a defaults run; skipped: {', '.join(skipped)})" if skipped else ""

    lines.append("")
    lines.append(f"objects: {n}")
    lines.append(f"watertight:           total {wt_total:8.2f} s   mean {wt_total / n:7.2f} s/object")
    if nb:
        lines.append(f"CoACD defaults:       total {def_total_b:8.2f} s   mean {def_mean:7.2f} s/object{scope}")
    lines.append(f"ours (serial):        total {ours_total:8.2f} s   mean {ours_total / n:7.2f} s/object")
    if skipped and nb:
        lines.append(f"ours (serial){'':8} total {ours_total_b:8.2f} s   mean {ours_total_b / nb:7.2f} s/object (same {nb} objects)")
    if nb:
        lines.append(f"speed-up, geometric mean of per-object ratios: {geomean(ratios):6.1f}x  (min {min(ratios):.1f}x, max {max(ratios):.1f}x)")
        lines.append(f"speed-up, overall (sum defaults / sum ours):   {def_total_b / ours_total_b:6.1f}x")
    ours_ok = sum(r["ours"]["iou"] >= IOU_TARGET for r in rows)
    def_ok = sum(r["defaults"]["iou"] >= IOU_TARGET for r in both)
    lines.append(f"IoU >= {IOU_TARGET}: ours {ours_ok}/{n}, defaults {def_ok}/{nb}")
    lines.append(
        f"IoU mean / min: ours {sum(r['ours']['iou'] for r in rows) / n:.3f} / {min(r['ours']['iou'] for r in rows):.3f}"
        + (
            f", defaults {sum(r['defaults']['iou'] for r in both) / nb:.3f} / {min(r['defaults']['iou'] for r in both):.3f}"
            if nb
            else ""
        )
    )
    par = parallel["per_object_seconds"]
    lines.append(
        f"ours parallel ({parallel['workers']} workers, spawn pool, start-up included): wall {parallel['wall_seconds']:.2f} s, "
        f"{par:.2f} s/object" + (f" -> {def_mean / par:.1f}x less than defaults' mean" if nb else "")
    )
    cpo = cached["per_object_seconds"]
    lines.append(
        f"ours cached re-export: total {cached['total_seconds'] * 1000:.1f} ms, {cpo * 1000:.1f} ms/object"
        + (f" -> {def_mean / cpo:.0f}x less than defaults' mean" if nb else "")
    )
    if nb:
        per_obj_ok = all(r["ratio"] >= SPEED_TARGET for r in both) and ours_ok == n
        lines.append(
            f"target ({SPEED_TARGET:.0f}x less time per object at IoU >= {IOU_TARGET}): "
            f"overall {'met' if def_total_b / ours_total_b >= SPEED_TARGET and ours_ok == n else 'NOT met'}; "
            f"every object {'met' if per_obj_ok else 'NOT met'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", default=",".join(DEFAULT_OBJECTS), help=f"comma-separated (default: {','.join(DEFAULT_OBJECTS)}; available: {','.join(pybullet_assets.names())})")
    parser.add_argument("--quick", action="store_true", help=f"skip the slow CoACD-defaults baseline for {', '.join(QUICK_SKIP_DEFAULTS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel measurement (default: CPU count)")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.objects.split(",") if n.strip()]
    unknown = sorted(set(names) - set(pybullet_assets.names()))
    if unknown or not names:
        parser.error(f"unknown objects {unknown}; choose from {', '.join(pybullet_assets.names())}")

    ours_config = CollisionConfig()
    defaults_config = CollisionConfig.coacd_defaults()
    _warm_up()

    rows: list[dict] = []
    solids: dict[str, trimesh.Trimesh] = {}
    for name in names:
        solid, wt_seconds, input_faces = load_solid(name)
        solids[name] = solid
        skip = args.quick and name in QUICK_SKIP_DEFAULTS
        print(f"[{name}] {len(solid.faces)} faces, watertight {wt_seconds:.2f} s; defaults ...", end="", flush=True, file=sys.stderr)
        defaults = None if skip else measure(solid, defaults_config)
        took = "skipped" if defaults is None else f"{defaults['seconds']:.2f} s"
        print(f" {took}; ours ...", end="", flush=True, file=sys.stderr)
        ours = measure(solid, ours_config)
        print(f" {ours['seconds']:.2f} s", file=sys.stderr)
        rows.append(
            {
                "name": name,
                "input_faces": input_faces,
                "faces": len(solid.faces),
                "watertight_seconds": wt_seconds,
                "defaults": defaults,
                "ours": ours,
                "ratio": defaults["seconds"] / ours["seconds"] if defaults else None,
            }
        )

    print(f"[parallel] {len(solids)} objects over {args.workers} workers ...", file=sys.stderr, flush=True)
    parallel = measure_parallel(solids, ours_config, args.workers)
    print("[cached] fill + re-export ...", file=sys.stderr, flush=True)
    cached = measure_cached(solids, ours_config)

    meta = {
        "coacd": _version("coacd"),
        "trimesh": _version("trimesh"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
    }
    print(render(rows, parallel, cached, meta))

    if args.json:
        both = [r for r in rows if r["defaults"] is not None]
        summary = {
            "geomean_ratio": geomean([r["ratio"] for r in both]) if both else None,
            "overall_ratio": (sum(r["defaults"]["seconds"] for r in both) / sum(r["ours"]["seconds"] for r in both)) if both else None,
            "ours_iou_ok": sum(r["ours"]["iou"] >= IOU_TARGET for r in rows),
            "defaults_iou_ok": sum(r["defaults"]["iou"] >= IOU_TARGET for r in both),
            "objects": len(rows),
            "objects_with_defaults": len(both),
        }
        payload = {
            "meta": meta,
            "configs": {"ours": asdict(ours_config), "defaults": asdict(defaults_config)},
            "objects": rows,
            "parallel": parallel,
            "cached": cached,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
