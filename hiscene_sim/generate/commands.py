"""The ``hiscene generate`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hiscene_sim.label.commands import LABEL_BACKENDS, add_label_options, label_config_from_args
from hiscene_sim.options import (
    add_export_options,
    add_input_options,
    add_parse_options,
    export_config_from_args,
    input_frame_from_args,
    parse_config_from_args,
)

GENERATE_HELP = (
    "Stages and backends: text-to-image = FLUX (generate.flux.weights; CLIP choice with generate.clip.weights); "
    "image-to-3D = TRELLIS (generate.trellis.weights); parse = CPU (Embree views, geometric segmenter, contrastive "
    "lifting); completion = geometric (CPU, default) or svd (completion.svd.weights); regeneration = geometry (CPU, "
    "default: the object's own surface made watertight) or trellis (Algorithm 3 with an InstantMesh prior: "
    "generate.instantmesh.weights + generate.trellis.weights); background = paper D ('A background of ...', FLUX + TRELLIS) with a prompt, else the parsed one with a flat floor; "
    "labels: see below (with a prompt and no --vocab, the prompt's nouns are the vocabulary); export = trimesh + CoACD "
    "+ usd-core; validation = PyBullet settle + MuJoCo check. With no weights, --from-scene runs everything on CPU; a "
    "prompt or --from-image needs the FLUX / TRELLIS weights and fails before any work without them, listing every missing "
    "file (--check lists them without running). Nothing is downloaded: every file is a local path, set by the flags "
    "below, $HISCENE_<NAME>_..., or --config FILE.json ({\"generate\": {\"flux\": {\"weights\": PATH, \"offload\": "
    "true}}}); docs/install-gpu.md names every key."
)


def add_generate_parser(sub) -> None:
    p = sub.add_parser(
        "generate", help="prompt / image / fused scene -> parsed, completed, regenerated, exported and validated sim scene",
        description="Run the HiScene pipeline into one folder: DIR is the final scene dir, DIR/export the settled and "
        "validated sim export, DIR/work the intermediate stages, DIR/pipeline.json what each stage did (a re-run resumes; "
        "--force redoes). Exit status 1 when validation fails. " + GENERATE_HELP + " " + LABEL_BACKENDS,
    )
    p.add_argument("prompt", nargs="?", help='what to generate, e.g. "a cozy reading corner" ("Isometric view of " is prefixed)')
    p.add_argument("--from-image", type=Path, help="start from an isometric scene image (skips text-to-image)")
    p.add_argument("--from-scene", type=Path, help="start from a fused 3D scene, GLB/PLY mesh or 3DGS PLY (CPU, no weights)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--force", action="store_true", help="redo every stage, ignoring what an earlier run finished")
    p.add_argument("--config", type=Path, help="JSON file with weight paths by config key")
    p.add_argument("--candidates", type=int, default=4, help="FLUX candidate images (default 4)")
    p.add_argument("--completion", default="geometric", help="completion backend: geometric (default) or svd")
    p.add_argument("--judge", default="geometric", help="occlusion judge: geometric (default) or vlm")
    p.add_argument("--regenerate", default="geometry", help="regeneration backend: geometry (default) or trellis")
    from hiscene_sim.generate.config import ALL_KEYS

    for setting in ALL_KEYS.values():  # every config key has its flag (docs/install-gpu.md lists them)
        env = f"; ${setting.env}" if setting.env else ""
        if setting.kind == "bool":
            p.add_argument(setting.flag, action="store_true", default=None, help=f"{setting.what} ({setting.key}{env})")
        else:
            p.add_argument(setting.flag, type=Path, help=f"{setting.what} ({setting.key}{env})")
    p.add_argument("--check", action="store_true",
                   help="do no work: list every local file this run would read (config key, flag, path, what for) and "
                        "exit 1 when one is missing or not as expected, 0 when all are present")
    p.add_argument("--json", action="store_true", help="print the stage summary as JSON")
    add_parse_options(p)
    add_input_options(p, "--from-scene")
    add_label_options(p)
    add_export_options(p, seed=False)
    p.set_defaults(func=cmd_generate)


def generate_config_from_args(args: argparse.Namespace):
    """The GenerateConfig of ``hiscene generate``'s arguments: every config key's flag over its environment
    variable over ``--config``."""
    from hiscene_sim.generate.config import ALL_KEYS, GenerateConfig

    overrides = {key: getattr(args, setting.flag.lstrip("-").replace("-", "_")) for key, setting in ALL_KEYS.items()}
    return GenerateConfig.load(args.config, overrides, completion_backend=args.completion, judge=args.judge,
                               regeneration_backend=args.regenerate, candidates=args.candidates, seed=args.seed)


def cmd_generate(args: argparse.Namespace) -> int:
    from hiscene_sim.generate.pipeline import GenerateRequest, generate_scene, preflight, result_json
    from hiscene_sim.generate.preflight import report
    from hiscene_sim.orchestrator import PipelineOptions

    config = generate_config_from_args(args)
    request = GenerateRequest(args.out, args.prompt, args.from_image, args.from_scene, args.force,
                              frame=input_frame_from_args(args))
    options = PipelineOptions(parse=parse_config_from_args(args), label=label_config_from_args(args),
                              export=export_config_from_args(args, seed=0))
    if args.check:  # before any work: nothing is loaded, nothing written
        reqs = preflight(request, config, options)
        print(report(reqs))
        return 1 if any(r.problem for r in reqs) else 0
    result = generate_scene(request, config, echo=(lambda s: None) if args.json else print, options=options)
    if args.json:
        print(json.dumps(result_json(result), indent=1, default=str))
    else:
        verdict = {True: "PASS", False: "FAIL", None: "not validated"}[result.passed]
        print(f"done: {verdict}. Scene dir {result.scene_dir}, sim export {result.export_dir}"
              + (f", report {result.report_path}" if result.report_path else ""))
        from hiscene_sim.view.commands import write_page_after_run
        write_page_after_run(result.export_dir)
    return 0 if result.passed else 1
