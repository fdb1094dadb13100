"""Plausible variants of a scene for domain randomisation (``hiscene batch --variants K``).

Variant ``k`` of scene ``name`` moves every foreground object by a seeded draw (the generator
is seeded with ``(seed, k, crc32(name))``, so a variant is the same on every run and machine):

- x and y each uniform in ``[-position_m, +position_m]``;
- a turn about the vertical through the centre of the object's footprint, uniform in
  ``[-yaw_deg, +yaw_deg]``;
- a uniform scale factor in ``[1 - scale, 1 + scale]`` about the bottom centre of its bounds
  (its lowest point stays at the same height, so it stays on what it stood on).

Background objects do not move. The jittered scene is written as a new scene dir
(``variants/vNN/work/jittered``) and goes through the orchestrator's export and validate
stages like any scene dir (``hiscene_sim.batch.stages.scene_pipeline``): exported, settled
into ``variants/vNN/scene`` + ``variants/vNN/export`` (overlaps the jitter made are separated,
objects left floating are dropped, everything simulated to rest) and validated in PyBullet
and MuJoCo; the variant folder appears atomically. A variant is kept only when it then passes; a
rejected draw is deleted and its reasons are returned (the batch manifest lists them). With
``attempts`` > 1 a rejected draw is redrawn (its own seed) up to that many times, so K
variants are asked for and, as far as the attempts allow, K valid ones come out.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hiscene_sim.atomic import atomic_directory
from hiscene_sim.batch.jobs import BatchConfig, VariantConfig
from hiscene_sim.batch.ray_calls import map_stage
from hiscene_sim.batch.records import RECORD_FORMAT, RENDER, error_text, relocate_paths, validation_metrics
from hiscene_sim.batch.scene_pipeline import scene_pipeline
from hiscene_sim.scene import Pose, Provenance, Scene, SceneObject, load_scene, quaternion_from_rotation

log = logging.getLogger(__name__)


class _Rejected(Exception):
    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def variant_rng(config: VariantConfig, index: int, name: str, attempt: int = 0) -> np.random.Generator:
    """The draws of variant ``index`` of scene ``name``; a redraw (``attempt`` > 0) gets its own."""
    key = [config.seed, index, zlib.crc32(name.encode("utf-8"))]
    return np.random.default_rng(key if attempt == 0 else [*key, attempt])


def _world_vertices(scene_dir: Path, obj: SceneObject) -> np.ndarray:
    import trimesh

    mesh = trimesh.load(scene_dir / obj.mesh, force="mesh", process=False)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = v[np.isfinite(v).all(axis=1)]
    m = obj.pose.matrix()
    return v @ m[:3, :3].T + m[:3, 3]


def jitter_pose(pose: Pose, pivot: np.ndarray, dx: float, dy: float, yaw_deg: float, factor: float) -> Pose:
    """The pose whose world geometry is ``pivot + Rz(yaw) @ (factor * (x_world - pivot)) + (dx, dy, 0)``."""
    a = math.radians(yaw_deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    position = pivot + rz @ (factor * (np.asarray(pose.position) - pivot)) + np.array([dx, dy, 0.0])
    rotation = rz @ pose.rotation_matrix()
    return Pose(
        tuple(float(v) for v in position), quaternion_from_rotation(rotation), tuple(float(s * factor) for s in pose.scale),
    )


def jitter_scene(scene: Scene, scene_dir: Path, config: VariantConfig, rng: np.random.Generator) -> tuple[Scene, list[dict]]:
    """A copy of ``scene`` with every foreground object jittered; and what was drawn per object."""
    objects, draws = [], []
    for obj in scene.objects:
        dx, dy = (float(v) for v in rng.uniform(-config.position_m, config.position_m, size=2))
        yaw = float(rng.uniform(-config.yaw_deg, config.yaw_deg))
        factor = float(rng.uniform(1.0 - config.scale, 1.0 + config.scale))
        world = _world_vertices(scene_dir, obj)
        if len(world):
            lo, hi = world.min(axis=0), world.max(axis=0)
            pivot = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        else:
            pivot = np.asarray(obj.pose.position, dtype=float)
        draw = {"id": obj.id, "dx_m": round(dx, 5), "dy_m": round(dy, 5), "yaw_deg": round(yaw, 3), "scale": round(factor, 5)}
        objects.append(replace(obj, pose=jitter_pose(obj.pose, pivot, dx, dy, yaw, factor), extra={**obj.extra, "jitter": draw}))
        draws.append(draw)
    return replace(scene, objects=objects), draws


def _reasons(report) -> list[str]:
    reasons = list(report.failures)
    if report.settle is not None:
        reasons += [f"could not settle {u.id}: " + "; ".join(u.reasons) for u in report.settle.unresolved]
    return list(dict.fromkeys(reasons)) or ["validation failed"]


def make_variant(base_scene_dir: str, variants_root: str, base_name: str, index: int, config: BatchConfig, input_label: str = "") -> dict:
    """Variant ``index`` (1-based) of the scene dir: up to ``config.variants.attempts`` draws
    until one passes. Its record: status ``ok`` (kept, in ``variants_root/vNN``) or
    ``rejected``; ``rejected_draws`` lists every draw that failed and why."""
    rejected: list[dict] = []
    t_start = time.perf_counter()
    for attempt in range(max(1, config.variants.attempts)):
        record = _make_variant_draw(base_scene_dir, variants_root, base_name, index, config, input_label, attempt)
        if record["status"] == "ok":
            break
        rejected.append({"variant": record["variant"], "draw": attempt + 1, "reasons": record["reasons"]})
    record["draws"] = attempt + 1
    record["rejected_draws"] = rejected
    record["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
    return record


def _make_variant_draw(base_scene_dir: str, variants_root: str, base_name: str, index: int, config: BatchConfig,
                       input_label: str, attempt: int) -> dict:
    from hiscene_sim.inputs import read_scene_input
    from hiscene_sim.scene_copy import copy_scene_dir
    from hiscene_sim.stages import PIPELINE_EXTRAS

    base, root = Path(base_scene_dir), Path(variants_root)
    vc = config.variants
    vname = f"v{index:02d}"
    record = {"format": RECORD_FORMAT, "input": input_label, "name": f"{base_name}_{vname}", "variant_of": base_name,
              "variant": vname, "status": "rejected", "error": None, "reasons": []}
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        scene = load_scene(base)
        jittered, draws = jitter_scene(scene, base, vc, variant_rng(vc, index, base_name, attempt))
        jittered.provenance = [*jittered.provenance, Provenance(
            "variant", "seeded-jitter", {"base": base_name, "index": index, "draw": attempt + 1, **asdict(vc)},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )]
        final = (root / vname).resolve()
        with atomic_directory(final) as tmp:
            jittered_dir = tmp / "work" / "jittered"
            copy_scene_dir(base, jittered_dir, exclude=PIPELINE_EXTRAS, scene=jittered)
            result = scene_pipeline(read_scene_input(jittered_dir), tmp, config, ("export", "validate"))
            seconds.update(result.seconds)
            report = result.report
            if not report.passed:
                raise _Rejected(_reasons(report))
            relocate_paths(tmp, str(tmp), str(final))
            settled = load_scene(tmp / "scene")
            rendered = (tmp / "export" / RENDER).is_file()
        prefix = f"{base_name}/variants/{vname}"
        seconds["total"] = round(time.perf_counter() - t_start, 3)
        record.update({
            "status": "ok", "scene_dir": f"{prefix}/scene", "export": f"{prefix}/export",
            "render": f"{prefix}/export/{RENDER}" if rendered else None,
            "objects": len(settled.objects), "background": len(settled.background), "labels": [o.label for o in settled.objects],
            **validation_metrics(report), "jitter": draws, "seconds": seconds,
        })
        log.info("variant %s of %s: kept", vname, base_name)
    except _Rejected as rejected:
        record["reasons"] = rejected.reasons
        log.info("variant %s of %s: rejected (%s)", vname, base_name, "; ".join(rejected.reasons))
    except Exception as exc:  # noqa: BLE001 - a variant that breaks is a rejected variant
        record["reasons"] = [f"error: {error_text(exc)}"]
        log.warning("variant %s of %s: %s", vname, base_name, record["reasons"][0])
    record.setdefault("seconds", {**seconds, "total": round(time.perf_counter() - t_start, 3)})
    return record


def make_variants(base_scene_dir: str | Path, variants_root: str | Path, base_name: str, config: BatchConfig,
                  input_label: str = "") -> list[dict]:
    """``config.variants.count`` variants; as separate Ray tasks in parallel when the
    ``variants`` stage has its own resources and this runs in a Ray task, else one by one."""
    args = [(str(base_scene_dir), str(variants_root), base_name, i, config, input_label)
            for i in range(1, config.variants.count + 1)]
    out = []
    for a, made in zip(args, map_stage("variants", config, make_variant, args)):
        if isinstance(made, BaseException):  # e.g. its worker died every time
            err = error_text(made)
            vname = f"v{a[3]:02d}"
            made = {"name": f"{base_name}_{vname}", "variant_of": base_name, "variant": vname, "status": "rejected",
                    "reasons": [f"error: {err}"], "rejected_draws": [{"variant": vname, "draw": 1, "reasons": [f"error: {err}"]}]}
        out.append(made)
    return out


def run_variants(job, base_scene_dir: Path, variants_root: Path, config: BatchConfig) -> list[dict]:
    return make_variants(base_scene_dir, variants_root, job.name, config, job.label)
