"""``hiscene complete``: object-centric views, occlusion analysis (A.3) and amodal completion
(3.3) for every foreground object of a scene dir.

Writes ``completion/<object id>/`` into the scene dir (replaced as a whole, atomically):

* ``view_NN.png``: the view with the whole scene; ``view_NN_masks.png``: R = full (amodal)
  mask, G = visible mask, B = occluder mask; ``cameras.json``: every view's camera and rho;
* ``object_NN.png`` / ``object_NN_mask.png``: the object alone and whole, for each selected view
  (completed when it was occluded, masked as it is otherwise);
* ``contact.png``: the tried views with their masks, rho and what A.3 decided.

and records per object in ``scene.json``: ``completion = {backend, judge, tau, views: [...one per
view...], images: [...], occluder_pixels_left}``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes
from hiscene_sim.complete.base import COMPLETERS, CompletionRequest, CompletionResult
from hiscene_sim.occlusion.occlusion_eq5_a3 import SelectionConfig, ViewDecision, select_views
from hiscene_sim.occlusion.views import ObjectView, ObjectViewConfig, ObjectViewRenderer, SceneGeometry
from hiscene_sim.scene import Provenance, Scene, load_scene, save_scene

log = logging.getLogger(__name__)

COMPLETION_DIR = "completion"


@dataclass(frozen=True)
class CompleteConfig:
    views: ObjectViewConfig = field(default_factory=ObjectViewConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    judge: str = "geometric"
    judge_options: dict = field(default_factory=dict)
    backend: str = "geometric"
    backend_options: dict = field(default_factory=dict)
    color_tolerance: int = 12  # 0-255: an occluded pixel whose colour did not change is an occluder left


@dataclass
class ObjectCompletion:
    object_id: str
    label: str
    decisions: list[ViewDecision]
    images: list[str]  # paths relative to the scene dir
    occluder_pixels_left: int
    occluded_pixels: int  # occluder pixels over the target's front surface in the completed views
    seconds: float

    @property
    def n_selected(self) -> int:
        return sum(d.selected for d in self.decisions)

    @property
    def n_completed(self) -> int:
        return sum(d.needs_completion for d in self.decisions)


def occluder_pixels_left(completed: CompletionResult, view: ObjectView, alone: np.ndarray, tolerance: int,
                         known: np.ndarray | None = None) -> int:
    """Pixels of the target's full mask where the completed image still shows the occluder:
    the view was occluded there, the completion kept the occluded view's colour, and the
    target itself (rendered alone) has a different colour there. ``known`` restricts the count
    to pixels where the target's own appearance is known (its front surface, not a hole cut by
    parsing, whose fill colour can match an occluder's by chance)."""
    occluded = view.occluder_mask if known is None else view.occluder_mask & known
    kept = np.abs(completed.image.astype(np.int16) - view.image.astype(np.int16)).max(axis=2) <= tolerance
    differs = np.abs(alone.astype(np.int16) - view.image.astype(np.int16)).max(axis=2) > tolerance
    return int(np.count_nonzero(occluded & kept & differs))


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _masks_rgb(view: ObjectView) -> np.ndarray:
    return (np.stack([view.full_mask, view.visible_mask, view.occluder_mask], axis=2) * 255).astype(np.uint8)


def _overlay(view: ObjectView) -> np.ndarray:
    """The view with the visible part tinted green and the hidden part red."""
    out = view.image.astype(np.float32)
    out[view.visible_mask] = 0.6 * out[view.visible_mask] + 0.4 * np.array([0, 200, 0])
    out[view.occluder_mask] = 0.4 * out[view.occluder_mask] + 0.6 * np.array([230, 0, 0])
    return out.astype(np.uint8)


def contact_sheet(label: str, views: list[ObjectView], decisions: list[ViewDecision], completed: dict[int, np.ndarray]) -> np.ndarray:
    """One row per tried view: the view, its masks (green visible, red hidden) and the object
    image used downstream (blank when discarded), captioned with azimuth, rho and the decision."""
    from PIL import Image, ImageDraw

    tried = [d for d in decisions if d.tried]
    size = 160
    caption = 28
    sheet = Image.new("RGB", (3 * size, len(tried) * (size + caption) + caption), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), f"{label}: {sum(d.selected for d in decisions)} views selected of {len(decisions)}", fill="black")
    for row, d in enumerate(tried):
        y = caption + row * (size + caption)
        v = views[d.index]
        tiles = [v.image, _overlay(v), completed.get(d.index, np.full_like(v.image, 235))]
        for col, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile).resize((size, size)), (col * size, y))
        state = "completed" if d.needs_completion else ("as is" if d.selected else "discarded")
        draw.text((4, y + size + 4), f"region {d.region} az {d.azimuth_deg:.0f} rho {d.rho:.2f}: {state}", fill="black")
    return np.asarray(sheet)


