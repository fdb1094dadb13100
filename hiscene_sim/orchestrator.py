"""The one orchestrator: the stage list, where each stage writes, the ledger that makes a
re-run resume, progress and per-stage timing. ``hiscene generate``, ``hiscene demo``,
``hiscene batch`` (each scene and each variant) call :func:`run_pipeline` with the stages
they need and one :class:`PipelineOptions`.

The paper's pipeline (3.1-3.4, D) and the export layer, in order (:data:`STAGES`)::

    prompt --image--> image --scene3d--> fused scene --parse--> objects          (or --import--> objects)
      --complete--> views + A.3 + amodal completion --regenerate--> Algorithm 3 / watertight
      --background--> paper D --export--> URDF / USD / MJCF --validate--> settle + report

Where each stage writes (:class:`PipelineLayout`): every intermediate scene dir under
``work/<stage>/``; the ``validate`` step runs the settle stage (the last scene dir and its
export copied forward to the final scene dir and export and settled there) and then the
validate stage (reads the export, writes the report beside it). No stage writes into its
input, so any stage can be re-run or inspected alone.

The ledger (``pipeline.json`` in ``layout.ledger_dir``, :mod:`hiscene_sim.ledger`) records each
finished step's key (a hash of the previous key and the step's backend and parameters); a
re-run skips a step whose key matches and whose outputs exist.

``call(stage, fn, *args)`` runs a stage's function: here by default, or elsewhere (``hiscene
batch`` sends a stage with its own resources to a Ray task). Stage functions live in
:mod:`hiscene_sim.stages`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from exporters.config import ExportConfig
from hiscene_sim import stages
from hiscene_sim.backends import BackendError
from hiscene_sim.complete.stage import CompleteConfig
from hiscene_sim.generate.config import GenerateConfig
from hiscene_sim.inputs import SceneInput
from hiscene_sim.label.stage import LabelConfig
from hiscene_sim.ledger import LEDGER_FILE, Ledger, StageRecord, file_digest, stage_key
from hiscene_sim.parse import ParseConfig
from physics.config import ValidationConfig

log = logging.getLogger(__name__)

STAGES = ("image", "scene3d", "import", "parse", "complete", "label", "regenerate", "background", "export", "validate")
WORK = "work"


@dataclass(frozen=True)
class PipelineOptions:
    """Every stage's settings, passed the same way by every caller."""

    parse: ParseConfig = field(default_factory=ParseConfig)
    complete: CompleteConfig = field(default_factory=CompleteConfig)
    label: LabelConfig = field(default_factory=LabelConfig)  # with a prompt and no vocabulary: the prompt's nouns
    regeneration: str = "geometry"  # "geometry" (CPU) or "trellis" (Algorithm 3)
    export: ExportConfig = field(default_factory=ExportConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)  # neural backends, weights, candidates, seed


@dataclass(frozen=True)
class PipelineLayout:
    scene_dir: Path  # the final (settled) scene dir
    export_dir: Path  # its export
    work_dir: Path  # every intermediate stage's output
    ledger_dir: Path | None  # where pipeline.json goes; None: no ledger, every stage runs

    @classmethod
    def in_folder(cls, root: Path) -> "PipelineLayout":
        """``hiscene generate``'s folder: ROOT is the scene dir, ROOT/export, ROOT/work, the ledger in ROOT."""
        root = Path(root)
        return cls(root, root / "export", root / WORK, root)

    @classmethod
    def side_by_side(cls, root: Path, ledger: bool = True) -> "PipelineLayout":
        """``hiscene batch``'s folder: ROOT/scene, ROOT/export, ROOT/work."""
        root = Path(root)
        return cls(root / "scene", root / "export", root / WORK, root if ledger else None)


@dataclass
class PipelineRequest:
    layout: PipelineLayout
    stages: tuple[str, ...]
    prompt: str | None = None  # image: text-to-image from this prompt
    image: Path | None = None  # image: a given image
    scene_file: Path | None = None  # scene3d: a given fused scene file
    source: SceneInput | None = None  # import / parse read it (with scene_file: that file, as read); a scene dir starts at export
    force: bool = False  # forget the ledger
    progress: bool = True  # progress bars over objects (off in batch workers)

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; the pipeline's stages are {', '.join(STAGES)}")
        self.stages = tuple(s for s in STAGES if s in self.stages)


@dataclass
class StageOutcome:
    name: str
    backend: str
    skipped: bool
    seconds: float
    summary: str = ""


