"""Video-diffusion amodal completion (paper 3.3, B.2): Stable Video Diffusion with a mask channel.

The model generates the Algorithm-2 transition video (``algorithm2_transitions.py``) from its first frame: the
occluded observation. Conditioning, as in SVD plus B.2's one extra channel:

* UNet input per frame = [noisy video latent (4) | VAE latent of the observation (4) | visible mask
  downsampled to latent resolution (1)] = 9 channels (SVD has 8; :func:`widen_conv_in`).
* the observation's CLIP image embedding through cross-attention (one token);
* SVD's added time ids (fps - 1, motion bucket id, noise-augmentation strength).

Classifier-free guidance is SVD's: the unconditional branch zeroes the CLIP embedding and the
concatenated conditioning (observation latent *and* mask channel; training drops them together),
and the guidance scale rises linearly over frames from ``min_guidance_scale`` to
``max_guidance_scale``. The completion is the video's last frame.

Weights are a local directory laid out like the Hugging Face ``stabilityai/stable-video-diffusion-
img2vid`` repo (``unet/ vae/ image_encoder/ feature_extractor/ scheduler/``) whose UNet has the 9th
(mask) input channel: a fine-tuned amodal-completion checkpoint (``train_svd.py`` makes one). A stock
8-channel SVD UNet is refused before anything is loaded (its ``unet/config.json`` is read first):
run as image-to-video, its last frame is not an amodal completion. Only the training entry point
widens a stock UNet, explicitly, to start fine-tuning. torch, diffusers and transformers are
imported inside functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.complete.algorithm2_transitions import resize_hwc
from hiscene_sim.complete.base import COMPLETERS, CompletionRequest, CompletionResult

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]  # (steps done, total steps) after each denoising step

CONFIG_KEY = "completion.svd.weights"
SUBFOLDERS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")
SVD_IN_CHANNELS = 8  # noisy latent (4) + observation latent (4)
AMODAL_IN_CHANNELS = 9  # + visible mask (B.2, B.3)

# scheduler/scheduler_config.json of stabilityai/stable-video-diffusion-img2vid: EDM sigmas
# (Karras, 0.002..700), v-prediction with EDM preconditioning, c_noise = 0.25 log(sigma).
SVD_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}


def svd_scheduler():
    """An ``EulerDiscreteScheduler`` configured like SVD's (for tests, or a checkpoint without scheduler/)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)


@dataclass
class SvdConditioning:
    """SVD's micro-conditioning, passed to the UNet as added time ids.

    Attributes:
        fps: frames per second; the UNet sees ``fps - 1`` (SVD was trained that way, as diffusers'
            pipeline notes).
        motion_bucket_id: SVD's motion amount (127 = its default).
        noise_aug_strength: std of the Gaussian noise added to the observation (in [-1, 1] units)
            before VAE encoding; also fed to the UNet.
    """

    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02


