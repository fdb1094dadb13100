"""The ``hiscene complete`` command (its parser and what it runs)."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

COMPLETE_BACKENDS = (
    "backends: views = Embree ray casting (exact instance masks); occlusion judge = geometric (default, exact) or vlm "
    "(OpenAI-compatible endpoint); completion = geometric (default, CPU, no weights: re-render without occluders) or "
    "svd (Stable Video Diffusion amodal completion, local weights)"
)


def add_complete_parser(sub) -> None:
    p = sub.add_parser(
        "complete", help="object-centric views + occlusion analysis + amodal completion for every object of a scene dir",
        description="Per foreground object: 16 views at 30 deg elevation around it with the whole scene present (full, "
        "visible and occluder masks), occlusion analysis of paper A.3 (4 regions, Eq. 5 rho, tau), and amodal completion "
        "of the selected occluded views. Writes completion/<id>/ (views, masks, cameras.json, object images, contact.png) "
        "and records it per object in scene.json. " + COMPLETE_BACKENDS,
    )
    p.add_argument("scene_dir", type=Path)
    p.add_argument("--out", type=Path, help="write the completed scene dir here (a copy) and leave SCENE_DIR untouched "
                   "(default: add completion/ and the records to SCENE_DIR itself)")
    p.add_argument("--backend", default="geometric", help="completion backend: geometric (default) or svd")
    p.add_argument("--weights", type=Path, help="svd: local amodal-completion checkpoint dir (SVD layout, 9-channel UNet; "
                   "a stock 8-channel SVD UNet is refused)")
    p.add_argument("--svd-steps", type=int, help="svd: denoising steps (default 25)")
    p.add_argument("--svd-frames", type=int, help="svd: video frames (default 8, or the model's own count when smaller)")
    p.add_argument("--svd-resolution", type=int, help="svd: model input size in pixels (default 512, or the model's own "
                   "size when smaller)")
    p.add_argument("--device", help="svd: torch device (default cuda when available, else cpu)")
    p.add_argument("--judge", default="geometric", help="occlusion judge: geometric (default) or vlm")
    p.add_argument("--vlm-base-url", help="vlm: OpenAI-compatible base URL (else $HISCENE_VLM_BASE_URL)")
    p.add_argument("--vlm-model", help="vlm: model name (else $HISCENE_VLM_MODEL); key from $OPENAI_API_KEY")
    p.add_argument("--tau", type=float, default=0.4, help="occlusion ratio limit for completion (default 0.4)")
    p.add_argument("--views", type=int, default=16, help="views per object (default 16)")
    p.add_argument("--elevation", type=float, default=30.0, help="view elevation in degrees (default 30)")
    p.add_argument("--resolution", type=int, default=256, help="view size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the order views are tried in (default 0)")
    p.set_defaults(func=cmd_complete)


def config_from_args(args: argparse.Namespace):
    from hiscene_sim.complete.stage import CompleteConfig
    from hiscene_sim.occlusion.occlusion_eq5_a3 import SelectionConfig
    from hiscene_sim.occlusion.views import ObjectViewConfig

    judge_options = {}
    if args.judge == "vlm":
        judge_options = {k: v for k, v in (("base_url", args.vlm_base_url), ("model", args.vlm_model)) if v}
    backend_options = {}
    if args.backend == "svd":
        svd = {"weights": args.weights, "num_inference_steps": args.svd_steps, "num_frames": args.svd_frames,
               "resolution": args.svd_resolution, "device": args.device}
        backend_options = {k: v for k, v in svd.items() if v is not None}
    return CompleteConfig(
        views=ObjectViewConfig(n_views=args.views, elevation_deg=args.elevation, resolution=args.resolution),
        selection=SelectionConfig(tau=args.tau, seed=args.seed),
        judge=args.judge, judge_options=judge_options, backend=args.backend, backend_options=backend_options,
    )


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside: SIGTERM (``kill``, a job scheduler's stop) raises KeyboardInterrupt in the main
    thread, so the stage unwinds like Ctrl-C: ``atomic_directory`` removes its ``.completion.tmp-*``
    and ``scene.json`` is left as it was. SIGKILL cannot be caught; the next run removes what it left
    (``clean_stale_temp_dirs``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_complete(scene_dir: Path, config, out_dir: Path | None = None) -> list:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from hiscene_sim.complete.stage import complete_scene
    from hiscene_sim.scene import load_scene

    n = len(load_scene(scene_dir).objects)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[object]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with sigterm_interrupts(), Progress(*columns, transient=True) as progress:
        # the bar moves within an object too, with each denoising step of a neural completion
        task = progress.add_task("objects: views + occlusion + completion", total=n, object="")
        return complete_scene(scene_dir, config, out_dir=out_dir,
                              progress=lambda done, total, oid: progress.update(task, completed=done, object=oid))


def print_completion(results: list, scene_dir: Path) -> None:
    for r in results:
        print(f"  {r.object_id:16s} {r.label!r:12s} {r.n_selected}/{len(r.decisions)} views selected, {r.n_completed} completed, "
              f"{r.occluder_pixels_left} occluder pixels left of {r.occluded_pixels}  ({r.seconds:.1f} s)")
    print(f"  views, masks, object images and contact sheets in {scene_dir / 'completion'}/<id>/")


def cmd_complete(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    results = run_complete(args.scene_dir, config, args.out)
    written = args.out or args.scene_dir
    print(f"completed {len(results)} objects of {args.scene_dir} into {written} (judge {config.judge}, completion {config.backend})")
    print_completion(results, written)
    print(f"  {COMPLETE_BACKENDS}")
    return 0
