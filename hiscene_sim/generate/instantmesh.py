"""InstantMesh sparse-view LRM: posed views of one object -> a mesh (paper 3.4, Algorithm 3 line 2:
the spatially aligned shape prior).

A thin typed boundary around TencentARC/InstantMesh: our object-centric views and
:class:`~hiscene_sim.render.cameras.Camera` objects go in, ``InstantMesh.forward_planes(images,
cameras)`` + ``extract_mesh(planes)`` run, and a trimesh comes back in OUR world frame. The camera
conversion is pure and tested without InstantMesh.

InstantMesh's camera encoding (``src/utils/camera_util.py``, commit 08822c5)
--------------------------------------------------------------------------
16 numbers per view: the first 12 are the top 3 rows (row-major) of the camera-to-world pose in
OpenGL camera axes (+x right, +y up, +z backward, ``center_looking_at_camera_pose``), world +Z up; the
last 4 are the intrinsics normalised by the image size, ``[fx / W, fy / H, cx / W, cy / H]``
(``FOV_to_intrinsics``: ``0.5 / tan(fov / 2)`` and 0.5). Our cameras are OpenCV (+y down, +z forward),
so ``R_gl = R_cv @ diag(1, -1, -1)``. At inference upstream uses Zero123++'s six views
(:func:`zero123plus_cameras`: azimuths 30..330 step 60, elevations alternating 20 / -10 degrees, FOV 30,
radius 4); the LRM was trained on arbitrary posed views, so HiScene's own views can be passed.

Both worlds are +Z up; they differ by a similarity (:class:`InstantMeshFrame`: ``x_model = scale *
(x_world - center)``), because the LRM reconstructs inside its fixed box (triplane ``box_warp`` 2,
FlexiCubes grid scale 2.1: about [-1.05, 1.05]^3) and learnt a scale prior from how far its cameras are.
By default the frame is derived from the cameras (:meth:`InstantMeshFrame.from_cameras`: the point the
view axes converge on, and the scale that makes the sphere the views frame as large as Zero123++'s
views frame theirs); :meth:`InstantMeshFrame.from_bounds` uses known object bounds instead.

Installing InstantMesh (not on PyPI; its code is the top-level package ``src`` of the repository). Its
requirements.txt pins transformers 4.34 / diffusers 0.20, which would replace the versions FLUX and SVD
need: put its source on the path instead and install only what the mesh model imports
(docs/install-gpu.md)::

    git clone https://github.com/TencentARC/InstantMesh.git      # no pip install -r requirements.txt
    pip install einops xatlas opencv-python-headless && pip install git+https://github.com/NVlabs/nvdiffrast/
    # then export PYTHONPATH=/path/to/InstantMesh, or set config key generate.instantmesh.repo

Under transformers 5 its ``src/models/encoder/dino.py`` imports ``find_pruneable_heads_and_indices`` (removed
from ``transformers.pytorch_utils``) and calls ``PreTrainedModel.get_head_mask`` (removed):
:mod:`hiscene_sim.generate.instantmesh_compat` supplies both at load time, so the clone needs no patch.

Weights: ``instant_mesh_large.ckpt`` (or ``_base``) from the TencentARC/InstantMesh model card, config
key ``generate.instantmesh.weights``; the config YAML (default ``<repo>/configs/instant-mesh-large.yaml``,
key ``generate.instantmesh.config``) must match, and is checked against it. InstantMesh's encoder is
``facebook/dino-vitb16``: a local snapshot of it, key ``generate.instantmesh.dino``, replaces the Hub name in
the YAML (the checkpoint then overwrites its weights). The checkpoint is read with ``torch.load(weights_only=
True)``; upstream's run.py unpickles it fully, which this adapter does only with ``trust_checkpoint``
(``generate.instantmesh.trust_checkpoint``, ``--trust-checkpoint``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hiscene_sim.backends import BackendError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh

    from hiscene_sim.render.cameras import Camera

__all__ = [
    "CONFIG_KEY",
    "CONFIG_KEY_CONFIG",
    "CONFIG_KEY_DINO",
    "CONFIG_KEY_REPO",
    "CONFIG_KEY_TRUST",
    "INSTALL_HINT",
    "ZERO123PLUS_FRAMED_RADIUS",
    "InstantMeshFrame",
    "InstantMeshReconstructor",
    "camera_to_instantmesh",
    "cameras_to_instantmesh",
    "images_to_tensor",
    "instantmesh_to_camera",
    "load_instantmesh",
    "zero123plus_cameras",
]

CONFIG_KEY = "generate.instantmesh.weights"
CONFIG_KEY_REPO = "generate.instantmesh.repo"
CONFIG_KEY_CONFIG = "generate.instantmesh.config"
CONFIG_KEY_DINO = "generate.instantmesh.dino"
CONFIG_KEY_TRUST = "generate.instantmesh.trust_checkpoint"
INSTALL_HINT = (
    "InstantMesh is not on PyPI: git clone https://github.com/TencentARC/InstantMesh.git (do not pip install its "
    "requirements.txt: it replaces transformers / diffusers), pip install einops xatlas opencv-python-headless "
    "and nvdiffrast, then export PYTHONPATH=/path/to/InstantMesh or set "
    f"config key {CONFIG_KEY_REPO} (see docs/install-gpu.md)"
)

#: Zero123++ views as InstantMesh's ``get_zero123plus_input_cameras`` builds them.
ZERO123PLUS_AZIMUTHS_DEG = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ZERO123PLUS_ELEVATIONS_DEG = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
ZERO123PLUS_FOV_DEG = 30.0
ZERO123PLUS_RADIUS = 4.0
#: Radius of the sphere that exactly fills a Zero123++ view: ``4 * sin(15 deg)`` (about 1.035).
ZERO123PLUS_FRAMED_RADIUS = ZERO123PLUS_RADIUS * math.sin(math.radians(ZERO123PLUS_FOV_DEG) / 2.0)
#: InstantMesh's input resolution (run.py resizes the Zero123++ tiles to 320).
IMAGE_SIZE = 320

_CV_TO_GL = np.diag([1.0, -1.0, -1.0])


# ------------------------------------------------------------------------------------ frame
@dataclass(frozen=True)
class InstantMeshFrame:
    """Our world (metres, +Z up) -> InstantMesh's normalised world (+Z up): ``x_model = scale * (x - center)``."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"InstantMeshFrame.scale must be positive, got {self.scale}")

    def to_model(self, points: Any) -> np.ndarray:
        """(N, 3) world -> (N, 3) model coordinates."""
        return self.scale * (np.asarray(points, dtype=np.float64).reshape(-1, 3) - np.asarray(self.center))

    def to_world(self, points: Any) -> np.ndarray:
        """(N, 3) model -> (N, 3) world coordinates."""
        return np.asarray(points, dtype=np.float64).reshape(-1, 3) / self.scale + np.asarray(self.center)

    def to_dict(self) -> dict[str, Any]:
        return {"center_m": [float(v) for v in self.center], "scale_per_m": float(self.scale)}

    @classmethod
    def from_bounds(cls, bounds: Any, radius: float = 1.0) -> InstantMeshFrame:
        """Centre the (2, 3) world bounds and scale their half-diagonal to ``radius`` model units
        (1 keeps the object inside InstantMesh's [-1.05, 1.05]^3 grid)."""
        b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
        half_diag = 0.5 * float(np.linalg.norm(b[1] - b[0]))
        if not half_diag > 1e-12:
            raise ValueError("InstantMeshFrame.from_bounds: degenerate bounds")
        return cls(tuple(float(v) for v in 0.5 * (b[0] + b[1])), radius / half_diag)

    @classmethod
    def from_cameras(cls, cameras: Sequence[Camera], framed_radius: float = ZERO123PLUS_FRAMED_RADIUS) -> InstantMeshFrame:
        """The frame implied by object-centric perspective cameras.

        ``center``: the least-squares point nearest every view axis (where the views look).
        ``scale``: makes the sphere about ``center`` that the views frame (distance times the sine of
        the half field of view, the narrower one; averaged over views) ``framed_radius`` model units;
        the default maps Zero123++'s own cameras onto themselves.

        Raises:
            ValueError: fewer than two non-parallel view axes, or a non-perspective camera.
        """
        if len(cameras) < 2:
            raise ValueError("InstantMeshFrame.from_cameras needs >= 2 cameras (or use from_bounds)")
        a = np.zeros((3, 3))
        b = np.zeros(3)
        for cam in cameras:
            _require_perspective(cam)
            d = cam.forward
            p = np.eye(3) - np.outer(d, d)
            a += p
            b += p @ cam.position
        if np.linalg.cond(a) > 1e8:
            raise ValueError("InstantMeshFrame.from_cameras: the view axes are (nearly) parallel; use from_bounds")
        center = np.linalg.solve(a, b)
        radii = []
        for cam in cameras:
            half_y = math.radians(cam.fov_y_deg) / 2.0
            half_x = math.atan(math.tan(half_y) * cam.width / cam.height)
            radii.append(float(np.linalg.norm(cam.position - center)) * math.sin(min(half_x, half_y)))
        framed = float(np.mean(radii))
        if not framed > 1e-12:
            raise ValueError("InstantMeshFrame.from_cameras: the cameras sit on their look-at point")
        return cls(tuple(float(v) for v in center), framed_radius / framed)


