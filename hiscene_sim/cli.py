"""The ``hiscene`` command.

Every stage here runs on CPU with no model weights. Backends that ran are printed with the
results and recorded in scene.json / export.json provenance.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hiscene_sim.options import (
    EXPORT_BACKENDS,
    PARSE_BACKENDS,
    add_export_options,
    add_input_options,
    add_parse_options,
    export_config_from_args,
    input_frame_from_args,
    parse_config_from_args,
)
from hiscene_sim.scene import SceneError
from hiscene_sim.view.commands import write_page_after_run

log = logging.getLogger("hiscene")

def _setup_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(message)s", datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)], force=True,
    )


def _print_export(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"export: {result.export_dir}")
    for col in ("id", "label", "kind", "mass kg", "hulls", "watertight", "seconds"):
        table.add_column(col)
    for o in result.objects:
        table.add_row(
            o.id, o.label, "background" if o.is_background else "rigid body",
            "static" if o.is_background else f"{o.mass.mass:.3f}", f"{len(o.hulls)}{' (cached)' if o.hulls_from_cache else ''}",
            o.repair_method, f"{sum(o.seconds.values()):.2f}",
        )
    console = Console()
    console.print(table)
    for fmt, rel in result.scene_files.items():
        console.print(f"  {fmt:5s} {result.export_dir / rel}")
    console.print(f"  urdf  {result.export_dir / 'objects'}/<id>/<id>.urdf (one per object)")
    console.print(f"  {EXPORT_BACKENDS}")
    if result.warnings:
        console.print(f"  [yellow]{len(result.warnings)} warning(s)[/yellow], listed in {result.export_dir / 'export.json'}")


def _run_export(scene_dir: Path, out: Path, config):
    from rich.progress import Progress

    from exporters.export import export_scene
    from hiscene_sim.scene import load_scene

    total = len(load_scene(scene_dir).all_objects())
    with Progress(transient=True) as progress:
        task = progress.add_task("objects: watertight + CoACD + mass", total=total)
        result = export_scene(scene_dir, out, config, on_object=lambda o: progress.advance(task))
    return result


def _print_frame(source) -> None:
    """The front door's frame choice and its warnings, for people."""
    if source.frame is None:
        return
    print(f"  frame: {source.frame.summary()}")
    for warning in source.frame.warnings:
        print(f"warning: {warning}")


def cmd_import(args: argparse.Namespace) -> int:
    from hiscene_sim.importer import import_scene
    from hiscene_sim.inputs import read_scene_input

    source = read_scene_input(args.scene, "import", input_frame_from_args(args))
    result = import_scene(source, args.out)
    print(f"imported {len(result.scene.objects)} objects and {len(result.scene.background)} background objects into {result.scene_dir}")
    for o in result.scene.all_objects():
        print(f"  {o.id:20s} label={o.label!r}" + (_joints_line(o) if o.articulation else ""))
    _print_frame(source)
    shown = set(source.frame.warnings) if source.frame else set()
    for warning in result.warnings:
        if warning not in shown:
            print(f"warning: {warning}")
    return 0


def _joints_line(obj) -> str:
    art = obj.articulation
    return f" articulated: {len(art.links)} links, joints " + ", ".join(f"{j.name} ({j.type})" for j in art.joints)


