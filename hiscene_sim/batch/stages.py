"""One scene of a batch, from its input to its validated export: :func:`run_scene`.

Stages, as the input needs them::

    prompt      -> generate -> (parse) -> export -> validate --settle -> [variants]
    scene file  -> parse (fused) or import (one object per node) -> export -> validate --settle -> [variants]
    scene dir   -> copy -> export -> validate --settle -> [variants]

Everything is built in ``DIR/.<name>.tmp-*`` and renamed to ``DIR/<name>`` when complete
(``hiscene_sim.atomic.atomic_directory``), so an interrupted or crashed scene leaves no
half-written folder, and a finished one is never half replaced. ``DIR/<name>`` holds::

    batch.json      the scene's record (the manifest row, plus its resume key)
    batch.log       what the stages logged
    scene/          the scene dir (settled poses written back)
    export/         URDF / USD / MJCF / GLB, validation.json / .md, renders
    variants/vNN/   kept variants, each with scene/ and export/

A scene that fails gets a ``DIR/<name>`` with only batch.json (status ``failed``, the error)
and batch.log. :func:`run_scene` never raises for a failing scene, only for Ctrl-C.

Without Ray it runs in the calling process. Inside a Ray task, a stage that has its own
resources in ``BatchConfig.resources`` (a GPU for ``generate``, more CPUs for ``export``)
runs as a nested Ray task with them; the scene task waits, giving its CPU back meanwhile.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from hiscene_sim.atomic import atomic_directory, atomic_write_text, check_replaceable
from hiscene_sim.batch.jobs import BatchConfig, SceneJob
from hiscene_sim.scene import SceneError

log = logging.getLogger(__name__)

RECORD_FILE = "batch.json"
LOG_FILE = "batch.log"
RECORD_FORMAT = "hiscene-batch-scene"
STATUSES = ("ok", "unstable", "failed")
RENDER = "render_after.png"  # written by the validation report


class GenerationUnavailable(RuntimeError):
    """The prompt -> scene stage is not installed or cannot be imported here."""


class InputError(SceneError):
    """The input is not there or is not something a batch can take."""


# ----------------------------------------------------------------------------------------
# stages (module-level functions: a nested Ray task pickles them by reference)


def generate_stage(prompt: str, out_dir: str, seed: int, config_file: str | None = None) -> str:
    """Prompt -> a scene dir (or a fused scene file) with ``hiscene_sim.generate.pipeline.
    generate_scene``; returns what it made. The pipeline's ``GenerateRequest`` API (weights from
    ``$HISCENE_*_WEIGHTS`` or ``config_file``) when it has one, else ``generate_scene(prompt,
    out_dir, seed)``. A pipeline that cannot be imported, or whose backends have no weights
    here, is :class:`GenerationUnavailable`."""
    import importlib

    try:
        pipeline = importlib.import_module("hiscene_sim.generate.pipeline")
    except ImportError as exc:
        raise GenerationUnavailable(
            f"generation backend unavailable: cannot import hiscene_sim.generate.pipeline.generate_scene ({exc}); "
            "install the generation stage (`hiscene generate`) or pass fused scene files / scene dirs instead"
        ) from None
    generate_scene = getattr(pipeline, "generate_scene", None)
    if generate_scene is None:
        raise GenerationUnavailable("generation backend unavailable: hiscene_sim.generate.pipeline has no generate_scene")
    out = Path(out_dir)
    if hasattr(pipeline, "GenerateRequest"):
        from hiscene_sim.backends import BackendError
        from hiscene_sim.generate.config import GenerateConfig

        try:
            gconfig = GenerateConfig.load(Path(config_file) if config_file else None, seed=seed)
            generate_scene(pipeline.GenerateRequest(out_dir=out, prompt=prompt), gconfig, echo=log.info)
        except BackendError as exc:
            raise GenerationUnavailable(f"generation backend unavailable: {exc}") from None
        result = None
    else:
        result = generate_scene(prompt, out, seed)
    if (out / "scene.json").is_file():
        return str(out)
    if result is not None:
        path = Path(result)
        if path.is_dir() and (path / "scene.json").is_file() or path.is_file():
            return str(path)
    raise SceneError(f"generate_scene({prompt!r}) made neither a scene dir at {out} nor returned a scene file")


def _mesh_nodes(path: Path) -> int:
    import trimesh

    from hiscene_sim.importer import _load_scene_file

    loaded = _load_scene_file(path)  # clear SceneError for unreadable files
    return sum(
        1 for node in loaded.graph.nodes_geometry
        if isinstance(loaded.geometry.get(loaded.graph[node][1]), trimesh.Trimesh) and len(loaded.geometry[loaded.graph[node][1]].faces)
    )


def scene_file_stage(path: str, out_dir: str, parse_config, glb_mode: str) -> str:
    """A scene file -> a scene dir: parsed when fused (one welded mesh, or a 3DGS PLY), imported
    (one object per node) when it holds several mesh nodes and ``glb_mode`` is auto. Returns
    ``"parse"`` or ``"import"``."""
    from hiscene_sim.importer import SUPPORTED, import_scene

    src = Path(path)
    if src.suffix.lower() not in SUPPORTED:
        raise InputError(f"{src}: unsupported input type {src.suffix!r}; expected a scene file ({', '.join(SUPPORTED)}), "
                         "a scene dir or a prompts .txt")
    mode = glb_mode
    if mode == "auto":
        from hiscene_sim.render.gaussians import is_3dgs_ply

        splat = src.suffix.lower() == ".ply" and src.is_file() and is_3dgs_ply(src)
        mode = "import" if not splat and _mesh_nodes(src) > 1 else "parse"
    if mode == "import":
        import_scene(src, out_dir)
    else:
        # as `hiscene generate --from-scene` does: parse, then the weight-free regeneration
        # (each object's surface made watertight; a parsed floor flattened to its top, so the
        # fillets a fused surface leaves around welded objects do not start them inside it)
        from hiscene_sim.generate.regenerate import regenerate_geometry, regenerate_scene

        parsed_dir = Path(out_dir).parent / "parsed"
        parse_file(src, parsed_dir, parse_config)
        regenerate_scene(parsed_dir, Path(out_dir), lambda obj, mesh, _: regenerate_geometry(mesh, obj.id), "geometry")
    return mode


def parse_file(path: Path, out_dir: Path, config):
    """``hiscene parse`` as a function: a fused mesh (GLB/PLY/OBJ) or a 3DGS PLY -> scene dir."""
    import trimesh

    from exporters.mesh_io import load_mesh
    from hiscene_sim.parse import parse_gaussians, parse_mesh, parts_of_gaussians, parts_of_mesh, write_parsed_scene
    from hiscene_sim.render.gaussians import is_3dgs_ply, load_3dgs_ply

    if path.suffix.lower() == ".ply" and path.is_file() and is_3dgs_ply(path):
        try:
            gaussians = load_3dgs_ply(path)
        except (ValueError, OSError) as exc:
            raise SceneError(f"scene file {path}: {exc}") from None
        if len(gaussians) < 100:
            raise SceneError(f"scene file {path}: only {len(gaussians)} Gaussians, too few to parse")
        parsed = parse_gaussians(gaussians, config)
        parts = parts_of_gaussians(gaussians, parsed.labels)
    else:
        mesh = load_mesh(path, f"scene file {path}")
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=mesh.visual, process=True)
        if len(mesh.faces) < 4:
            raise SceneError(f"scene file {path}: {len(mesh.faces)} faces, too few to parse")
        parsed = parse_mesh(mesh, config)
        parts = parts_of_mesh(mesh, parsed.labels)
    return write_parsed_scene(parts, parsed, out_dir, path, config)


GENERATED_EXTRAS = ("export", "work", "pipeline.json")  # what `hiscene generate` keeps next to its scene


def copy_scene_stage(src: str, out_dir: str, exclude: tuple[str, ...] = ()) -> None:
    """Copy a scene dir (scene.json, the files it names, other files beside them except
    ``exclude``) so settling never touches the input."""
    from hiscene_sim.scene import SCENE_FILE, load_scene, save_scene

    src_dir = Path(src)
    scene = load_scene(src_dir)
    out = Path(out_dir)
    for obj in scene.all_objects():
        for rel in (obj.mesh, obj.extra.get("gaussians")):
            if isinstance(rel, str):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src_dir / rel, out / rel)
    for extra in src_dir.iterdir():  # textures and other sidecars next to the meshes
        if extra.name in exclude:
            continue
        if extra.name != SCENE_FILE and not extra.name.startswith(".") and not (out / extra.name).exists():
            if extra.is_dir():
                shutil.copytree(extra, out / extra.name)
            else:
                shutil.copy2(extra, out / extra.name)
    save_scene(scene, out)


def export_stage(scene_dir: str, export_dir: str, export_config):
    from exporters.export import export_scene

    result = export_scene(scene_dir, export_dir, export_config)
    return {"objects": len(result.objects), "warnings": list(result.warnings), "seconds": dict(result.seconds)}


def validate_stage(export_dir: str, scene_dir: str, validation_config, export_config):
    """``hiscene validate --settle``: repair the placement, re-export, validate, report."""
    from physics.report import validate_and_report

    report, _ = validate_and_report(export_dir, validation_config, settle=True, scene_dir=scene_dir, export_config=export_config)
    return report


# ----------------------------------------------------------------------------------------
# running a stage inline or as its own Ray task


def in_ray_task() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    try:
        return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None
    except Exception:  # noqa: BLE001 - no runtime context: not a task
        return False


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """The user exception inside a RayTaskError (else the exception itself)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) and type(exc).__name__.startswith("RayTaskError") else exc


