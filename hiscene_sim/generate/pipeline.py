"""``hiscene generate``: every stage of the paper's pipeline into one output folder.

    prompt --(FLUX, "Isometric view of ...")--> image --(TRELLIS)--> fused 3D scene
      --(parse: A.1 views, 2D segmentation, lifting)--> objects
      --(complete: object-centric views, A.3 occlusion analysis, amodal completion)-->
      --(regenerate: Algorithm 3, or the object's own geometry made watertight)--> scene dir
      --(export: watertight, CoACD, mass; URDF / USD / MJCF)--> --(validate: settle in PyBullet, MuJoCo check)

Entry points: a prompt, ``--from-image IMG`` (skips text-to-image) or ``--from-scene
SCENE.glb|ply`` (a fused scene: skips both neural stages, so it runs on CPU with no weights).

Output folder ``DIR``: the final scene dir (``scene.json``, ``meshes/``), the sim export in
``DIR/export`` (settled and validated), intermediate stages in ``DIR/work/`` and the ledger
``DIR/pipeline.json`` that makes a re-run resume (see :mod:`.ledger`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.backends import BackendError
from hiscene_sim.generate.config import GenerateConfig
from hiscene_sim.generate.ledger import LEDGER_FILE, Ledger, StageRecord, file_digest, stage_key

log = logging.getLogger(__name__)

WORK = "work"
STAGES = ("image", "scene3d", "parse", "complete", "regenerate", "background", "export", "validate")


@dataclass
class GenerateRequest:
    out_dir: Path
    prompt: str | None = None
    from_image: Path | None = None
    from_scene: Path | None = None
    force: bool = False

    def __post_init__(self) -> None:
        given = [x for x in (self.prompt, self.from_image, self.from_scene) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of a prompt, --from-image IMG or --from-scene SCENE")
        for path, what in ((self.from_image, "image"), (self.from_scene, "scene")):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"--from-{what} {path}: file not found")


@dataclass
class StageOutcome:
    name: str
    backend: str
    skipped: bool
    seconds: float
    summary: str = ""


@dataclass
class GenerateResult:
    out_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    passed: bool | None = None
    report_path: Path | None = None


def needed_stages(request: GenerateRequest) -> list[str]:
    if request.from_scene:
        return ["scene3d", "parse", "complete", "regenerate", "background", "export", "validate"]
    return list(STAGES)


def preflight(request: GenerateRequest, config: GenerateConfig, models: dict | None = None) -> dict[str, str]:
    """Backend per stage; every weight path a chosen neural backend needs is checked here,
    before any work (BackendError names the config key and the path). ``models`` holds
    already-built models by backend name (``flux``, ``trellis``): their weights are not needed."""
    models = models or {}
    backends = {}
    stages = needed_stages(request)
    if "image" in stages:
        if request.prompt:
            if config.image_backend != "flux":
                raise BackendError(f"unknown text-to-image backend {config.image_backend!r} (flux)")
            if "flux" not in models:
                config.weights_for("generate.flux.weights")
            backends["image"] = "flux" + ("+clip" if config.weights.get("generate.clip.weights") else "")
        else:
            backends["image"] = "given"
    if request.from_scene:
        backends["scene3d"] = "given"
    else:
        if "trellis" not in models:
            config.weights_for("generate.trellis.weights")
        backends["scene3d"] = "trellis"
    backends["parse"] = "render+geometric+contrastive-lifting"
    if config.completion_backend == "svd":
        config.weights_for("completion.svd.weights")
    elif config.completion_backend != "geometric":
        raise BackendError(f"unknown completion backend {config.completion_backend!r} (geometric, svd)")
    from hiscene_sim.occlusion import JUDGES

    if config.judge not in JUDGES.names():
        raise BackendError(f"unknown occlusion judge {config.judge!r} ({', '.join(JUDGES.names())})")
    backends["complete"] = f"{config.judge}-judge+{config.completion_backend}"
    if config.regeneration_backend == "trellis":
        config.weights_for("generate.instantmesh.weights")
        config.weights_for("generate.trellis.weights")
    elif config.regeneration_backend != "geometry":
        raise BackendError(f"unknown regeneration backend {config.regeneration_backend!r} (geometry, trellis)")
    backends["regenerate"] = config.regeneration_backend
    # paper D: with a prompt (so FLUX and TRELLIS are there) the background is regenerated
    backends["background"] = "flux+trellis" if request.prompt else "parsed"
    backends["export"] = "trimesh+coacd+usd-core"
    backends["validate"] = "pybullet+mujoco"
    return backends


def check_output_dir(out_dir: Path) -> None:
    """DIR must be new, empty, or an earlier ``hiscene generate`` output (it has the ledger)."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / LEDGER_FILE).is_file())):
        raise FileExistsError(f"{out_dir} exists and is not a hiscene generate output (no {LEDGER_FILE}); "
                              "choose a new folder")