def cmd_add(args: argparse.Namespace) -> int:
    from hiscene_sim.add_asset import add_asset

    result = add_asset(args.scene_dir, args.asset, args.at, args.yaw, args.on, input_frame_from_args(args))
    o = result.object
    print(f"added {o.id} (label {o.label!r}) to {result.scene_dir} at {[round(v, 4) for v in o.pose.position]}, standing on "
          f"{result.rests_on}" + (_joints_line(o) if o.articulation else ""))
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def _point(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,Z in metres, got {text!r}")
    return values


def cmd_export(args: argparse.Namespace) -> int:
    result = _run_export(args.scene_dir, args.out, export_config_from_args(args))
    _print_export(result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return _demo_from_nodes(args) if args.from_nodes else _demo_from_fused(args)


def _demo_from_fused(args: argparse.Namespace) -> int:
    """The default demo: the desk fused into one welded surface, then ``hiscene generate
    --from-scene`` (the orchestrator's stages from scene3d on)."""
    import trimesh

    from hiscene_sim.demo import add_demo_cabinet, build_fused_desk, demo_paths
    from hiscene_sim.generate.config import GenerateConfig
    from hiscene_sim.generate.pipeline import WORK, GenerateRequest, generate_scene
    from hiscene_sim.orchestrator import PipelineOptions
    from hiscene_sim.scene import load_scene
    from hiscene_sim.testing.parse_metrics import score_parse

    t0 = time.perf_counter()
    paths = demo_paths(args.out)
    paths.root.mkdir(parents=True, exist_ok=True)
    fused_path = paths.root / "desk_fused.glb"
    fused = build_fused_desk(fused_path)
    print(f"1. built a desk scene from pybullet_data meshes ({fused.n_foreground} objects on a floor) and fused it into ONE "
          f"welded surface of {len(fused.mesh.faces)} faces, as a voxel-based image-to-3D model returns a scene: {fused_path}")
    print("2. hiscene generate --from-scene (CPU, no weights):")
    result = generate_scene(GenerateRequest(paths.scene_dir, from_scene=fused_path), GenerateConfig(seed=0),
                            echo=lambda line: print("   " + line), options=PipelineOptions(export=export_config_from_args(args)))
    parsed_dir = paths.scene_dir / WORK / "parsed"
    parsed = load_scene(parsed_dir)

    def world(objects):
        return [trimesh.load(parsed_dir / o.mesh, force="mesh").apply_transform(o.pose.matrix()) for o in objects]

    score = score_parse(fused, world(parsed.objects), world(parsed.background))
    print(f"3. parse against the ground truth: {score.n_pred} objects found of {score.n_gt}, mean matched IoU {score.mean_iou:.2f} "
          "(labels by the geometric labeller: the support surface 'table', the rest 'object'; a VLM names them: "
          "`hiscene label --vlm-url ...`; `hiscene demo --from-nodes` keeps the names)")
    print("4. one articulated object: a cabinet added with `hiscene add`, re-exported, settled and validated with its joints:")
    t4 = time.perf_counter()
    report = add_demo_cabinet(paths, export_config_from_args(args), echo=lambda line: print("   " + line))
    print(f"   ({time.perf_counter() - t4:.1f} s)")
    passed = bool(result.passed) and report.passed
    verdict = "PASS" if passed else "FAIL"
    print(f"done in {time.perf_counter() - t0:.1f} s: {verdict}. Scene dir {paths.scene_dir}, sim export {paths.export_dir}, "
          f"report {paths.export_dir / 'validation.md'}. Load it in PyBullet: python {paths.export_dir / 'load_pybullet.py'}")
    write_page_after_run(paths.export_dir)
    return 0 if passed else 1


def _demo_from_nodes(args: argparse.Namespace) -> int:
    """The desk as a GLB with one named node per object: import keeps names as labels; then
    complete, export, settle and validate through the orchestrator."""
    from hiscene_sim.demo import build_desk_glb, demo_paths
    from hiscene_sim.inputs import read_scene_input
    from hiscene_sim.orchestrator import PipelineLayout, PipelineOptions, PipelineRequest, run_pipeline

    t0 = time.perf_counter()
    paths = demo_paths(args.out)
    paths.root.mkdir(parents=True, exist_ok=True)
    build_desk_glb(paths.source_glb)
    print(f"1. built a desk scene from pybullet_data meshes: {paths.source_glb}")
    print("2. import -> complete (views, A.3 occlusion analysis, geometric completion) -> label (geometric: names kept) -> export -> settle + validate (CPU):")
    layout = PipelineLayout(paths.scene_dir, paths.export_dir, paths.root / "work", paths.root)
    request = PipelineRequest(layout, ("import", "complete", "label", "export", "validate"),
                              source=read_scene_input(paths.source_glb, "import"), force=True)
    result = run_pipeline(request, PipelineOptions(export=export_config_from_args(args)), echo=lambda line: print("   " + line))
    verdict = {True: "PASS", False: "FAIL", None: "not validated"}[result.passed]
    print(f"done in {time.perf_counter() - t0:.1f} s: {verdict}. Scene dir {paths.scene_dir} (labels kept), sim export "
          f"{paths.export_dir}, report {result.report_path}. Load it in PyBullet: python {paths.export_dir / 'load_pybullet.py'}")
    write_page_after_run(paths.export_dir)
    return 0 if result.passed else 1


def cmd_parse(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from hiscene_sim.inputs import InputKind, read_scene_input
    from hiscene_sim.stages import parse_input

    config = parse_config_from_args(args)
    source = read_scene_input(args.scene, "parse", input_frame_from_args(args))
    with Progress(transient=True) as progress:
        task = progress.add_task("lifting 2D masks to 3D", total=config.lift.iterations * config.runs)
        done = parse_input(source, args.out, config, progress=lambda i, n, loss: progress.update(task, completed=i, total=n))
    scene, parsed = done.value
    splat = source.kind is InputKind.GAUSSIANS
    times = ", ".join(f"{k} {v:.1f} s" for k, v in parsed.seconds.items())
    kind = f"{len(source.gaussians)} Gaussians" if splat else f"{len(source.mesh.faces)} faces"
    print(f"parsed {args.scene} ({kind}): {len(scene.objects)} objects + {len(scene.background)} background into {args.out} "
          f"({times}; lifting {parsed.lift_seconds_per_iteration * 1000:.1f} ms/iteration)")
    print(f"  {PARSE_BACKENDS}" + ("; splat render = CPU NumPy rasteriser, object meshes from Gaussians by voxel "
                                    "splatting + marching cubes" if splat else ""))
    _print_frame(source)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from hiscene_sim.scene import load_scene

    scene = load_scene(args.scene_dir)
    print(f"{args.scene_dir}: scene {scene.name!r}, {len(scene.objects)} objects, {len(scene.background)} background")
    for o in scene.all_objects():
        print(f"  {o.id:20s} {o.label!r:20s} mesh={o.mesh} position={[round(v, 4) for v in o.pose.position]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiscene",
        description="hiscene-sim: simulation-ready 3D scenes (HiScene) for PyBullet, MuJoCo and Isaac Sim. "
        "Everything below runs on CPU with weight-free backends.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="a desk scene from pybullet_data meshes, fused into one surface, through the whole CPU pipeline",
                       description="Build a desk scene from real pybullet_data meshes and fuse it into ONE welded surface (as "
                       "a voxel-based image-to-3D model returns a scene), then run `hiscene generate --from-scene` on it: "
                       "parse into objects, object-centric views + occlusion analysis + completion, regeneration (the "
                       "objects' own geometry made watertight), export for PyBullet / MuJoCo / Isaac Sim, settle and validate "
                       "(exit status 1 if validation fails); prints the parse score against the known ground truth. "
                       "--from-nodes instead imports the desk from a GLB with one named node per object (labels kept). "
                       "Every backend is CPU and weight-free: " + PARSE_BACKENDS + "; " + EXPORT_BACKENDS)
    p.add_argument("--out", type=Path, default=Path("hiscene-demo"), help="output folder (default ./hiscene-demo)")
    p.add_argument("--from-nodes", action="store_true", help="import the desk with one named node per object instead of fusing it")
    add_export_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="scene file (GLB/GLTF/OBJ/PLY/STL, one node per object), folder of meshes or URDF -> scene dir",
                       description="One object per mesh node (or per file of a folder of meshes); label = cleaned node or "
                       "file name (chair_2 -> chair); pose = node transform; floor/wall/... nodes become background; "
                       "textures and colours kept. A URDF becomes one articulated object (links, joints, limits, "
                       "damping / friction; +Z up by ROS convention unless --up says otherwise). Backends: trimesh, yourdfpy.")
    p.add_argument("scene", type=Path)
    p.add_argument("--out", type=Path, required=True)
    add_input_options(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("add", help="put a URDF or mesh asset into a scene dir, standing on the floor or on an object",
                       description="Read ASSET (a URDF: one articulated object; a GLB/GLTF/OBJ/PLY/STL: one rigid object) "
                       "through the same front door as import (--up, --units, --scale; URDF is +Z up), turn it by --yaw "
                       "about +Z and put the centre of its footprint at --at X,Y: standing on --on's top surface under it, "
                       "or on the floor (or the scene's lowest point); --at X,Y,Z puts its lowest point at Z. Written "
                       "atomically. Backends: yourdfpy + trimesh (ray casting for the support).")
    p.add_argument("scene_dir", type=Path)
    p.add_argument("asset", type=Path)
    p.add_argument("--at", type=_point, required=True, metavar="X,Y[,Z]", help="where its footprint's centre goes (metres)")
    p.add_argument("--yaw", type=float, default=0.0, help="turn about +Z, degrees (default 0)")
    p.add_argument("--on", default=None, metavar="OBJECT_ID", help="stand on this object (default: the floor)")
    add_input_options(p, "of ASSET")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("parse", help="fused scene (GLB/PLY mesh, one welded surface, or a 3DGS PLY) -> scene dir of separate objects",
                       description="Hierarchical scene parsing (paper 3.2, A.1, A.2): render the A.1 viewpoints, segment "
                       "each view, lift the masks to 3D by contrastive learning, cluster into objects, floor as background. "
                       "Objects are labelled 'object' (the weight-free default cannot name them). A 3DGS PLY (fields opacity, "
                       "scale_*, rot_*, as TRELLIS / 3DGS tools write it) is parsed as Gaussians: each object keeps its "
                       "Gaussians (gaussians/<id>.ply) and gets a closed mesh built from them. " + PARSE_BACKENDS)
    p.add_argument("scene", type=Path)
    p.add_argument("--out", type=Path, required=True)
    add_parse_options(p, group=None)
    add_input_options(p)
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("export", help="scene dir -> URDF / USD / MJCF / GLB sim assets",
                       description="Per object: watertight visual mesh, CoACD convex decomposition (cached), mass and "
                       "inertia from volume x density; then URDF (one per object), USD, MJCF and GLB. " + EXPORT_BACKENDS)
    p.add_argument("scene_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    add_export_options(p)
    p.set_defaults(func=cmd_export)

    from hiscene_sim.batch.commands import add_batch_parser
    from hiscene_sim.complete.commands import add_complete_parser
    from hiscene_sim.generate.commands import add_generate_parser
    from hiscene_sim.label.commands import add_label_parser
    from hiscene_sim.view.commands import add_view_parser
    from physics.commands import add_validate_parser

    add_complete_parser(sub)
    add_label_parser(sub)
    add_generate_parser(sub)
    add_validate_parser(sub)
    add_batch_parser(sub)
    add_view_parser(sub)

    p = sub.add_parser("info", help="print a scene dir's objects")
    p.add_argument("scene_dir", type=Path)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    from exporters.watertight import MeshError
    from hiscene_sim.backends import BackendError

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args) or 0)
    except (SceneError, MeshError, BackendError, FileExistsError, ValueError) as exc:
        print(f"hiscene {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hiscene {args.command}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
