"""Every export option, named, in one config dataclass (the Isaac Lab converter style)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from exporters.materials import ALL_LABELS, DEFAULT_MATERIAL, MATERIAL_FIELDS, Material, material_for_label

ALL_FORMATS = ("urdf", "usd", "mjcf", "glb")


def default_cache_dir() -> Path:
    """``$HISCENE_CACHE_DIR``, else ``$XDG_CACHE_HOME/hiscene-sim``, else ``~/.cache/hiscene-sim``."""
    if os.environ.get("HISCENE_CACHE_DIR"):
        return Path(os.environ["HISCENE_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hiscene-sim"


@dataclass(frozen=True)
class CollisionConfig:
    """CoACD settings plus our pre-simplification. The defaults are tuned for speed at a
    hull-union volume IoU >= 0.9 (see benchmarks/bench_collision.py); ``coacd_defaults()``
    gives CoACD's own defaults."""

    threshold: float = 0.06  # concavity threshold, CoACD's main quality/speed knob (0.01..1)
    max_convex_hull: int = -1  # -1 = no limit (CoACD's hull merging is slow)
    preprocess_mode: str = "auto"  # "auto" | "on" | "off"
    preprocess_resolution: int = 30
    resolution: int = 500  # Hausdorff sampling resolution
    mcts_nodes: int = 10
    mcts_iterations: int = 20
    mcts_max_depth: int = 2
    pca: bool = False
    merge: bool = True
    decimate: bool = True  # limit vertices per hull (PhysX cooks at most 255 per convex mesh)
    max_ch_vertex: int = 64
    decimate_faces: int = 1500  # simplify the watertight mesh to this many faces first; 0 = off
    split_parts: bool = True  # decompose each connected part alone
    convex_tolerance: float = 0.02  # a part within 2% of its hull's volume is taken as convex
    seed: int = 0

    @staticmethod
    def coacd_defaults() -> "CollisionConfig":
        """CoACD's own defaults (``coacd.run_coacd``'s signature, 1.0.14), without pre-simplification."""
        return CollisionConfig(
            threshold=0.05, max_convex_hull=-1, preprocess_mode="auto", preprocess_resolution=50,
            resolution=2000, mcts_nodes=20, mcts_iterations=150, mcts_max_depth=3, pca=False, merge=True,
            decimate=False, max_ch_vertex=256, decimate_faces=0, split_parts=False, convex_tolerance=0.0, seed=0,
        )

    def coacd_kwargs(self) -> dict:
        d = asdict(self)
        d.pop("decimate_faces")
        d.pop("convex_tolerance")
        d.pop("split_parts")
        return d


@dataclass(frozen=True)
class RepairConfig:
    max_faces: int = 1_000_000  # meshes above this are decimated (with a warning)
    voxel_resolution: int = 96  # voxels along the longest side in the voxel-remesh fallback
    min_thickness: float = 0.002  # metres; flat meshes are thickened to at least this
    close_voxels: int = 2  # voxel remesh seals holes up to about twice this many voxels wide


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = ALL_FORMATS
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    # Materials by label (exporters/materials.py has the table and the override rule):
    densities: dict[str, float] = field(default_factory=dict)  # label -> kg/m^3, overrides the table
    materials: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> {Material field: value}
    default_density: float | None = None  # density of labels the table does not know
    static_friction: float | None = None  # None: by label; a number: every object
    dynamic_friction: float | None = None
    restitution: float | None = None
    ground: bool = True  # a static ground plane under a scene without a floor (exporters/ground.py)
    workers: int = 0  # processes for per-object work; 0 = all cores
    cache_dir: Path | None = None  # None = default_cache_dir(); hulls are cached there

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(ALL_FORMATS)
        if unknown or not self.formats:
            raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {', '.join(ALL_FORMATS)}")
        for label, values in self.material_overrides().items():
            if set(values) - set(MATERIAL_FIELDS):
                raise ValueError(f"materials[{label!r}]: unknown fields {sorted(set(values) - set(MATERIAL_FIELDS))}; "
                                 f"use {', '.join(MATERIAL_FIELDS)}")
            replace(self.default_material(), **values)  # raises on an invalid value (negative friction, ...)

    def default_material(self) -> Material:
        """The material of labels neither the table nor an override knows."""
        return DEFAULT_MATERIAL if self.default_density is None else replace(DEFAULT_MATERIAL, density=self.default_density)

    def material_overrides(self) -> dict[str, dict[str, float]]:
        """The overrides in ``material_for_label``'s form: key "*" for every label, then per label."""
        every = {name: getattr(self, name) for name in ("static_friction", "dynamic_friction", "restitution")}
        overrides = {ALL_LABELS: {k: v for k, v in every.items() if v is not None}}
        for label, density in self.densities.items():
            overrides[label] = {"density": density}
        for label, values in self.materials.items():
            overrides[label] = {**overrides.get(label, {}), **values}
        return overrides

    def material(self, label: str) -> tuple[Material, str]:
        """(material, matched key) of ``label`` with this config's overrides."""
        return material_for_label(label, self.material_overrides(), self.default_material())

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
