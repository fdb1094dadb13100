"""Every export option, named, in one config dataclass (the Isaac Lab converter style)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    densities: dict[str, float] = field(default_factory=dict)  # label -> kg/m^3, overrides the table
    default_density: float | None = None  # overrides the table's fallback
    static_friction: float = 0.8
    dynamic_friction: float = 0.6
    restitution: float = 0.0
    workers: int = 0  # processes for per-object work; 0 = all cores
    cache_dir: Path | None = None  # None = default_cache_dir(); hulls are cached there

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(ALL_FORMATS)
        if unknown or not self.formats:
            raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {', '.join(ALL_FORMATS)}")

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
