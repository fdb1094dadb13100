"""The pipeline's stages, one function each: typed inputs (paths, configs, a
:class:`hiscene_sim.inputs.SceneInput`) in, a new output written, a :class:`StageOutput` back.

Every stage reads the previous stage's scene dir and writes its own; none writes into its
input. The orchestrator (:mod:`hiscene_sim.orchestrator`) chooses which run, in which order,
where each writes, and whether each runs here or as a Ray task (so every function here is
module-level and takes picklable arguments).

=============  ========================================  ===================================
stage          reads                                     writes
=============  ========================================  ===================================
image          a prompt (FLUX, "Isometric view of ...")  ``image.png`` (+ candidates)
scene3d        the image (TRELLIS) or a given scene      a fused scene file (GLB / 3DGS PLY)
import         a multi-node scene file                   a scene dir, one object per node
parse          a fused scene file                        a scene dir of parsed objects
complete       a scene dir                               the same + ``completion/`` views
regenerate     a scene dir                               each object regenerated, flat floor
background     a scene dir (+ prompt: FLUX + TRELLIS)    + the generated background (paper D)
export         a scene dir                               the sim export (URDF / USD / MJCF)
settle         a scene dir + its export                  settled scene dir + its export
validate       an export                                 the report, nothing else
=============  ========================================  ===================================
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes
from hiscene_sim.input_frame import AS_WRITTEN
from hiscene_sim.inputs import InputKind, SceneInput, read_scene_input

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None] | None


@dataclass
class StageOutput:
    """What a stage did: one line for people, and the value a caller may need (a report)."""

    summary: str
    value: Any = None


@dataclass
class Models:
    """Neural models built once per run and shared by the stages that use them (FLUX for the
    image and the background, TRELLIS for the scene, the background and Algorithm 3, InstantMesh
    for Algorithm 3). Given models are used as they are; missing ones load from the configured
    local files on first use (:func:`hiscene_sim.generate.loading.build_model`). ``done(stage)``
    releases the models this run built and no longer needs after ``stage`` of ``plan`` (the run's
    stages in order; :func:`hiscene_sim.generate.loading.release_after`); given ones are the
    caller's. Pickled (a stage sent to a Ray task), it keeps the given models' absence only: each
    task loads what it needs."""

    config: Any  # hiscene_sim.generate.config.GenerateConfig
    built: dict[str, Any] = field(default_factory=dict)
    plan: tuple[str, ...] = ()
    owned: set[str] = field(default_factory=set)  # names built here (not given)

    def __reduce__(self):
        return (Models, (self.config, {}, self.plan))

    def get(self, name: str):
        if name not in self.built:
            from hiscene_sim.generate.loading import build_model

            self.built[name] = build_model(name, self.config)
            self.owned.add(name)
        return self.built[name]

    def done(self, stage: str) -> list[str]:
        """Release (drop, collect, empty CUDA's cache) the built models no stage after ``stage`` needs."""
        from hiscene_sim.generate.loading import free_memory, release_after

        names = release_after(stage, self.plan, self.config, self.owned & set(self.built))
        for name in names:
            del self.built[name]
            self.owned.discard(name)
        if names:
            free_memory()
            log.info("after %s: released %s", stage, ", ".join(names))
        return names


# ------------------------------------------------------------------------------ image, scene3d
def text_to_image(prompt: str, image_path: Path, models: Models) -> StageOutput:
    import numpy as np
    from PIL import Image

    from hiscene_sim.generate.flux import choose_candidate, isometric_prompt

    config = models.config
    full = isometric_prompt(prompt)
    seeds = [config.seed + k for k in range(config.candidates)]
    candidates = models.get("flux").generate(full, seeds)
    index, record = choose_candidate(candidates, models.get("clip"), full)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    for k, c in enumerate(candidates):
        Image.fromarray(np.asarray(c.image)).save(image_path.parent / f"candidate_{k}.png")
    Image.fromarray(np.asarray(candidates[index].image)).save(image_path)
    atomic_write_bytes(image_path.parent / "candidates.json", json.dumps(record, indent=1, default=str).encode())
    return StageOutput(f"{len(candidates)} candidates for {full!r}; chose #{index}")


def copy_file(src: Path, dst: Path) -> StageOutput:
    """A given input (image, scene file) copied into the run, so a re-run sees what ran."""
    atomic_write_bytes(dst, Path(src).read_bytes())
    return StageOutput(f"{src} ({Path(src).stat().st_size} bytes)")


def image_to_3d(image_path: Path, scene_path: Path, models: Models) -> StageOutput:
    """TRELLIS: the image -> a fused scene, scaled so its longest horizontal side is
    ``scene_size`` metres (an image-to-3D model knows no metric scale), lowest point at z = 0;
    its Gaussians beside it when the model returns them."""
    import numpy as np
    from PIL import Image

    from hiscene_sim.render.gaussians import Gaussians, save_3dgs_ply

    config = models.config
    generated = models.get("trellis").generate([np.asarray(Image.open(image_path).convert("RGB"))], seed=config.seed)
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
                      scene_path.parent / "scene_gaussians.ply")
    return StageOutput(f"{len(mesh.faces)} faces, scaled x{scale:.3f} to {config.scene_size} m")