def _isolate(view: ObjectView) -> CompletionResult:
    """An unoccluded view's object image: its visible pixels on white."""
    image = np.full_like(view.image, 255)
    image[view.visible_mask] = view.image[view.visible_mask]
    return CompletionResult(image, view.visible_mask.copy(), "none")


def _report_steps(completer, on_fraction: Callable[[float], None] | None, done: int, todo: int) -> None:
    """Point a completer's ``step_callback`` (a neural backend's denoising steps) at the progress
    bar: the object's share of the bar moves with each step of each of its ``todo`` completions."""
    if on_fraction is None or not hasattr(completer, "step_callback"):
        return
    completer.step_callback = lambda step, total: on_fraction((done + step / max(total, 1)) / todo)


def complete_object(renderer: ObjectViewRenderer, completer, object_id: str, label: str, config: CompleteConfig, judge,
                    out: Path, rel: str, on_fraction: Callable[[float], None] | None = None) -> ObjectCompletion:
    """``on_fraction(f)``: progress within this object, f in [0, 1], as its completions advance."""
    t0 = time.perf_counter()
    views = renderer.render(object_id)
    decisions = select_views(views, label, judge, config.selection)
    images, objects = [], {}
    left = occluded = 0
    todo, done = sum(d.needs_completion for d in decisions), 0
    for d in decisions:
        v = views[d.index]
        atomic_write_bytes(out / f"view_{d.index:02d}.png", _png(v.image))
        atomic_write_bytes(out / f"view_{d.index:02d}_masks.png", _png(_masks_rgb(v)))
        if not d.selected:
            continue
        if d.needs_completion:
            _report_steps(completer, on_fraction, done, todo)
            result = completer.complete(CompletionRequest(v.image, v.visible_mask, v.full_mask, label, object_id, v.camera))
            done += 1
            alone, primitive, back = renderer.render_alone(object_id, v.camera)
            front = (primitive >= 0) & ~back
            left += occluder_pixels_left(result, v, alone, config.color_tolerance, known=front)
            occluded += int(np.count_nonzero(v.occluder_mask & front))
        else:
            result = _isolate(v)
        objects[d.index] = result.image
        atomic_write_bytes(out / f"object_{d.index:02d}.png", _png(result.image))
        atomic_write_bytes(out / f"object_{d.index:02d}_mask.png", _png(result.amodal_mask.astype(np.uint8) * 255))
        images.append(f"{rel}/object_{d.index:02d}.png")
    cameras = [{
        "index": d.index, "azimuth": d.azimuth_deg, "elevation": d.elevation_deg, "rho": d.rho,
        "width": views[d.index].camera.width, "height": views[d.index].camera.height,
        "fov_y_deg": views[d.index].camera.fov_y_deg, "world_to_camera": views[d.index].camera.world_to_camera.tolist(),
        "intrinsics": views[d.index].camera.intrinsics.tolist(),
    } for d in decisions]
    atomic_write_bytes(out / "cameras.json", json.dumps({"convention": "OpenCV (+x right, +y down, +z forward)",
                                                         "views": cameras}, indent=1).encode())
    atomic_write_bytes(out / "contact.png", _png(contact_sheet(label, views, decisions, objects)))
    seconds = time.perf_counter() - t0
    n_sel = sum(d.selected for d in decisions)
    log.info("%s (%s): %d/%d views selected, %d completed, %d occluder pixels left, %.1f s",
             object_id, label, n_sel, len(decisions), sum(d.needs_completion for d in decisions), left, seconds)
    return ObjectCompletion(object_id, label, decisions, images, left, occluded, seconds)


