"""The ``trellis`` regeneration backend: paper 3.4 / Algorithm 3 for one scene object, with real adapters.

    views     the object's selected, completed views + cameras (``hiscene complete``)  object_views / object_rgba_views
    line 2    S_init = F_LRM(I, [r_i, p_i]): InstantMesh, mesh in the scene's world frame  SparseViewReconstructor.reconstruct
    (ours)    S_init -> the object's LOCAL frame (inverse of ``obj.pose.matrix()``)       regenerate_object
    line 3    V = voxelise S_init on a TRELLIS grid fitted to the parsed LOCAL mesh       GridFrame.fit, voxelize_prior
    line 4-15 E_S(V), noise to t, Euler to 0 with TRELLIS's sparse-structure flow        algorithm3_shape_prior.regenerate_structure
    (TRELLIS) structured latent at the active voxels, conditioned on the same views,     sample_and_decode_slat
              decoded to a mesh (``sample_slat`` / ``decode_slat`` of the upstream pipeline)
    (ours)    TRELLIS's [-0.5, 0.5]^3 frame -> the object's local frame via the GridFrame outputs_to_generated, GridFrame.from_grid

The grid is fitted to the *parsed* object (TRELLIS's normalisation: bounding box centred, longest side 1),
so the regenerated mesh comes back at the parsed object's place and scale in its local frame, and the scene
keeps the object's pose. TRELLIS's decoded mesh lives in the same frame as its voxel coordinates (upstream
``representations/mesh/cube2mesh.py``: vertex = grid index / resolution - 0.5, axes x, y, z of the
coordinates), which is the GridFrame's normalised frame; the conversion is the identity (``scale_mode
"cube"``, target size 1) and is recorded.

Conditioning follows TRELLIS's ``run_multi_image``: one ``get_cond`` over all views, the negative
condition cut to one, and per sampler step one view (``"stochastic"``) or the mean over views
(``"multidiffusion"``); for the structured latent the pipeline's own ``inject_sampler_multi_image`` is
used. Classifier-free guidance of the sparse structure is applied once, by the project's FlowSampler
(ShapePriorConfig, defaults from the checkpoint's ``sparse_structure_sampler_params``); the TRELLIS
velocity wrapper is built with ``cfg_strength=0`` so guidance is not applied twice.

Views are passed as RGBA when the completion stage wrote the amodal mask next to the view
(``object_XX_mask.png``): TRELLIS then crops on the alpha instead of running rembg, and InstantMesh
composites onto white as its Zero123++ inputs are.

Weights: ``generate.instantmesh.weights`` and ``generate.trellis.weights`` (checked before any work).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import trimesh

from hiscene_sim.generate.algorithm3_shape_prior import (
    T_MAX,
    T_MIN,
    GridFrame,
    RegeneratedStructure,
    ShapePriorConfig,
    inject_shape_prior,
    regenerate_structure,
    voxelize_prior,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from hiscene_sim.generate.config import GenerateConfig
    from hiscene_sim.render.cameras import Camera
    from hiscene_sim.scene import SceneObject

log = logging.getLogger(__name__)

__all__ = [
    "INSTANTMESH_KEY",
    "TRELLIS_KEY",
    "MultiViewVelocity",
    "TrellisRegenerationConfig",
    "make_trellis_regenerator",
    "object_rgba_views",
    "regenerate_object",
    "sample_and_decode_slat",
    "shape_prior_config",
]

INSTANTMESH_KEY = "generate.instantmesh.weights"
TRELLIS_KEY = "generate.trellis.weights"
FrameFit = Literal["parsed", "union"]


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TrellisRegenerationConfig:
    """Settings of Algorithm 3 for one object.

    t: the noise level the prior is taken to (paper: typically in [0.2, 0.4]; default ShapePriorConfig's).
        Outside [0.2, 0.4] only with ``allow_any_t`` (an ablation: t = 1 ignores the prior, which is plain
        TRELLIS generation from noise).
    seed: eps of line 7 and the structured latent's noise.
    steps, guidance, guidance_interval, rescale_t: the sparse-structure sampler (ShapePriorConfig); None =
        the checkpoint's ``sparse_structure_sampler_params`` (``cfg_strength`` / ``cfg_interval``) merged
        with the adapter's settings, then ShapePriorConfig's defaults.
    slat_sampler_params: overrides for TRELLIS's structured-latent sampler (over the adapter's settings).
    fill_prior: voxelise the prior solid (True) or as its one-voxel surface shell (False: what TRELLIS's
        encoder was trained on, upstream ``dataset_toolkits/voxelize.py`` marks surface cells).
    close_voxels: holes up to about 2 * close_voxels cells wide are sealed before filling (voxelize_prior).
    frame_fit: the grid is fitted to the parsed local mesh (``"parsed"``: the result keeps the parsed
        object's place and scale) or to the parsed mesh and the prior together (``"union"``: keeps a prior
        that reaches past the parsed bounds, e.g. an occluded part, at the cost of a looser fit).
    multi_image_mode: TRELLIS's ``run_multi_image`` mode; None = the adapter's ``settings.multi_image_mode``.
    formats: what ``decode_slat`` produces (only the mesh is used).
    """

    t: float = ShapePriorConfig.t
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    rescale_t: float | None = None
    slat_sampler_params: dict[str, Any] = field(default_factory=dict)
    fill_prior: bool = False
    close_voxels: int = 1
    frame_fit: FrameFit = "parsed"
    multi_image_mode: Literal["stochastic", "multidiffusion"] | None = None
    formats: tuple[str, ...] = ("mesh",)
    allow_any_t: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {self.t}")
        if not self.allow_any_t and not T_MIN <= self.t <= T_MAX:
            raise ValueError(f"t must be in [{T_MIN}, {T_MAX}] (paper 3.4); pass allow_any_t=True for an ablation, got {self.t}")
        if self.frame_fit not in ("parsed", "union"):
            raise ValueError(f"frame_fit must be 'parsed' or 'union', got {self.frame_fit!r}")
        if "mesh" not in self.formats:
            raise ValueError("formats must include 'mesh'")


def shape_prior_config(image_to_3d: Any, config: TrellisRegenerationConfig) -> ShapePriorConfig:
    """The sparse-structure sampler for Algorithm 3: the config's values, else the checkpoint's
    ``sparse_structure_sampler_params`` merged with the adapter's settings, else ShapePriorConfig's defaults.
    For t outside [0.2, 0.4] (an ablation) the returned config carries t = 0.3 as a placeholder; the
    caller runs the injection with the real t (ShapePriorConfig refuses the paper's range otherwise)."""
    pipeline = image_to_3d.pipeline
    settings = getattr(image_to_3d, "settings", None)
    params = {**(getattr(pipeline, "sparse_structure_sampler_params", None) or {}),
              **(getattr(settings, "sparse_structure_sampler_params", None) or {})}
    default = ShapePriorConfig()
    interval = config.guidance_interval
    if interval is None and params.get("cfg_interval") is not None:
        interval = tuple(float(v) for v in params["cfg_interval"])
    t = config.t if T_MIN <= config.t <= T_MAX else default.t
    return ShapePriorConfig(
        t=t,
        steps=int(config.steps if config.steps is not None else params.get("steps", default.steps)),
        guidance=float(config.guidance if config.guidance is not None else params.get("cfg_strength", default.guidance)),
        guidance_interval=interval,
        rescale_t=float(config.rescale_t if config.rescale_t is not None else params.get("rescale_t", default.rescale_t)),
        seed=int(config.seed),
    )


# ----------------------------------------------------------------------------- multi-view conditioning
class MultiViewVelocity:
    """A VelocityModel conditioned on V views the way TRELLIS's ``inject_sampler_multi_image`` does it.

    When ``cond`` holds one row per view (V > 1) and the state is a single sample: ``"stochastic"`` uses
    view ``k mod V`` at the k-th distinct time of the run (upstream cycles one view per sampler step),
    ``"multidiffusion"`` averages the velocity over the views. Any other ``cond`` (one view, the negative
    condition, None) is passed through unchanged."""

    def __init__(self, model: Callable[..., Any], n_views: int, mode: str = "stochastic") -> None:
        if mode not in ("stochastic", "multidiffusion"):
            raise ValueError(f"mode must be 'stochastic' or 'multidiffusion', got {mode!r}")
        self.model = model
        self.n_views = int(n_views)
        self.mode = mode
        self._step: dict[float, int] = {}

    def __call__(self, x_t: torch.Tensor, t: float, cond: Any) -> torch.Tensor:
        shape = getattr(cond, "shape", None)
        rows = shape[0] if shape is not None and len(shape) > 0 else None
        if self.n_views <= 1 or rows != self.n_views or x_t.shape[0] != 1:
            return self.model(x_t, t, cond)
        if self.mode == "stochastic":
            k = self._step.setdefault(round(float(t), 12), len(self._step))
            i = k % self.n_views
            return self.model(x_t, t, cond[i:i + 1])
        preds = [self.model(x_t, t, cond[i:i + 1]) for i in range(self.n_views)]
        return sum(preds[1:], preds[0]) / len(preds)


# ----------------------------------------------------------------------------- the TRELLIS boundary (SLAT)
def sample_and_decode_slat(
    pipeline: Any,
    cond: dict[str, Any],
    coords: Any,
    seed: int,
    *,
    sampler_params: dict[str, Any] | None = None,
    formats: Sequence[str] = ("mesh",),
    multi_image_mode: str = "stochastic",
) -> dict[str, Any]:
    """TRELLIS's second stage at given voxels: ``pipeline.sample_slat(cond, coords, params)`` then
    ``pipeline.decode_slat(slat, formats)``, as upstream ``run`` / ``run_multi_image`` call them.

    cond: ``get_cond``'s ``{"cond": (V, L, D), "neg_cond": ...}``; with V > 1 the negative condition is
        cut to one row and the pipeline's ``inject_sampler_multi_image("slat_sampler", V, steps, mode)``
        wraps the sampling (as ``run_multi_image``).
    coords: (M, 3) voxel indices (x, y, z) on TRELLIS's 64^3 grid, or (M, 4) with a leading batch index;
        passed on as (M, 4) int32 ``[0, x, y, z]`` on ``pipeline.device``.
    seed: ``torch.manual_seed`` before sampling (TRELLIS draws the latent noise from the global CPU RNG);
        the caller's RNG state is restored afterwards.
    Returns the output dict (``{"mesh": [MeshExtractResult], ...}``).
    """
    import torch

    c = torch.as_tensor(coords)
    if c.ndim != 2 or c.shape[1] not in (3, 4):
        raise ValueError(f"coords must be (M, 3) or (M, 4), got {tuple(c.shape)}")
    if c.shape[0] == 0:
        raise ValueError("no active voxels to sample a structured latent on")
    if c.shape[1] == 3:
        c = torch.cat([torch.zeros((c.shape[0], 1), dtype=c.dtype, device=c.device), c], dim=1)
    c = c.to(device=getattr(pipeline, "device", "cpu"), dtype=torch.int32).contiguous()
    params = dict(sampler_params or {})
    cond = dict(cond)
    n_views = int(cond["cond"].shape[0])
    context: Any = nullcontext()
    if n_views > 1:
        cond["neg_cond"] = cond["neg_cond"][:1]
        steps = {**(getattr(pipeline, "slat_sampler_params", None) or {}), **params}.get("steps")
        context = pipeline.inject_sampler_multi_image("slat_sampler", n_views, steps, mode=multi_image_mode)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), context:
        torch.manual_seed(int(seed))
        slat = pipeline.sample_slat(cond, c, params)
        return pipeline.decode_slat(slat, list(formats))