def _require_perspective(camera: Camera) -> None:
    if camera.projection != "perspective":
        raise ValueError("InstantMesh's cameras are perspective (a field of view); got an orthographic camera")


# ----------------------------------------------------------------------------- encoding
def camera_to_instantmesh(camera: Camera, frame: InstantMeshFrame | None = None) -> np.ndarray:
    """Our perspective :class:`Camera` -> InstantMesh's (16,) float64 encoding (see module docstring):
    ``[c2w_gl[:3, :4].ravel(), fx / W, fy / H, cx / W, cy / H]``, the position in ``frame``'s model units.
    """
    _require_perspective(camera)
    frame = frame or InstantMeshFrame()
    c2w = camera.camera_to_world
    pose = np.empty((3, 4))
    pose[:, :3] = c2w[:3, :3] @ _CV_TO_GL
    pose[:, 3] = frame.to_model(c2w[:3, 3])[0]
    f = camera.focal
    cx, cy = camera.principal_point
    intrinsics = np.array([f / camera.width, f / camera.height, cx / camera.width, cy / camera.height])
    return np.concatenate([pose.reshape(12), intrinsics])


def cameras_to_instantmesh(cameras: Sequence[Camera], frame: InstantMeshFrame | None = None) -> np.ndarray:
    """(V, 16) float64 encodings of several cameras (``forward_planes`` wants them as (B, V, 16))."""
    return np.stack([camera_to_instantmesh(c, frame) for c in cameras])


