"""Cameras for the rendering layer, and the predefined viewpoints of paper A.1.

Conventions
-----------
* World: metres, +Z up (the scene convention of this project).
* Camera frame: OpenCV style, +x right, +y down, +z forward (the viewing direction).
  ``Camera.world_to_camera`` maps homogeneous world points to this frame; the same matrix is what
  gsplat calls a ``viewmat``.
* Pixels: ``uv = (u, v)`` are continuous pixel coordinates, ``u`` along the image width (columns),
  ``v`` along the height (rows). Pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)`` and its
  centre is ``(j + 0.5, i + 0.5)``; the principal point is the image centre ``(W/2, H/2)``. This is
  also gsplat's convention, so the same camera renders identically on both backends.
* Depth: the coordinate along the view axis (camera-frame z), in world units, not the distance
  along the ray.
* Perspective cameras use square pixels, ``fy = fx = (H/2) / tan(fov_y/2)``; orthographic cameras map
  ``ortho_height`` world units onto the image height (``H / ortho_height`` pixels per unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Projection = Literal["orthographic", "perspective"]
SceneKind = Literal["corner", "open"]

__all__ = [
    "CORNER_AZIMUTH_RANGE",
    "ELEVATION_RANGE",
    "OPEN_AZIMUTH_RANGE",
    "Camera",
    "look_at",
    "normalize_scene",
    "viewpoint_angles",
    "viewpoints",
]

#: Paper A.1, scene type (a) (a room corner): 8 azimuths uniformly in [-5, 95] degrees (inclusive).
CORNER_AZIMUTH_RANGE: tuple[float, float] = (-5.0, 95.0)
#: Paper A.1, scene type (b) (an open scene): azimuths over [0, 360) degrees (360 excluded, it is 0).
OPEN_AZIMUTH_RANGE: tuple[float, float] = (0.0, 360.0)
#: Paper A.1: 5 elevations uniformly in [-10, 90] degrees (inclusive; 90 looks straight down).
ELEVATION_RANGE: tuple[float, float] = (-10.0, 90.0)


def _unit(v: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


@dataclass(eq=False)
class Camera:
    """A pinhole (perspective) or orthographic camera.

    Attributes:
        width: image width W in pixels.
        height: image height H in pixels.
        world_to_camera: (4, 4) float64 rigid transform, world -> OpenCV camera frame
            (+x right, +y down, +z forward).
        projection: ``"perspective"`` or ``"orthographic"``.
        fov_y_deg: vertical field of view in degrees (perspective only).
        ortho_height: world units spanned by the image height (orthographic only); the width spans
            ``ortho_height * W / H``.
        azimuth_deg, elevation_deg: the viewpoint's angles when made by :func:`viewpoints`
            (metadata only; ``None`` otherwise).
    """

    width: int
    height: int
    world_to_camera: np.ndarray
    projection: Projection = "orthographic"
    fov_y_deg: float = 60.0
    ortho_height: float = 2.0
    azimuth_deg: float | None = None
    elevation_deg: float | None = None

    def __post_init__(self) -> None:
        self.width = int(self.width)
        self.height = int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        m = np.asarray(self.world_to_camera, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"world_to_camera must be 4x4, got {m.shape}")
        r = m[:3, :3]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise ValueError("world_to_camera's 3x3 block must be a rotation (orthonormal, det +1)")
        self.world_to_camera = m
        if self.projection not in ("orthographic", "perspective"):
            raise ValueError(f"projection must be 'orthographic' or 'perspective', got {self.projection!r}")
        if self.projection == "perspective" and not 0.0 < self.fov_y_deg < 180.0:
            raise ValueError(f"fov_y_deg must be in (0, 180), got {self.fov_y_deg}")
        if self.projection == "orthographic" and not self.ortho_height > 0.0:
            raise ValueError(f"ortho_height must be positive, got {self.ortho_height}")

    # ------------------------------------------------------------------ frames
    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) world -> camera rotation; its rows are the camera's right, down, forward axes."""
        return self.world_to_camera[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        """(3,) world -> camera translation."""
        return self.world_to_camera[:3, 3]

    @property
    def camera_to_world(self) -> np.ndarray:
        """(4, 4) inverse of ``world_to_camera``."""
        out = np.eye(4)
        out[:3, :3] = self.rotation.T
        out[:3, 3] = -self.rotation.T @ self.translation
        return out

    @property
    def position(self) -> np.ndarray:
        """(3,) the camera centre in world coordinates (for an orthographic camera: the centre of
        the image plane, where depth is 0)."""
        return -self.rotation.T @ self.translation

    @property
    def forward(self) -> np.ndarray:
        """(3,) unit world direction of the view axis (+z of the camera)."""
        return self.rotation[2].copy()

    @property
    def right(self) -> np.ndarray:
        """(3,) unit world direction of increasing u (image columns)."""
        return self.rotation[0].copy()

    @property
    def down(self) -> np.ndarray:
        """(3,) unit world direction of increasing v (image rows)."""
        return self.rotation[1].copy()

    # ------------------------------------------------------------- intrinsics
    @property
    def focal(self) -> float:
        """Focal length in pixels: ``(H/2)/tan(fov_y/2)`` (perspective) or pixels per world unit
        ``H / ortho_height`` (orthographic). Square pixels in both cases."""
        if self.projection == "perspective":
            return 0.5 * self.height / math.tan(math.radians(self.fov_y_deg) / 2.0)
        return self.height / self.ortho_height

    @property
    def principal_point(self) -> tuple[float, float]:
        """(cx, cy) in pixels: the image centre."""
        return 0.5 * self.width, 0.5 * self.height

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) K = [[f, 0, cx], [0, f, cy], [0, 0, 1]], with f from :attr:`focal`. For an
        orthographic camera this is the matrix gsplat's ``camera_model="ortho"`` expects
        (``u = f x + cx``)."""
        f = self.focal
        cx, cy = self.principal_point
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    # ------------------------------------------------------------- projection
    def to_camera(self, points: ArrayLike) -> np.ndarray:
        """World points (N, 3) -> camera-frame points (N, 3)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.einsum("nj,kj->nk", p, self.rotation) + self.translation

    def project(self, points: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Project world points.

        Args:
            points: (N, 3) world coordinates.

        Returns:
            uv: (N, 2) float64 continuous pixel coordinates (see the module docstring; pixel
                ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``).
            depth: (N,) float64 coordinate along the view axis. Points with ``depth <= 0`` are
                behind a perspective camera and their ``uv`` is meaningless (inf/nan).
        """
        pc = self.to_camera(points)
        f = self.focal
        cx, cy = self.principal_point
        z = pc[:, 2]
        if self.projection == "perspective":
            with np.errstate(divide="ignore", invalid="ignore"):
                uv = np.stack([f * pc[:, 0] / z + cx, f * pc[:, 1] / z + cy], axis=1)
        else:
            uv = np.stack([f * pc[:, 0] + cx, f * pc[:, 1] + cy], axis=1)
        return uv, z

    def pixel_centers(self) -> np.ndarray:
        """(H*W, 2) float64 uv of every pixel centre, row-major (index ``i * W + j``)."""
        j, i = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return np.stack([j.ravel() + 0.5, i.ravel() + 0.5], axis=1).astype(np.float64)

    def rays_through(self, uv: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """World rays through continuous pixel coordinates.

        Args:
            uv: (N, 2) pixel coordinates.

        Returns:
            origins: (N, 3) world ray origins (the camera centre for a perspective camera; points
                on the image plane, depth 0, for an orthographic one).
            directions: (N, 3) unit world directions.
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        f = self.focal
        cx, cy = self.principal_point
        x = (uv[:, 0] - cx) / f
        y = (uv[:, 1] - cy) / f
        r = self.rotation  # row vectors: world = (camera - t) @ R, i.e. R^T (p - t)
        if self.projection == "perspective":
            d_cam = np.stack([x, y, np.ones_like(x)], axis=1)
            directions = _unit(np.einsum("nk,kj->nj", d_cam, r))
            origins = np.broadcast_to(self.position, directions.shape).copy()
        else:
            p_cam = np.stack([x, y, np.zeros_like(x)], axis=1)
            origins = np.einsum("nk,kj->nj", p_cam - self.translation, r)
            directions = np.broadcast_to(self.forward, origins.shape).copy()
        return origins, directions

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """World rays through every pixel centre, row-major.

        Returns:
            origins: (H*W, 3) float64.
            directions: (H*W, 3) float64 unit vectors.
        """
        return self.rays_through(self.pixel_centers())

    def directions_to_camera(self, points: ArrayLike) -> np.ndarray:
        """(N, 3) unit world vectors from each point towards the camera (``-forward`` for an
        orthographic camera); used to orient normals towards the viewer."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self.projection == "perspective":
            return _unit(self.position - p)
        return np.broadcast_to(-self.forward, p.shape).copy()

    def with_size(self, width: int, height: int) -> Camera:
        """The same camera at another resolution (same field of view / ortho_height)."""
        return Camera(
            width, height, self.world_to_camera.copy(), self.projection, self.fov_y_deg,
            self.ortho_height, self.azimuth_deg, self.elevation_deg,
        )


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World -> camera (OpenCV: +x right, +y down, +z forward) 4x4 matrix of a camera at ``eye``
    looking at ``target``; ``up`` (world, need not be unit) appears upwards in the image.

    If ``up`` is (nearly) parallel to the view direction (e.g. looking straight down with up = +Z),
    the world axis least aligned with the view direction is used instead, so the result is always a
    valid rotation.

    Args:
        eye: (3,) camera position. target: (3,) point on the view axis. up: (3,).

    Returns:
        (4, 4) float64.
    """
    eye = np.asarray(eye, dtype=np.float64).reshape(3)
    target = np.asarray(target, dtype=np.float64).reshape(3)
    fwd = target - eye
    if np.linalg.norm(fwd) < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    fwd = fwd / np.linalg.norm(fwd)
    up_v = np.asarray(up, dtype=np.float64).reshape(3)
    right = np.cross(fwd, up_v)
    if np.linalg.norm(right) < 1e-6 * max(np.linalg.norm(up_v), 1e-12):
        alt = np.eye(3)[int(np.argmin(np.abs(fwd)))]
        right = np.cross(fwd, alt)
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    r = np.stack([right, down, fwd])
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = -r @ eye
    return m


def normalize_scene(bounds: ArrayLike) -> tuple[np.ndarray, float]:
    """The normalisation that maps a scene into the unit sphere.

    Args:
        bounds: (2, 3) axis-aligned bounds ``[min, max]`` in world units (e.g. ``mesh.bounds``).

    Returns:
        center: (3,) the bounds' centre.
        scale: 1 / (half the bounds' diagonal), so that ``(x - center) * scale`` lies in the unit
            ball for every point x inside the bounds (a degenerate, zero-size scene gets scale 1).
    """
    b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
    if not np.all(np.isfinite(b)):
        raise ValueError("normalize_scene: bounds must be finite")
    center = 0.5 * (b[0] + b[1])
    half_diag = 0.5 * float(np.linalg.norm(b[1] - b[0]))
    scale = 1.0 / half_diag if half_diag > 1e-12 else 1.0
    return center, scale


def viewpoint_angles(
    kind: SceneKind = "corner",
    n_azimuth: int = 8,
    n_elevation: int = 5,
    azimuth_range: tuple[float, float] | None = None,
    elevation_range: tuple[float, float] = ELEVATION_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """The azimuth and elevation samples (degrees) of paper A.1.

    ``"corner"``: ``n_azimuth`` values uniformly over ``azimuth_range`` (default [-5, 95]), both
    ends included. ``"open"``: uniformly over [start, end) (default [0, 360)), the end excluded as it
    coincides with the start. Elevations: ``n_elevation`` values over ``elevation_range``, both ends
    included (default [-10, 90], i.e. -10, 15, 40, 65, 90). A single corner azimuth is the range's
    midpoint; a single elevation is the range's start.

    Returns:
        azimuths: (n_azimuth,) float64 degrees. elevations: (n_elevation,) float64 degrees.
    """
    if kind not in ("corner", "open"):
        raise ValueError(f"kind must be 'corner' or 'open', got {kind!r}")
    if n_azimuth < 1 or n_elevation < 1:
        raise ValueError("n_azimuth and n_elevation must be >= 1")
    if azimuth_range is None:
        azimuth_range = CORNER_AZIMUTH_RANGE if kind == "corner" else OPEN_AZIMUTH_RANGE
    a0, a1 = map(float, azimuth_range)
    azimuths = np.linspace(a0, a1, n_azimuth, endpoint=(kind == "corner"))
    e0, e1 = map(float, elevation_range)
    elevations = np.linspace(e0, e1, n_elevation) if n_elevation > 1 else np.array([e0])
    if n_azimuth == 1 and kind == "corner":
        azimuths = np.array([0.5 * (a0 + a1)])
    return azimuths, elevations


def viewpoints(
    kind: SceneKind = "corner",
    radius: float = 2.0,
    n_azimuth: int = 8,
    n_elevation: int = 5,
    *,
    azimuth_range: tuple[float, float] | None = None,
    elevation_range: tuple[float, float] = ELEVATION_RANGE,
    bounds: ArrayLike | None = None,
    center: ArrayLike | None = None,
    scale: float | None = None,
    width: int = 256,
    height: int = 256,
    projection: Projection = "orthographic",
    fov_y_deg: float | None = None,
    ortho_height: float = 2.0,
) -> list[Camera]:
    """The predefined multi-view cameras of paper A.1, in ORIGINAL world coordinates.

    Cameras sit on a sphere of ``radius`` (in normalised units; the paper uses 2) around the
    normalised scene and look at its centre. The normalisation is :func:`normalize_scene` of
    ``bounds`` (or the given ``center``/``scale``; with neither, the scene is taken as already
    normalised: centre 0, scale 1); each camera is then mapped back to world coordinates, so it can
    render the unnormalised scene directly.

    Angles: azimuth is measured in the world XY plane from +X towards +Y, elevation from the XY
    plane towards +Z; the camera sits at ``center + radius/scale * (cos(el)cos(az), cos(el)sin(az),
    sin(el))``. For a corner scene (``kind="corner"``) the default azimuths [-5, 95] put the cameras
    over the +X/+Y quadrant, looking back at a corner whose walls lie on the scene's -X and -Y sides.
    Order: elevation-major, ``cameras[j * n_azimuth + i]`` has elevation j and azimuth i.

    Image "up" is the direction of increasing elevation on the sphere, which equals world +Z
    projected into the image for elevations below 90 degrees and stays well defined (pointing to
    the far side of the scene) when looking straight down.

    Args:
        kind: ``"corner"`` (paper scene type (a)) or ``"open"`` (type (b), azimuths over 360).
        radius: sphere radius in normalised units (> 1 keeps the unit sphere in front of the camera).
        n_azimuth, n_elevation, azimuth_range, elevation_range: see :func:`viewpoint_angles`.
        bounds: (2, 3) world bounds of the scene; or give ``center`` (3,) and ``scale`` directly.
        width, height: image size in pixels.
        projection: ``"orthographic"`` (default, isometric-style) or ``"perspective"``.
        fov_y_deg: perspective field of view; default ``2 * asin(1 / radius)`` (exactly the unit
            sphere, 60 degrees for radius 2).
        ortho_height: orthographic image height in NORMALISED units (default 2: the unit sphere's
            diameter); converted to world units here.

    Returns:
        ``n_azimuth * n_elevation`` cameras (40 by default).
    """
    if bounds is not None:
        c, s = normalize_scene(bounds)
    else:
        c = np.zeros(3)
        s = 1.0
    if center is not None:
        c = np.asarray(center, dtype=np.float64).reshape(3)
    if scale is not None:
        s = float(scale)
    if not s > 0:
        raise ValueError(f"scale must be positive, got {s}")
    if projection == "perspective" and fov_y_deg is None:
        if radius <= 1.0:
            raise ValueError("radius must be > 1 to derive a default fov_y_deg (give one explicitly)")
        fov_y_deg = 2.0 * math.degrees(math.asin(1.0 / radius))
    azimuths, elevations = viewpoint_angles(kind, n_azimuth, n_elevation, azimuth_range, elevation_range)
    cams: list[Camera] = []
    for el in elevations:
        for az in azimuths:
            a, e = math.radians(az), math.radians(el)
            direction = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
            up = np.array([-math.sin(e) * math.cos(a), -math.sin(e) * math.sin(a), math.cos(e)])
            eye = c + (radius / s) * direction
            cams.append(
                Camera(
                    width=width,
                    height=height,
                    world_to_camera=look_at(eye, c, up),
                    projection=projection,
                    fov_y_deg=float(fov_y_deg) if fov_y_deg is not None else 60.0,
                    ortho_height=ortho_height / s,
                    azimuth_deg=float(az),
                    elevation_deg=float(el),
                )
            )
    return cams


def stack_world_to_camera(cameras: Sequence[Camera]) -> np.ndarray:
    """(C, 4, 4) world -> camera matrices of several cameras (gsplat's ``viewmats``)."""
    return np.stack([c.world_to_camera for c in cameras])
