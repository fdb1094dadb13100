"""Object-centric views (paper 3.2 / A.3): per object, cameras on a ring around it, each view
rendered with the whole scene present, and the masks that occlusion analysis needs.

For view ``v`` of target object ``o`` (all masks exact, from ray casting the 3D scene):

* ``full_mask``: pixels whose ray hits ``o`` at all (``o`` rendered alone, its amodal silhouette);
* ``visible_mask``: pixels where ``o`` is the first surface hit in the whole scene;
* ``occluder_mask``: ``full_mask & ~visible_mask``, pixels of ``o``'s silhouette covered by
  another object (or background) in front of it;
* ``instance``: the scene object seen at each pixel (index into :attr:`SceneGeometry.ids`, -1 none).

The occlusion ratio of Eq. 5 on these masks and the A.3 view selection are in
:mod:`hiscene_sim.occlusion.occlusion_eq5_a3`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import trimesh

from hiscene_sim.render.cameras import Camera, look_at
from hiscene_sim.render.mesh import MeshRenderer
from hiscene_sim.scene import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectViewConfig:
    """Where the object-centric cameras go (paper A.3: 16 views at 30 deg elevation, azimuths
    uniform over 360 deg, aimed at the object's centre)."""

    n_views: int = 16
    elevation_deg: float = 30.0
    resolution: int = 256
    fov_y_deg: float = 40.0
    fill: float = 0.85  # the object's bounding sphere spans this share of the image height

    def __post_init__(self) -> None:
        if self.n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {self.n_views}")
        if not 0.0 < self.fill <= 1.0:
            raise ValueError(f"fill must be in (0, 1], got {self.fill}")
        if self.resolution < 16:
            raise ValueError(f"resolution must be >= 16 pixels, got {self.resolution}")


@dataclass(eq=False)
class ObjectView:
    """One object-centric view of one object (H = W = config.resolution)."""

    index: int
    azimuth_deg: float
    elevation_deg: float
    camera: Camera
    image: np.ndarray  # (H, W, 3) uint8, the whole scene, shaded, white background
    full_mask: np.ndarray  # (H, W) bool
    visible_mask: np.ndarray  # (H, W) bool
    occluder_mask: np.ndarray  # (H, W) bool
    instance: np.ndarray  # (H, W) int, index into SceneGeometry.ids of the object seen, -1 none

    def occluders(self, ids: list[str]) -> list[str]:
        """Ids of the objects covering part of the target in this view."""
        return [ids[k] for k in np.unique(self.instance[self.occluder_mask]).tolist() if k >= 0]


@dataclass(eq=False)
class SceneGeometry:
    """Every scene object's mesh in world coordinates, concatenated once for ray casting."""

    ids: list[str]
    labels: list[str]
    meshes: list[trimesh.Trimesh]  # world frame, per object
    combined: trimesh.Trimesh
    face_object: np.ndarray  # (F,) index into ids of each combined face

    @staticmethod
    def of_scene(scene: Scene, scene_dir) -> "SceneGeometry":
        from pathlib import Path

        from exporters.mesh_io import load_mesh

        ids, labels, meshes = [], [], []
        for obj in scene.all_objects():
            mesh = load_mesh(Path(scene_dir) / obj.mesh, f"object {obj.id!r}")
            mesh = mesh.copy()
            mesh.apply_transform(obj.pose.matrix())
            ids.append(obj.id)
            labels.append(obj.label)
            meshes.append(mesh)
        return SceneGeometry.of_meshes(ids, labels, meshes)

    @staticmethod
    def of_meshes(ids: list[str], labels: list[str], meshes: list[trimesh.Trimesh]) -> "SceneGeometry":
        if not meshes:
            raise ValueError("a scene with no objects has nothing to view")
        # one colour representation for all, so concatenating keeps every object's appearance
        # (trimesh drops mixed texture / colour visuals to a default grey)
        coloured = []
        for m in meshes:
            m = m.copy()
            if m.visual.kind == "texture":
                m.visual = m.visual.to_color()
            coloured.append(m)
        combined = trimesh.util.concatenate(coloured)
        face_object = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
        return SceneGeometry(list(ids), list(labels), coloured, combined, face_object)

    def index(self, object_id: str) -> int:
        return self.ids.index(object_id)


def object_cameras(mesh: trimesh.Trimesh, config: ObjectViewConfig) -> list[Camera]:
    """``config.n_views`` perspective cameras at ``config.elevation_deg``, azimuths
    ``360 k / n`` (0 = +X, counter-clockwise seen from above), aimed at the centre of the
    object's bounding box, far enough for its bounding sphere to fill ``config.fill`` of the
    image height."""
    lo, hi = mesh.bounds
    center = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-4)
    half_fov = math.radians(config.fov_y_deg) / 2.0
    distance = radius / (math.sin(half_fov) * config.fill)
    el = math.radians(config.elevation_deg)
    cameras = []
    for k in range(config.n_views):
        az_deg = 360.0 * k / config.n_views
        az = math.radians(az_deg)
        eye = center + distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        cameras.append(Camera(
            config.resolution, config.resolution, look_at(eye, center), projection="perspective",
            fov_y_deg=config.fov_y_deg, azimuth_deg=az_deg, elevation_deg=config.elevation_deg,
        ))
    return cameras


def _to_uint8(color: np.ndarray) -> np.ndarray:
    return np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)


class ObjectViewRenderer:
    """Renders object-centric views of any object of one scene; the ray-casting structure of
    the whole scene is built once and shared by all objects."""

    def __init__(self, geometry: SceneGeometry, config: ObjectViewConfig | None = None) -> None:
        self.geometry = geometry
        self.config = config or ObjectViewConfig()
        self._scene = MeshRenderer(geometry.combined)
        self._alone: dict[int, MeshRenderer] = {}

    def _renderer_alone(self, k: int) -> MeshRenderer:
        if k not in self._alone:
            self._alone = {k: MeshRenderer(self.geometry.meshes[k])}  # one object at a time
        return self._alone[k]

    def render(self, object_id: str) -> list[ObjectView]:
        k = self.geometry.index(object_id)
        target = self.geometry.meshes[k]
        alone = self._renderer_alone(k)
        views = []
        for i, camera in enumerate(object_cameras(target, self.config)):
            whole = self._scene.render(camera, shade=True)
            solo = alone.render(camera)
            instance = np.where(whole.primitive >= 0, self.geometry.face_object[np.maximum(whole.primitive, 0)], -1)
            full = solo.primitive >= 0
            visible = (instance == k) & full
            views.append(ObjectView(
                i, float(camera.azimuth_deg), float(camera.elevation_deg), camera, _to_uint8(whole.color),
                full, visible, full & ~visible, instance,
            ))
        return views

    def render_alone(self, object_id: str, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The target with every other object removed: (image uint8, face id per pixel or -1,
        back-facing mask). A back-facing hit is a ray that entered the object's surface through
        a hole (where the fused scene had it welded to a neighbour) and sees its inside."""
        k = self.geometry.index(object_id)
        target = self.geometry.meshes[k]
        solo = self._renderer_alone(k).render(camera, shade=True)
        hit = solo.primitive >= 0
        _, directions = camera.rays()
        facing = np.einsum("ij,ij->i", np.asarray(target.face_normals)[np.maximum(solo.primitive.ravel(), 0)], directions)
        back = hit & (facing.reshape(hit.shape) > 0)
        return _to_uint8(solo.color), solo.primitive, back