@dataclass
class PipelineResult:
    scene_dir: Path  # the last scene dir written
    export_dir: Path | None
    stages: list[StageOutcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage function (settle and validate apart)
    report: Any = None  # the ValidationReport, when validate ran (not when it was skipped)
    passed: bool | None = None
    report_path: Path | None = None


def _direct(_stage: str, fn: Callable, *args):
    return fn(*args)


def plan_backends(request: PipelineRequest, options: PipelineOptions, models: dict | None = None) -> dict[str, str]:
    """The backend of every requested stage; every weight path a chosen neural backend needs is
    checked here, before any work (BackendError names the config key and the path).
    ``models``: already-built models by name (``flux``, ``trellis``): their weights are not needed."""
    models = models or {}
    config = options.generate
    backends: dict[str, str] = {}
    wanted = set(request.stages)
    if "image" in wanted:
        if request.prompt:
            if config.image_backend != "flux":
                raise BackendError(f"unknown text-to-image backend {config.image_backend!r} (flux)")
            if "flux" not in models:
                config.weights_for("generate.flux.weights")
            backends["image"] = "flux" + ("+clip" if config.weights.get("generate.clip.weights") else "")
        else:
            backends["image"] = "given"
    if "scene3d" in wanted:
        if request.scene_file:
            backends["scene3d"] = "given"
        else:
            if "trellis" not in models:
                config.weights_for("generate.trellis.weights")
            backends["scene3d"] = "trellis"
    if "import" in wanted:
        backends["import"] = "trimesh"
    if "parse" in wanted:
        backends["parse"] = f"render+{options.parse.segmenter}+contrastive-lifting"
    if "complete" in wanted:
        complete = options.complete
        if complete.backend == "svd":
            config.weights_for("completion.svd.weights")
        elif complete.backend != "geometric":
            raise BackendError(f"unknown completion backend {complete.backend!r} (geometric, svd)")
        from hiscene_sim.occlusion import JUDGES

        if complete.judge not in JUDGES.names():
            raise BackendError(f"unknown occlusion judge {complete.judge!r} ({', '.join(JUDGES.names())})")
        backends["complete"] = f"{complete.judge}-judge+{complete.backend}"
    if "label" in wanted:
        backends["label"] = check_labeller(options.label, config)
    if "regenerate" in wanted:
        if options.regeneration == "trellis":
            config.weights_for("generate.instantmesh.weights")
            if "trellis" not in models:
                config.weights_for("generate.trellis.weights")
        elif options.regeneration != "geometry":
            raise BackendError(f"unknown regeneration backend {options.regeneration!r} (geometry, trellis)")
        backends["regenerate"] = options.regeneration
    if "background" in wanted:
        # paper D: with a prompt (so FLUX and TRELLIS are there) the background is regenerated
        backends["background"] = "flux+trellis" if request.prompt else "parsed"
    if "export" in wanted:
        backends["export"] = "trimesh+coacd+usd-core"
    if "validate" in wanted:
        backends["validate"] = "pybullet+mujoco"
    return backends


def check_labeller(label: LabelConfig, config) -> str:
    """The labeller's name, after checking what it needs (an endpoint and a model; local
    weights) without building it."""
    from hiscene_sim.label import LABELLERS

    if label.backend not in LABELLERS.names():
        raise BackendError(f"unknown labeller {label.backend!r} ({', '.join(LABELLERS.names())})")
    if label.backend == "vlm":
        from hiscene_sim.vlm_client import VlmConfig

        VlmConfig.from_dict(label.backend_options.get("config")).validate(who="VLM labeller")
    if label.backend == "clip" and not label.backend_options.get("weights"):
        config.weights_for("generate.clip.weights")
    return label.backend


def check_output_dir(out_dir: Path) -> None:
    """A folder with a ledger must be new, empty, or an earlier run of ours (it has the ledger)."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / LEDGER_FILE).is_file())):
        raise FileExistsError(f"{out_dir} exists and is not a hiscene generate output (no {LEDGER_FILE}); "
                              "choose a new folder")


class _Bars:
    """Progress bars over a stage's objects (rich: a live bar on a terminal; transient, so CI
    logs keep only each stage's summary line)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def over(self, description: str, total: Callable[[], int | None]):
        """``total`` is asked only when bars are on (counting objects reads the scene)."""
        if not self.enabled:
            return nullcontext(), None
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task(description, total=total())
        return bar, lambda done, *_: bar.update(task, completed=done)


def _n_objects(scene_dir: Path, everything: bool = False) -> int:
    from hiscene_sim.scene import load_scene

    scene = load_scene(scene_dir)
    return len(scene.all_objects() if everything else scene.objects)


class _Run:
    """One run: the ledger, the chain of keys, the outcomes."""

    def __init__(self, request: PipelineRequest, backends: dict[str, str], echo: Callable[[str], None]) -> None:
        self.request, self.backends, self.echo = request, backends, echo
        layout = request.layout
        self.ledger = Ledger(layout.ledger_dir) if layout.ledger_dir is not None else None
        if self.ledger is not None and request.force:
            self.ledger.forget()
        self.upstream = ""
        self.result = PipelineResult(layout.scene_dir, None)

    def rel(self, path: Path) -> str:
        root = self.request.layout.ledger_dir
        return str(Path(path).relative_to(root)) if root is not None else str(path)

    def step(self, name: str, parameters: dict, outputs: list[Path], work: Callable[[], str]) -> None:
        backend = self.backends[name]
        key = stage_key(name, self.upstream, {"backend": backend, **parameters})
        rel_outputs = [self.rel(p) for p in outputs]
        done = self.ledger.done(name, key) if self.ledger is not None else None
        if done is not None:
            self.echo(f"  {name:10s} skipped: done in an earlier run ({done.backend}, {done.seconds:.1f} s)")
            self.result.stages.append(StageOutcome(name, done.backend, True, 0.0, "; ".join(done.notes)))
        else:
            t0 = time.perf_counter()
            summary = work()
            seconds = time.perf_counter() - t0
            if self.ledger is not None:
                self.ledger.record(StageRecord(name, key, backend, parameters, rel_outputs, round(seconds, 3),
                                               notes=[summary] if summary else []))
            self.echo(f"  {name:10s} {backend}: {summary} ({seconds:.1f} s)")
            log.debug("stage %s (%s): %s in %.1f s", name, backend, summary, seconds)  # echo has said it
            self.result.stages.append(StageOutcome(name, backend, False, seconds, summary))
        self.upstream = key

    def timed(self, name: str, call: Callable, fn: Callable, *args) -> stages.StageOutput:
        t0 = time.perf_counter()
        try:
            return call(name, fn, *args)
        finally:
            self.result.seconds[name] = round(self.result.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _jsonable(config) -> dict:
    return asdict(config) if config is not None else {}


def _frame_key(source: SceneInput | None) -> dict:
    """The requested input frame (--up, --units, --scale): it changes what import / parse read."""
    return {"frame": asdict(source.frame.requested)} if source is not None and source.frame is not None else {}


def run_pipeline(
    request: PipelineRequest,
    options: PipelineOptions | None = None,
    *,
    echo: Callable[[str], None] = print,
    models: dict | None = None,
    call: Callable[..., Any] = _direct,
    backends: dict[str, str] | None = None,
) -> PipelineResult:
    """Run (or resume) ``request.stages`` in the pipeline's order. ``models``: already-built
    models by name (``flux``, ``clip``, ``trellis``), used instead of loading them from the
    configured weights. ``backends``: from :func:`plan_backends` when the caller already
    checked them (else checked here, before any work)."""
    options = options or PipelineOptions()
    given = dict(models or {})
    backends = backends or plan_backends(request, options, given)
    shared = stages.Models(options.generate, given, tuple(request.stages))  # shared.done(stage) releases models
    layout = request.layout
    work = layout.work_dir
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(request, backends, echo)
    bars = _Bars(request.progress)
    seed = options.generate.seed
    wanted = set(request.stages)

    scene_file: Path | None = None  # the fused scene the parse stage reads
    current: Path | None = None  # the last scene dir written
    export_dir: Path | None = None
    if request.source is not None and request.source.kind.value == "scene-dir":
        current = request.source.path

    if "image" in wanted:
        image_path = work / "image.png"
        if request.prompt:
            run.step("image", {"prompt": request.prompt, "candidates": options.generate.candidates, "seed": seed},
                     [image_path], lambda: run.timed("image", call, stages.text_to_image, request.prompt, image_path,
                                                     shared).summary)
        else:
            run.step("image", {"image": file_digest(request.image)}, [image_path],
                     lambda: run.timed("image", call, stages.copy_file, request.image, image_path).summary)
        shared.done("image")
    if "scene3d" in wanted:
        if request.scene_file:
            scene_file = work / ("scene" + request.scene_file.suffix.lower())
            run.step("scene3d", {"scene": file_digest(request.scene_file)}, [scene_file],
                     lambda: run.timed("scene3d", call, stages.copy_file, request.scene_file, scene_file).summary)
        else:
            scene_file = work / "scene.glb"
            run.step("scene3d", {"seed": seed}, [scene_file],
                     lambda: run.timed("scene3d", call, stages.image_to_3d, work / "image.png", scene_file, shared).summary)
        shared.done("scene3d")
    if "import" in wanted:
        out = work / "imported"
        run.step("import", {"input": file_digest(request.source.path), **_frame_key(request.source)}, [out / "scene.json"],
                 lambda: run.timed("import", call, stages.import_input, request.source, out).summary)
        current = out
    if "parse" in wanted:
        out = work / "parsed"
        parse_from = request.source if scene_file is None else scene_file
        if scene_file is not None and request.scene_file and request.source is not None:
            # the given scene, already read by the front door, is parsed as read (as the copy scene3d made)
            parse_from = replace(request.source, path=scene_file)
        digest = {"input": file_digest(request.source.path)} if scene_file is None else {}
        digest.update(_frame_key(request.source))

        def do_parse() -> str:
            lifting, tick = bars.over("parse: lifting 2D masks to 3D", lambda: options.parse.lift.iterations)
            with lifting:
                return run.timed("parse", call, stages.parse_input, parse_from, out, options.parse,
                                 (lambda i, n, loss: tick(i)) if tick else None).summary
        run.step("parse", {"seed": seed, **digest, "config": _jsonable(options.parse)}, [out / "scene.json"], do_parse)
        current = out
    if "complete" in wanted:
        src, out = current, work / "completed"

        def do_complete() -> str:
            bar, tick = bars.over("complete: views + occlusion + completion", lambda: _n_objects(src))
            with bar:
                return run.timed("complete", call, stages.complete, src, out, options.complete, tick).summary
        run.step("complete", {"seed": seed, "judge": options.complete.judge, "config": _jsonable(options.complete)},
                 [out / "scene.json"], do_complete)
        current = out
    if "label" in wanted:
        src, out = current, work / "labelled"
        label_config = options.label
        if not label_config.vocabulary and request.prompt:
            from exporters.materials import DENSITY_TABLE
            from hiscene_sim.label.base import prompt_vocabulary

            label_config = replace(label_config, vocabulary=tuple(prompt_vocabulary(request.prompt, DENSITY_TABLE)))
        if label_config.backend == "clip" and not label_config.backend_options.get("weights"):
            label_config = replace(label_config, backend_options={"weights": options.generate.weights_for("generate.clip.weights")})

        def do_label() -> str:
            bar, tick = bars.over(f"label ({label_config.backend})", lambda: _n_objects(src))
            with bar:
                return run.timed("label", call, stages.label, src, out, label_config, tick).summary
        run.step("label", {"config": label_config.public()}, [out / "scene.json"], do_label)
        current = out
    if "regenerate" in wanted:
        src, out = current, work / "regenerated"

        def do_regenerate() -> str:
            bar, tick = bars.over(f"regenerate ({options.regeneration})", lambda: _n_objects(src))
            with bar:
                return run.timed("regenerate", call, stages.regenerate, src, out, options.regeneration, shared, tick).summary
        run.step("regenerate", {"seed": seed}, [out / "scene.json"], do_regenerate)
        shared.done("regenerate")
        current = out
    if "background" in wanted:
        if request.prompt:
            src, out = current, work / "background"
            run.step("background", {"seed": seed, "prompt": request.prompt}, [out / "scene.json"],
                     lambda: run.timed("background", call, stages.background, src, out, request.prompt, shared).summary)
            current = out
        else:
            run.step("background", {"seed": seed, "prompt": None}, [], lambda: "kept the parsed background")
        shared.done("background")
    if "export" in wanted:
        src, export_dir = current, work / "export"

        def do_export() -> str:
            bar, tick = bars.over("export: watertight + CoACD + mass", lambda: _n_objects(src, everything=True))
            with bar:
                return run.timed("export", call, stages.export, src, export_dir, options.export, tick).summary
        export_params = {k: v for k, v in asdict(options.export).items() if k not in ("workers", "cache_dir")}
        run.step("export", {"config": export_params}, [export_dir / "export.json"], do_export)
    if "validate" in wanted:
        src, src_export = current, export_dir
        if src_export is None:
            raise ValueError("the validate stage needs the export stage before it")

        def do_validate() -> str:
            settled = run.timed("settle", call, stages.settle, src, src_export, layout.scene_dir, layout.export_dir,
                                options.validation, options.export)
            initial, final = settled.value
            checked = run.timed("validate", call, stages.validate, layout.export_dir, options.validation, initial, final)
            run.result.report = checked.value[0]
            return f"settle: {settled.summary}; {checked.summary}"
        run.step("validate", {"settle": True, "config": _jsonable(options.validation)},
                 [layout.scene_dir / "scene.json", layout.export_dir / "validation.json"], do_validate)
        current, export_dir = layout.scene_dir, layout.export_dir

    result = run.result
    result.scene_dir, result.export_dir = current, export_dir
    result.passed, result.report_path = _verdict(export_dir)
    return result


def _verdict(export_dir: Path | None) -> tuple[bool | None, Path | None]:
    import json

    path = export_dir / "validation.json" if export_dir is not None else None
    if path is None or not path.is_file():
        return None, None
    return bool(json.loads(path.read_text()).get("passed")), export_dir / "validation.md"
