"""Hierarchical scene parsing (paper 3.2, A.1, A.2): a fused 3D scene in, objects out.

render the A.1 viewpoints -> 2D entity segmentation per view -> contrastive lifting of the
masks to a feature per primitive (Eq. 3-4) -> clustering into instances -> 3D clean-up
(clusters cut at concave creases; adjacent parts join unless one rests on the other; the floor
is recognised as background) -> a scene dir with one object per instance. Lifting, clustering
and clean-up run ``ParseConfig.runs`` times with consecutive seeds and the objects most runs
agree on are kept (:mod:`hiscene_sim.consensus`).

Primitives are mesh faces (``parse_mesh``) or 3D Gaussians (``parse_gaussians``); both
feed the same lifting and clustering code through the renderers' sparse pixel weights.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import trimesh

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes, check_replaceable
from hiscene_sim.consensus import consensus_objects
from hiscene_sim.lifting_eq3_4 import ClusterConfig, LiftConfig, cluster, lift, relabel_by_area
from hiscene_sim.object_grouping import Grouping, GroupingConfig, group_objects, resolve_roots
from hiscene_sim.parse_background import FLOOR, WALL, Background, SceneScale, detect_background
from hiscene_sim.render.cameras import Camera, viewpoints
from hiscene_sim.render.result import RenderResult
from hiscene_sim.scene import SCENE_FILE, Pose, Provenance, Scene, SceneError, SceneObject, save_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseConfig:
    # A.1: "corner" (type (a): azimuths over 100 deg facing the room's corner), "open" (type (b):
    # azimuths over [0, 360)), or "auto": corner when walls are found, else open
    views: str = "auto"
    n_azimuth: int = 8
    n_elevation: int = 5
    resolution: int = 0  # render size; 0: pixels_per_sample per surface sample, within [min_resolution, max_resolution]
    pixels_per_sample: float = 1.5
    min_resolution: int = 512
    max_resolution: int = 1024
    segmenter: str = "geometric"
    segmenter_options: dict = field(default_factory=dict)
    lift: LiftConfig = field(default_factory=LiftConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    merge_similarity: float = 0.8  # adjacent clusters whose mean features are this similar merge
    knn: int = 8  # neighbours per Gaussian for clustering
    floor_min_span: float = 0.6  # a floor's up-facing primitives span this share of the scene's x and y extent
    wall_min_span: float = 0.85  # a wall spans this share of the scene along it
    min_volume_samples: float = 3.0  # no object's hull under (this many surface samples)^3 is written
    # lifting + clustering + object rules run this many times (seeds lift.seed + r, cluster.seed + r)
    # and the objects most runs agree on are kept (hiscene_sim.consensus): one seed's result flips
    # 2-3 of 10 scenes
    runs: int = 3


@dataclass
class ParsedScene:
    labels: np.ndarray  # (n_primitives,) instance id, 0..K-1
    background: set[int]  # instance ids recognised as background (floor / walls)
    n_views: int
    seconds: dict[str, float]
    lift_seconds_per_iteration: float
    background_kinds: dict[int, str] = field(default_factory=dict)  # background id -> "floor" / "wall"
    dropped: list[str] = field(default_factory=list)  # clusters that were not plausible objects, and why
    min_volume: float = 0.0  # m^3: no object whose hull is smaller is written

    def foreground(self) -> list[int]:
        return [k for k in np.unique(self.labels).tolist() if k not in self.background]


def render_resolution(scale: SceneScale, config: ParseConfig) -> int:
    """Pixels across a view: the views cover the scene's bounding sphere, so one pixel per
    surface sample is its diameter over the spacing (a chair leg of a room stays a few pixels
    wide)."""
    if config.resolution:
        return config.resolution
    return int(np.clip(round(config.pixels_per_sample * scale.diagonal / scale.spacing), config.min_resolution, config.max_resolution))


def scene_cameras(bounds: np.ndarray, config: ParseConfig, scale: SceneScale | None = None,
                  background: Background | None = None) -> list[Camera]:
    """The A.1 viewpoints: type (a) corner views centred on the direction the walls open
    towards (``views="corner"``, or ``"auto"`` with walls found), else type (b) 360 deg views."""
    size = render_resolution(scale, config) if scale is not None else (config.resolution or config.min_resolution)
    azimuth = background.corner_azimuth() if background is not None else None
    kind = config.views if config.views != "auto" else ("corner" if azimuth is not None else "open")
    azimuth_range = None
    if kind == "corner" and azimuth is not None:
        azimuth_range = (azimuth - 50.0, azimuth + 50.0)  # the paper's [-5, 95] for walls at -x and -y
    return viewpoints(
        kind, n_azimuth=config.n_azimuth, n_elevation=config.n_elevation, bounds=bounds,
        width=size, height=size, azimuth_range=azimuth_range,
    )


def _segment_views(views: list[RenderResult], config: ParseConfig) -> list[tuple[sp.csr_matrix, np.ndarray]]:
    from hiscene_sim.segment import SEGMENTERS

    segmenter = SEGMENTERS.create(config.segmenter, **config.segmenter_options)
    return [(v.weights, segmenter.segment(v).ravel()) for v in views]


def _lift_and_cluster(views, n_primitives, adjacency, areas, config, progress):
    t0 = time.perf_counter()
    lifted = lift(views, n_primitives, config.lift, progress=progress)
    t_lift = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = cluster(lifted.features, adjacency, areas, lifted.observed, config.cluster)
    labels = merge_similar(labels, lifted.features, areas, adjacency, config.merge_similarity)
    return labels, lifted, t_lift, time.perf_counter() - t0


def merge_similar(labels: np.ndarray, features: np.ndarray, areas: np.ndarray, adjacency: sp.spmatrix, threshold: float) -> np.ndarray:
    """Merge adjacent clusters whose area-weighted mean features have cosine >= threshold.
    Each round every cluster joins its most similar neighbour above the threshold (all at
    once, so the rounds do not grow with the number of clusters); means are recomputed
    between rounds."""
    labels = relabel_by_area(labels, areas)
    adjacency = sp.coo_matrix(adjacency)
    for _ in range(100):
        k = int(labels.max()) + 1
        means = np.zeros((k, features.shape[1]))
        np.add.at(means, labels, features * areas[:, None])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        a, b = labels[adjacency.row], labels[adjacency.col]
        pairs = np.unique(np.sort(np.stack([a[a != b], b[a != b]], axis=1), axis=1), axis=0)
        if len(pairs) == 0:
            break
        sims = np.einsum("ij,ij->i", means[pairs[:, 0]], means[pairs[:, 1]])
        keep = sims >= threshold
        if not keep.any():
            break
        src = np.concatenate([pairs[keep, 0], pairs[keep, 1]])
        dst = np.concatenate([pairs[keep, 1], pairs[keep, 0]])
        sim = np.concatenate([sims[keep], sims[keep]])
        order = np.lexsort((-sim, src))
        src, dst = src[order], dst[order]
        first = np.ones(len(src), dtype=bool)
        first[1:] = src[1:] != src[:-1]
        parent = np.arange(k)
        # every cluster points at its best partner; pairs pointing at each other keep the
        # larger (lower id: ids are by area) as the root
        parent[src[first]] = dst[first]
        mutual = (parent[parent] == np.arange(k)) & (parent < np.arange(k))
        parent[parent[mutual]] = parent[mutual]
        parent = resolve_roots(parent)
        labels = relabel_by_area(parent[labels], areas)
    return labels


@dataclass
class Primitives:
    """What the 3D clean-up needs of the primitives (faces or Gaussians), whatever they are."""

    centers: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3) unit
    areas: np.ndarray  # (N,) surface area each stands for
    zmin: np.ndarray  # (N,) lowest point
    zmax: np.ndarray  # (N,) highest point
    pairs: np.ndarray  # (E, 2) neighbouring primitives
    pair_z: np.ndarray  # (E,) height of the contact between each pair
    pair_xy: np.ndarray  # (E, 2) where the contact is, horizontally
    pair_length: np.ndarray  # (E,) length of the contact (the shared edge; a sample length for Gaussians)
    spacing: float  # surface sampling length (about the generator's voxel pitch)
    oriented_normals: bool = True  # False for Gaussians: a disc's normal has no sign
    colors: np.ndarray | None = None  # (N, 3) RGB in [0, 1]; None where the surface has no colour of its own

    def adjacency(self) -> sp.coo_matrix:
        n = len(self.centers)
        return sp.coo_matrix((np.ones(len(self.pairs)), (self.pairs[:, 0], self.pairs[:, 1])), shape=(n, n))

    @staticmethod
    def of_mesh(mesh: trimesh.Trimesh) -> "Primitives":
        z = mesh.triangles[:, :, 2]
        edge_ends = mesh.vertices[mesh.face_adjacency_edges]  # (E, 2, 3)
        edge_mid = edge_ends.mean(axis=1)
        # a quarter of a marching-cubes surface's edges are shorter than its voxel pitch
        spacing = float(np.percentile(mesh.edges_unique_length, 25)) if len(mesh.edges_unique) else 1.0
        return Primitives(
            mesh.triangles_center, mesh.face_normals, mesh.area_faces, z.min(axis=1), z.max(axis=1),
            mesh.face_adjacency, edge_mid[:, 2], edge_mid[:, :2],
            np.linalg.norm(edge_ends[:, 1] - edge_ends[:, 0], axis=1), max(spacing, 1e-9),
            colors=_face_colors(mesh),
        )

    @staticmethod
    def of_gaussians(gaussians, k: int) -> "Primitives":
        from scipy.spatial import cKDTree

        means = np.asarray(gaussians.means, dtype=np.float64)
        dist, nearest = cKDTree(means).query(means, k=k + 1)
        # uniform samples of a surface: the median nearest-neighbour distance is ~0.4 sample lengths
        spacing = max(2.5 * float(np.median(dist[:, 1])), 1e-9)
        close = (dist[:, 1:] <= 2.0 * spacing).ravel()  # neighbours across a gap are not neighbours
        pairs = np.stack([np.repeat(np.arange(len(means)), k), nearest[:, 1:].ravel()], axis=1)[close]
        pairs = np.unique(np.sort(pairs, axis=1), axis=0)
        areas = np.pi * np.prod(np.sort(np.asarray(gaussians.scales), axis=1)[:, 1:], axis=1)
        # heights of the centres: a disc's footprint would put a standing object's lowest
        # point below the floor it stands on, hiding the contact at its bottom
        return Primitives(
            means, gaussians.normals(), areas, means[:, 2], means[:, 2],
            pairs, means[pairs, 2].mean(axis=1), means[pairs, :2].mean(axis=1), np.full(len(pairs), spacing), spacing,
            oriented_normals=False,
        )


def _face_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(F, 3) albedo at each face's centroid (vertex colours, face colours or texture, as the
    renderer sees them), or None for a mesh of one colour."""
    from hiscene_sim.render.surface import SurfaceAlbedo

    albedo = SurfaceAlbedo(mesh)
    if albedo.kind == "constant":
        return None
    n = len(mesh.faces)
    return albedo(np.arange(n), np.full((n, 3), 1.0 / 3.0)).astype(np.float64)


