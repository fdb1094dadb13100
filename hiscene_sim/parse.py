"""Hierarchical scene parsing (paper 3.2, A.1, A.2): a fused 3D scene in, objects out.

render the A.1 viewpoints -> 2D entity segmentation per view -> contrastive lifting of the
masks to a feature per primitive (Eq. 3-4) -> clustering into instances -> 3D clean-up
(adjacent parts join unless one rests on the other; the floor is recognised as background) -> a
scene dir with one object per instance.

Primitives are mesh faces (``parse_mesh``) or 3D Gaussians (``parse_gaussians``); both
feed the same lifting and clustering code through the renderers' sparse pixel weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import trimesh

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes, check_replaceable
from hiscene_sim.lifting_eq3_4 import ClusterConfig, LiftConfig, cluster, lift, relabel_by_area
from hiscene_sim.render.cameras import Camera, viewpoints
from hiscene_sim.render.result import RenderResult
from hiscene_sim.scene import SCENE_FILE, Pose, Provenance, Scene, SceneError, SceneObject, save_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseConfig:
    views: str = "open"  # A.1: "corner" (azimuths [-5, 95]) or "open" (azimuths over [0, 360))
    n_azimuth: int = 8
    n_elevation: int = 5
    resolution: int = 512
    segmenter: str = "geometric"
    segmenter_options: dict = field(default_factory=dict)
    lift: LiftConfig = field(default_factory=LiftConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    merge_similarity: float = 0.8  # adjacent clusters whose mean features are this similar merge
    support_tolerance: float = 0.015  # m: a contact this close to a part's lowest point is it resting there
    knn: int = 8  # neighbours per Gaussian for clustering
    floor_min_span: float = 0.6  # a floor covers at least this share of the scene's x and y extent


@dataclass
class ParsedScene:
    labels: np.ndarray  # (n_primitives,) instance id, 0..K-1
    background: set[int]  # instance ids recognised as background (floor / walls)
    n_views: int
    seconds: dict[str, float]
    lift_seconds_per_iteration: float
    background_kinds: dict[int, str] = field(default_factory=dict)  # background id -> "floor" / "wall"

    def foreground(self) -> list[int]:
        return [k for k in np.unique(self.labels).tolist() if k not in self.background]


def scene_cameras(bounds: np.ndarray, config: ParseConfig) -> list[Camera]:
    return viewpoints(
        config.views, n_azimuth=config.n_azimuth, n_elevation=config.n_elevation, bounds=bounds,
        width=config.resolution, height=config.resolution,
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
    """Merge adjacent clusters whose area-weighted mean features have cosine >= threshold,
    most similar pair first, until none is left."""
    labels = labels.copy()
    adjacency = sp.coo_matrix(adjacency)
    while True:
        k = int(labels.max()) + 1
        means = np.zeros((k, features.shape[1]))
        np.add.at(means, labels, features * areas[:, None])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        a, b = labels[adjacency.row], labels[adjacency.col]
        pairs = np.unique(np.sort(np.stack([a[a != b], b[a != b]], axis=1), axis=1), axis=0)
        if len(pairs) == 0:
            return labels
        sims = np.einsum("ij,ij->i", means[pairs[:, 0]], means[pairs[:, 1]])
        best = int(np.argmax(sims))
        if sims[best] < threshold:
            return relabel_by_area(labels, areas)
        labels[labels == pairs[best, 1]] = pairs[best, 0]
        labels = relabel_by_area(labels, areas)


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

    def adjacency(self) -> sp.coo_matrix:
        n = len(self.centers)
        return sp.coo_matrix((np.ones(len(self.pairs)), (self.pairs[:, 0], self.pairs[:, 1])), shape=(n, n))

    @staticmethod
    def of_mesh(mesh: trimesh.Trimesh) -> "Primitives":
        z = mesh.triangles[:, :, 2]
        return Primitives(
            mesh.triangles_center, mesh.face_normals, mesh.area_faces, z.min(axis=1), z.max(axis=1),
            mesh.face_adjacency, mesh.vertices[mesh.face_adjacency_edges][:, :, 2].mean(axis=1),
        )

    @staticmethod
    def of_gaussians(gaussians, k: int) -> "Primitives":
        from scipy.spatial import cKDTree

        means = np.asarray(gaussians.means, dtype=np.float64)
        _, nearest = cKDTree(means).query(means, k=k + 1)
        pairs = np.stack([np.repeat(np.arange(len(means)), k), nearest[:, 1:].ravel()], axis=1)
        pairs = np.unique(np.sort(pairs, axis=1), axis=0)
        areas = np.pi * np.prod(np.sort(np.asarray(gaussians.scales), axis=1)[:, 1:], axis=1)
        # heights of the centres: a disc's footprint would put a standing object's lowest
        # point below the floor it stands on, hiding the contact at its bottom
        return Primitives(
            means, gaussians.normals(), areas, means[:, 2], means[:, 2],
            pairs, means[pairs, 2].mean(axis=1),
        )


def merge_unless_resting(labels: np.ndarray, prims: Primitives, background: set[int], tolerance: float) -> np.ndarray:
    """Join adjacent parts unless one rests on the other.

    Separate objects in a fused scene meet where one stands on another: the contact lies at
    the upper object's lowest point and the upper object rises above it (a mug on a table).
    Any other contact between two parts (a table leg under its top, a mug's inner and outer
    wall, a teddy's arm) is within one object, so the parts merge; a flat patch touching the
    floor joins the floor. Pairs with the largest contact merge first.
    """
    labels = labels.copy()
    while True:
        a, b = labels[prims.pairs[:, 0]], labels[prims.pairs[:, 1]]
        cut = a != b
        pairs, inverse, counts = np.unique(
            np.sort(np.stack([a[cut], b[cut]], axis=1), axis=1), axis=0, return_inverse=True, return_counts=True
        )
        ids = np.unique(labels)
        zmin = {int(k): float(prims.zmin[labels == k].min()) for k in ids}
        zmax = {int(k): float(prims.zmax[labels == k].max()) for k in ids}
        merged = False
        for p in np.argsort(-counts):
            pa, pb = (int(v) for v in pairs[p])
            if pa in background and pb in background:
                continue
            if pb in background:  # keep the background's id: a flat patch joins the floor
                pa, pb = pb, pa
            z = float(np.median(prims.pair_z[cut][inverse.ravel() == p]))
            # anything touching the floor at its own bottom stands on it (the floor's top sheet
            # can reach lower than an object's bottom at the slab's rounded rim)
            rests = any(
                z <= zmin[up] + tolerance
                and (down in background or zmin[up] > zmin[down] + tolerance)
                and zmax[up] > z + tolerance
                for up, down in ((pa, pb), (pb, pa))
                if up not in background
            )
            if not rests:
                labels[labels == pb] = pa
                merged = True
                break
        if not merged:
            return labels


def find_floor(labels: np.ndarray, centers: np.ndarray, normals: np.ndarray, areas: np.ndarray, min_span: float) -> set[int]:
    """Instances that are the floor: mostly horizontal faces (a slab's top and bottom), at the
    bottom of the scene and spanning ``min_span`` of its x and y extent."""
    lo, hi = centers.min(axis=0), centers.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    floor = set()
    for k in np.unique(labels):
        sel = labels == k
        flat = float(np.sum(areas[sel] * (np.abs(normals[sel, 2]) > 0.9)) / np.sum(areas[sel]))
        span = (centers[sel].max(axis=0) - centers[sel].min(axis=0)) / extent
        near_bottom = centers[sel, 2].min() <= lo[2] + 0.05 * extent[2]
        if flat > 0.6 and span[0] >= min_span and span[1] >= min_span and near_bottom:
            floor.add(int(k))
    return floor


def find_walls(labels: np.ndarray, centers: np.ndarray, normals: np.ndarray, areas: np.ndarray, min_span: float) -> set[int]:
    """Instances that are walls: mostly vertical faces, as tall as most of the scene, and each
    of their planes (x-facing and y-facing faces, so two walls joined at a room's corner count)
    spanning ``min_span`` of the scene along it, thin across it, at the scene's edge."""
    lo, hi = centers.min(axis=0), centers.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)

    def is_wall_plane(c: np.ndarray, along: int, across: int) -> bool:
        span = (c.max(axis=0) - c.min(axis=0)) / extent
        middle = np.median(c[:, across])
        at_edge = min(middle - lo[across], hi[across] - middle) <= 0.1 * extent[across]
        thin = (np.percentile(c[:, across], 95) - np.percentile(c[:, across], 5)) <= 0.1 * extent[across]
        return span[along] >= min_span and span[2] >= 0.6 and thin and at_edge

    walls = set()
    for k in np.unique(labels):
        sel = labels == k
        a, n, c = areas[sel], normals[sel], centers[sel]
        upright = np.abs(n[:, 2]) < 0.2
        if float(np.sum(a * upright) / np.sum(a)) < 0.6:
            continue
        faces_x = upright & (np.abs(n[:, 0]) >= np.abs(n[:, 1]))  # a plane x = const: it runs along y
        planes = [(faces_x, 1, 0), (upright & ~faces_x, 0, 1)]
        big = [(m, along, across) for m, along, across in planes if np.sum(a[m]) >= 0.2 * np.sum(a[upright])]
        if big and all(is_wall_plane(c[m], along, across) for m, along, across in big):
            walls.add(int(k))
    return walls


def find_background(labels: np.ndarray, prims: "Primitives", config: ParseConfig) -> dict[int, str]:
    """Background instances and what they are: ``floor`` or ``wall``."""
    floor = find_floor(labels, prims.centers, prims.normals, prims.areas, config.floor_min_span)
    walls = find_walls(labels, prims.centers, prims.normals, prims.areas, config.floor_min_span) - floor
    return {**{k: "floor" for k in floor}, **{k: "wall" for k in walls}}


def face_adjacency_matrix(mesh: trimesh.Trimesh) -> sp.coo_matrix:
    return Primitives.of_mesh(mesh).adjacency()


def _parse(views: list[RenderResult], prims: Primitives, config: ParseConfig, seconds: dict, progress) -> ParsedScene:
    """The part of parsing that is the same for faces and Gaussians."""
    t0 = time.perf_counter()
    view_masks = _segment_views(views, config)
    seconds["segment"] = time.perf_counter() - t0
    labels, lifted, seconds["lift"], seconds["cluster"] = _lift_and_cluster(
        view_masks, len(prims.centers), prims.adjacency(), prims.areas, config, progress
    )
    t0 = time.perf_counter()
    background = find_background(labels, prims, config)
    labels = merge_unless_resting(labels, prims, set(background), config.support_tolerance)
    labels = relabel_by_area(labels, prims.areas)
    kinds = find_background(labels, prims, config)
    seconds["cleanup"] = time.perf_counter() - t0
    return ParsedScene(labels, set(kinds), len(views), seconds, lifted.seconds_per_iteration, kinds)


def parse_mesh(mesh: trimesh.Trimesh, config: ParseConfig | None = None, progress: Callable | None = None) -> ParsedScene:
    """Instance id of every face of a fused mesh."""
    from hiscene_sim.render.mesh import render_views

    config = config or ParseConfig()
    t0 = time.perf_counter()
    views = render_views(mesh, scene_cameras(mesh.bounds, config))  # one ray-casting structure for all views
    seconds = {"render": time.perf_counter() - t0}
    return _parse(views, Primitives.of_mesh(mesh), config, seconds, progress)


def parse_gaussians(gaussians, config: ParseConfig | None = None, progress: Callable | None = None) -> ParsedScene:
    """Instance id of every 3D Gaussian of a splat scene (same lifting and clustering code,
    fed by the Gaussian renderer's alpha-compositing weights)."""
    from hiscene_sim.render.splat import render_gaussian_views

    config = config or ParseConfig()
    means = np.asarray(gaussians.means)
    t0 = time.perf_counter()
    views = render_gaussian_views(gaussians, scene_cameras(np.stack([means.min(axis=0), means.max(axis=0)]), config))
    seconds = {"render": time.perf_counter() - t0}
    return _parse(views, Primitives.of_gaussians(gaussians, config.knn), config, seconds, progress)


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


def write_parsed_scene(parts: dict[int, ParsedPart], parsed: ParsedScene, out_dir: Path, source: Path, config: ParseConfig) -> Scene:
    """One object per foreground instance (label ``object``: the weight-free default cannot
    name things), the floor as background; each mesh (and its Gaussians, for a splat scene) in
    a local frame whose origin is the centre of its footprint at its lowest point."""
    from hiscene_sim.render.gaussians import Gaussians, save_3dgs_ply

    try:
        check_replaceable(out_dir, SCENE_FILE, protect=None)
    except FileExistsError as exc:
        raise SceneError(str(exc)) from None
    provenance = Provenance(
        "parse", f"render+{config.segmenter}+contrastive-lifting",
        {"source": str(Path(source).resolve()), "views": config.views, "n_views": parsed.n_views,
         "resolution": config.resolution, "lift": asdict(config.lift), "cluster": asdict(config.cluster)},
        seconds=round(sum(parsed.seconds.values()), 3), created=datetime.now(timezone.utc).isoformat(),
    )
    objects, background, meshes, splats = [], [], {}, {}
    n_fg, n_bg = 0, {}
    for k, part in sorted(parts.items()):
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