# ----------------------------------------------------------------------------- Algorithm 3 for one object
def _mesh_in(mesh: trimesh.Trimesh, matrix: np.ndarray) -> trimesh.Trimesh:
    out = mesh.copy()
    out.apply_transform(matrix)
    return out


def _reconstruct(reconstructor: Any, images: list[np.ndarray], cameras: list[Camera], world_bounds: np.ndarray) -> trimesh.Trimesh:
    """The LRM; with one view its frame cannot come from the cameras, so an InstantMesh-like reconstructor
    that takes ``frame=`` gets one from the object's world bounds."""
    if len(cameras) < 2 and "frame" in inspect.signature(reconstructor.reconstruct).parameters:
        from hiscene_sim.generate.instantmesh import InstantMeshFrame

        return reconstructor.reconstruct(images, cameras, frame=InstantMeshFrame.from_bounds(world_bounds))
    return reconstructor.reconstruct(images, cameras)


def _structure(codec: Any, model: Any, occupancy: torch.Tensor, cond: Any, neg_cond: Any, sp: ShapePriorConfig,
               t: float) -> RegeneratedStructure:
    """regenerate_structure; for an ablation t outside the paper's range, the same steps with that t."""
    import torch

    if T_MIN <= t <= T_MAX:
        return regenerate_structure(codec, model, occupancy, cond, sp, neg_cond)
    sampler = sp.sampler()
    latent = inject_shape_prior(codec, model, occupancy, t, sampler, cond, sp.seed, neg_cond)
    with torch.no_grad():
        grid = codec.decode(latent)[0, 0] > 0
    return RegeneratedStructure(grid, torch.argwhere(grid), latent, sampler.start_time(t), sampler.num_steps(t),
                                sampler.record(t))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def regenerate_object(
    images: list[np.ndarray],
    cameras: list[Camera],
    local_mesh: trimesh.Trimesh,
    pose_matrix: np.ndarray,
    reconstructor: Any,
    image_to_3d_like: Any,
    config: TrellisRegenerationConfig | None = None,
) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """Algorithm 3 for one object, model-agnostic (any objects with the adapters' methods).

    images, cameras: the object's completed views ((H, W, 3|4) uint8) and their world-frame cameras.
    local_mesh: the parsed object's mesh in its local frame (metres). pose_matrix: (4, 4) object -> world
        (``obj.pose.matrix()``, scale included).
    reconstructor: a SparseViewReconstructor (``reconstruct(images, cameras) -> world mesh``, InstantMesh).
    image_to_3d_like: TrellisImageTo3D-like: ``condition(images)``, ``velocity_model(cfg_strength=)``,
        ``structure_codec()``, ``pipeline`` (``sample_slat``, ``decode_slat``, sampler params, ``device``),
        ``settings`` (``multi_image_mode``, ``slat_sampler_params``).
    Returns (the regenerated mesh in the object's local frame, a JSON-friendly record incl. ``"method"``).
    """
    from hiscene_sim.generate.trellis import outputs_to_generated

    config = config or TrellisRegenerationConfig()
    if not images or len(images) != len(cameras):
        raise ValueError(f"need one camera per view, got {len(images)} views and {len(cameras)} cameras")
    pose = np.asarray(pose_matrix, dtype=np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)) or abs(np.linalg.det(pose[:3, :3])) < 1e-12:
        raise ValueError("pose_matrix must be a finite, invertible 4x4 object-to-world matrix")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    # line 2: the LRM's shape prior, world frame -> the object's local frame
    world_bounds = _mesh_in(local_mesh, pose).bounds
    prior_world = _reconstruct(reconstructor, list(images), list(cameras), world_bounds)
    if len(prior_world.faces) == 0:
        raise ValueError(f"{getattr(reconstructor, 'name', 'the LRM')} returned an empty prior mesh")
    prior_local = _mesh_in(prior_world, np.linalg.inv(pose))
    seconds["prior"] = time.perf_counter() - clock

    # line 3: voxelise on a TRELLIS grid fitted to the parsed object (its place and scale)
    clock = time.perf_counter()
    codec = image_to_3d_like.structure_codec()
    res = int(codec.resolution)
    fit_points = local_mesh.vertices if config.frame_fit == "parsed" else np.vstack([local_mesh.vertices, prior_local.vertices])
    frame = GridFrame.fit(fit_points, res)
    occupancy, _ = voxelize_prior(prior_local, frame=frame, fill=config.fill_prior, close_voxels=config.close_voxels,
                                  seed=config.seed)
    prior_grid = occupancy[0, 0].numpy() > 0
    if not prior_grid.any():
        raise ValueError("the shape prior has no voxels inside the object's grid (the LRM's mesh misses the parsed object)")
    seconds["voxelize"] = time.perf_counter() - clock

    # lines 4-15: encode, noise to t, TRELLIS's sparse-structure flow from there (views as condition)
    clock = time.perf_counter()
    settings = getattr(image_to_3d_like, "settings", None)
    mode = config.multi_image_mode or getattr(settings, "multi_image_mode", "stochastic")
    cond = image_to_3d_like.condition(list(images))
    n_views = int(cond["cond"].shape[0])
    sp = shape_prior_config(image_to_3d_like, config)
    velocity = MultiViewVelocity(image_to_3d_like.velocity_model(cfg_strength=0.0), n_views, mode)
    structure = _structure(codec, velocity, occupancy, cond["cond"], cond["neg_cond"][:1], sp, config.t)
    regenerated = structure.occupancy.detach().cpu().numpy().astype(bool)
    if not regenerated.any():
        raise RuntimeError("Algorithm 3 produced an empty sparse structure (decoder(x0) > 0 nowhere)")
    seconds["structure"] = time.perf_counter() - clock

    # TRELLIS's structured latent at those voxels, decoded; back through the grid frame
    clock = time.perf_counter()
    slat_params = {**(getattr(settings, "slat_sampler_params", None) or {}), **config.slat_sampler_params}
    outputs = sample_and_decode_slat(image_to_3d_like.pipeline, cond, structure.coords, config.seed,
                                     sampler_params=slat_params, formats=config.formats, multi_image_mode=mode)
    generated = outputs_to_generated(outputs, target_size=1.0, scale_mode="cube", ground=False)
    local_vertices = frame.from_grid(np.asarray(generated.mesh.vertices))
    colors = generated.mesh.visual.vertex_colors if generated.mesh.visual.kind == "vertex" else None
    mesh = trimesh.Trimesh(local_vertices, np.asarray(generated.mesh.faces), vertex_colors=colors, process=False)
    seconds["slat"] = time.perf_counter() - clock

    iou = _iou(prior_grid, regenerated)
    lrm = getattr(reconstructor, "name", type(reconstructor).__name__)
    model = getattr(image_to_3d_like, "name", type(image_to_3d_like).__name__)
    run = structure.sampler
    if run.get("guidance_applied", "none") == "none":
        guidance = "no guidance" + (f" (cfg_interval {run['guidance_interval']} excludes t <= {structure.t:.3g})"
                                    if run.get("guidance_configured") and run.get("guidance_interval") else "")
    else:
        guidance = f"guidance {run['guidance_applied']:g} on {run['guided_steps']} of them"
    method = (f"Algorithm 3: {lrm} prior ({int(prior_grid.sum())} voxels of {res}^3) noised to t = {structure.t:.3g}, "
              f"{structure.steps} {model} sparse-structure steps, {guidance} -> {int(regenerated.sum())} voxels (IoU "
              f"{iou:.2f} with the prior), structured latent from {n_views} completed view(s) -> mesh ({len(mesh.faces)} faces)")
    record = {
        "method": method,
        "t_requested": float(config.t),
        "t": float(structure.t),
        "steps": int(structure.steps),
        # what ran (FlowSampler.record): steps from t, guidance applied ("none" outside cfg_interval)
        "sampler": structure.sampler,
        "seed": int(config.seed),
        "n_views": n_views,
        "multi_image_mode": mode,
        "prior": {"reconstructor": lrm, "faces": int(len(prior_world.faces)), "bounds_local": prior_local.bounds.tolist(),
                  "voxels": int(prior_grid.sum()), "fill": bool(config.fill_prior)},
        "grid_frame": {"fit": config.frame_fit, "center": frame.center.tolist(), "scale": float(frame.scale),
                       "resolution": res, "pitch": float(frame.pitch)},
        "structure": {"voxels": int(regenerated.sum()), "iou_with_prior": iou},
        "frame_conversion": generated.metadata.get("frame_conversion"),
        "mesh": {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)), "bounds_local": mesh.bounds.tolist()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return mesh, record


