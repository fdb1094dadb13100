"""TRELLIS image -> 3D (paper 3.2 "Scene Initialization"; paper 3.4 / Algorithm 3's sparse-structure stage).

A thin typed boundary around microsoft/TRELLIS: :class:`TrellisImageTo3D` (backend name ``"trellis"``)
runs ``TrellisImageTo3DPipeline.run`` (one view) or ``run_multi_image`` (several views of one thing) and
converts its output dict to a :class:`~hiscene_sim.generate.interfaces.Generated3D` in this project's
frame; :class:`TrellisVelocityModel` and :class:`TrellisStructureCodec` expose the sparse-structure
flow model and VAE as the interfaces' ``VelocityModel`` / ``StructureCodec`` for Algorithm 3.
Everything that converts (frames, output dict, wrappers) is a pure function of TRELLIS-shaped objects
and is tested without TRELLIS.

Installing TRELLIS (not on PyPI; the PyPI name ``trellis`` is an unrelated package; upstream ships a
``setup.sh`` only; Linux + an NVIDIA GPU with >= 16 GB + the CUDA toolkit)::

    git clone --recurse-submodules https://github.com/microsoft/TRELLIS.git
    cd TRELLIS
    # into the current environment (add --new-env to create a conda env "trellis" instead):
    . ./setup.sh --basic --xformers --flash-attn --diffoctreerast --spconv --mipgaussian --kaolin --nvdiffrast
    export PYTHONPATH=$PWD:$PYTHONPATH      # TRELLIS is imported as the package ``trellis``
    export SPCONV_ALGO=native               # upstream's advice for one-off runs
    # GPUs without flash-attn (e.g. V100): drop --flash-attn and export ATTN_BACKEND=xformers

Weights: a local snapshot of ``microsoft/TRELLIS-image-large`` (``pipeline.json`` and ``ckpts/*.json`` +
``ckpts/*.safetensors``), config key ``generate.trellis.weights``. The sparse-structure ENCODER that
Algorithm 3 needs (``ckpts/ss_enc_conv3d_16l8_fp16``) is in that snapshot but not in ``pipeline.json``;
:func:`load_structure_encoder` loads it separately, as upstream's ``dataset_toolkits/encode_ss_latent.py``
does. Nothing is downloaded: TRELLIS loads its image encoder (DINOv2) with
``torch.hub.load("facebookresearch/dinov2", ...)``, answered here from a local clone and state dict
(``generate.trellis.dinov2_repo`` / ``.dinov2_weights``); its ``preprocess_image`` removes the background of
an RGB image with a rembg session, given here over a local ``u2net.onnx`` (``generate.trellis.rembg_model``),
and an RGBA image with a mask needs none; the Hub is offline while it loads
(:mod:`hiscene_sim.generate.offline`).

Frames (read from upstream code, commit 6b0d647)
------------------------------------------------
* ``"trellis"`` -- what the pipeline returns in memory (``MeshExtractResult.vertices``,
  ``Gaussian.get_xyz``): right-handed, +Z up, the asset inside [-0.5, 0.5]^3 with its longest side
  about 1 (the training renders normalise Blender's Z-up world that way: ``dataset_toolkits/
  blender_script/render.py``; ``render_utils`` orbits with up = (0, 0, 1); ``to_glb`` says "rotate mesh
  (from z-up to y-up)"). So the in-memory outputs are already Z-up; only the exports are Y-up:
* ``"glb"`` -- ``postprocessing_utils.to_glb`` writes ``v @ [[1,0,0],[0,0,-1],[0,1,0]] = (x, z, -y)``:
  glTF's +Y up.
* ``"trellis_ply"`` -- ``Gaussian.save_ply`` (default ``transform``) writes ``T p = (x, -z, y)`` with T
  the same literal applied from the left: +Z becomes -Y in the file (the COLMAP-style 3DGS viewers' frame).

This project: metres, +Z up. A :class:`FrameConversion` maps any of the three with
``p_world = scale * R_source p + translation`` (a proper rotation, so triangle winding is kept), and is
recorded in ``Generated3D.metadata["frame_conversion"]``. ``scale_mode="extent"`` (default) makes the
asset's longest side ``target_size`` metres; ``"cube"`` maps TRELLIS's unit cube edge to ``target_size``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.generate.interfaces import Generated3D
from hiscene_sim.rotations import matrices_to_quaternions, quaternion_multiply

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh

    from hiscene_sim.render.gaussians import Gaussians

__all__ = [
    "CONFIG_KEY",
    "INSTALL_HINT",
    "SS_ENCODER_CKPT",
    "TRELLIS_TO_ZUP",
    "FrameConversion",
    "TrellisImageTo3D",
    "TrellisSettings",
    "TrellisStructureCodec",
    "TrellisVelocityModel",
    "gaussians_from_trellis",
    "gaussians_from_trellis_ply",
    "load_structure_encoder",
    "load_trellis_pipeline",
    "make_frame_conversion",
    "mesh_from_trellis",
    "needs_background_removal",
    "outputs_to_generated",
]

CONFIG_KEY = "generate.trellis.weights"
#: The sparse-structure encoder checkpoint (``.json`` + ``.safetensors``) inside the weights snapshot.
SS_ENCODER_CKPT = "ckpts/ss_enc_conv3d_16l8_fp16"
#: TRELLIS's flow models are trained with the timestep scaled to [0, 1000] (``FlowEulerSampler``).
TIME_SCALE = 1000.0
INSTALL_HINT = (
    "TRELLIS is not on PyPI (the PyPI 'trellis' is an unrelated package): "
    "git clone --recurse-submodules https://github.com/microsoft/TRELLIS.git && cd TRELLIS && "
    ". ./setup.sh --basic --xformers --flash-attn --diffoctreerast --spconv --mipgaussian --kaolin --nvdiffrast "
    "(add --new-env for a new conda env), then export PYTHONPATH=/path/to/TRELLIS:$PYTHONPATH "
    "(see hiscene_sim/generate/trellis.py)"
)

SourceFrame = Literal["trellis", "glb", "trellis_ply"]
ScaleMode = Literal["extent", "cube"]

#: Rotation taking each TRELLIS frame to +Z up (see the module docstring): ``p_zup = R @ p_source``.
TRELLIS_TO_ZUP: dict[str, np.ndarray] = {
    "trellis": np.eye(3),
    # to_glb: v_glb = v @ M, M = [[1,0,0],[0,0,-1],[0,1,0]]  ->  v = M @ v_glb
    "glb": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    # save_ply: p_file = T @ p, T = [[1,0,0],[0,0,-1],[0,1,0]]  ->  p = T.T @ p_file
    "trellis_ply": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}


# --------------------------------------------------------------------------------- helpers
def _np(x: Any) -> np.ndarray:
    """A torch tensor (any device / dtype) or array-like -> float64 / int numpy array."""
    if hasattr(x, "detach"):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def _first(value: Any, sample: int = 0) -> Any:
    """TRELLIS returns one representation per sample in a list; accept a bare object too."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return value[sample] if len(value) > sample else None
    return value