class Runner:
    """Runs stages in order, skipping those the ledger says are done with the same inputs."""

    def __init__(self, request: GenerateRequest, config: GenerateConfig, backends: dict[str, str],
                 echo: Callable[[str], None]) -> None:
        self.request, self.config, self.backends, self.echo = request, config, backends, echo
        self.root = Path(request.out_dir)
        self.ledger = Ledger(self.root)
        if request.force:
            self.ledger.forget()
        self.upstream = ""
        self.result = GenerateResult(self.root)

    def run(self, name: str, parameters: dict, outputs: list[str], work: Callable[[], str]) -> None:
        key = stage_key(name, self.upstream, {"backend": self.backends[name], **parameters})
        done = self.ledger.done(name, key)
        if done is not None:
            self.echo(f"  {name:10s} skipped: done in an earlier run ({done.backend}, {done.seconds:.1f} s)")
            self.result.stages.append(StageOutcome(name, done.backend, True, 0.0, "; ".join(done.notes)))
        else:
            t0 = time.perf_counter()
            summary = work()
            seconds = time.perf_counter() - t0
            self.ledger.record(StageRecord(name, key, self.backends[name], parameters, outputs, round(seconds, 3),
                                           notes=[summary] if summary else []))
            self.echo(f"  {name:10s} {self.backends[name]}: {summary} ({seconds:.1f} s)")
            self.result.stages.append(StageOutcome(name, self.backends[name], False, seconds, summary))
        self.upstream = key


def generate_scene(request: GenerateRequest, config: GenerateConfig | None = None,
                   echo: Callable[[str], None] = print, models: dict | None = None) -> GenerateResult:
    """Run (or resume) the pipeline into ``request.out_dir``. ``models``: already-built
    models by backend name (``flux``: a TextToImage, ``clip``: an ImageScorer, ``trellis``: an
    ImageTo3D), used instead of loading them from the configured weights."""
    config = config or GenerateConfig()
    models = dict(models or {})
    backends = preflight(request, config, models)  # fails before any work
    out = Path(request.out_dir)
    check_output_dir(out)
    (out / WORK).mkdir(parents=True, exist_ok=True)
    runner = Runner(request, config, backends, echo)
    seed = config.seed
    echo(f"hiscene generate into {out} (seed {seed}); backends: " + ", ".join(f"{k} = {v}" for k, v in backends.items()))

    image_path = out / WORK / "image.png"
    scene_path = out / WORK / ("scene" + (request.from_scene.suffix.lower() if request.from_scene else ".glb"))
    if request.prompt:
        runner.run("image", {"prompt": request.prompt, "candidates": config.candidates, "seed": seed},
                   [f"{WORK}/image.png"], lambda: _text_to_image(request.prompt, config, image_path, models))
    elif request.from_image:
        runner.run("image", {"image": file_digest(request.from_image)}, [f"{WORK}/image.png"],
                   lambda: _copy(request.from_image, image_path))
    if request.from_scene:
        runner.run("scene3d", {"scene": file_digest(request.from_scene)}, [str(scene_path.relative_to(out))],
                   lambda: _copy(request.from_scene, scene_path))
    else:
        runner.run("scene3d", {"seed": seed}, [str(scene_path.relative_to(out))],
                   lambda: _image_to_3d(image_path, config, scene_path, out / WORK, models))

    parsed_dir = out / WORK / "parsed"
    runner.run("parse", {"seed": seed}, [f"{WORK}/parsed/scene.json"], lambda: _parse(scene_path, parsed_dir, seed))
    runner.run("complete", {"seed": seed, "judge": config.judge}, [f"{WORK}/parsed/completion"],
               lambda: _complete(parsed_dir, config))
    runner.run("regenerate", {"seed": seed}, ["scene.json", "meshes"], lambda: _regenerate(parsed_dir, out, config))
    runner.run("background", {"seed": seed, "prompt": request.prompt}, ["scene.json"],
               lambda: _background(request.prompt, out, config, models) if request.prompt else "kept the parsed background")
    runner.run("export", {}, ["export/export.json"], lambda: _export(out))
    state: dict = {}
    runner.run("validate", {}, ["export/validation.json"], lambda: _validate(out, state))
    result = runner.result
    result.passed, result.report_path = _verdict(out)
    return result