# ----------------------------------------------------------------------------- the scene stage's callable
def object_rgba_views(obj: SceneObject, parsed_dir: Path) -> tuple[list[np.ndarray], list[Camera]]:
    """``regenerate.object_views`` with each view's amodal mask (``<view>_mask.png``, written by the
    completion stage) as alpha where it exists: (H, W, 4) uint8 then, else (H, W, 3)."""
    from PIL import Image

    from hiscene_sim.generate.regenerate import object_views

    images, cameras = object_views(obj, Path(parsed_dir))
    out = []
    for rel, image in zip(obj.extra["completion"]["images"], images):
        mask_path = Path(parsed_dir) / Path(rel).with_name(Path(rel).stem + "_mask.png")
        if mask_path.is_file():
            mask = np.asarray(Image.open(mask_path).convert("L"))
            if mask.shape == image.shape[:2]:
                image = np.concatenate([image, np.where(mask > 127, 255, 0).astype(np.uint8)[..., None]], axis=2)
        out.append(image)
    return out, cameras


def make_trellis_regenerator(
    config: GenerateConfig,
    *,
    settings: TrellisRegenerationConfig | None = None,
    reconstructor: Any = None,
    image_to_3d: Any = None,
) -> Callable[[SceneObject, trimesh.Trimesh, Path], tuple[trimesh.Trimesh, str]]:
    """The per-object regenerator ``one(obj, local_mesh, parsed_dir) -> (mesh, method)`` for
    ``regenerate.regenerate_scene``.

    Both weight keys are checked first (BackendError naming the key, before any work), then InstantMesh
    (``generate.instantmesh.weights``) and TRELLIS (``generate.trellis.weights``) are loaded once, unless
    already-built ``reconstructor`` / ``image_to_3d`` objects are given. ``settings`` default:
    TrellisRegenerationConfig(seed=config.seed). ``one.records`` maps object id -> regenerate_object's record.
    """
    instantmesh_weights = config.weights_for(INSTANTMESH_KEY)
    trellis_weights = config.weights_for(TRELLIS_KEY)
    settings = settings or TrellisRegenerationConfig(seed=config.seed)
    if image_to_3d is None:
        from hiscene_sim.generate.trellis import TrellisImageTo3D

        image_to_3d = TrellisImageTo3D(weights=trellis_weights)
    if reconstructor is None:
        from hiscene_sim.generate.instantmesh import InstantMeshReconstructor

        reconstructor = InstantMeshReconstructor(weights=instantmesh_weights)
    records: dict[str, dict[str, Any]] = {}

    def one(obj: SceneObject, mesh: trimesh.Trimesh, parsed_dir: Path) -> tuple[trimesh.Trimesh, str]:
        images, cameras = object_rgba_views(obj, Path(parsed_dir))
        out, record = regenerate_object(images, cameras, mesh, obj.pose.matrix(), reconstructor, image_to_3d, settings)
        records[obj.id] = record
        log.info("%s: %s", obj.id, record["method"])
        return out, record["method"]

    one.records = records  # type: ignore[attr-defined]
    return one