# ------------------------------------------------------------------------------ import, parse
def import_input(source: SceneInput | Path, out_dir: Path) -> StageOutput:
    from hiscene_sim.importer import import_scene

    # a path here is a file the pipeline wrote (metres, +Z up); user files come read by the front door
    source = source if isinstance(source, SceneInput) else read_scene_input(source, "import", AS_WRITTEN)
    result = import_scene(source, out_dir)
    return StageOutput(f"{len(result.scene.objects)} objects + {len(result.scene.background)} background "
                       "(one per mesh node)", result)


def parse_input(source: SceneInput | Path, out_dir: Path, config, progress: Callable | None = None) -> StageOutput:
    """Paper 3.2: a fused mesh or a 3DGS PLY -> a scene dir of separate objects. ``progress``:
    ``(iteration, total, loss)`` of the lifting."""
    from hiscene_sim.parse import parse_gaussians, parse_mesh, parts_of_gaussians, parts_of_mesh, write_parsed_scene

    source = source if isinstance(source, SceneInput) else read_scene_input(source, "parse", AS_WRITTEN)
    if source.kind is InputKind.GAUSSIANS:
        parsed = parse_gaussians(source.gaussians, config, progress=progress)
        parts = parts_of_gaussians(source.gaussians, parsed.labels)
    elif source.kind is InputKind.FUSED_MESH:
        parsed = parse_mesh(source.mesh, config, progress=progress)
        parts = parts_of_mesh(source.mesh, parsed.labels)
    else:
        raise ValueError(f"{source.path}: a {source.kind.value} input is not parsed")
    frame = source.frame.to_json() if source.frame is not None else None
    scene = write_parsed_scene(parts, parsed, out_dir, source.path, config, frame)
    dropped = f"; {len(parsed.dropped)} clean-up decisions (scene.json provenance)" if parsed.dropped else ""
    return StageOutput(f"{len(scene.objects)} objects + {len(scene.background)} background{dropped}", (scene, parsed))


# ------------------------------------------------------------------------------ complete, regenerate, background
def complete(in_dir: Path, out_dir: Path, config, progress: Progress = None) -> StageOutput:
    """Paper 3.3 + A.3: object-centric views, occlusion analysis, amodal completion."""
    from hiscene_sim.complete.stage import complete_scene

    results = complete_scene(in_dir, config, progress=progress, out_dir=out_dir)
    return StageOutput(f"{sum(r.n_selected for r in results)} views selected, {sum(r.n_completed for r in results)} "
                       f"completed, {sum(r.occluder_pixels_left for r in results)} occluder pixels left", results)


def label(in_dir: Path, out_dir: Path, config, progress: Progress = None) -> StageOutput:
    """A semantic label per object (the paper's l_i): the configured labeller, ids following labels."""
    from hiscene_sim.label.stage import label_scene

    results = label_scene(in_dir, config, out_dir=out_dir, progress=progress)
    fallbacks = sum(r.fell_back for r in results)
    labels = sorted({r.label for r in results})
    return StageOutput(f"{len(results)} objects by {config.backend}" + (f" ({fallbacks} fell back)" if fallbacks else "")
                       + f": {', '.join(labels)}", results)