def face_adjacency_matrix(mesh: trimesh.Trimesh) -> sp.coo_matrix:
    return Primitives.of_mesh(mesh).adjacency()


def scene_scale(prims: Primitives) -> SceneScale:
    return SceneScale(np.minimum(prims.centers.min(axis=0), [np.inf, np.inf, prims.zmin.min()]),
                      np.maximum(prims.centers.max(axis=0), [-np.inf, -np.inf, prims.zmax.max()]), prims.spacing)


def _parse(prims: Primitives, render: Callable, config: ParseConfig, progress) -> ParsedScene:
    """The part of parsing that is the same for faces and Gaussians: background first
    (:mod:`hiscene_sim.parse_background`), then the A.1 views it calls for, segmentation,
    lifting and clustering, then the object rules (:mod:`hiscene_sim.object_grouping`)."""
    scale = scene_scale(prims)
    t0 = time.perf_counter()
    background = detect_background(prims.centers, prims.normals, prims.areas, prims.zmin, prims.zmax, scale,
                                   config.floor_min_span, config.wall_min_span)
    seconds = {"background": time.perf_counter() - t0}
    t0 = time.perf_counter()
    views = render(scene_cameras(np.stack([scale.lo, scale.hi]), config, scale, background))
    seconds["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    view_masks = _segment_views(views, config)
    seconds["segment"] = time.perf_counter() - t0
    n_views, width = len(views), (views[0].camera.width if views else 0)
    del views  # the images: lifting needs only the pixel weights and the masks
    grouping, per_iteration, run_seconds = _objects_by_consensus(view_masks, prims, background, scale, config, progress)
    seconds.update(run_seconds)
    t0 = time.perf_counter()
    labels, kinds = _with_background(grouping.labels, prims, background)
    seconds["cleanup"] += time.perf_counter() - t0
    log.info("parsed %d primitives: %d objects, background %s (spacing %.4g m, %d px views, %d runs, %s)", len(labels),
             len(np.unique(labels)) - len(kinds), sorted(kinds.values()), scale.spacing, width, config.runs,
             ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return ParsedScene(labels, set(kinds), n_views, seconds, per_iteration, kinds, grouping.dropped,
                       min_volume=(config.min_volume_samples * scale.spacing) ** 3)


def _objects_by_consensus(view_masks, prims: Primitives, background: Background, scale: SceneScale, config: ParseConfig,
                          progress) -> tuple[Grouping, float, dict[str, float]]:
    """Lifting, clustering and the object rules ``config.runs`` times with seeds ``seed + r``,
    then the objects a majority of the runs agree on (:func:`hiscene_sim.consensus.consensus_objects`).
    Returns the grouping (what the first run dropped, then the candidates no majority had), the
    mean lifting time per iteration, and the seconds of each step summed over the runs.

    The runs are independent; with more than one core they run in forked worker processes (each
    lifts on one thread, and the views are shared with the parent, not copied). Progress is then
    reported as the runs finish."""
    runs = max(1, int(config.runs))
    inputs = (view_masks, prims, prims.adjacency(), background, scale, config)  # the graph built once for every run
    workers = min(runs, _cores())
    results = []
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        global _RUN_INPUTS
        _RUN_INPUTS = inputs
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for r, result in enumerate(pool.map(_run_in_worker, range(runs))):
                    results.append(result)
                    if progress is not None:
                        progress((r + 1) * config.lift.iterations, runs * config.lift.iterations, float("nan"))
        finally:
            _RUN_INPUTS = None
    else:
        for r in range(runs):
            run_progress = None if progress is None else (
                lambda i, n, loss, r=r: progress(r * n + i, runs * n, loss))
            results.append(_one_run(r, *inputs, run_progress))
    seconds = {"lift": 0.0, "cluster": 0.0, "cleanup": 0.0}
    for result in results:
        for key in seconds:
            seconds[key] += result.seconds[key]
    t0 = time.perf_counter()
    agreed = consensus_objects([result.labels for result in results], prims.areas, prims.pairs)
    seconds["consensus"] = time.perf_counter() - t0
    dropped = list(results[0].dropped)
    if runs > 1:
        dropped += [f"consensus: {reason}" for reason in agreed.rejected]
    return Grouping(agreed.labels, dropped), float(np.mean([r.per_iteration for r in results])), seconds


@dataclass
class _Run:
    labels: np.ndarray  # object id per primitive, -1 background
    dropped: list[str]
    per_iteration: float
    seconds: dict[str, float]


# What forked workers read: set by the parent just before it forks them, so the views are shared
# rather than pickled. One parse at a time per process (batch runs each scene in its own process).
_RUN_INPUTS = None


def _cores() -> int:
    """Cores this process may use: its CPU affinity, capped by ``OMP_NUM_THREADS`` when set (Ray
    sets it to a task's CPUs, so a batch task does not fork more workers than it was given)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(limit))) if limit.isdigit() and int(limit) > 0 else cores


def _run_in_worker(r: int) -> _Run:
    return _one_run(r, *_RUN_INPUTS, None)


def _one_run(r: int, view_masks, prims: Primitives, adjacency: sp.coo_matrix, background: Background, scale: SceneScale,
             config: ParseConfig, progress) -> _Run:
    """One seed's lifting, clustering and object rules."""
    run_config = replace(config, lift=replace(config.lift, seed=config.lift.seed + r),
                         cluster=replace(config.cluster, seed=config.cluster.seed + r))
    clusters, lifted, t_lift, t_cluster = _lift_and_cluster(
        view_masks, len(prims.centers), adjacency, prims.areas, run_config, progress)
    t0 = time.perf_counter()
    grouping = group_objects(clusters, prims, background, scale, config.grouping)
    t_group = time.perf_counter() - t0
    log.info("run %d (seed %d): %d objects", r + 1, run_config.lift.seed, len(np.unique(grouping.labels[grouping.labels >= 0])))
    return _Run(grouping.labels, grouping.dropped, lifted.seconds_per_iteration,
                {"lift": t_lift, "cluster": t_cluster, "cleanup": t_group})


def _with_background(object_labels: np.ndarray, prims: Primitives, background: Background) -> tuple[np.ndarray, dict[int, str]]:
    """(labels, background kinds): objects 0..K-1 by area, then the floor, then each wall;
    anything else the rules sent to the background joins the floor (or, with no floor, is a
    background instance of its own, kind ``background``)."""
    fg = object_labels >= 0
    labels = np.empty(len(object_labels), dtype=np.int64)
    labels[fg] = relabel_by_area(object_labels[fg], prims.areas[fg])
    k = int(labels[fg].max()) + 1 if fg.any() else 0
    kinds: dict[int, str] = {}
    bg_kind = np.where(fg, 0, background.kind)
    floor = ~fg & ((bg_kind == FLOOR) | ((bg_kind == 0) & (background.floor_z is not None)))
    wall = ~fg & (bg_kind == WALL) & (background.wall_index >= 0)
    for kind, sel in [("floor", floor)] + [("wall", wall & (background.wall_index == i)) for i in range(len(background.walls))] \
            + [("background", ~fg & ~floor & ~wall)]:
        if sel.any():
            labels[sel] = k
            kinds[k] = kind
            k += 1
    return labels, kinds


def parse_mesh(mesh: trimesh.Trimesh, config: ParseConfig | None = None, progress: Callable | None = None) -> ParsedScene:
    """Instance id of every face of a fused mesh."""
    from hiscene_sim.render.mesh import render_views

    config = config or ParseConfig()
    # one ray-casting structure for all views
    return _parse(Primitives.of_mesh(mesh), lambda cameras: render_views(mesh, cameras), config, progress)


def parse_gaussians(gaussians, config: ParseConfig | None = None, progress: Callable | None = None) -> ParsedScene:
    """Instance id of every 3D Gaussian of a splat scene (same lifting and clustering code,
    fed by the Gaussian renderer's alpha-compositing weights)."""
    from hiscene_sim.render.splat import render_gaussian_views

    config = config or ParseConfig()
    prims = Primitives.of_gaussians(gaussians, config.knn)
    return _parse(prims, lambda cameras: render_gaussian_views(gaussians, cameras), config, progress)


# ----------------------------------------------------------------------------------------
# writing the scene dir


@dataclass(eq=False)
class ParsedPart:
    """One instance's share of the fused scene, in world coordinates: its surface, and its
    Gaussians when the scene was a splat (the mesh is then built from them)."""

    mesh: trimesh.Trimesh
    gaussians: object | None = None  # hiscene_sim.render.gaussians.Gaussians


def parts_of_mesh(mesh: trimesh.Trimesh, labels: np.ndarray) -> dict[int, ParsedPart]:
    parts = {}
    for k in np.unique(labels).tolist():
        part = mesh.submesh([np.flatnonzero(labels == k)], append=True, repair=False)
        part.remove_unreferenced_vertices()
        parts[int(k)] = ParsedPart(part)
    return parts


def parts_of_gaussians(gaussians, labels: np.ndarray, min_gaussians: int = 8) -> dict[int, ParsedPart]:
    """Each instance's Gaussians and a closed surface built from them
    (:func:`hiscene_sim.gaussian_mesh.mesh_from_gaussians`, one voxel size for the scene)."""
    from hiscene_sim.gaussian_mesh import default_pitch, mesh_from_gaussians

    pitch = default_pitch(np.asarray(gaussians.means, dtype=np.float64))
    parts = {}
    for k in np.unique(labels).tolist():
        index = np.flatnonzero(labels == k)
        if len(index) < min_gaussians:
            log.warning("instance %d has only %d Gaussians: dropped", k, len(index))
            continue
        g = gaussians.subset(index)
        parts[int(k)] = ParsedPart(mesh_from_gaussians(g, pitch), g)
    return parts


def hull_volume(mesh: trimesh.Trimesh) -> float:
    """Volume of the convex hull of a part (0 for a flat or degenerate one)."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.asarray(mesh.vertices)
    if len(points) < 4:
        return 0.0
    try:
        return float(ConvexHull(points).volume)
    except QhullError:
        return 0.0


def write_parsed_scene(parts: dict[int, ParsedPart], parsed: ParsedScene, out_dir: Path, source: Path, config: ParseConfig,
                       frame: dict | None = None) -> Scene:
    """One object per foreground instance (label ``object``: the weight-free default cannot
    name things), the floor as background; each mesh (and its Gaussians, for a splat scene) in
    a local frame whose origin is the centre of its footprint at its lowest point. ``frame``:
    how the front door put the source into the scene frame (recorded in the provenance)."""
    from hiscene_sim.render.gaussians import Gaussians, save_3dgs_ply

    try:
        check_replaceable(out_dir, SCENE_FILE, protect=None)
    except FileExistsError as exc:
        raise SceneError(str(exc)) from None
    provenance = Provenance(
        "parse", f"render+{config.segmenter}+contrastive-lifting",
        {"source": str(Path(source).resolve()), "views": config.views, "n_views": parsed.n_views,
         "min_object_volume_m3": parsed.min_volume, "dropped": parsed.dropped,
         "resolution": config.resolution, "runs": config.runs, "lift": asdict(config.lift), "cluster": asdict(config.cluster),
         **({"frame": frame} if frame is not None else {})},
        seconds=round(sum(parsed.seconds.values()), 3), created=datetime.now(timezone.utc).isoformat(),
    )
    objects, background, meshes, splats = [], [], {}, {}
    n_fg, n_bg = 0, {}
    for k, part in sorted(parts.items()):
        if k not in parsed.background and parsed.min_volume > 0:
            volume = hull_volume(part.mesh)
            if volume < parsed.min_volume:
                log.warning("instance %d: hull volume %.3g m3 is under the minimum %.3g m3: not an object, dropped",
                            k, volume, parsed.min_volume)
                parsed.dropped.append(f"instance {k}: hull volume {volume:.3g} m3 < {parsed.min_volume:.3g} m3 -> dropped")
                continue
        lo, hi = part.mesh.bounds
        origin = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        local = part.mesh.copy()
        local.apply_translation(-origin)
        if k in parsed.background:
            label = parsed.background_kinds.get(k, "floor")
            n_bg[label] = n_bg.get(label, 0) + 1
            oid, bucket = (label if n_bg[label] == 1 else f"{label}_{n_bg[label]}"), background
        else:
            n_fg += 1
            oid, label, bucket = f"object_{n_fg}", "object", objects
        record = {"instance": k, "primitives": int(np.sum(parsed.labels == k))}
        extra = {}
        if part.gaussians is not None:
            g = part.gaussians
            splats[oid] = Gaussians(g.means - origin, g.scales, g.rotations, g.opacities, g.colors, g.sh_rest)
            extra["gaussians"] = f"gaussians/{oid}.ply"
        bucket.append(SceneObject(oid, label, f"meshes/{oid}.glb", Pose(tuple(origin.tolist())),
                                  provenance=Provenance("parse", provenance.backend, record), extra=extra))
        meshes[oid] = local
    scene = Scene(objects=objects, background=background, provenance=[provenance], name=Path(source).stem)
    with atomic_directory(out_dir) as tmp:
        for oid, local in meshes.items():
            atomic_write_bytes(tmp / "meshes" / f"{oid}.glb", local.export(file_type="glb"))
        for oid, g in splats.items():
            (tmp / "gaussians").mkdir(exist_ok=True)
            save_3dgs_ply(g, tmp / "gaussians" / f"{oid}.ply")
        save_scene(scene, tmp)
    return scene
