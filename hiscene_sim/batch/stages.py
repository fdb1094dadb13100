"""One scene of a batch, from its input to its validated export: :func:`run_scene`.

The scene's stages are the orchestrator's (:func:`hiscene_sim.orchestrator.run_pipeline`), as
the input needs them; the input is read through the front door
(:func:`hiscene_sim.inputs.read_scene_input`)::

    prompt      -> generate (image, scene3d, parse, complete, regenerate, background) -> export -> validate
    fused file  -> parse -> complete -> regenerate -> export -> validate   (as `hiscene generate --from-scene`)
    multi-node  -> import -> complete -> export -> validate                (as `hiscene demo --from-nodes`)
    scene dir   -> export -> validate
    then, when asked and the scene passes: variants (:mod:`.variants`)

``validate`` is the settle stage (the scene dir and its export copied forward and settled)
followed by the validate stage (reads the export, writes the report).

Everything is built in ``DIR/.<name>.tmp-*`` and renamed to ``DIR/<name>`` when complete
(``hiscene_sim.atomic.atomic_directory``), so an interrupted or crashed scene leaves no
half-written folder, and a finished one is never half replaced. ``DIR/<name>`` holds::

    batch.json      the scene's record (the manifest row, plus its resume key)
    batch.log       what the stages logged
    scene/          the settled scene dir
    export/         URDF / USD / MJCF / GLB, validation.json / .md, renders
    work/           every intermediate stage's own scene dir (and a prompt's generate run)
    variants/vNN/   kept variants, each with scene/ and export/

A scene that fails gets a ``DIR/<name>`` with only batch.json (status ``failed``, the error)
and batch.log. :func:`run_scene` never raises for a failing scene, only for Ctrl-C.

A stage with its own resources in ``BatchConfig.resources`` runs as its own Ray task
(:mod:`.ray_calls`); the orchestrator's stages are grouped into the batch's resource names by
:data:`hiscene_sim.batch.scene_pipeline.RESOURCE_OF_STAGE`.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from hiscene_sim.atomic import atomic_directory, atomic_write_text, check_replaceable
from hiscene_sim.batch.jobs import BatchConfig, SceneJob
from hiscene_sim.batch.ray_calls import call_stage, in_ray_task, unwrap_ray_error
from hiscene_sim.batch.records import (
    LOG_FILE,
    RECORD_FILE,
    RENDER,
    GenerationUnavailable,
    InputError,
    base_record,
    failure_record,
    relocate_paths,
    remove_stale_temp,
    validation_metrics,
    write_failure,
)
from hiscene_sim.batch.scene_pipeline import scene_pipeline
from hiscene_sim.scene import SceneError

log = logging.getLogger(__name__)

__all__ = ["RECORD_FILE", "run_scene", "generate_stage"]

FILE_STAGES = {
    "fused-mesh": ("parse", "complete", "label", "regenerate", "export", "validate"),
    "gaussians": ("parse", "complete", "label", "regenerate", "export", "validate"),
    "multi-node": ("import", "complete", "label", "export", "validate"),
    "scene-dir": ("export", "validate"),
}
MADE_BY = {"fused-mesh": "parse", "gaussians": "parse", "multi-node": "import", "scene-dir": "copy"}


def generate_stage(prompt: str, out_dir: str, seed: int, config_file: str | None = None, label=None) -> str:
    """Prompt -> a scene dir with ``hiscene_sim.generate.pipeline.generate_scene`` (the
    orchestrator from text-to-image to the background, weights from ``$HISCENE_*_WEIGHTS`` or
    ``config_file``; ``label``: the labelling settings, a LabelConfig); returns the scene dir it made. A generation entry point with the plain
    ``generate_scene(prompt, out_dir, seed)`` signature (a stand-in) is called so. A pipeline
    that cannot be imported, or whose backends have no weights here, is
    :class:`GenerationUnavailable`."""
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
        from hiscene_sim.orchestrator import PipelineOptions

        options = PipelineOptions(label=label) if label is not None else None
        try:
            gconfig = GenerateConfig.load(Path(config_file) if config_file else None, seed=seed)
            result = generate_scene(pipeline.GenerateRequest(out_dir=out, prompt=prompt, until="background"), gconfig,
                                    echo=log.info, progress=False, options=options)
        except BackendError as exc:
            raise GenerationUnavailable(f"generation backend unavailable: {exc}") from None
        return str(result.scene_dir)
    result = generate_scene(prompt, out, seed)
    if (out / "scene.json").is_file():
        return str(out)
    if result is not None:
        path = Path(result)
        if path.is_dir() and (path / "scene.json").is_file() or path.is_file():
            return str(path)
    raise SceneError(f"generate_scene({prompt!r}) made neither a scene dir at {out} nor returned a scene file")


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


def _run_stages(job: SceneJob, tmp: Path, config: BatchConfig, seconds: dict):
    """The scene's stages into ``tmp``; returns (pipeline result, made_by)."""
    from hiscene_sim.input_frame import AS_WRITTEN
    from hiscene_sim.inputs import read_scene_input

    if job.kind == "missing":
        path = Path(job.input)
        raise InputError(f"{path}: input {'folder holds no scene.json and no scene files' if path.is_dir() else 'not found'}")
    if job.kind == "prompt":
        t0 = time.perf_counter()
        made = Path(call_stage("generate", config, generate_stage, job.input, str(tmp / "work" / "generate"), job.seed,
                               config.generate_config, config.label))
        seconds["generate"] = round(time.perf_counter() - t0, 3)
        source, made_by = read_scene_input(made, "parse", AS_WRITTEN), "generate"
    else:
        source = read_scene_input(job.input, "auto" if job.kind == "scene" else config.glb_mode, config.frame)
        made_by = MADE_BY[source.kind.value]
    result = scene_pipeline(source, tmp, config, FILE_STAGES[source.kind.value])
    seconds.update(result.seconds)
    return result, made_by


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
                result, made_by = _run_stages(job, tmp, config, seconds)
                scene_dir, export_dir, report = result.scene_dir, result.export_dir, result.report
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