def regenerate(in_dir: Path, out_dir: Path, backend: str, models: Models, progress: Progress = None) -> StageOutput:
    """Paper 3.4: ``geometry`` (each object's own surface made watertight) or ``trellis``
    (Algorithm 3, with the run's TRELLIS)."""
    from hiscene_sim.generate.regenerate import regenerate_geometry, regenerate_scene

    if backend == "trellis":
        from hiscene_sim.generate.regenerate_trellis import make_trellis_regenerator

        models.config.weights_for("generate.instantmesh.weights")  # checked before any model loads
        one = make_trellis_regenerator(models.config, image_to_3d=models.get("trellis"), reconstructor=models.get("instantmesh"))
    elif backend == "geometry":
        def one(obj, mesh, _in_dir):
            return regenerate_geometry(mesh, obj.id)
    else:
        raise ValueError(f"unknown regeneration backend {backend!r} (geometry, trellis)")
    results = regenerate_scene(in_dir, out_dir, one, backend, progress=progress)
    return StageOutput(f"{len(results)} objects ({sum(r.watertight for r in results)} watertight)", results)


def background(in_dir: Path, out_dir: Path, prompt: str, models: Models) -> StageOutput:
    """Paper D: "A background of ..." -> image -> 3D, fitted to the parsed floor."""
    import numpy as np

    from hiscene_sim.generate.background_section_d import add_generated_background, background_prompt
    from hiscene_sim.generate.flux import isometric_prompt

    config = models.config
    text = isometric_prompt(background_prompt(prompt))
    image = models.get("flux").generate(text, [config.seed])[0].image
    generated = models.get("trellis").generate([np.asarray(image)], seed=config.seed)
    placed = add_generated_background(in_dir, out_dir, generated.mesh, text)
    return StageOutput(f"{text!r} -> {len(generated.mesh.faces)} faces, fitted to {placed}")


# ------------------------------------------------------------------------------ export, settle, validate
def export(scene_dir: Path, export_dir: Path, config, progress: Progress = None) -> StageOutput:
    from exporters.export import export_scene

    count = [0]

    def advance(obj) -> None:
        count[0] += 1
        if progress is not None:
            progress(count[0], 0, obj.id)

    result = export_scene(scene_dir, export_dir, config, on_object=advance)
    return StageOutput(f"{len(result.objects)} objects -> {', '.join(sorted(result.scene_files))}", result)


PIPELINE_EXTRAS = ("export", "work", "pipeline.json", "batch.json", "batch.log")  # beside a published scene


def copy_export(src: Path, dst: Path, scene_dir: Path) -> None:
    """The export ``src`` copied to ``dst`` (atomically), its manifest naming ``scene_dir`` as
    its source."""
    from exporters.export import MANIFEST

    with atomic_directory(dst) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        manifest = json.loads((tmp / MANIFEST).read_text(encoding="utf-8"))
        manifest["source"] = str(Path(scene_dir).resolve())
        atomic_write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())


def settle(scene_in: Path, export_in: Path, scene_out: Path, export_out: Path, validation, export_config=None) -> StageOutput:
    """Placement repair as a stage of its own: the scene dir and its export are copied forward
    to ``scene_out`` / ``export_out`` and settled there (``physics.settle.settle_scene``:
    separate overlaps, drop floating objects, simulate to rest, re-export) until they
    validate. Returns (initial report, final report) as the value."""
    from hiscene_sim.scene_copy import copy_scene_dir
    from physics.settle import settle_scene

    copy_scene_dir(scene_in, scene_out, exclude=PIPELINE_EXTRAS)
    copy_export(export_in, export_out, scene_out)
    initial, final = settle_scene(export_out, scene_out, validation, export_config)
    moved = sorted({m.id for it in final.settle.iterations for m in it.moves})
    return StageOutput(f"{len(final.settle.iterations)} round(s), moved {', '.join(moved) or 'nothing'}", (initial, final))


def validate(export_dir: Path, validation, initial=None, final=None) -> StageOutput:
    """Reads the export and reports (``validation.json`` / ``.md`` and pictures beside it);
    ``initial`` / ``final``: the reports of a settle stage that ran just before."""
    from physics.report import report_validation

    report, paths = report_validation(export_dir, validation, initial=initial, final=final)
    pb, mj = report.pybullet, report.mujoco
    sims = f"PyBullet {pb.n_stable}/{pb.n_objects} stable" + (f", MuJoCo {mj.n_stable}/{mj.n_objects} stable" if mj else "")
    return StageOutput(f"{report.verdict} ({sims}); report {paths.markdown}", (report, paths))
