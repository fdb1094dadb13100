"""``hiscene generate``: every stage of the paper's pipeline into one output folder.

    prompt --(FLUX, "Isometric view of ...")--> image --(TRELLIS)--> fused 3D scene
      --(parse: A.1 views, 2D segmentation, lifting)--> objects
      --(complete: object-centric views, A.3 occlusion analysis, amodal completion)-->
      --(regenerate: Algorithm 3, or the object's own geometry made watertight)-->
      --(background: paper D with weights, else the parsed one)--> scene dir
      --(export: watertight, CoACD, mass; URDF / USD / MJCF)--> --(validate: settle in PyBullet, MuJoCo check)

Entry points: a prompt, ``--from-image IMG`` (skips text-to-image) or ``--from-scene
SCENE.glb|ply`` (a fused scene: skips both neural stages, so it runs on CPU with no weights).

This module turns the request into the orchestrator's (:mod:`hiscene_sim.orchestrator`), which
runs the stages. Output folder ``DIR``: the final (settled) scene dir (``scene.json``,
``meshes/``), its sim export in ``DIR/export``, every intermediate stage's own scene dir in
``DIR/work/`` and the ledger ``DIR/pipeline.json`` that makes a re-run resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hiscene_sim.generate.config import GenerateConfig
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.orchestrator import (
    WORK,
    PipelineLayout,
    PipelineOptions,
    PipelineRequest,
    PipelineResult,
    check_output_dir,
    plan_backends,
    run_pipeline,
)

__all__ = ["WORK", "GenerateRequest", "generate_scene", "needed_stages", "pipeline_options", "preflight", "result_json"]

GENERATE_STAGES = ("image", "scene3d", "parse", "complete", "label", "regenerate", "background", "export", "validate")


@dataclass
class GenerateRequest:
    out_dir: Path
    prompt: str | None = None
    from_image: Path | None = None
    from_scene: Path | None = None
    force: bool = False
    until: str = "validate"  # the last stage to run (``hiscene batch`` stops at "background" and goes on itself)
    frame: InputFrame = field(default_factory=InputFrame)  # how --from-scene's coordinates are read (--up, --units, --scale)

    def __post_init__(self) -> None:
        if self.until not in GENERATE_STAGES:
            raise ValueError(f"until must be one of {', '.join(GENERATE_STAGES)}, got {self.until!r}")
        given = [x for x in (self.prompt, self.from_image, self.from_scene) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of a prompt, --from-image IMG or --from-scene SCENE")
        if self.from_image is not None and not Path(self.from_image).is_file():
            raise ValueError(f"--from-image {self.from_image}: file not found")


def needed_stages(request: GenerateRequest) -> tuple[str, ...]:
    stages = GENERATE_STAGES[: GENERATE_STAGES.index(request.until) + 1]
    return stages[1:] if request.from_scene else stages


def pipeline_options(config: GenerateConfig, options: PipelineOptions | None = None) -> PipelineOptions:
    """The orchestrator's options from the generation config: its seed seeds parsing and the
    view selection; its completion / judge / regeneration backends choose those stages'."""
    from dataclasses import replace

    base = options or PipelineOptions()
    seed = config.seed
    parse = replace(base.parse, lift=replace(base.parse.lift, seed=seed), cluster=replace(base.parse.cluster, seed=seed))
    complete_options = {"weights": config.weights_for("completion.svd.weights")} if config.completion_backend == "svd" else {}
    complete = replace(base.complete, selection=replace(base.complete.selection, seed=seed), judge=config.judge,
                       backend=config.completion_backend, backend_options={**base.complete.backend_options, **complete_options})
    return replace(base, parse=parse, complete=complete, regeneration=config.regeneration_backend, generate=config)


def preflight(request: GenerateRequest, config: GenerateConfig, options: PipelineOptions | None = None,
              models: dict | None = None) -> list:
    """Every local file the run will read, each checked (:mod:`hiscene_sim.generate.preflight`);
    ``models``: already-built models, whose files are not needed."""
    from hiscene_sim.generate.preflight import requirements

    label = (options or PipelineOptions()).label
    return requirements(needed_stages(request), config, prompt=bool(request.prompt), image=request.from_image,
                        scene_file=bool(request.from_scene), label_backend=label.backend,
                        label_weights=bool(label.backend_options.get("weights")), given=(models or {}).keys())


def _pipeline_request(request: GenerateRequest, progress: bool = True) -> PipelineRequest:
    return PipelineRequest(PipelineLayout.in_folder(request.out_dir), needed_stages(request), prompt=request.prompt,
                           image=request.from_image, scene_file=request.from_scene, force=request.force,
                           progress=progress)


def generate_scene(request: GenerateRequest, config: GenerateConfig | None = None,
                   echo: Callable[[str], None] = print, models: dict | None = None,
                   options: PipelineOptions | None = None, progress: bool = True) -> PipelineResult:
    """Run (or resume) the pipeline into ``request.out_dir``. ``models``: already-built
    models by backend name (``flux``: a TextToImage, ``clip``: an ImageScorer, ``trellis``: an
    ImageTo3D), used instead of loading them from the configured weights. ``options``: the
    other stages' settings (parse, export, validation); the config's seed and backends win."""
    from hiscene_sim.generate.preflight import raise_if_missing

    config = config or GenerateConfig()
    raise_if_missing(preflight(request, config, options, models))  # every missing file at once, before any work
    pipeline_request = _pipeline_request(request, progress)
    opts = pipeline_options(config, options)
    backends = plan_backends(pipeline_request, opts, models)  # fails before any work
    out = Path(request.out_dir)
    check_output_dir(out)
    if request.from_scene:  # the front door: a missing or unreadable scene fails here, before any work
        from hiscene_sim.inputs import read_scene_input

        pipeline_request.source = read_scene_input(request.from_scene, "parse", request.frame)
        frame = pipeline_request.source.frame
        if frame is not None:
            echo(f"frame: {frame.summary()}")
            for warning in frame.warnings:
                echo(f"warning: {warning}")
    echo(f"hiscene generate into {out} (seed {config.seed}); backends: " + ", ".join(f"{k} = {v}" for k, v in backends.items()))
    return run_pipeline(pipeline_request, opts, echo=echo, models=models, backends=backends)


def result_json(result: PipelineResult) -> dict:
    return {"out_dir": str(result.scene_dir), "passed": result.passed, "stages": [asdict(s) for s in result.stages]}
