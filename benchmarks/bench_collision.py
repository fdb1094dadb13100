"""Collision export benchmark over the pybullet_data objects: our tuned CoACD pipeline
against CoACD's own default parameters, measured side by side in the same run.

Run from the repository root::

    python benchmarks/bench_collision.py                      # all objects, full baseline
    python benchmarks/bench_collision.py --objects mug,duck   # a subset
    python benchmarks/bench_collision.py --quick              # skip the slow defaults run on lego (~90 s)
    python benchmarks/bench_collision.py --workers 4 --json results.json
    python benchmarks/bench_collision.py --defaults-timeout 120   # cap each defaults run (s)

(``python -m benchmarks.bench_collision`` works too.)

What it measures, per object (mesh from ``hiscene_sim.pybullet_assets``, scale baked in):

- ``faces``: faces of the watertight solid that collision is built from;
- ``watertight s``: ``make_watertight`` once (shared by both configurations, timed alone);
- (a) ``defaults``: ``decompose(solid, CollisionConfig.coacd_defaults(), cache_dir=None)``,
  CoACD's own defaults (no part splitting, no pre-simplification): seconds, hull count,
  volume IoU of the hull union against the watertight solid (``hull_union_iou``);
- (b) ``ours``: the same with ``CollisionConfig()`` (our tuned defaults);
- ``ratio``: defaults seconds / ours seconds.

(a) and (b) run serially, one after the other, in the same run, with nothing else of the
benchmark running, so their timings are comparable. (b) runs in this process. (a) runs in
a spawned child process (imports done before the clock starts; the clock is read in the
child around ``decompose`` only) so that it can be stopped after ``--defaults-timeout``
seconds: with CoACD 1.0.14 the defaults on teddy (15 overlapping convex blobs, decomposed
as one mesh) never finished in 30 min: the process was in CoACD's plane clipping, in CDT's
constrained-edge insertion, every time we looked. A run that times out is shown as
``>LIMIT`` and its ratio as a lower bound (``>=``). Then, for our config only:

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


def _defaults_child(conn, solid: trimesh.Trimesh, config: CollisionConfig) -> None:
    _warm_up()
    try:
        conn.send(("ok", measure(solid, config)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def measure_guarded(solid: trimesh.Trimesh, config: CollisionConfig, timeout: float) -> dict:
    """``measure`` in a spawned child process, stopped after ``timeout`` seconds (0 = no limit).

    Returns measure's dict plus ``status`` ("ok" | "timeout" | "error")."""
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=False)
    proc = context.Process(target=_defaults_child, args=(child_conn, solid, config), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    child_conn.close()
    try:
        ready = parent_conn.poll(timeout if timeout > 0 else None)
        if not ready:
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
            return {"status": "timeout", "seconds": None, "hulls": None, "iou": None, "limit": timeout,
                    "elapsed": time.perf_counter() - t0}
        try:
            status, payload = parent_conn.recv()
        except EOFError:
            status, payload = "error", f"child exited with code {proc.exitcode}"
    finally:
        proc.join(30)
        parent_conn.close()
    if status == "ok":
        return {"status": "ok", **payload}
    return {"status": "error", "seconds": None, "hulls": None, "iou": None, "error": payload}


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


def summarize(rows: list[dict]) -> dict:
    """Aggregates for the summary lines and the JSON. Objects whose defaults run timed out
    enter the "bound" figures at the time limit, so those figures are lower bounds."""
    n = len(rows)
    done = [r for r in rows if r["defaults"] and r["defaults"]["status"] == "ok"]
    timed_out = [r for r in rows if r["defaults"] and r["defaults"]["status"] == "timeout"]
    attempted = done + timed_out
    out: dict = {
        "objects": n,
        "defaults_completed": [r["name"] for r in done],
        "defaults_timed_out": [r["name"] for r in timed_out],
        "defaults_skipped": [r["name"] for r in rows if r["defaults"] is None],
        "defaults_failed": [r["name"] for r in rows if r["defaults"] and r["defaults"]["status"] == "error"],
        "watertight_total": sum(r["watertight_seconds"] for r in rows),
        "ours_total": sum(r["ours"]["seconds"] for r in rows),
        "ours_iou_ok": sum(r["ours"]["iou"] >= IOU_TARGET for r in rows),
        "ours_iou_mean": sum(r["ours"]["iou"] for r in rows) / n,
        "ours_iou_min": min(r["ours"]["iou"] for r in rows),
        "defaults_iou_ok": sum(r["defaults"]["iou"] >= IOU_TARGET for r in done),
    }
    if done:
        ratios = [r["ratio"] for r in done]
        out.update(
            defaults_total=sum(r["defaults"]["seconds"] for r in done),
            ours_total_same=sum(r["ours"]["seconds"] for r in done),
            geomean_ratio=geomean(ratios),
            min_ratio=min(ratios),
            max_ratio=max(ratios),
            defaults_iou_mean=sum(r["defaults"]["iou"] for r in done) / len(done),
            defaults_iou_min=min(r["defaults"]["iou"] for r in done),
        )
        out["overall_ratio"] = out["defaults_total"] / out["ours_total_same"]
    if attempted:

        def def_seconds(r: dict) -> float:
            return r["defaults"]["seconds"] if r["defaults"]["status"] == "ok" else r["defaults"]["limit"]

        out.update(
            bound_objects=len(attempted),
            bound_defaults_total=sum(def_seconds(r) for r in attempted),
            bound_ours_total=sum(r["ours"]["seconds"] for r in attempted),
            bound_geomean_ratio=geomean([r["ratio"] for r in attempted]),
        )
        out["bound_overall_ratio"] = out["bound_defaults_total"] / out["bound_ours_total"]
        out["bound_defaults_mean"] = out["bound_defaults_total"] / len(attempted)
    return out


def render(rows: list[dict], parallel: dict, cached: dict, meta: dict, summary: dict) -> str:
    lines: list[str] = []
    lines.append(
        f"Collision benchmark: ours = CollisionConfig() vs CoACD defaults = CollisionConfig.coacd_defaults()  "
        f"(coacd {meta['coacd']}, python {meta['python']}, {meta['cpus']} CPUs, defaults timeout {meta['defaults_timeout']:g} s)"
    )
    header = (
        f"{'object':<8} {'faces':>7} {'wt s':>6} | {'def s':>8} {'hulls':>5} {'IoU':>6} | "
        f"{'ours s':>7} {'hulls':>5} {'IoU':>6} | {'ratio':>10} | {'par s':>6} {'cache ms':>8}"
    )
    rule = "-" * len(header)
    lines += [header, rule]
    for r in rows:
        d, o = r["defaults"], r["ours"]
        if d is None:
            def_cells, ratio = f"{'skipped':>8} {'-':>5} {'-':>6}", f"{'-':>10}"
        elif d["status"] == "timeout":
            def_cells, ratio = f"{'>' + format(d['limit'], '.0f'):>8} {'-':>5} {'-':>6}", f"{'>=' + format(r['ratio'], '.1f') + 'x':>10}"
        elif d["status"] == "error":
            def_cells, ratio = f"{'error':>8} {'-':>5} {'-':>6}", f"{'-':>10}"
        else:
            def_cells, ratio = f"{d['seconds']:>8.2f} {d['hulls']:>5d} {d['iou']:>6.3f}", f"{format(r['ratio'], '.1f') + 'x':>10}"
        lines.append(
            f"{r['name']:<8} {r['faces']:>7d} {r['watertight_seconds']:>6.2f} | {def_cells} | "
            f"{o['seconds']:>7.2f} {o['hulls']:>5d} {o['iou']:>6.3f} | {ratio} | "
            f"{parallel['in_worker_seconds'][r['name']]:>6.2f} {cached['seconds'][r['name']] * 1000:>8.1f}"
        )
    lines.append(rule)
    lines.append("wt s = make_watertight; def s / ours s = decompose (no cache); par s = ours inside a pool worker;")
    lines.append("cache ms = cached re-export; >N = defaults stopped at the time limit (ratio is then a lower bound)")

    s = summary
    n = s["objects"]
    nd = len(s["defaults_completed"])
    lines.append("")
    lines.append(f"objects: {n}")
    for key, label in (("defaults_skipped", "defaults skipped (--quick)"), ("defaults_timed_out", "defaults timed out"), ("defaults_failed", "defaults failed")):
        if s[key]:
            lines.append(f"{label}: {', '.join(s[key])}")
    lines.append(f"watertight:           total {s['watertight_total']:8.2f} s   mean {s['watertight_total'] / n:7.2f} s/object")
    lines.append(f"ours (serial):        total {s['ours_total']:8.2f} s   mean {s['ours_total'] / n:7.2f} s/object")
    if nd:
        lines.append(f"-- over the {nd} objects whose defaults run completed:")
        lines.append(f"CoACD defaults:       total {s['defaults_total']:8.2f} s   mean {s['defaults_total'] / nd:7.2f} s/object")
        lines.append(f"ours (serial):        total {s['ours_total_same']:8.2f} s   mean {s['ours_total_same'] / nd:7.2f} s/object")
        lines.append(f"speed-up, geometric mean of per-object ratios: {s['geomean_ratio']:6.1f}x  (min {s['min_ratio']:.1f}x, max {s['max_ratio']:.1f}x)")
        lines.append(f"speed-up, overall (sum defaults / sum ours):   {s['overall_ratio']:6.1f}x")
    if s["defaults_timed_out"]:
        nb = s["bound_objects"]
        lines.append(f"-- over the {nb} objects with a defaults run, time-outs counted at the limit (lower bounds):")
        lines.append(f"CoACD defaults:       total >= {s['bound_defaults_total']:6.2f} s   mean >= {s['bound_defaults_mean']:6.2f} s/object")
        lines.append(f"speed-up, geometric mean >= {s['bound_geomean_ratio']:.1f}x; overall >= {s['bound_overall_ratio']:.1f}x")
    iou_line = f"IoU >= {IOU_TARGET}: ours {s['ours_iou_ok']}/{n}, defaults {s['defaults_iou_ok']}/{nd} completed"
    lines.append(iou_line)
    lines.append(
        f"IoU mean / min: ours {s['ours_iou_mean']:.3f} / {s['ours_iou_min']:.3f}"
        + (f", defaults {s['defaults_iou_mean']:.3f} / {s['defaults_iou_min']:.3f}" if nd else "")
    )
    ref = s.get("bound_defaults_mean")
    ref_txt = ("defaults' mean" + (" (lower bound)" if s["defaults_timed_out"] else "")) if ref else ""
    par = parallel["per_object_seconds"]
    lines.append(
        f"ours parallel ({parallel['workers']} workers, spawn pool, start-up included): wall {parallel['wall_seconds']:.2f} s, "
        f"{par:.2f} s/object" + (f" -> {ref / par:.1f}x less than {ref_txt}" if ref else "")
    )
    cpo = cached["per_object_seconds"]
    lines.append(
        f"ours cached re-export: total {cached['total_seconds'] * 1000:.1f} ms, {cpo * 1000:.1f} ms/object"
        + (f" -> {ref / cpo:.0f}x less than {ref_txt}" if ref else "")
    )
    if ref:
        iou_ok = s["ours_iou_ok"] == n
        attempted = [r for r in rows if r["defaults"] and r["defaults"]["status"] in ("ok", "timeout")]
        each = sum(r["ratio"] >= SPEED_TARGET for r in attempted)
        lines.append(
            f"target ({SPEED_TARGET:.0f}x less time per object at IoU >= {IOU_TARGET}): "
            f"overall {'met' if s['bound_overall_ratio'] >= SPEED_TARGET and iou_ok else 'NOT met'} "
            f"(ours IoU >= {IOU_TARGET} on {s['ours_iou_ok']}/{n}); per object >= {SPEED_TARGET:.0f}x on {each}/{len(attempted)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", default=",".join(DEFAULT_OBJECTS), help=f"comma-separated (default: {','.join(DEFAULT_OBJECTS)}; available: {','.join(pybullet_assets.names())})")
    parser.add_argument("--quick", action="store_true", help=f"skip the slow CoACD-defaults baseline for {', '.join(QUICK_SKIP_DEFAULTS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel measurement (default: CPU count)")
    parser.add_argument("--defaults-timeout", type=float, default=600.0, help="stop a CoACD-defaults run after this many seconds; 0 = no limit (default: 600)")
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
        defaults = None if skip else measure_guarded(solid, defaults_config, args.defaults_timeout)
        if defaults is None:
            took = "skipped"
        elif defaults["status"] == "ok":
            took = f"{defaults['seconds']:.2f} s"
        elif defaults["status"] == "timeout":
            took = f"timed out after {args.defaults_timeout:g} s"
        else:
            took = f"failed ({defaults['error']})"
        print(f" {took}; ours ...", end="", flush=True, file=sys.stderr)
        ours = measure(solid, ours_config)
        print(f" {ours['seconds']:.2f} s", file=sys.stderr)
        if defaults is not None and defaults["status"] in ("ok", "timeout"):
            ratio = (defaults["seconds"] if defaults["status"] == "ok" else defaults["limit"]) / ours["seconds"]
        else:
            ratio = None
        rows.append(
            {
                "name": name,
                "input_faces": input_faces,
                "faces": len(solid.faces),
                "watertight_seconds": wt_seconds,
                "defaults": defaults,
                "ours": ours,
                "ratio": ratio,
                "ratio_is_lower_bound": bool(defaults and defaults["status"] == "timeout"),
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
        "defaults_timeout": args.defaults_timeout,
    }
    summary = summarize(rows)
    print(render(rows, parallel, cached, meta, summary))

    if args.json:
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