# ----------------------------------------------------------------------- frame conversion
@dataclass(frozen=True)
class FrameConversion:
    """TRELLIS frame -> this project's world (metres, +Z up): ``p = scale * R_source p_src + translation``.

    Attributes:
        scale: metres per TRELLIS unit.
        translation: (3,) metres, applied after rotating and scaling.
        target_size, scale_mode, ground: how ``scale`` / ``translation`` were chosen (recorded).
    """

    scale: float
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_size: float = 1.0
    scale_mode: str = "extent"
    ground: bool = False

    def rotation(self, source: SourceFrame = "trellis") -> np.ndarray:
        """(3, 3) rotation from ``source``'s axes to +Z up."""
        if source not in TRELLIS_TO_ZUP:
            raise ValueError(f"unknown TRELLIS frame {source!r}; known: {', '.join(TRELLIS_TO_ZUP)}")
        return TRELLIS_TO_ZUP[source]

    def matrix(self, source: SourceFrame = "trellis") -> np.ndarray:
        """(4, 4) float64 similarity transform source -> world."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation(source)
        m[:3, 3] = self.translation
        return m

    def points(self, p: Any, source: SourceFrame = "trellis") -> np.ndarray:
        """(N, 3) source points -> (N, 3) float64 world points."""
        p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
        return self.scale * p @ self.rotation(source).T + np.asarray(self.translation)

    def quaternions(self, q: Any, source: SourceFrame = "trellis") -> np.ndarray:
        """(N, 4) w x y z local -> source rotations -> (N, 4) local -> world (``R_source * q``)."""
        q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
        return quaternion_multiply(matrices_to_quaternions(self.rotation(source), positive_w=False)[None], q)

    def to_dict(self, source: SourceFrame = "trellis") -> dict[str, Any]:
        return {
            "source_frame": source,
            "scale_m_per_unit": float(self.scale),
            "translation_m": [float(v) for v in self.translation],
            "target_size_m": float(self.target_size),
            "scale_mode": self.scale_mode,
            "ground": bool(self.ground),
            "matrix": self.matrix(source).tolist(),
        }


def make_frame_conversion(
    points: Any,
    source: SourceFrame = "trellis",
    target_size: float = 1.0,
    scale_mode: ScaleMode = "extent",
    ground: bool = False,
) -> FrameConversion:
    """The conversion for an asset whose points (e.g. mesh vertices) are given in ``source``.

    Args:
        points: (N, 3) in ``source``'s frame (TRELLIS units).
        target_size: metres: the asset's longest bounding-box side (``"extent"``) or the edge of
            TRELLIS's [-0.5, 0.5]^3 cube (``"cube"``).
        ground: translate so the asset's lowest point is at z = 0 and its bounding box is centred
            on x = y = 0; otherwise TRELLIS's cube centre stays at the origin.
    """
    if not target_size > 0:
        raise ValueError(f"target_size must be positive, got {target_size}")
    if scale_mode not in ("extent", "cube"):
        raise ValueError(f"scale_mode must be 'extent' or 'cube', got {scale_mode!r}")
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if scale_mode == "cube":
        scale = float(target_size)
    else:
        if len(p) == 0:
            raise ValueError("scale_mode 'extent' needs at least one point")
        extent = float(np.max(p.max(axis=0) - p.min(axis=0)))
        if not extent > 1e-12:
            raise ValueError("scale_mode 'extent': the asset has zero extent")
        scale = float(target_size) / extent
    translation = (0.0, 0.0, 0.0)
    if ground and len(p):
        w = FrameConversion(scale).points(p, source)
        lo, hi = w.min(axis=0), w.max(axis=0)
        translation = (float(-0.5 * (lo[0] + hi[0])), float(-0.5 * (lo[1] + hi[1])), float(-lo[2]))
    return FrameConversion(scale, translation, float(target_size), scale_mode, bool(ground))


# ------------------------------------------------------------------- representations -> ours
def mesh_from_trellis(mesh: Any, conversion: FrameConversion, source: SourceFrame = "trellis") -> trimesh.Trimesh:
    """A TRELLIS ``MeshExtractResult`` (``vertices`` (V, 3) float, ``faces`` (F, 3) long,
    ``vertex_attrs`` None or (V, C >= 3) with RGB in [0, 1] first) -> a world-frame trimesh with
    vertex colours when the attributes are there.

    Raises:
        ValueError: an empty mesh (TRELLIS sets ``success = False`` then).
    """
    import trimesh

    vertices = _np(mesh.vertices).astype(np.float64).reshape(-1, 3)
    faces = _np(mesh.faces).astype(np.int64).reshape(-1, 3)
    if len(vertices) == 0 or len(faces) == 0:
        raise ValueError("TRELLIS returned an empty mesh (no vertices or faces)")
    colors = None
    attrs = getattr(mesh, "vertex_attrs", None)
    if attrs is not None:
        attrs = _np(attrs).astype(np.float64)
        if attrs.ndim == 2 and attrs.shape[0] == len(vertices) and attrs.shape[1] >= 3:
            rgb = np.clip(np.round(attrs[:, :3] * 255.0), 0, 255).astype(np.uint8)
            colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(conversion.points(vertices, source), faces, vertex_colors=colors, process=False)


def gaussians_from_trellis(gaussian: Any, conversion: FrameConversion, source: SourceFrame = "trellis") -> Gaussians:
    """A TRELLIS ``Gaussian`` (properties ``get_xyz`` (N, 3), ``get_scaling`` (N, 3) linear,
    ``get_rotation`` (N, 4) unit w x y z, ``get_opacity`` (N, 1) in [0, 1], ``get_features`` with the
    SH DC term first) -> world-frame :class:`~hiscene_sim.render.gaussians.Gaussians`.

    Colour is the DC term ``0.5 + SH_C0 * f_dc``; TRELLIS's decoder uses SH degree 0, so higher
    orders (none in practice) are dropped. An object with only ``save_ply`` goes through
    :func:`gaussians_from_trellis_ply`.
    """
    from hiscene_sim.render.gaussians import SH_C0, Gaussians

    if not hasattr(gaussian, "get_xyz") and hasattr(gaussian, "save_ply"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trellis_gaussians.ply"
            gaussian.save_ply(str(path))  # upstream default transform -> the "trellis_ply" frame
            return gaussians_from_trellis_ply(path, conversion)
    xyz = _np(gaussian.get_xyz).astype(np.float64).reshape(-1, 3)
    n = len(xyz)
    scales = _np(gaussian.get_scaling).astype(np.float64).reshape(n, 3)
    rotations = _np(gaussian.get_rotation).astype(np.float64).reshape(n, 4)
    opacities = _np(gaussian.get_opacity).astype(np.float64).reshape(n)
    f_dc = _np(gaussian.get_features).astype(np.float64).reshape(n, -1)[:, :3]
    return Gaussians(
        means=conversion.points(xyz, source),
        scales=scales * conversion.scale,
        rotations=conversion.quaternions(rotations, source),
        opacities=opacities,
        colors=0.5 + SH_C0 * f_dc,
    )


def gaussians_from_trellis_ply(path: str | Path, conversion: FrameConversion) -> Gaussians:
    """A 3DGS PLY written by TRELLIS's ``Gaussian.save_ply`` (default transform, the ``"trellis_ply"``
    frame) -> world-frame Gaussians (read with :func:`~hiscene_sim.render.gaussians.load_3dgs_ply`)."""
    from hiscene_sim.render.gaussians import Gaussians, load_3dgs_ply

    g = load_3dgs_ply(path)
    return Gaussians(
        means=conversion.points(g.means, "trellis_ply"),
        scales=g.scales.astype(np.float64) * conversion.scale,
        rotations=conversion.quaternions(g.rotations, "trellis_ply"),
        opacities=g.opacities,
        colors=g.colors,
    )


def glb_bytes_from_trellis(glb_mesh: Any, conversion: FrameConversion) -> bytes:
    """The textured trimesh of ``postprocessing_utils.to_glb`` (glTF +Y up) -> GLB bytes in the same
    world frame as :func:`mesh_from_trellis` (this project's GLBs hold Z-up metres; its importer
    reads them without an axis change)."""
    m = glb_mesh.copy()
    m.apply_transform(conversion.matrix("glb"))
    return m.export(file_type="glb")


def outputs_to_generated(
    outputs: dict[str, Any],
    *,
    target_size: float = 1.0,
    scale_mode: ScaleMode = "extent",
    ground: bool = False,
    sample: int = 0,
    glb_mesh: Any = None,
    metadata: dict[str, Any] | None = None,
) -> Generated3D:
    """TRELLIS's ``run`` / ``run_multi_image`` output dict (``"mesh"`` / ``"gaussian"`` /
    ``"radiance_field"``: lists, one entry per sample) -> :class:`Generated3D` in metres, +Z up.

    The frame conversion is computed from the mesh (``"mesh"`` is required: ``Generated3D`` carries
    one) and applied to the Gaussians and the optional ``glb_mesh`` (``to_glb``'s result) too.
    """
    mesh_rep = _first(outputs.get("mesh"), sample)
    if mesh_rep is None:
        raise ValueError("TRELLIS outputs have no 'mesh' (run the pipeline with formats including 'mesh')")
    conversion = make_frame_conversion(_np(mesh_rep.vertices), "trellis", target_size, scale_mode, ground)
    mesh = mesh_from_trellis(mesh_rep, conversion)
    gs_rep = _first(outputs.get("gaussian"), sample)
    gaussians = gaussians_from_trellis(gs_rep, conversion) if gs_rep is not None else None
    glb = glb_bytes_from_trellis(glb_mesh, conversion) if glb_mesh is not None else None
    meta = dict(metadata or {})
    meta["frame_conversion"] = conversion.to_dict("trellis")
    meta["formats"] = sorted(k for k, v in outputs.items() if v is not None)
    return Generated3D(mesh=mesh, gaussians=gaussians, glb=glb, metadata=meta)


# ----------------------------------------------------------------- Algorithm 3's wrappers
class TrellisVelocityModel:
    """``VelocityModel`` over TRELLIS's ``SparseStructureFlowModel`` (``forward(x, t, cond)``, x: (B, 8,
    16, 16, 16), t: (B,) float32 in [0, 1000], cond: (B, L, 1024) DINOv2 tokens).

    ``__call__(x_t, t, cond)`` with ``t`` in [0, 1] calls ``model(x_t, 1000 t, cond)``, as TRELLIS's
    ``FlowEulerSampler._inference_model`` does (a batch-1 ``cond`` is repeated to x's batch). ``cond``
    may be a tensor or TRELLIS's ``get_cond`` dict ``{"cond", "neg_cond"}``; with ``cfg_strength`` w > 0
    and a negative condition, inside ``cfg_interval`` (t in [0, 1]) the result is
    ``(1 + w) v(cond) - w v(neg_cond)`` (TRELLIS's ``GuidanceIntervalSamplerMixin``).
    """

    def __init__(
        self,
        model: Any,
        *,
        cfg_strength: float = 0.0,
        cfg_interval: tuple[float, float] = (0.0, 1.0),
        time_scale: float = TIME_SCALE,
    ) -> None:
        self.model = model
        self.cfg_strength = float(cfg_strength)
        self.cfg_interval = (float(cfg_interval[0]), float(cfg_interval[1]))
        self.time_scale = float(time_scale)

    def _eval(self, x_t: torch.Tensor, t: float, cond: Any) -> torch.Tensor:
        import torch

        tt = torch.full((x_t.shape[0],), self.time_scale * float(t), device=x_t.device, dtype=torch.float32)
        if isinstance(cond, torch.Tensor) and cond.shape[0] == 1 and x_t.shape[0] > 1:
            cond = cond.repeat(x_t.shape[0], *([1] * (cond.ndim - 1)))
        return self.model(x_t, tt, cond)

    def __call__(self, x_t: torch.Tensor, t: float, cond: Any) -> torch.Tensor:
        neg = None
        if isinstance(cond, dict):
            neg = cond.get("neg_cond")
            cond = cond["cond"]
        v = self._eval(x_t, t, cond)
        lo, hi = self.cfg_interval
        if self.cfg_strength > 0 and neg is not None and lo <= float(t) <= hi:
            v = (1.0 + self.cfg_strength) * v - self.cfg_strength * self._eval(x_t, t, neg)
        return v


class TrellisStructureCodec:
    """``StructureCodec`` over TRELLIS's sparse-structure VAE: ``SparseStructureEncoder``
    (``forward(x, sample_posterior=False)`` -> the posterior mean) and ``SparseStructureDecoder``
    (``forward(z)`` -> occupancy logits). (B, 1, 64, 64, 64) occupancy <-> (B, 8, 16, 16, 16) latent."""

    def __init__(self, encoder: Any, decoder: Any, resolution: int = 64) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.resolution = int(resolution)

    @staticmethod
    def _device(module: Any) -> Any:
        return next(module.parameters()).device

    def encode(self, occupancy: torch.Tensor) -> torch.Tensor:
        """(B, 1, R, R, R) occupancy in {0, 1} (any dtype) -> (B, C, r, r, r) float latent."""
        import torch

        r = self.resolution
        if occupancy.ndim != 5 or tuple(occupancy.shape[1:]) != (1, r, r, r):
            raise ValueError(f"occupancy must be (B, 1, {r}, {r}, {r}), got {tuple(occupancy.shape)}")
        with torch.no_grad():
            return self.encoder(occupancy.to(self._device(self.encoder), torch.float32), sample_posterior=False)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, C, r, r, r) latent -> (B, 1, R, R, R) logits (occupied where > 0)."""
        import torch

        with torch.no_grad():
            return self.decoder(latent.to(self._device(self.decoder)))


# ------------------------------------------------------------------------------- loading
def _import_trellis_pipeline() -> Any:
    try:
        from trellis.pipelines import TrellisImageTo3DPipeline
    except ImportError as exc:
        raise BackendError(f"the trellis backend cannot import TRELLIS ({exc}). {INSTALL_HINT}") from exc
    return TrellisImageTo3DPipeline


def _check_weights(weights: str | Path | None) -> Path:
    if weights is None:
        raise BackendError(f"the trellis backend needs weights: set config key {CONFIG_KEY} to a local "
                           "snapshot of microsoft/TRELLIS-image-large")
    path = Path(weights).expanduser()
    if not (path / "pipeline.json").is_file():
        raise BackendError(
            f"TRELLIS weights not found at {path} (config key {CONFIG_KEY}): expected a local snapshot of "
            "microsoft/TRELLIS-image-large with pipeline.json and ckpts/"
        )
    return path


DINOV2_REPO_KEY = "generate.trellis.dinov2_repo"
DINOV2_WEIGHTS_KEY = "generate.trellis.dinov2_weights"
REMBG_KEY = "generate.trellis.rembg_model"


def _dinov2_paths(repo: str | Path | None, weights: str | Path | None) -> tuple[Path, Path]:
    """The local DINOv2 clone and state dict TRELLIS's image encoder is built from (both required: without
    them TRELLIS's ``torch.hub.load("facebookresearch/dinov2", ...)`` goes online)."""
    problems = []
    if repo is None or not (Path(repo).expanduser() / "hubconf.py").is_file():
        problems.append(f"{DINOV2_REPO_KEY}: " + ("not configured" if repo is None else f"{repo} has no hubconf.py")
                        + " (a clone of facebookresearch/dinov2)")
    if weights is None or not Path(weights).expanduser().is_file():
        problems.append(f"{DINOV2_WEIGHTS_KEY}: " + ("not configured" if weights is None else f"{weights} not found")
                        + " (the DINOv2 state dict pipeline.json's image_cond_model names)")
    if problems:
        raise BackendError("TRELLIS loads its image encoder (DINOv2) with torch.hub, which would download it: "
                           + "; ".join(problems))
    return Path(repo).expanduser(), Path(weights).expanduser()


def load_trellis_pipeline(weights: str | Path | None, device: str | None = None, *, dinov2_repo: str | Path | None = None,
                          dinov2_weights: str | Path | None = None, formats: Sequence[str] = ("mesh", "gaussian")) -> Any:
    """``TrellisImageTo3DPipeline.from_pretrained(weights)`` moved to ``device`` (default CUDA), offline:
    the snapshot's ``pipeline.json`` and checkpoint configs are checked first
    (:func:`~hiscene_sim.generate.checkpoints.check_trellis_snapshot`), then TRELLIS is imported and loads
    with the Hub offline and its DINOv2 taken from ``dinov2_repo`` / ``dinov2_weights``
    (:func:`~hiscene_sim.generate.offline.local_dinov2`). Anything missing -> BackendError."""
    from hiscene_sim.generate.checkpoints import check_trellis_snapshot
    from hiscene_sim.generate.offline import local_dinov2, offline_hub

    path = _check_weights(weights)
    check_trellis_snapshot(path, tuple(formats), CONFIG_KEY)
    repo, state = _dinov2_paths(dinov2_repo, dinov2_weights)
    pipeline_cls = _import_trellis_pipeline()
    with offline_hub(), local_dinov2(repo, state):
        pipeline = pipeline_cls.from_pretrained(str(path))
    pipeline.to(device or "cuda")
    return pipeline


def load_structure_encoder(weights: str | Path | None, device: str | None = None) -> Any:
    """TRELLIS's ``SparseStructureEncoder`` from ``<weights>/ckpts/ss_enc_conv3d_16l8_fp16.{json,safetensors}``
    (``trellis.models.from_pretrained``), in eval mode on ``device`` (default CUDA). Its config is checked
    against the pipeline's decoder first (:func:`~hiscene_sim.generate.checkpoints.check_trellis_encoder`)."""
    from hiscene_sim.generate.checkpoints import check_trellis_encoder
    from hiscene_sim.generate.offline import offline_hub

    path = _check_weights(weights)
    ckpt = path / SS_ENCODER_CKPT
    missing = [str(ckpt) + ext for ext in (".json", ".safetensors") if not Path(str(ckpt) + ext).is_file()]
    if missing:
        raise BackendError(f"TRELLIS sparse-structure encoder not found: {', '.join(missing)} (config key {CONFIG_KEY})")
    check_trellis_encoder(path, SS_ENCODER_CKPT, CONFIG_KEY)
    try:
        from trellis import models
    except ImportError as exc:
        raise BackendError(f"the trellis backend cannot import TRELLIS ({exc}). {INSTALL_HINT}") from exc
    with offline_hub():
        return models.from_pretrained(str(ckpt)).eval().to(device or "cuda")


def needs_background_removal(image: Any) -> bool:
    """Whether TRELLIS's ``preprocess_image`` would run rembg on this PIL image: it uses a non-trivial alpha
    channel as the object mask (RGBA with some alpha < 255) and removes the background otherwise."""
    if image.mode != "RGBA":
        return True
    return bool(np.all(np.asarray(image)[:, :, 3] == 255))


def _to_pil(image: np.ndarray) -> Any:
    """(H, W, 3) uint8 RGB or (H, W, 4) RGBA (TRELLIS uses a non-trivial alpha as the object mask and
    otherwise removes the background with rembg) -> PIL image."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"images must be (H, W, 3) or (H, W, 4), got {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), "RGBA" if arr.shape[2] == 4 else "RGB")


# ------------------------------------------------------------------------------- adapter
@dataclass
class TrellisSettings:
    """How :class:`TrellisImageTo3D` runs the pipeline and converts its output.

    Sampler params are merged over the checkpoint's ``pipeline.json`` defaults by TRELLIS itself; empty
    dicts keep those. Upstream's demo app passes ``{"steps": 12, "cfg_strength": 7.5}`` for the sparse
    structure and ``{"steps": 12, "cfg_strength": 3.0}`` for the structured latent.
    """

    sparse_structure_sampler_params: dict[str, Any] = field(default_factory=dict)
    slat_sampler_params: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = ("mesh", "gaussian")
    preprocess_image: bool = True
    multi_image_mode: Literal["stochastic", "multidiffusion"] = "stochastic"
    target_size: float = 1.0
    scale_mode: ScaleMode = "extent"
    ground: bool = False
    export_glb: bool = False  # to_glb bakes a texture (nvdiffrast, about a minute on a GPU)
    glb_simplify: float = 0.95
    glb_texture_size: int = 1024


def bake_glb(gaussian: Any, mesh: Any, simplify: float, texture_size: int) -> Any:
    """``trellis.utils.postprocessing_utils.to_glb`` (a textured, simplified trimesh, +Y up)."""
    try:
        from trellis.utils import postprocessing_utils
    except ImportError as exc:
        raise BackendError(f"GLB export needs TRELLIS's postprocessing_utils ({exc}). {INSTALL_HINT}") from exc
    return postprocessing_utils.to_glb(gaussian, mesh, simplify=simplify, texture_size=texture_size, verbose=False)


class TrellisImageTo3D:
    """TRELLIS image(s) -> :class:`Generated3D` (the :class:`~hiscene_sim.generate.interfaces.ImageTo3D`
    protocol), and the sparse-structure stage for Algorithm 3.

    Args:
        weights: local snapshot of microsoft/TRELLIS-image-large (config key ``generate.trellis.weights``).
        pipeline: an already-built pipeline (anything with TRELLIS's ``run`` / ``run_multi_image`` /
            ``models`` / ``get_cond`` / ``preprocess_image``); tests pass a TRELLIS-shaped fake.
        device: for loading (default CUDA).
        settings: :class:`TrellisSettings`; or give its fields as keyword overrides.
        rembg_model: local ``u2net.onnx`` (config key ``generate.trellis.rembg_model``) for the background
            removal TRELLIS applies to RGB inputs; without it only RGBA inputs with a mask are accepted by a
            loaded pipeline (upstream would download the model).
        dinov2_repo, dinov2_weights: the local DINOv2 clone and state dict TRELLIS's image encoder is built
            from (``generate.trellis.dinov2_repo`` / ``.dinov2_weights``); needed to load from ``weights``.
    """

    name = "trellis"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        pipeline: Any = None,
        device: str | None = None,
        settings: TrellisSettings | None = None,
        rembg_model: str | Path | None = None,
        dinov2_repo: str | Path | None = None,
        dinov2_weights: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = replace(settings) if settings is not None else TrellisSettings()
        for key, value in overrides.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown TRELLIS setting {key!r}; known: {', '.join(TrellisSettings.__dataclass_fields__)}")
            setattr(self.settings, key, value)
        self.weights = None if weights is None else Path(weights).expanduser()
        self.device = device
        self.rembg_model = None if rembg_model is None else Path(rembg_model).expanduser()
        # a pipeline we load is upstream's, whose preprocess_image makes a downloading rembg session when it
        # has none: refuse that (a given pipeline's preprocessing is its owner's business)
        self._guard_rembg = pipeline is None
        if pipeline is None:
            pipeline = load_trellis_pipeline(weights, device, dinov2_repo=dinov2_repo, dinov2_weights=dinov2_weights,
                                             formats=self.settings.formats)
        self.pipeline = pipeline
        self._codec: TrellisStructureCodec | None = None

    def _prepare_background_removal(self, images: Sequence[Any]) -> None:
        """Before TRELLIS preprocesses ``images`` (PIL): give the pipeline a rembg session over the local
        model when one is configured and an image needs background removal; refuse when it would
        otherwise make a downloading one."""
        if not self.settings.preprocess_image or not any(needs_background_removal(im) for im in images):
            return
        if getattr(self.pipeline, "rembg_session", None) is not None:
            return
        if self.rembg_model is not None:
            from hiscene_sim.generate.offline import rembg_session

            self.pipeline.rembg_session = rembg_session(self.rembg_model, REMBG_KEY)
        elif self._guard_rembg:
            raise BackendError(
                f"TRELLIS removes the background of an RGB image with rembg, which would download u2net.onnx: set "
                f"{REMBG_KEY} (--rembg-model) to a local u2net.onnx, or give RGBA images whose alpha is the object mask"
            )

    # ------------------------------------------------------------------ generation
    def run(self, images: Sequence[np.ndarray], seed: int) -> dict[str, Any]:
        """TRELLIS's raw output dict for one view (``run``) or several views of one thing
        (``run_multi_image``, ``settings.multi_image_mode``)."""
        if not images:
            raise ValueError("TRELLIS needs at least one image")
        s = self.settings
        pil = [_to_pil(im) for im in images]
        self._prepare_background_removal(pil)
        kwargs: dict[str, Any] = dict(
            seed=int(seed),
            sparse_structure_sampler_params=dict(s.sparse_structure_sampler_params),
            slat_sampler_params=dict(s.slat_sampler_params),
            formats=list(s.formats),
            preprocess_image=s.preprocess_image,
        )
        if len(pil) == 1:
            return self.pipeline.run(pil[0], **kwargs)
        return self.pipeline.run_multi_image(pil, mode=s.multi_image_mode, **kwargs)

    def generate(self, images: list[np.ndarray], seed: int) -> Generated3D:
        """Images ((H, W, 3) uint8 RGB or (H, W, 4) RGBA) -> mesh (+ Gaussians, + GLB if enabled) in
        metres, +Z up; ``metadata`` records the frame conversion, seed and sampler settings."""
        s = self.settings
        outputs = self.run(images, seed)
        glb_mesh = None
        meta: dict[str, Any] = {
            "backend": self.name, "seed": int(seed), "n_views": len(images),
            "sparse_structure_sampler_params": dict(s.sparse_structure_sampler_params),
            "slat_sampler_params": dict(s.slat_sampler_params),
            "multi_image_mode": s.multi_image_mode if len(images) > 1 else None,
        }
        if s.export_glb:
            gs, mesh = _first(outputs.get("gaussian")), _first(outputs.get("mesh"))
            if gs is None or mesh is None:
                raise ValueError("export_glb needs the 'gaussian' and 'mesh' formats")
            glb_mesh = bake_glb(gs, mesh, s.glb_simplify, s.glb_texture_size)
            meta["glb"] = {"simplify": s.glb_simplify, "texture_size": s.glb_texture_size}
        return outputs_to_generated(
            outputs, target_size=s.target_size, scale_mode=s.scale_mode, ground=s.ground, glb_mesh=glb_mesh, metadata=meta
        )

    # ------------------------------------------------------------------ Algorithm 3
    def condition(self, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """TRELLIS's conditioning ``{"cond": (V, L, 1024), "neg_cond": zeros}`` for the images
        (preprocessed as ``run`` does when ``settings.preprocess_image``)."""
        pil = [_to_pil(im) for im in images]
        if self.settings.preprocess_image:
            self._prepare_background_removal(pil)
            pil = [self.pipeline.preprocess_image(p) for p in pil]
        return self.pipeline.get_cond(pil)

    def velocity_model(self, cfg_strength: float | None = None, cfg_interval: tuple[float, float] | None = None) -> TrellisVelocityModel:
        """The sparse-structure flow model as a ``VelocityModel``; CFG strength / interval default to
        the pipeline's sparse-structure sampler params (then ``settings``)."""
        params = {**getattr(self.pipeline, "sparse_structure_sampler_params", {}), **self.settings.sparse_structure_sampler_params}
        return TrellisVelocityModel(
            self.pipeline.models["sparse_structure_flow_model"],
            cfg_strength=params.get("cfg_strength", 0.0) if cfg_strength is None else cfg_strength,
            cfg_interval=tuple(params.get("cfg_interval", (0.0, 1.0))) if cfg_interval is None else cfg_interval,
        )

    def structure_codec(self, encoder: Any = None) -> TrellisStructureCodec:
        """The sparse-structure VAE as a ``StructureCodec``: the pipeline's decoder and the separately
        released encoder (loaded from the weights, or given)."""
        if encoder is None and self._codec is not None:
            return self._codec
        if encoder is None:
            encoder = load_structure_encoder(self.weights, self.device)
        self._codec = TrellisStructureCodec(encoder, self.pipeline.models["sparse_structure_decoder"])
        return self._codec
