"""``hiscene batch``: the CLI face of :mod:`hiscene_sim.batch`.

Wiring (in ``hiscene_sim.cli.build_parser``)::

    from hiscene_sim.batch.commands import add_batch_parser
    add_batch_parser(sub)             # sets func=cmd_batch on the subparser

``cmd_batch`` returns 0 only when every scene is ``ok`` (variants that were rejected do not
count: they are not scenes of the dataset), 1 otherwise; bad arguments raise ValueError,
which ``main`` turns into exit status 2; Ctrl-C propagates as KeyboardInterrupt (130).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from hiscene_sim.label.commands import add_label_options, label_config_from_args
from hiscene_sim.options import (
    add_export_options,
    add_input_options,
    add_parse_options,
    export_config_from_args,
    input_frame_from_args,
    parse_config_from_args,
)

BATCH_BACKENDS = (
    "backends (CPU, no weights): Ray tasks (one per scene; local Ray unless --address); stages as in `hiscene parse`, "
    "`hiscene import`, `hiscene export`, `hiscene validate --settle`; manifest as JSON lines + Parquet (pyarrow)"
)


def _resources(text: str):
    from hiscene_sim.batch.jobs import parse_resources

    try:
        return parse_resources(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
        if value < 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    return value


def add_batch_parser(subparsers) -> Callable[[argparse.Namespace], int]:
    """Define the ``batch`` subcommand on ``subparsers``; returns its handler."""
    from hiscene_sim.batch.jobs import GLB_MODES, VariantConfig
    from physics.config import ValidationConfig

    v, d = VariantConfig(), ValidationConfig()
    p = subparsers.add_parser(
        "batch", help="many scenes at once on Ray: parse/generate -> export -> validate --settle, a dataset manifest",
        description="Run every input through the stages it needs, one Ray task per scene, into DIR/<scene-name>/: a fused "
        "scene file (GLB/PLY: parse; a GLB with several mesh nodes: import), a scene dir (export), a .txt of prompts, one a "
        "line (generate; needs the generation stage). Then export and validate --settle. Writes DIR/manifest.jsonl, "
        "DIR/manifest.parquet and DIR/contact_sheet.png. A failing scene is recorded and the others go on; a dead worker "
        "is retried; running the same command again skips scenes already done with the same inputs and parameters. "
        "Without --address a local Ray starts on this machine. Exit status 0 only when every scene is ok. " + BATCH_BACKENDS,
    )
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="fused scene files (.glb/.gltf/.ply/.obj), scene dirs, prompt files (.txt), or folders of them")
    p.add_argument("--out", type=Path, help="output folder DIR (one sub-folder per scene)")
    p.add_argument("--summary", type=Path, metavar="DIR", help="print the table of an earlier batch's manifest and exit")
    p.add_argument("--html", action="store_true",
                   help="with --summary: also write a page per scene (hiscene view) and DIR/index.html, a card per scene")
    g = p.add_argument_group("Ray")
    g.add_argument("--address", default=None,
                   help="an existing Ray cluster: auto (the one `ray start` made here), HOST:PORT, or ray://HOST:PORT "
                   "(Ray client); default: start a local Ray")
    g.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all cores)")
    g.add_argument("--object-store-mb", type=int, default=200, help="object store of the local Ray in MB (default 200)")
    g.add_argument("--stage-resources", type=_resources, action="append", default=[], metavar="STAGE=cpus:N[,gpus:M]",
                   help="resources of a stage's Ray task; STAGE: scene (the task that runs a scene's stages, default "
                   "cpus:1), generate (default cpus:1,gpus:auto = one GPU if the cluster has any), parse, export, validate, "
                   "variants. A stage given here runs as its own task (the scene task waits for it and gives its CPU back "
                   "meanwhile); export uses its CPUs as processes. Repeatable")
    g.add_argument("--max-retries", type=_non_negative_int, default=2, help="re-runs of a scene whose worker died (default 2)")
    g.add_argument("--retry-failed", action="store_true", help="also redo scenes that failed on bad input last time")
    g.add_argument("--no-ray", action="store_true", help="run the scenes one after another in this process")
    g.add_argument("--ship-code", action="store_true",
                   help="send this checkout's hiscene_sim / exporters / physics to the cluster's workers (runtime_env)")
    g.add_argument("--worker-logs", action="store_true", help="show the workers' output here (default: in DIR/<scene>/batch.log)")
    g.add_argument("--progress", choices=("auto", "live", "log", "off"), default="auto",
                   help="live display on a terminal, log lines in CI (auto: by whether stderr is a terminal and $CI)")
    g.add_argument("--no-contact-sheet", action="store_true", help="skip DIR/contact_sheet.png")

    g = p.add_argument_group("variants (domain randomisation)")
    g.add_argument("--variants", type=_non_negative_int, default=0, metavar="K",
                   help="K variants of each scene that passes: seeded jitter of the objects' x/y, yaw and scale, then "
                   "settle + validate; only valid ones are kept (default 0)")
    g.add_argument("--jitter-pos-cm", type=float, default=v.position_m * 100, help=f"x/y jitter bound (default {v.position_m * 100:g})")
    g.add_argument("--jitter-yaw-deg", type=float, default=v.yaw_deg, help=f"yaw jitter bound (default {v.yaw_deg:g})")
    g.add_argument("--jitter-scale", type=float, default=v.scale, help=f"scale factor within 1 +- this (default {v.scale:g})")
    g.add_argument("--variant-seed", type=int, default=v.seed, help="seed of the jitter (default 0)")
    g.add_argument("--variant-attempts", type=int, default=v.attempts,
                   help="draws per variant at most: a rejected draw is redrawn (default 1: K draws, the valid ones kept)")

    g = p.add_argument_group("parse / generate")
    g.add_argument("--glb-mode", choices=GLB_MODES, default="auto",
                   help="auto: a scene file with one mesh is fused (parse), with several mesh nodes one object per node "
                   "(import); or force parse / import")
    g.add_argument("--prompt-seed", type=int, default=0, help="generation seed of the first prompt; line k adds k (default 0)")
    g.add_argument("--generate-config", type=Path, default=None,
                   help="`hiscene generate` config JSON with the weight paths (default: $HISCENE_*_WEIGHTS)")

    g = p.add_argument_group("validate (--settle always on)")
    g.add_argument("--max-drift-cm", type=float, default=d.max_drift_m * 100, help=f"stable: moves less (default {d.max_drift_m * 100:g})")
    g.add_argument("--max-rot-deg", type=float, default=d.max_rotation_deg, help=f"stable: turns less (default {d.max_rotation_deg:g})")
    g.add_argument("--max-penetration-mm", type=float, default=d.max_penetration_m * 1000,
                   help=f"deeper overlaps at t=0 fail (default {d.max_penetration_m * 1000:g})")
    g.add_argument("--iterations", type=_non_negative_int, default=d.settle_iterations,
                   help=f"settle rounds at most (default {d.settle_iterations})")
    g.add_argument("--no-mujoco", action="store_true", help="skip the MuJoCo cross-check")
    g.add_argument("--require-agreement", action="store_true", help="also fail when PyBullet and MuJoCo disagree")
    g.add_argument("--no-render", action="store_true", help="skip the renders (the contact sheet then has none)")
    add_parse_options(p)
    add_input_options(p, "scene files")
    add_label_options(p)
    add_export_options(p)
    for action in p._actions:  # the export options' --workers means something narrower here
        if action.dest == "workers":
            action.help = "processes for per-object export work in a scene (default: the export stage's CPUs, 1)"
    p.set_defaults(func=cmd_batch)
    return cmd_batch


def config_from_args(args: argparse.Namespace):
    from hiscene_sim.batch.jobs import BatchConfig, VariantConfig
    from physics.config import ValidationConfig

    validation = dataclasses.replace(
        ValidationConfig(), max_drift_m=args.max_drift_cm / 100.0, max_rotation_deg=args.max_rot_deg,
        max_penetration_m=args.max_penetration_mm / 1000.0, settle_iterations=args.iterations, mujoco=not args.no_mujoco,
        require_agreement=args.require_agreement, render=not args.no_render,
    )
    variants = VariantConfig(count=args.variants, position_m=args.jitter_pos_cm / 100.0, yaw_deg=args.jitter_yaw_deg,
                             scale=args.jitter_scale, seed=args.variant_seed, attempts=args.variant_attempts)
    config = BatchConfig(
        parse=parse_config_from_args(args), label=label_config_from_args(args), export=export_config_from_args(args), validation=validation, variants=variants, glb_mode=args.glb_mode,
        frame=input_frame_from_args(args),
        seed=args.prompt_seed, max_retries=args.max_retries,
        generate_config=str(args.generate_config.resolve()) if args.generate_config else None,
    )
    return config.with_resources(**dict(args.stage_resources))


def cmd_batch(args: argparse.Namespace) -> int:
    from hiscene_sim.batch.manifest import manifest_rows, print_summary, read_manifest
    from hiscene_sim.batch.progress import BatchProgress
    from hiscene_sim.batch.runner import code_runtime_env, run_batch

    if args.summary is not None:
        if args.inputs or args.out:
            raise ValueError("--summary DIR takes no inputs and no --out")
        try:
            rows = read_manifest(args.summary)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        counts = print_summary(rows, title=f"batch: {args.summary}")
        if args.html:
            from hiscene_sim.view.index import write_batch_pages

            pages = write_batch_pages(args.summary, rows)
            print(f"wrote {len(pages.pages)} scene page(s) and the index: {pages.index}")
        return 0 if counts["scenes"] and counts["ok"] == counts["scenes"] else 1
    if args.html:
        raise ValueError("--html goes with --summary DIR")
    if not args.inputs or args.out is None:
        raise ValueError("give INPUT... and --out DIR (or --summary DIR)")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    if args.address and args.num_cpus is not None:
        raise ValueError("--num-cpus sizes a local Ray; a cluster (--address) has its own")
    from hiscene_sim.batch.jobs import discover_jobs

    config = config_from_args(args)
    jobs = discover_jobs(args.inputs, config)
    if not jobs:
        raise ValueError("no scenes in the inputs (empty prompt files?)")
    progress = BatchProgress(len(jobs), enabled=args.progress != "off",
                             live=None if args.progress == "auto" else args.progress == "live")
    result = run_batch(
        jobs, args.out, config, use_ray=not args.no_ray, address=args.address, num_cpus=args.num_cpus,
        object_store_mb=args.object_store_mb, log_to_driver=args.worker_logs, retry_failed=args.retry_failed,
        runtime_env=code_runtime_env() if args.ship_code else None, progress=progress,
        contact_sheet=not args.no_contact_sheet,
    )
    rows = manifest_rows(result.records)
    if len(rows) <= 60:
        print_summary(rows, title=f"batch: {result.out_dir}")
    else:
        from hiscene_sim.batch.manifest import summary_counts

        c = summary_counts(rows)
        print(f"{c['scenes']} scene(s): {c['ok']} ok, {c['unstable']} unstable, {c['failed']} failed; "
              f"{c['variants']} variant(s) kept, {c['variants_rejected']} rejected (full table: hiscene batch --summary {args.out})")
    print(f"ran {result.ran} scene(s), {result.reused} already done; manifest: {result.outputs.get('jsonl')}")
    for kind in ("parquet", "contact_sheet"):
        if kind in result.outputs:
            print(f"  {kind.replace('_', ' ')}: {result.outputs[kind]}")
    if "parquet" not in result.outputs:
        print("  (no Parquet copy: pip install pyarrow)", file=sys.stderr)
    return 0 if result.all_ok else 1