def call_stage(stage: str, config: BatchConfig, fn: Callable, *args):
    """``fn(*args)`` here, or as a nested Ray task with the stage's own resources."""
    res = config.stage_resources(stage)
    scene = config.stage_resources("scene")
    if res is None or res == scene or not in_ray_task():
        return fn(*args)
    import ray

    remote = ray.remote(fn).options(
        num_cpus=res.cpus, num_gpus=res.gpus or 0, max_retries=config.max_retries, name=f"hiscene-{stage}",
    )
    try:
        return ray.get(remote.remote(*args))
    except Exception as exc:  # noqa: BLE001 - re-raise the stage's own error
        inner = unwrap_ray_error(exc)
        if inner is exc:
            raise
        raise inner from None


def stage_export_config(config: BatchConfig):
    """The export settings with the per-object process count of the export stage."""
    res = config.stage_resources("export") or config.stage_resources("scene")
    workers = config.export.workers or max(1, int(res.cpus if res else 1))
    return replace(config.export, workers=workers)


# ----------------------------------------------------------------------------------------
# records


def validation_metrics(report) -> dict:
    """The manifest's validation columns from a ValidationReport."""
    pb, mj = report.pybullet, report.mujoco
    sims = [s for s in (pb, mj) if s is not None]
    objs = [o for s in sims for o in s.objects]
    settle = report.settle
    return {
        "passed": bool(report.passed),
        "pybullet_stable": pb.n_stable,
        "pybullet_objects": pb.n_objects,
        "mujoco_stable": mj.n_stable if mj else None,
        "mujoco_objects": mj.n_objects if mj else None,
        "stable_share": round(min(s.stable_share for s in sims), 4),
        "max_drift_cm": round(max((o.drift_m for o in objs), default=0.0) * 100, 3),
        "max_rotation_deg": round(max((o.rotation_deg for o in objs), default=0.0), 3),
        "max_penetration_mm": round(max((o.penetration_start_m for o in objs), default=0.0) * 1000, 3),
        "collision_pairs": len(pb.penetrating_pairs_start),
        "agreement": round(report.agreement.share_agreeing, 4) if report.agreement else None,
        "settle_rounds": len(settle.iterations) if settle else 0,
        "settled_objects": len({m.id for it in settle.iterations for m in it.moves}) if settle else 0,
        "unresolved": [u.id for u in settle.unresolved] if settle else [],
        "failures": list(report.failures),
    }