def clean_stale_temp_dirs(scene_dir: Path) -> list[Path]:
    """Remove what a killed run of this stage left beside ``completion/`` (``atomic_directory``'s
    ``.completion.tmp-*`` and ``.completion.old-*``), each with a log line. A run killed between
    moving the old folder aside and renaming the new one in left no ``completion/``: then the
    newest old folder (the one ``scene.json`` still points to) is put back instead."""
    scene_dir = Path(scene_dir)
    final = scene_dir / COMPLETION_DIR
    stale = sorted(p for pattern in (f".{COMPLETION_DIR}.tmp-*", f".{COMPLETION_DIR}.old-*") for p in scene_dir.glob(pattern)
                   if p.is_dir() and not p.is_symlink())
    olds = sorted((p for p in stale if p.name.startswith(f".{COMPLETION_DIR}.old-")), key=lambda p: p.stat().st_mtime)
    if olds and not final.exists():
        os.replace(olds[-1], final)
        log.warning("%s: restored %s from %s, left by an interrupted earlier run", scene_dir, final.name, olds[-1].name)
        stale.remove(olds[-1])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        log.warning("%s: removed %s, left by an interrupted earlier run", scene_dir, path.name)
    return stale


def _within_object(progress, n: int, total: int, object_id: str) -> Callable[[float], None]:
    """Object ``n``'s share of the progress over objects: ``progress(n + f, total, id)``."""
    return lambda f: progress(n + min(max(f, 0.0), 1.0), total, object_id)


def make_judge(name: str, options: dict):
    from hiscene_sim.occlusion import JUDGES

    return JUDGES.create(name, **options)


def complete_scene(scene_dir: Path, config: CompleteConfig | None = None, progress=None,
                   out_dir: Path | None = None) -> list[ObjectCompletion]:
    """Views + occlusion analysis + completion for every foreground object; ``scene.json``
    records the result (written last, so an interrupted run leaves the previous scene intact).

    With ``out_dir`` (the pipeline's way) the scene dir is copied forward there first and the
    input is not touched; without it (``hiscene complete DIR``) ``scene_dir`` gains its
    ``completion/`` folder and records in place."""
    config = config or CompleteConfig()
    scene_dir = Path(scene_dir)
    scene: Scene = load_scene(scene_dir)
    t_start = time.perf_counter()
    judge = make_judge(config.judge, config.judge_options)  # fails before any work when misconfigured
    completer = None
    if config.backend != "geometric":  # so does a neural backend (missing weights, a stock SVD UNet): before any copy or render
        completer = COMPLETERS.create(config.backend, **config.backend_options)
    if out_dir is not None and Path(out_dir).resolve() != scene_dir.resolve():
        from hiscene_sim.atomic import check_replaceable
        from hiscene_sim.scene import SCENE_FILE
        from hiscene_sim.scene_copy import copy_scene_dir

        check_replaceable(out_dir, SCENE_FILE, protect=scene_dir)  # never a folder that is not ours
        copy_scene_dir(scene_dir, out_dir, exclude=(COMPLETION_DIR,))
        scene_dir = Path(out_dir)
    clean_stale_temp_dirs(scene_dir)
    t0 = time.perf_counter()
    geometry = SceneGeometry.of_scene(scene, scene_dir)
    renderer = ObjectViewRenderer(geometry, config.views)
    if completer is None:
        completer = COMPLETERS.create("geometric", renderer=renderer)
    results = []
    n_objects = len(scene.objects)
    # atomic_directory removes its temp dir on any exception, KeyboardInterrupt and SystemExit included
    with atomic_directory(scene_dir / COMPLETION_DIR) as tmp:
        for n, obj in enumerate(scene.objects):
            rel = f"{COMPLETION_DIR}/{obj.id}"
            on_fraction = _within_object(progress, n, n_objects, obj.id) if progress is not None else None
            done = complete_object(renderer, completer, obj.id, obj.label, config, judge, tmp / obj.id, rel, on_fraction)
            results.append(done)
            obj.extra["completion"] = {
                "backend": completer.name, "judge": config.judge, "tau": config.selection.tau,
                "views": [d.to_json() for d in done.decisions], "images": done.images,
                "occluder_pixels_left": done.occluder_pixels_left, "seconds": round(done.seconds, 3),
            }
            if progress is not None:
                progress(n + 1, len(scene.objects), obj.id)
    scene.provenance.append(Provenance(
        "complete", f"views+{config.judge}-judge+{completer.name}-completion",
        {"n_views": config.views.n_views, "elevation": config.views.elevation_deg, "resolution": config.views.resolution,
         "tau": config.selection.tau, "regions": config.selection.n_regions, "seed": config.selection.seed},
        seconds=round(time.perf_counter() - t0, 3),
    ))
    save_scene(scene, scene_dir)
    log.info("complete: %d objects, %d views completed by %s (judge %s) in %.1f s", len(results),
             sum(r.n_completed for r in results), completer.name, config.judge, time.perf_counter() - t_start)
    return results