def instantmesh_to_camera(
    encoding: Any, width: int = IMAGE_SIZE, height: int = IMAGE_SIZE, frame: InstantMeshFrame | None = None, atol: float = 1e-4
) -> Camera:
    """InstantMesh's (16,) encoding -> our perspective :class:`Camera` of ``width`` x ``height`` pixels
    in our world (``frame`` maps the model position back).

    The pose's rotation is re-orthonormalised (float32 encodings are not exactly orthonormal).

    Raises:
        ValueError: the 3x3 block is not (close to) a rotation, the principal point is not the image
            centre, or the pixels are not square (``fx/W * W != fy/H * H``): our Camera has neither.
    """
    from hiscene_sim.render.cameras import Camera

    e = np.asarray(encoding, dtype=np.float64).reshape(16)
    frame = frame or InstantMeshFrame()
    pose = e[:12].reshape(3, 4)
    r_cv = pose[:, :3] @ _CV_TO_GL
    u, _, vt = np.linalg.svd(r_cv)
    r = u @ vt
    if np.linalg.det(r) < 0 or np.abs(r - r_cv).max() > 1e-3:
        raise ValueError("InstantMesh camera: the pose's 3x3 block is not a rotation")
    fx_n, fy_n, cx_n, cy_n = e[12:]
    if abs(cx_n - 0.5) > atol or abs(cy_n - 0.5) > atol:
        raise ValueError(f"InstantMesh camera: principal point ({cx_n}, {cy_n}) is not the image centre (0.5, 0.5)")
    if abs(fx_n * width - fy_n * height) > atol * max(fx_n * width, 1.0):
        raise ValueError(f"InstantMesh camera: fx/W = {fx_n}, fy/H = {fy_n} are not square pixels at {width}x{height}")
    position = frame.to_world(pose[:, 3])[0]
    w2c = np.eye(4)
    w2c[:3, :3] = r.T
    w2c[:3, 3] = -r.T @ position
    fov_y = 2.0 * math.degrees(math.atan(0.5 / fy_n))
    return Camera(width, height, w2c, "perspective", fov_y_deg=fov_y)