# ------------------------------------------------------------------------------- the stages
def _copy(src: Path, dst: Path) -> str:
    atomic_write_bytes(dst, Path(src).read_bytes())
    return f"{src} ({Path(src).stat().st_size} bytes)"


def _model(models: dict, name: str, config: GenerateConfig):
    """The model for backend ``name``: the one given, else loaded once from its weights."""
    if name not in models:
        if name == "flux":
            from hiscene_sim.generate.flux import FluxTextToImage

            models[name] = FluxTextToImage(weights=config.weights_for("generate.flux.weights"))
        elif name == "clip":
            from hiscene_sim.generate.flux import ClipImageScorer

            key = "generate.clip.weights"
            models[name] = ClipImageScorer(weights=config.weights_for(key)) if config.weights.get(key) else None
        elif name == "trellis":
            from hiscene_sim.generate.trellis import TrellisImageTo3D

            models[name] = TrellisImageTo3D(weights=config.weights_for("generate.trellis.weights"))
        else:  # pragma: no cover - programming error
            raise KeyError(name)
    return models[name]


def _text_to_image(prompt: str, config: GenerateConfig, image_path: Path, models: dict) -> str:
    import json

    import numpy as np
    from PIL import Image

    from hiscene_sim.generate.flux import choose_candidate, isometric_prompt

    full = isometric_prompt(prompt)
    seeds = [config.seed + k for k in range(config.candidates)]
    candidates = _model(models, "flux", config).generate(full, seeds)
    index, record = choose_candidate(candidates, _model(models, "clip", config), full)
    for k, c in enumerate(candidates):
        Image.fromarray(np.asarray(c.image)).save(image_path.parent / f"candidate_{k}.png")
    Image.fromarray(np.asarray(candidates[index].image)).save(image_path)
    atomic_write_bytes(image_path.parent / "candidates.json", json.dumps(record, indent=1, default=str).encode())
    return f"{len(candidates)} candidates for {full!r}; chose #{index}"


def _image_to_3d(image_path: Path, config: GenerateConfig, scene_path: Path, work: Path, models: dict) -> str:
    import numpy as np
    from PIL import Image

    from hiscene_sim.render.gaussians import Gaussians, save_3dgs_ply

    model = _model(models, "trellis", config)
    generated = model.generate([np.asarray(Image.open(image_path).convert("RGB"))], seed=config.seed)
    # an image-to-3D model knows no metric scale: the scene's longest horizontal side becomes
    # config.scene_size metres, its lowest point z = 0
    mesh = generated.mesh.copy()
    lo, hi = mesh.bounds
    scale = config.scene_size / max(float(np.max(hi[:2] - lo[:2])), 1e-9)
    shift = -np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]) * scale
    mesh.apply_scale(scale)
    mesh.apply_translation(shift)
    atomic_write_bytes(scene_path, mesh.export(file_type="glb"))
    if generated.gaussians is not None:
        g = generated.gaussians
        save_3dgs_ply(Gaussians(g.means * scale + shift, g.scales * scale, g.rotations, g.opacities, g.colors, g.sh_rest),
                      work / "scene_gaussians.ply")
    return f"{len(mesh.faces)} faces, scaled x{scale:.3f} to {config.scene_size} m"


def _parse(scene_path: Path, parsed_dir: Path, seed: int) -> str:
    import trimesh

    from exporters.mesh_io import load_mesh
    from hiscene_sim.lift import ClusterConfig, LiftConfig
    from hiscene_sim.parse import ParseConfig, parse_gaussians, parse_mesh, parts_of_gaussians, parts_of_mesh, write_parsed_scene
    from hiscene_sim.render.gaussians import is_3dgs_ply, load_3dgs_ply

    config = ParseConfig(lift=LiftConfig(seed=seed), cluster=ClusterConfig(seed=seed))
    if scene_path.suffix == ".ply" and is_3dgs_ply(scene_path):
        gaussians = load_3dgs_ply(scene_path)
        parsed = parse_gaussians(gaussians, config)
        parts = parts_of_gaussians(gaussians, parsed.labels)
    else:
        mesh = load_mesh(scene_path, f"scene file {scene_path}")
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=mesh.visual, process=True)
        parsed = parse_mesh(mesh, config)
        parts = parts_of_mesh(mesh, parsed.labels)
    scene = write_parsed_scene(parts, parsed, parsed_dir, scene_path, config)
    return f"{len(scene.objects)} objects + {len(scene.background)} background"