def base_record(job: SceneJob) -> dict:
    record = {
        "format": RECORD_FORMAT,
        "input": job.label,
        "kind": job.kind,
        "name": job.name,
        "status": "failed",
        "error": None,
        "key": job.key,
        "variant_of": None,
    }
    if job.kind == "prompt":
        record.update(prompt=job.input, seed=job.seed)
    return record


def relocate_paths(root: Path, old: str, new: str) -> None:
    """Stages record absolute paths (export.json's source, validation.json's dirs); after a
    rename they must name the final place, not the temp dir."""
    if old == new:
        return
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md"):
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if old in text:
                atomic_write_text(path, text.replace(old, new))


def remove_stale_temp(out_root: Path, name: str) -> None:
    """Temp dirs of ``name`` left by a killed attempt (SIGKILL skips the usual clean-up)."""
    for p in out_root.glob(f".{name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out_root.glob(f".{name}.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def read_record(scene_out: Path) -> dict | None:
    try:
        data = json.loads((scene_out / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else None


def is_retryable(exc: BaseException) -> bool:
    """Failures the same input would give again (bad files, bad scenes) are final; anything
    else (a missing backend, a crash, the disk) is retried by the next run."""
    from exporters.watertight import MeshError

    return not isinstance(exc, (SceneError, MeshError, ValueError)) or isinstance(exc, GenerationUnavailable)


def error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (SceneError, GenerationUnavailable)) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def failure_record(job: SceneJob, exc: BaseException, seconds: dict | None = None) -> dict:
    exc = unwrap_ray_error(exc)
    return {**base_record(job), "status": "failed", "error": error_text(exc), "error_type": type(exc).__name__,
            "retryable": is_retryable(exc), "seconds": seconds or {}, "host": socket.gethostname(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_failure(out_root: Path, job: SceneJob, record: dict, log_text: str = "") -> None:
    """DIR/<name> with only the failure record (replacing an earlier output of the scene)."""
    final = out_root / job.name
    try:
        check_replaceable(final, RECORD_FILE)
    except FileExistsError:
        return  # not ours: the error (in the record) says so; leave the folder alone
    remove_stale_temp(out_root, job.name)
    with atomic_directory(final) as tmp:
        atomic_write_text(tmp / RECORD_FILE, json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
        atomic_write_text(tmp / LOG_FILE, log_text)


# ----------------------------------------------------------------------------------------
# one scene


class _Capture:
    """Collects what the stages log while one scene runs."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.root = logging.getLogger()
        self.level = self.root.level

    def __enter__(self) -> "_Capture":
        self.root.addHandler(self.handler)
        if in_ray_task() and self.root.level > logging.INFO:
            self.root.setLevel(logging.INFO)  # a worker process: nobody else reads its root logger
        return self

    def __exit__(self, *exc) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)

    def text(self) -> str:
        return self.buffer.getvalue()


def _timed(seconds: dict, stage: str, fn: Callable, *args):
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)


def _make_scene_dir(job: SceneJob, tmp: Path, config: BatchConfig, seconds: dict) -> tuple[Path, str]:
    """Stage 1: whatever the input needs to become a scene dir at tmp/scene."""
    scene_dir = tmp / "scene"
    if job.kind == "missing":
        path = Path(job.input)
        raise InputError(f"{path}: input {'folder holds no scene.json and no scene files' if path.is_dir() else 'not found'}")
    if job.kind == "scene":
        _timed(seconds, "copy", copy_scene_stage, job.input, str(scene_dir))
        return scene_dir, "copy"
    if job.kind == "prompt":
        made = Path(_timed(seconds, "generate", call_stage, "generate", config, generate_stage, job.input,
                           str(tmp / "generated"), job.seed, config.generate_config))
        if (made / "scene.json").is_file():  # the generated dir keeps its work/ and export/ as the stage's record
            _timed(seconds, "copy", copy_scene_stage, str(made), str(scene_dir), GENERATED_EXTRAS)
            return scene_dir, "generate"
        _timed(seconds, "parse", call_stage, "parse", config, scene_file_stage, str(made), str(scene_dir), config.parse, "parse")
        return scene_dir, "generate+parse"
    t0 = time.perf_counter()
    mode = call_stage("parse", config, scene_file_stage, job.input, str(scene_dir), config.parse, config.glb_mode)
    seconds[mode] = round(time.perf_counter() - t0, 3)
    return scene_dir, mode


def run_scene(job: SceneJob, out_root: str | Path, config: BatchConfig) -> dict:
    """Run every stage of one scene into ``out_root/<job.name>``; return its record.

    Never raises for a failing scene (the record says ``failed`` and why); KeyboardInterrupt
    and a killed process leave no ``out_root/<name>`` change behind."""
    from hiscene_sim.batch.variants import run_variants
    from hiscene_sim.scene import load_scene

    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / job.name
    record = base_record(job)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    with _Capture() as capture:
        try:
            try:
                check_replaceable(final, RECORD_FILE)
            except FileExistsError as exc:
                raise InputError(str(exc)) from None
            remove_stale_temp(out_root, job.name)
            with atomic_directory(final) as tmp:
                log.info("scene %s: %s input %s", job.name, job.kind, job.label)
                scene_dir, made_by = _make_scene_dir(job, tmp, config, seconds)
                export_dir = tmp / "export"
                export_config = stage_export_config(config)
                _timed(seconds, "export", call_stage, "export", config, export_stage, str(scene_dir), str(export_dir), export_config)
                report = _timed(seconds, "validate", call_stage, "validate", config, validate_stage, str(export_dir),
                                str(scene_dir), config.validation, export_config)
                scene = load_scene(scene_dir)
                record.update({
                    "status": "ok" if report.passed else "unstable",
                    "made_by": made_by,
                    "scene_dir": f"{job.name}/scene",
                    "export": f"{job.name}/export",
                    "render": f"{job.name}/export/{RENDER}" if (export_dir / RENDER).is_file() else None,
                    "objects": len(scene.objects),
                    "background": len(scene.background),
                    "labels": [o.label for o in scene.objects],
                    **validation_metrics(report),
                })
                variants: list[dict] = []
                if config.variants.count > 0:
                    if report.passed:
                        t0 = time.perf_counter()
                        variants = run_variants(job, scene_dir, tmp / "variants", config)
                        seconds["variants"] = round(time.perf_counter() - t0, 3)
                    kept = [v for v in variants if v["status"] == "ok"]
                    rejected = [d for v in variants for d in v.get("rejected_draws", [])]
                    record.update({
                        "variants_requested": config.variants.count,
                        "variants_kept": len(kept),
                        "variants_rejected": len(rejected),
                        "variant_rejections": rejected if report.passed else
                        [{"variant": "*", "reasons": ["the scene itself does not pass validation: no variants made"]}],
                    })
                    record["variant_records"] = [{**v, "key": job.key} for v in kept]
                seconds["total"] = round(time.perf_counter() - t_start, 3)
                record.update({
                    "seconds": dict(seconds), "retryable": False, "host": socket.gethostname(),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                })
                relocate_paths(tmp, str(tmp), str(final))
                atomic_write_text(tmp / RECORD_FILE, json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
                atomic_write_text(tmp / LOG_FILE, capture.text())
            return record
        except Exception as exc:  # noqa: BLE001 - a failing scene is a record, not a crash of the batch
            seconds["total"] = round(time.perf_counter() - t_start, 3)
            record = failure_record(job, exc, seconds)
            log.warning("scene %s failed: %s", job.name, record["error"])
            log_text = capture.text() + "\n" + "".join(traceback.format_exception(unwrap_ray_error(exc)))
            write_failure(out_root, job, record, log_text)
            return record