def zero123plus_cameras(
    width: int = IMAGE_SIZE, height: int = IMAGE_SIZE, frame: InstantMeshFrame | None = None, radius: float = ZERO123PLUS_RADIUS
) -> list[Camera]:
    """InstantMesh's six inference views (``get_zero123plus_input_cameras``) as our cameras, in the
    world that ``frame`` maps to the model (identity by default): looking at the origin, world +Z up."""
    from hiscene_sim.render.cameras import Camera, look_at

    frame = frame or InstantMeshFrame()
    cams = []
    for az, el in zip(ZERO123PLUS_AZIMUTHS_DEG, ZERO123PLUS_ELEVATIONS_DEG):
        a, e = math.radians(az), math.radians(el)
        eye_model = radius * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
        eye = frame.to_world(eye_model)[0]
        target = frame.to_world(np.zeros(3))[0]
        cams.append(
            Camera(width, height, look_at(eye, target, (0.0, 0.0, 1.0)), "perspective", fov_y_deg=ZERO123PLUS_FOV_DEG,
                   azimuth_deg=az, elevation_deg=el)
        )
    return cams


# ------------------------------------------------------------------------------- images
def images_to_tensor(images: Sequence[np.ndarray], size: int = IMAGE_SIZE) -> torch.Tensor:
    """Views ((H, W, 3) uint8 RGB, or (H, W, 4) RGBA composited onto white, the background InstantMesh's
    Zero123++ views have) -> (1, V, 3, size, size) float32 in [0, 1], resized as upstream's run.py does
    (bicubic, antialiased, clamped)."""
    import torch
    import torch.nn.functional as F

    batch = []
    for im in images:
        a = np.asarray(im)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"views must be (H, W, 3|4) uint8, got {a.shape} {a.dtype}")
        rgb = a[..., :3].astype(np.float32) / 255.0
        if a.shape[2] == 4:
            alpha = a[..., 3:4].astype(np.float32) / 255.0
            rgb = rgb * alpha + (1.0 - alpha)
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        batch.append(t[0].clamp(0.0, 1.0))
    return torch.stack(batch)[None]


# ------------------------------------------------------------------------------- loading
def _check_file(path: str | Path | None, key: str, what: str) -> Path:
    if path is None:
        raise BackendError(f"instantmesh: no {what} configured (config key {key}). {INSTALL_HINT}")
    p = Path(path).expanduser()
    if not p.exists():
        raise BackendError(f"instantmesh: {what} not found: {p} (config key {key})")
    return p