@dataclass(eq=False)
class SvdModules:
    """The five SVD components. ``unet`` has 9 input channels once :func:`widen_conv_in` ran."""

    unet: Any  # diffusers.UNetSpatioTemporalConditionModel
    vae: Any  # diffusers.AutoencoderKLTemporalDecoder
    image_encoder: Any  # transformers.CLIPVisionModelWithProjection
    feature_extractor: Any  # transformers.CLIPImageProcessor (only its mean / std are used)
    scheduler: Any = field(default_factory=svd_scheduler)  # diffusers.EulerDiscreteScheduler

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the SVD repo layout (``unet/ vae/ image_encoder/ feature_extractor/ scheduler/``) under path."""
        path = Path(path)
        for name in SUBFOLDERS:
            getattr(self, name).save_pretrained(path / name)
        return path


def widen_conv_in(unet, extra_channels: int = AMODAL_IN_CHANNELS - SVD_IN_CHANNELS):
    """Give ``unet.conv_in`` ``extra_channels`` more input channels (8 -> 9 for the mask), in place.

    For the start of fine-tuning only (``train_svd.py``): the widened, untrained UNet ignores the
    mask, so inference refuses it (:func:`check_amodal_unet`) until a trained checkpoint is saved.

    The old kernels are copied and the new input channels' kernels are zero, so the widened UNet
    computes exactly what it did before until training moves them (B.3). ``unet.config.in_channels``
    is updated so ``save_pretrained`` / ``from_pretrained`` round-trip. Returns ``unet``.
    """
    import torch

    old = unet.conv_in
    new = torch.nn.Conv2d(
        old.in_channels + extra_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    ).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    new.weight.requires_grad_(old.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(old.bias.requires_grad)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet


def _check_weights_dir(path: Path) -> None:
    if not path.is_dir():
        raise BackendError(
            f"SVD amodal completion weights not found at {path} (set config key {CONFIG_KEY} to a local directory "
            "laid out like stabilityai/stable-video-diffusion-img2vid: unet/ vae/ image_encoder/ feature_extractor/ scheduler/)"
        )
    missing = [name for name in SUBFOLDERS[:4] if not (path / name).is_dir()]
    if missing:
        raise BackendError(f"SVD weights at {path} (config key {CONFIG_KEY}) lack the subfolder(s) {', '.join(missing)}")


def unet_in_channels(path: str | Path) -> int:
    """``in_channels`` of the UNet of the SVD-layout directory ``path``, read from
    ``unet/config.json`` with the json module: no torch / diffusers import and no weights read, so
    a wrong checkpoint is refused in well under a second."""
    config = Path(path) / "unet" / "config.json"
    try:
        value = json.loads(config.read_text())["in_channels"]
    except FileNotFoundError:
        raise BackendError(f"SVD weights (config key {CONFIG_KEY}): {config} not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"SVD weights (config key {CONFIG_KEY}): {config} has no readable 'in_channels' ({exc!r})") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BackendError(f"SVD weights (config key {CONFIG_KEY}): {config}: 'in_channels' = {value!r} is not an integer")
    return value


def check_amodal_unet(path: str | Path, in_channels: int) -> None:
    """Refuse a UNet without the 9th (visible-mask) input channel, naming the checkpoint and the count."""
    if in_channels == AMODAL_IN_CHANNELS:
        return
    unet = Path(path) / "unet"
    if in_channels == SVD_IN_CHANNELS:
        raise BackendError(
            f"{unet} (config key {CONFIG_KEY}) is a stock Stable Video Diffusion UNet: in_channels = {in_channels}, but amodal "
            f"completion needs {AMODAL_IN_CHANNELS} (noisy latent 4 + observation latent 4 + visible mask 1, paper B.2). Run as "
            "image-to-video its last frame is not a completion. Fine-tune one first: python -m hiscene_sim.complete.train_svd "
            f"--weights {Path(path)} --data PAIRS_DIR --output OUT, then pass OUT/checkpoint-NNNNNN"
        )
    raise BackendError(
        f"{unet} (config key {CONFIG_KEY}): in_channels = {in_channels}; the amodal-completion UNet has {AMODAL_IN_CHANNELS} "
        f"(a stock SVD UNet {SVD_IN_CHANNELS})"
    )


def transformers_dtype_kwargs(dtype, version: str | None = None) -> dict[str, Any]:
    """The ``from_pretrained`` keyword for a dtype in the installed transformers: ``dtype`` from
    4.56 on (where ``torch_dtype`` is deprecated), ``torch_dtype`` before (where an unknown
    ``dtype`` keyword reaches the model's ``__init__`` and raises). ``version`` overrides the
    installed one (tests)."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    return {"dtype": dtype} if Version(version) >= Version("4.56.0.dev0") else {"torch_dtype": dtype}


def load_svd_modules(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    allow_stock_unet: bool = False,
) -> SvdModules:
    """Load the SVD components from a local directory.

    The UNet must have the 9th (mask) channel: an 8-channel one raises ``BackendError`` before any
    weights are read, unless ``allow_stock_unet`` (the training entry point, which then widens it
    itself). ``dtype`` (default float32) applies to the UNet and image encoder; the VAE stays in
    float32 when its config asks for ``force_upcast`` (SVD's does: its fp16 encode/decode is
    unstable). A missing directory or subfolder, or missing diffusers / transformers, raise
    ``BackendError``.
    """
    path = Path(path).expanduser()
    _check_weights_dir(path)
    in_channels = unet_in_channels(path)
    if not (allow_stock_unet and in_channels == SVD_IN_CHANNELS):
        check_amodal_unet(path, in_channels)
    try:
        import torch
        from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    except ImportError as exc:  # pragma: no cover - dev/gpu extras install them
        raise BackendError(f"the svd completion backend needs diffusers and transformers: {exc}") from exc

    t0 = time.perf_counter()
    dtype = dtype or torch.float32
    local = {"local_files_only": True}  # local folders only: nothing is fetched at run time
    unet = UNetSpatioTemporalConditionModel.from_pretrained(path / "unet", torch_dtype=dtype, **local)
    if unet.config.in_channels != in_channels:  # config.json changed under us, or a loader remapped it
        raise BackendError(f"{path / 'unet'}: loaded in_channels = {unet.config.in_channels}, config.json said {in_channels}")
    vae = AutoencoderKLTemporalDecoder.from_pretrained(path / "vae", torch_dtype=torch.float32, **local)
    if not getattr(vae.config, "force_upcast", False):
        vae.to(dtype)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(path / "image_encoder", **transformers_dtype_kwargs(dtype),
                                                                  **local)
    feature_extractor = CLIPImageProcessor.from_pretrained(path / "feature_extractor", **local)
    has_scheduler = (path / "scheduler").is_dir()
    scheduler = EulerDiscreteScheduler.from_pretrained(path / "scheduler", **local) if has_scheduler else svd_scheduler()
    modules = SvdModules(unet, vae, image_encoder, feature_extractor, scheduler)
    for m in (unet, vae, image_encoder):
        m.to(device).eval().requires_grad_(False)
    log.info("svd: loaded %s (UNet in_channels %d, %s) on %s in %.1f s", path, in_channels, str(dtype).removeprefix("torch."),
             device, time.perf_counter() - t0)
    return modules


# ---------------------------------------------------------------------------------------------
# conditioning


def added_time_ids(modules: SvdModules, batch: int, cond: SvdConditioning) -> torch.Tensor:
    """(batch, 3) tensor [fps - 1, motion_bucket_id, noise_aug_strength] on the UNet's device and dtype."""
    import torch

    ids = [cond.fps - 1, cond.motion_bucket_id, cond.noise_aug_strength]
    expected = modules.unet.add_embedding.linear_1.in_features
    if modules.unet.config.addition_time_embed_dim * len(ids) != expected:
        raise ValueError(f"UNet expects {expected} added-time features, config gives {len(ids)} ids")
    return torch.tensor([ids], dtype=modules.unet.dtype, device=modules.device).repeat(batch, 1)


def clip_image_embeddings(modules: SvdModules, images: torch.Tensor) -> torch.Tensor:
    """CLIP embeddings of images (B, 3, H, W) in [-1, 1] -> (B, 1, D), the cross-attention context.

    Resized (antialiased bicubic) to the encoder's input size, mapped to [0, 1] and normalised with
    the feature extractor's mean / std, as SVD's pipeline does.
    """
    import torch
    import torch.nn.functional as F

    enc = modules.image_encoder
    size = enc.config.image_size
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=True)
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    mean = torch.tensor(modules.feature_extractor.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(modules.feature_extractor.image_std, device=x.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(device=enc.device, dtype=enc.dtype)
    return enc(pixel_values=x).image_embeds.unsqueeze(1).to(modules.unet.dtype)


def encode_condition(
    modules: SvdModules,
    image: torch.Tensor,
    visible_mask: torch.Tensor,
    num_frames: int,
    noise_aug_strength: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The concatenated conditioning, repeated over frames: (B, F, 5, h, w) = [latent (4) | mask (1)].

    Args:
        image: (B, 3, H, W) in [-1, 1], the occluded observation (video frame 0).
        visible_mask: (B, 1, H, W) in [0, 1].
        noise_aug_strength: Gaussian noise std added to ``image`` before encoding (SVD's noise
            augmentation); the noise comes from ``generator`` (drawn on the CPU, so seeds agree
            across devices).

    The observation latent is the VAE posterior mode *without* the scaling factor, as in SVD. The
    mask is area-downsampled to the latent grid (each cell = fraction of visible pixels, B.2).
    """
    import torch
    import torch.nn.functional as F
    from diffusers.utils.torch_utils import randn_tensor

    vae = modules.vae
    image = image.to(device=vae.device, dtype=torch.float32)
    noise = randn_tensor(image.shape, generator=generator, device=image.device, dtype=image.dtype)
    image = image + noise_aug_strength * noise
    latent = vae.encode(image.to(vae.dtype)).latent_dist.mode()  # (B, 4, h, w)
    mask = F.interpolate(visible_mask.to(device=latent.device, dtype=torch.float32), size=latent.shape[-2:], mode="area")
    cond = torch.cat([latent.float(), mask], dim=1).to(modules.unet.dtype)
    return cond.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# sampling


@dataclass
class SamplerSettings:
    """Inference settings (defaults: SVD's, 8 frames as in B.3)."""

    num_frames: int = 8
    num_inference_steps: int = 25
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    conditioning: SvdConditioning = field(default_factory=SvdConditioning)


def sample_latents(
    modules: SvdModules,
    image: torch.Tensor,
    visible_mask: torch.Tensor,
    settings: SamplerSettings,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the denoising loop; returns the clean video latents (B, F, 4, h, w) (VAE-scaled).

    Args:
        image: (B, 3, H, W) in [-1, 1], the occluded observation; H, W divisible by the VAE factor
            times the UNet's downsampling.
        visible_mask: (B, 1, H, W) in [0, 1].
        generator: seeds the initial noise, the noise augmentation and the scheduler's noise.
        callback: called with (steps done, total steps) after every step (progress bars).
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    unet, scheduler = modules.unet, modules.scheduler
    b, f = image.shape[0], settings.num_frames
    device, dtype = modules.device, unet.dtype
    with torch.no_grad():
        context = clip_image_embeddings(modules, image)  # (B, 1, D)
        cond = encode_condition(modules, image, visible_mask, f, settings.conditioning.noise_aug_strength, generator)
        time_ids = added_time_ids(modules, b, settings.conditioning)
        cfg = settings.max_guidance_scale > 1.0
        if cfg:  # unconditional first: zero context and zero concatenated conditioning, as SVD
            context = torch.cat([torch.zeros_like(context), context])
            cond = torch.cat([torch.zeros_like(cond), cond])
            time_ids = torch.cat([time_ids, time_ids])
        scale = torch.linspace(settings.min_guidance_scale, settings.max_guidance_scale, f, device=device, dtype=dtype)
        scale = scale.view(1, f, 1, 1, 1)

        scheduler.set_timesteps(settings.num_inference_steps, device=device)
        latent_channels = unet.config.out_channels
        shape = (b, f, latent_channels, *cond.shape[-2:])
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
        total = len(scheduler.timesteps)
        for i, t in enumerate(scheduler.timesteps):
            x = torch.cat([latents] * 2) if cfg else latents
            x = torch.cat([scheduler.scale_model_input(x, t), cond], dim=2)
            out = unet(x, t, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False)[0]
            if cfg:
                uncond, conditional = out.chunk(2)
                out = uncond + scale * (conditional - uncond)
            latents = scheduler.step(out, t, latents, generator=generator, return_dict=False)[0]
            if callback is not None:
                callback(i + 1, total)
    return latents


def decode_latents(modules: SvdModules, latents: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Video latents (B, F, 4, h, w) -> frames (B, F, 3, H, W) float32 in [-1, 1] (temporal decoder,
    ``chunk_size`` frames at a time; default all F)."""
    import torch

    vae = modules.vae
    b, f = latents.shape[:2]
    flat = latents.flatten(0, 1).to(vae.dtype) / vae.config.scaling_factor
    chunk = chunk_size or f
    with torch.no_grad():
        parts = [vae.decode(flat[i : i + chunk], num_frames=len(flat[i : i + chunk])).sample for i in range(0, len(flat), chunk)]
    return torch.cat(parts).float().clamp(-1.0, 1.0).reshape(b, f, *parts[0].shape[1:])


def amodal_mask_from_image(image: np.ndarray, visible_mask: np.ndarray | None = None, tolerance: int = 20) -> np.ndarray:
    """The object's silhouette in a completed image on white: (H, W, 3) uint8 -> (H, W) bool.

    A pixel is object when any channel is more than ``tolerance`` below 255. Then: the visible
    mask is added (seen pixels are the object by definition); only connected components touching
    the visible mask are kept when any does (drops specks the model left in the background); holes
    are filled (white parts inside the object). Limitation: white object parts on the silhouette's
    border are lost.
    """
    from scipy import ndimage

    mask = (255 - image.astype(np.int16)).max(axis=-1) > tolerance
    if visible_mask is not None and visible_mask.any():
        mask |= visible_mask
        labels, _ = ndimage.label(mask)
        keep = np.unique(labels[visible_mask & mask])
        mask = np.isin(labels, keep[keep > 0])
    return ndimage.binary_fill_holes(mask)


# ---------------------------------------------------------------------------------------------
# the completion backend


@dataclass(eq=False)
class SvdCompletion:
    """Everything one completion produced.

    Attributes:
        frames: (F, H, W, 3) uint8, the generated transition video at the request's size.
        image: (H, W, 3) uint8, the last frame: the whole object on white.
        amodal_mask: (H, W) bool, from :func:`amodal_mask_from_image`.
    """

    frames: np.ndarray
    image: np.ndarray
    amodal_mask: np.ndarray


def _resolve_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


DEFAULT_RESOLUTION = 512  # B.3
DEFAULT_FRAMES = 8  # B.3


def default_resolution(modules: SvdModules) -> int:
    """B.3's 512, or the model's own size (UNet ``sample_size`` x VAE factor) when smaller: a small
    test model is not run at 512 px on a CPU for minutes."""
    native = int(modules.unet.config.sample_size) * modules.vae_scale_factor
    return min(DEFAULT_RESOLUTION, native)


def default_num_frames(modules: SvdModules) -> int:
    """B.3's 8 frames, or the UNet's ``num_frames`` when smaller."""
    return min(DEFAULT_FRAMES, int(getattr(modules.unet.config, "num_frames", DEFAULT_FRAMES)))


@COMPLETERS.register("svd")
class SvdCompleter:
    """Amodal completion with the fine-tuned SVD model (paper 3.3).

    Args:
        weights: local directory in the SVD repo layout (config key ``completion.svd.weights``)
            whose UNet has the 9th (mask) channel; a missing directory, or a stock 8-channel UNet,
            raises ``BackendError`` before any weights are read. Ignored when ``modules`` is given.
        device: torch device; default CUDA when available, else CPU.
        dtype: UNet / CLIP dtype (torch dtype or name); default float16 on CUDA, float32 otherwise.
        num_inference_steps: sampling steps (SVD's 25).
        num_frames: video length; default B.3's 8, or the UNet's ``num_frames`` when smaller.
        resolution: the square size the view is resized to for the model; default B.3's 512, or the
            model's own size when smaller (:func:`default_resolution`). The result is resized back
            to the request's size. Non-square views are stretched (like Algorithm 2's resize of the
            training frames).
        seed: the torch.Generator seed used for every request (same seed -> same output).
        min_guidance_scale, max_guidance_scale: SVD's per-frame CFG ramp; max <= 1 disables CFG.
        conditioning: fps / motion bucket / noise augmentation ids.
        mask_tolerance: see :func:`amodal_mask_from_image`.
        modules: already-constructed components (tests build tiny ones); the same code runs after.
        step_callback: called with (steps done, total) after every denoising step; the completion
            stage points it at its progress bar. Settable after construction.
    """

    name = "svd"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | None = None,
        dtype: Any = None,
        num_inference_steps: int = 25,
        num_frames: int | None = None,
        resolution: int | None = None,
        seed: int = 0,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        conditioning: SvdConditioning | None = None,
        mask_tolerance: int = 20,
        modules: SvdModules | None = None,
        step_callback: StepCallback | None = None,
    ) -> None:
        if modules is None:
            if weights is None:
                raise BackendError(f"the svd completion backend needs weights (config key {CONFIG_KEY})")
            path = Path(weights).expanduser()
            _check_weights_dir(path)  # before importing torch: a clear error first
            check_amodal_unet(path, unet_in_channels(path))
            import torch

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            modules = load_svd_modules(path, device=device, dtype=_resolve_dtype(dtype, device))
        elif modules.unet.config.in_channels != AMODAL_IN_CHANNELS:
            raise BackendError(
                f"the svd completer needs a UNet with {AMODAL_IN_CHANNELS} input channels (the mask channel); this one has "
                f"{modules.unet.config.in_channels}"
            )
        self.modules = modules
        self.weights = None if weights is None else Path(weights)
        self.resolution = int(resolution) if resolution else default_resolution(modules)
        factor = modules.vae_scale_factor * 2 ** (len(modules.unet.config.block_out_channels) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution {self.resolution} must be a multiple of {factor} for this model")
        self.seed = seed
        self.settings = SamplerSettings(
            num_frames=int(num_frames) if num_frames else default_num_frames(modules),
            num_inference_steps=num_inference_steps,
            min_guidance_scale=min_guidance_scale,
            max_guidance_scale=max_guidance_scale,
            conditioning=conditioning or SvdConditioning(),
        )
        self.mask_tolerance = mask_tolerance
        self.step_callback = step_callback
        log.info("svd completion on %s: %d steps x %d frames at %d px%s", modules.device, self.settings.num_inference_steps,
                 self.settings.num_frames, self.resolution,
                 " (CPU: slow with real SVD weights; fewer steps or a smaller resolution trade quality for time)"
                 if modules.device.type == "cpu" else "")

    @classmethod
    def from_modules(cls, modules: SvdModules, **kwargs) -> SvdCompleter:
        return cls(modules=modules, **kwargs)

    def complete_video(self, request: CompletionRequest) -> SvdCompletion:
        """Generate the transition video for one view; its last frame is the completion."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        h, w = request.visible_mask.shape
        size = (self.resolution, self.resolution)
        image = resize_hwc(request.image, size)[None] / 127.5 - 1.0  # (1, 3, R, R) in [-1, 1]
        mask = resize_hwc(request.visible_mask[..., None], size)[None]  # (1, 1, R, R) in [0, 1]
        generator = torch.Generator("cpu").manual_seed(self.seed)
        latents = sample_latents(self.modules, image, mask, self.settings, generator, callback=self.step_callback)
        t_sample = time.perf_counter() - t0
        video = decode_latents(self.modules, latents)[0]  # (F, 3, R, R) in [-1, 1]
        video = F.interpolate(video.cpu(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        frames = ((video + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        last = np.ascontiguousarray(frames[-1])
        mask_out = amodal_mask_from_image(last, request.visible_mask.astype(bool), self.mask_tolerance)
        seconds = time.perf_counter() - t0
        steps = self.settings.num_inference_steps
        log.info("svd: %s (%s): %d steps x %d frames at %d px in %.1f s (%.2f s/step, decode %.1f s)", request.object_id,
                 request.label, steps, self.settings.num_frames, self.resolution, seconds, t_sample / max(steps, 1),
                 seconds - t_sample)
        return SvdCompletion(frames=frames, image=last, amodal_mask=mask_out)

    def complete(self, request: CompletionRequest) -> CompletionResult:
        out = self.complete_video(request)
        return CompletionResult(image=out.image, amodal_mask=out.amodal_mask, backend=self.name)
