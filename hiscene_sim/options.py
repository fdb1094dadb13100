"""Command-line options shared by the commands that run the same stages (``parse``,
``generate``, ``demo``, ``batch``, ``export``): each stage's options are defined once here and
turned into that stage's config once here, so every command passes them the same way."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

EXPORT_BACKENDS = (
    "backends (CPU, no weights): watertight = trimesh weld -> pymeshfix -> voxel remesh (scipy, "
    "scikit-image, manifold3d); collision = CoACD; mass = trimesh volume integrals x density table"
)
PARSE_BACKENDS = (
    "backends (CPU, no weights): background = floor and wall planes found on the primitives first; render = "
    "Embree ray casting (A.1 viewpoints: corner views when walls are found, else 360 deg); 2D segmentation = "
    "geometric (depth jumps, concave creases, colour); lifting = contrastive clustering, Eq. 3-4 (torch); "
    "objects = prototype clustering + a cut along concave creases + colour islands (meshes with colour) + the rest-on rule + "
    "plausibility (loose, flat and "
    "too-small clusters merged or sent to the background; nothing under the minimum volume written), over --runs seeds "
    "with the objects most runs agree on kept"
)


def _material(text: str) -> tuple[str, str, float]:
    """``mug:dynamic_friction=0.3`` -> ("mug", "dynamic_friction", 0.3)."""
    scalar = ("density", "static_friction", "dynamic_friction", "restitution")
    label, _, rest = text.rpartition(":")
    name, _, value = rest.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not label.strip() or name not in scalar or number is None:
        raise argparse.ArgumentTypeError(f"expected LABEL:FIELD=VALUE with FIELD one of {', '.join(scalar)}, got {text!r}")
    return label.strip(), name, number


def _density(text: str) -> tuple[str, float]:
    label, sep, value = text.rpartition("=")
    try:
        if not sep or not label:
            raise ValueError
        density = float(value)
        if density <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LABEL=KG_PER_M3 with a positive number, got {text!r}") from None
    return label, density


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


# ------------------------------------------------------------------------------ input frame
def add_input_options(p: argparse.ArgumentParser, applies: str = "") -> None:
    """``--up``, ``--units``, ``--scale``: how the front door reads a scene file's coordinates.
    Units and scale are checked by the front door, which names the file with a bad value."""
    from hiscene_sim.input_frame import UP_CHOICES
    from hiscene_sim.units import UNITS

    g = p.add_argument_group("input frame" + (f" ({applies})" if applies else ""),
                             "the scene format is metres and +Z up; a scene file is turned and scaled into it on reading")
    g.add_argument("--up", choices=UP_CHOICES, default="auto",
                   help="the file's up axis: z (as written), y (glTF's convention: +90 deg about X), or auto (default): "
                   "guessed from how the geometry rests (floor, table top, an object's base), logged with the reason")
    g.add_argument("--units", default="m", metavar="{" + ",".join(UNITS) + "}",
                   help="what one unit of the file is (default m); sizes implausible for the objects' labels are warned about")
    g.add_argument("--scale", type=float, default=1.0, help="multiply the coordinates by this after --units (default 1)")


def input_frame_from_args(args: argparse.Namespace):
    from hiscene_sim.input_frame import InputFrame

    return InputFrame(up=args.up, units=args.units, scale=args.scale)


# ------------------------------------------------------------------------------ parse
def add_parse_options(p: argparse.ArgumentParser, group: str | None = "parse") -> None:
    from hiscene_sim.object_grouping import GroupingConfig

    g = p.add_argument_group(group) if group else p
    g.add_argument("--views", choices=("auto", "open", "corner"), default="auto",
                   help="parse: A.1 viewpoint set: corner (a) or 360 deg (b); auto (default): corner when walls are found")
    g.add_argument("--resolution", type=int, default=0,
                   help="parse: render size in pixels (default 0: about one pixel per surface sample, 512-1024)")
    g.add_argument("--segmenter", default="geometric", help="parse: 2D segmentation backend: geometric (default) or entityseg")
    g.add_argument("--color-edges", type=float, default=0.0, metavar="DELTA",
                   help="geometric: also cut where the colour steps by more than DELTA (RGB in [0, 1]) with no crease, "
                        "e.g. 0.2: separates touching objects of different colours, but splits multi-coloured ones (default 0: off)")
    g.add_argument("--runs", type=_positive_int, default=3, metavar="N",
                   help="parse: lift, cluster and group N times with consecutive seeds and keep the objects most runs agree "
                        "on (default 3; 1: one run, about a third of the lifting and clustering time)")
    g.add_argument("--crease", type=_non_negative_float, default=GroupingConfig().crease, metavar="T",
                   help="parse: cut every cluster along the concave creases through it (where the normals turn by T or more "
                        "between neighbouring faces) before the object rules, so a strip of an item's side in its support's "
                        "cluster goes back to the item (default %(default)s; 0: no cut)")
    g.add_argument("--islands", type=_non_negative_float, default=GroupingConfig().island_color, metavar="DELTA",
                   help="parse: cut out of a cluster the pieces whose colour is more than DELTA (RGB in [0, 1]) from the "
                        "cluster's median and that stand on its up-facing surface (a teddy on a table that the 2D "
                        "segmentation left in the table), before the object rules (default %(default)s; 0: no cut)")
    g.add_argument("--entityseg-config", type=Path, help="entityseg: CropFormer config YAML")
    g.add_argument("--entityseg-weights", type=Path, help="entityseg: CropFormer checkpoint")


def parse_config_from_args(args: argparse.Namespace, seed: int | None = None):
    """The ParseConfig of ``add_parse_options``; ``seed`` seeds lifting and clustering."""
    from hiscene_sim.object_grouping import GroupingConfig
    from hiscene_sim.parse import ParseConfig

    options = {}
    if args.segmenter == "geometric" and args.color_edges:
        options = {"color_edge": float(args.color_edges)}
    if args.segmenter == "entityseg":
        options = {"config_file": str(args.entityseg_config or ""), "weights": str(args.entityseg_weights or "")}
    config = ParseConfig(views=args.views, resolution=args.resolution, segmenter=args.segmenter, segmenter_options=options,
                         runs=args.runs, grouping=GroupingConfig(crease=args.crease, island_color=args.islands))
    if seed is not None:
        config = dataclasses.replace(config, lift=dataclasses.replace(config.lift, seed=seed),
                                     cluster=dataclasses.replace(config.cluster, seed=seed))
    return config


# ------------------------------------------------------------------------------ export
def add_export_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """``seed=False`` for commands whose ``--seed`` is their own (``generate``): CoACD keeps its default seed."""
    from exporters.config import ALL_FORMATS, CollisionConfig

    d = CollisionConfig()
    g = p.add_argument_group("export", EXPORT_BACKENDS)
    g.add_argument("--formats", default=",".join(ALL_FORMATS), help=f"comma list of {', '.join(ALL_FORMATS)} (default: all)")
    g.add_argument("--threshold", type=float, default=d.threshold, help=f"CoACD concavity threshold (default {d.threshold})")
    g.add_argument("--max-hulls", type=int, default=d.max_convex_hull, help=f"CoACD max convex hulls per object, -1 = no limit (default {d.max_convex_hull})")
    g.add_argument("--decimate-faces", type=int, default=d.decimate_faces, help=f"simplify to this many faces before CoACD, 0 = off (default {d.decimate_faces})")
    g.add_argument("--coacd-defaults", action="store_true", help="use CoACD's own default parameters (slow) instead of ours")
    if seed:
        g.add_argument("--seed", type=int, default=d.seed, help="CoACD random seed (default 0)")
    g.add_argument("--density", type=_density, action="append", default=[], metavar="LABEL=KG_PER_M3", help="override the density table for a label (repeatable)")
    g.add_argument("--default-density", type=float, default=None, help="density for labels not in the table")
    g.add_argument("--friction", type=float, default=None,
                   help="dynamic friction of every object (static = friction / 0.75; default: by label, exporters/materials.py)")
    g.add_argument("--restitution", type=float, default=None, help="restitution of every object (default: by label)")
    g.add_argument("--material", type=_material, action="append", default=[], metavar="LABEL:FIELD=VALUE",
                   help="override one material value for a label, e.g. mug:dynamic_friction=0.3 (repeatable)")
    g.add_argument("--no-ground", action="store_true",
                   help="no ground plane under a scene without a floor (default: a static plane at the scene's lowest "
                   "point in URDF, MJCF and USD, recorded in export.json; exporters/ground.py)")
    g.add_argument("--workers", type=int, default=0, help="processes for per-object work (default: all cores)")
    g.add_argument("--cache-dir", type=Path, default=None, help="collision cache (default $HISCENE_CACHE_DIR or ~/.cache/hiscene-sim)")


def export_config_from_args(args: argparse.Namespace, seed: int | None = None):
    """The ExportConfig of ``add_export_options``; ``seed``: CoACD's seed when the command has no ``--seed`` of its own."""
    from exporters.config import CollisionConfig, ExportConfig

    collision = CollisionConfig.coacd_defaults() if args.coacd_defaults else CollisionConfig()
    if not args.coacd_defaults:
        collision = dataclasses.replace(
            collision, threshold=args.threshold, max_convex_hull=args.max_hulls, decimate_faces=args.decimate_faces
        )
    coacd_seed = getattr(args, "seed", None) if seed is None else seed
    collision = dataclasses.replace(collision, seed=collision.seed if coacd_seed is None else coacd_seed)
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    kwargs: dict = {}
    if args.friction is not None:
        kwargs = {"dynamic_friction": args.friction, "static_friction": args.friction / 0.75}
    if args.restitution is not None:
        kwargs["restitution"] = args.restitution
    materials: dict[str, dict[str, float]] = {}
    for label, name, value in args.material:
        materials.setdefault(label, {})[name] = value
    if materials:
        kwargs["materials"] = materials
    return ExportConfig(
        formats=formats, collision=collision, densities=dict(args.density), default_density=args.default_density,
        workers=args.workers, cache_dir=args.cache_dir, ground=not getattr(args, "no_ground", False), **kwargs,
    )