def _importable_clone() -> Path | None:
    """The InstantMesh clone whose ``src`` package is importable (PYTHONPATH), if any (imports only the
    package ``__init__`` files, to locate it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("src.models.lrm_mesh")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parents[2]


def _read_checkpoint(ckpt: Path, trust_checkpoint: bool) -> dict:
    """The checkpoint's ``lrm_generator.*`` weights (prefix removed). Loaded with ``weights_only=True``
    unless ``trust_checkpoint``: upstream's run.py unpickles the whole Lightning checkpoint, which can run
    code; a refused safe load says how to opt in."""
    import pickle

    import torch

    try:
        state = torch.load(str(ckpt), map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is one clear error
        hint = ""
        if not trust_checkpoint and (isinstance(exc, pickle.UnpicklingError) or "weights only" in str(exc).lower()):
            hint = (f" The safe loader (torch.load weights_only=True) refused it. If you trust this file, opt in to "
                    f"full unpickling with --trust-checkpoint or \"{CONFIG_KEY_TRUST}\": true in --config "
                    "($HISCENE_INSTANTMESH_TRUST_CHECKPOINT=1).")
        raise BackendError(f"instantmesh: cannot read {ckpt} (config key {CONFIG_KEY}): {exc}{hint}") from exc
    if not isinstance(state, dict):
        raise BackendError(f"instantmesh: {ckpt} (config key {CONFIG_KEY}) holds a {type(state).__name__}, not a state dict")
    state = state.get("state_dict", state)
    prefix = "lrm_generator."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} or state


def resolve_paths(weights: str | Path | None, repo: str | Path | None = None,
                  config: str | Path | None = None) -> tuple[Path, Path | None, Path]:
    """(checkpoint file, clone or None, model YAML) as :func:`load_instantmesh` resolves them; BackendError
    naming the key of the first one that is missing."""
    ckpt = _check_file(weights, CONFIG_KEY, "checkpoint")
    if ckpt.is_dir():
        ckpt = _check_file(ckpt / "instant_mesh_large.ckpt", CONFIG_KEY, "checkpoint")
    if repo is not None:
        repo_path = _check_file(repo, CONFIG_KEY_REPO, "repository")
        if not (repo_path / "src" / "models" / "lrm_mesh.py").is_file():
            raise BackendError(f"instantmesh: {repo_path} (config key {CONFIG_KEY_REPO}) is not an InstantMesh clone "
                               "(no src/models/lrm_mesh.py)")
    else:
        repo_path = _importable_clone()
    if config is None and repo_path is not None:
        variant = repo_path / "configs" / (ckpt.stem.replace("_", "-") + ".yaml")
        config = variant if variant.is_file() else repo_path / "configs" / "instant-mesh-large.yaml"
    return ckpt, repo_path, _check_file(config, CONFIG_KEY_CONFIG, "model config YAML")


def load_instantmesh(
    weights: str | Path | None,
    repo: str | Path | None = None,
    config: str | Path | None = None,
    device: str | None = None,
    trust_checkpoint: bool = False,
    dino: str | Path | None = None,
) -> Any:
    """Build InstantMesh from its YAML config and load the checkpoint (keys ``lrm_generator.*``, as
    upstream's run.py does); FlexiCubes geometry initialised for the mesh variants.

    Order: the YAML is checked (:func:`~hiscene_sim.generate.checkpoints.check_instantmesh_config`), the DINO
    snapshot too, the checkpoint read, and only then InstantMesh imported (with the transformers 5 shims,
    :mod:`hiscene_sim.generate.instantmesh_compat`) and built with the Hub offline.

    Args:
        weights: the ``.ckpt`` file, or a directory holding ``instant_mesh_large.ckpt`` (config key
            ``generate.instantmesh.weights``).
        repo: the InstantMesh clone (``generate.instantmesh.repo``), put on ``sys.path``; without it the
            package ``src`` must already be importable (``PYTHONPATH``) and the clone is found from it.
        config: model YAML (``generate.instantmesh.config``); default ``<repo>/configs/<variant>.yaml``
            with the variant named after the checkpoint (``instant_mesh_base.ckpt`` ->
            ``instant-mesh-base.yaml``, as upstream names them), else ``instant-mesh-large.yaml``.
        trust_checkpoint: load the checkpoint with ``weights_only=False`` (config key
            ``generate.instantmesh.trust_checkpoint``, flag ``--trust-checkpoint``; only for a file you trust).
        dino: local ``facebook/dino-vitb16`` snapshot (``generate.instantmesh.dino``) used instead of the Hub
            name in the YAML's ``encoder_model_name``.
    """
    from hiscene_sim.generate.checkpoints import check_dino_snapshot, check_instantmesh_config, read_yaml
    from hiscene_sim.generate.offline import offline_hub

    ckpt, repo_path, cfg_path = resolve_paths(weights, repo, config)
    params = check_instantmesh_config(cfg_path, ckpt, CONFIG_KEY_CONFIG)
    encoder = Path(dino).expanduser() if dino is not None else Path(str(params["encoder_model_name"]))
    if not encoder.is_dir():
        raise BackendError(f"instantmesh: its image encoder {params['encoder_model_name']!r} ({cfg_path}) would be "
                           f"downloaded: set {CONFIG_KEY_DINO} (--instantmesh-dino) to a local facebook/dino-vitb16 snapshot")
    check_dino_snapshot(encoder, params.get("encoder_feat_dim"), CONFIG_KEY_DINO)
    state = _read_checkpoint(ckpt, trust_checkpoint)
    if repo_path is not None and str(repo_path) not in sys.path:
        sys.path.insert(0, str(repo_path))
    try:
        import torch

        from hiscene_sim.generate.instantmesh_compat import patch_dino, patch_transformers

        patch_transformers()
        from src.models.encoder import dino as instantmesh_dino
        from src.utils.train_util import instantiate_from_config

        patch_dino(instantmesh_dino)
    except ImportError as exc:
        raise BackendError(f"instantmesh: cannot import InstantMesh ({exc}). {INSTALL_HINT}") from exc
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # upstream's instantiate_from_config reads config["target"] / config.get("params"): a plain dict from
    # PyYAML serves (no omegaconf needed at inference)
    model_config = dict(read_yaml(cfg_path, CONFIG_KEY_CONFIG)["model_config"])
    model_config["params"] = {**model_config["params"], "encoder_model_name": str(encoder)}
    with offline_hub():
        model = instantiate_from_config(model_config)
    model.load_state_dict(state, strict=True)
    model = model.to(device)
    if hasattr(model, "init_flexicubes_geometry"):
        model.init_flexicubes_geometry(device, fovy=ZERO123PLUS_FOV_DEG)
    return model.eval()


# ------------------------------------------------------------------------------- adapter
class InstantMeshReconstructor:
    """InstantMesh as a :class:`~hiscene_sim.generate.interfaces.SparseViewReconstructor`.

    Args:
        weights, repo, config, device, trust_checkpoint, dino: see :func:`load_instantmesh`.
        model: an already-built model (anything with ``forward_planes(images (1, V, 3, S, S), cameras
            (1, V, 16))`` and ``extract_mesh(planes, use_texture_map=False) -> (vertices (N, 3), faces
            (F, 3), colours (N, 3) uint8)``); tests pass a fake.
        frame: a fixed world -> model frame; default :meth:`InstantMeshFrame.from_cameras` per call.
        framed_radius: for that default (see :meth:`InstantMeshFrame.from_cameras`).
        image_size: the square size views are resized to (320 upstream).
    """

    name = "instantmesh"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        repo: str | Path | None = None,
        config: str | Path | None = None,
        model: Any = None,
        device: str | None = None,
        frame: InstantMeshFrame | None = None,
        framed_radius: float = ZERO123PLUS_FRAMED_RADIUS,
        image_size: int = IMAGE_SIZE,
        trust_checkpoint: bool = False,
        dino: str | Path | None = None,
    ) -> None:
        if model is None:
            model = load_instantmesh(weights, repo=repo, config=config, device=device, trust_checkpoint=trust_checkpoint,
                                     dino=dino)
        self.model = model
        self.frame = frame
        self.framed_radius = float(framed_radius)
        self.image_size = int(image_size)

    def _device(self) -> Any:
        params = getattr(self.model, "parameters", None)
        if params is not None:
            for p in params():
                return p.device
        return "cpu"

    def reconstruct(self, images: list[np.ndarray], cameras: list[Camera], frame: InstantMeshFrame | None = None) -> trimesh.Trimesh:
        """Posed views -> a vertex-coloured mesh in the cameras' world frame (metres, +Z up);
        ``mesh.metadata["instantmesh_frame"]`` records the world -> model frame used."""
        import torch
        import trimesh

        if len(images) != len(cameras) or not images:
            raise ValueError(f"need one camera per view, got {len(images)} views and {len(cameras)} cameras")
        frame = frame or self.frame or InstantMeshFrame.from_cameras(cameras, self.framed_radius)
        device = self._device()
        cams = torch.as_tensor(cameras_to_instantmesh(cameras, frame)[None], dtype=torch.float32, device=device)
        views = images_to_tensor(images, self.image_size).to(device)
        with torch.no_grad():
            planes = self.model.forward_planes(views, cams)
            vertices, faces, colors = self.model.extract_mesh(planes, use_texture_map=False)[:3]
        vertices = np.asarray(vertices.detach().cpu() if hasattr(vertices, "detach") else vertices, dtype=np.float64)
        faces = np.asarray(faces.detach().cpu() if hasattr(faces, "detach") else faces, dtype=np.int64)
        mesh = trimesh.Trimesh(frame.to_world(vertices), faces.reshape(-1, 3), vertex_colors=np.asarray(colors), process=False)
        mesh.metadata["instantmesh_frame"] = frame.to_dict()
        return mesh