def _object_progress(description: str, total: int):
    """A progress bar over a stage's objects (rich: a live bar on a terminal, nothing in CI logs,
    where each stage still prints its summary line); returns (context, callback)."""
    from rich.progress import Progress

    progress = Progress(transient=True)
    task = progress.add_task(description, total=total)
    return progress, lambda done, *_: progress.update(task, completed=done)


def _n_objects(scene_dir: Path) -> int:
    from hiscene_sim.scene import load_scene

    return len(load_scene(scene_dir).objects)


def _complete(parsed_dir: Path, config: GenerateConfig) -> str:
    from hiscene_sim.complete.stage import CompleteConfig, complete_scene
    from hiscene_sim.occlusion.select import SelectionConfig

    options = {"weights": config.weights_for("completion.svd.weights")} if config.completion_backend == "svd" else {}
    bar, tick = _object_progress("complete: views + occlusion + completion", _n_objects(parsed_dir))
    with bar:
        results = complete_scene(parsed_dir, CompleteConfig(selection=SelectionConfig(seed=config.seed), judge=config.judge,
                                                            backend=config.completion_backend, backend_options=options),
                                 progress=tick)
    return (f"{sum(r.n_selected for r in results)} views selected, {sum(r.n_completed for r in results)} completed, "
            f"{sum(r.occluder_pixels_left for r in results)} occluder pixels left")


def _regenerate(parsed_dir: Path, out: Path, config: GenerateConfig) -> str:
    from hiscene_sim.generate.regenerate import regenerate_geometry, regenerate_scene

    if config.regeneration_backend == "trellis":
        from hiscene_sim.generate.regenerate_trellis import make_trellis_regenerator

        one = make_trellis_regenerator(config)
    else:
        def one(obj, mesh, _parsed_dir):
            return regenerate_geometry(mesh, obj.id)
    bar, tick = _object_progress(f"regenerate ({config.regeneration_backend})", _n_objects(parsed_dir))
    with bar:
        results = regenerate_scene(parsed_dir, out, one, config.regeneration_backend, progress=tick)
    watertight = sum(r.watertight for r in results)
    return f"{len(results)} objects ({watertight} watertight)"


def _background(prompt: str, out: Path, config: GenerateConfig, models: dict) -> str:
    """Paper D: "A background of ..." -> image -> 3D, fitted into the parsed scene's footprint
    with its floor at the parsed floor's top, added as static visual background; the flat
    parsed floor stays the physical support."""
    import numpy as np

    from hiscene_sim.generate.background import add_generated_background, background_prompt
    from hiscene_sim.generate.flux import isometric_prompt

    text = isometric_prompt(background_prompt(prompt))
    image = _model(models, "flux", config).generate(text, [config.seed])[0].image
    generated = _model(models, "trellis", config).generate([np.asarray(image)], seed=config.seed)
    placed = add_generated_background(out, generated.mesh, text)
    return f"{text!r} -> {len(generated.mesh.faces)} faces, fitted to {placed}"


def _export(out: Path) -> str:
    from exporters.export import export_scene
    from hiscene_sim.scene import load_scene

    bar, _ = _object_progress("export: watertight + CoACD + mass", len(load_scene(out).all_objects()))
    count = [0]

    def advance(_obj) -> None:
        count[0] += 1
        bar.update(bar.task_ids[0], completed=count[0])

    with bar:
        result = export_scene(out, out / "export", on_object=advance)
    return f"{len(result.objects)} objects -> {', '.join(sorted(result.scene_files))}"


def _validate(out: Path, state: dict) -> str:
    from physics.config import ValidationConfig
    from physics.report import validate_and_report

    report, paths = validate_and_report(out / "export", ValidationConfig(), settle=True, scene_dir=out)
    state["report"] = report
    pb, mj = report.pybullet, report.mujoco
    sims = f"PyBullet {pb.n_stable}/{pb.n_objects} stable" + (f", MuJoCo {mj.n_stable}/{mj.n_objects} stable" if mj else "")
    return f"{report.verdict} ({sims}); report {paths.markdown}"


def _verdict(out: Path) -> tuple[bool | None, Path | None]:
    import json

    path = out / "export" / "validation.json"
    if not path.is_file():
        return None, None
    data = json.loads(path.read_text())
    return bool(data.get("passed")), out / "export" / "validation.md"


def result_json(result: GenerateResult) -> dict:
    return {"out_dir": str(result.out_dir), "passed": result.passed,
            "stages": [asdict(s) for s in result.stages]}


def clean_work(out: Path) -> None:  # pragma: no cover - maintenance helper
    shutil.rmtree(out / WORK, ignore_errors=True)
