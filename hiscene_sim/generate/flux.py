"""Text -> isometric scene image (paper 3.2, "Scene Initialization"): FLUX, plus CLIP to pick a candidate.

The paper prepends the fixed prefix "Isometric view of" to the user's prompt, generates candidate
images with a text-to-image model (FLUX) and passes the selected one to TRELLIS. Here:

* :func:`isometric_prompt` adds the prefix (once);
* :class:`FluxTextToImage` (backend name ``"flux"``) wraps diffusers' ``FluxPipeline``: one image per
  seed, each from its own ``torch.Generator(seed)`` (CPU generator, so a seed gives the same latent
  noise on any device);
* :class:`ClipImageScorer` (``"clip"``) scores images against a prompt with a transformers
  ``CLIPModel`` (cosine similarity of the L2-normalised image and text embeddings, in [-1, 1]);
* :func:`choose_candidate` picks the best-scoring candidate when a scorer is configured, else the
  first, and returns a record of what it did and why, for the pipeline to store.

Weights are LOCAL directories: a diffusers FLUX checkpoint (``model_index.json`` with ``transformer/``,
``vae/``, ``text_encoder/``, ``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``, ``scheduler/``,
e.g. a snapshot of black-forest-labs/FLUX.1-dev) under config key ``generate.flux.weights``, and a
transformers CLIP directory (``config.json``, weights, tokenizer and preprocessor files, e.g.
openai/clip-vit-large-patch14) under ``generate.clip.weights``. A missing directory raises
:class:`~hiscene_sim.backends.BackendError` naming the path and the key. torch / diffusers /
transformers are imported inside the functions that need them, so importing this module is cheap.

Images are (H, W, 3) uint8 RGB throughout (see :mod:`hiscene_sim.generate.interfaces`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.generate.interfaces import ImageCandidate, ImageScorer

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CLIP_CONFIG_KEY",
    "FLUX_CONFIG_KEY",
    "ISOMETRIC_PREFIX",
    "ClipImageScorer",
    "FluxSettings",
    "FluxTextToImage",
    "choose_candidate",
    "isometric_prompt",
]

FLUX_CONFIG_KEY = "generate.flux.weights"
CLIP_CONFIG_KEY = "generate.clip.weights"
#: Paper 3.2: 'we first generate isometric view candidate images by prepending a fixed prefix
#: "Isometric view of" to the T'.
ISOMETRIC_PREFIX = "Isometric view of "


def isometric_prompt(prompt: str) -> str:
    """``"Isometric view of " + prompt`` (surrounding whitespace stripped). A prompt that already
    starts with the prefix (any letter case) is returned unchanged, so the call is idempotent.

    Raises:
        ValueError: an empty prompt.
    """
    text = " ".join(str(prompt).split())
    if not text:
        raise ValueError("isometric_prompt: the prompt is empty")
    if text.lower().startswith(ISOMETRIC_PREFIX.lower()):
        return text
    return ISOMETRIC_PREFIX + text


# --------------------------------------------------------------------------------- helpers
def _device_and_dtype(device: str | None, dtype: Any, cuda_default: str) -> tuple[str, torch.dtype]:
    """Default device: CUDA when available, else CPU. Default dtype: ``cuda_default`` (a torch dtype
    name) on CUDA, float32 otherwise. ``dtype`` may be a torch dtype or its name."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = cuda_default if torch.device(device).type == "cuda" else "float32"
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        dtype = getattr(torch, dtype)
    return device, dtype


def _dtype_kwarg(module: Any, since: str, dtype: Any) -> dict[str, Any]:
    """``{"dtype": dtype}`` for library versions that take it (diffusers 0.42+, transformers 4.56+
    deprecate ``torch_dtype``), else ``{"torch_dtype": dtype}``."""
    from packaging.version import Version

    return {"dtype" if Version(module.__version__) >= Version(since) else "torch_dtype": dtype}


def _weights_dir(weights: str | Path | None, key: str, what: str, marker: str) -> Path:
    """The local weights directory, or a BackendError naming the path and the config key."""
    if weights is None:
        raise BackendError(f"{what}: no weights configured (set config key {key} to a local directory)")
    path = Path(weights).expanduser()
    if not path.is_dir():
        raise BackendError(f"{what}: weights directory not found: {path} (config key {key})")
    if not (path / marker).is_file():
        raise BackendError(f"{what}: {path} (config key {key}) has no {marker}; expected a saved {what} directory")
    return path


def to_uint8_images(images: Any) -> list[np.ndarray]:
    """A pipeline's ``output_type="np"`` batch, (B, H, W, 3) float in [0, 1], -> B (H, W, 3) uint8."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (B, H, W, 3) images, got {arr.shape}")
    out = np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(a) for a in out]


# ------------------------------------------------------------------------------------ FLUX
@dataclass
class FluxSettings:
    """Sampling settings passed to ``FluxPipeline.__call__``.

    Defaults follow FLUX.1-dev in diffusers (28 steps, guidance 3.5, 512 T5 tokens) at 1024 x 1024;
    for FLUX.1-schnell use ``num_inference_steps=4, guidance_scale=0.0, max_sequence_length=256``.
    ``height`` and ``width`` must be multiples of ``2 * vae_scale_factor`` (16 for FLUX's VAE).
    """

    height: int = 1024
    width: int = 1024
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    max_sequence_length: int = 512

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        if self.max_sequence_length < 1:
            raise ValueError("max_sequence_length must be >= 1")


def load_flux_pipeline(weights: str | Path, device: str | None = None, dtype: Any = None) -> Any:
    """``FluxPipeline.from_pretrained(weights, local_files_only=True)`` on ``device`` in ``dtype`` (default
    bfloat16 on CUDA, FLUX's native precision; float32 on CPU), with the Hub offline. The snapshot's
    configs are checked first (:func:`~hiscene_sim.generate.checkpoints.check_flux_snapshot`). Missing
    directory / diffusers / a mismatched component -> BackendError naming the file and the key."""
    from hiscene_sim.generate.checkpoints import check_flux_snapshot
    from hiscene_sim.generate.offline import offline_hub

    path = _weights_dir(weights, FLUX_CONFIG_KEY, "FLUX pipeline", "model_index.json")
    check_flux_snapshot(path, FLUX_CONFIG_KEY)
    try:
        import diffusers
        from diffusers import FluxPipeline
    except ImportError as exc:  # pragma: no cover - dev / gpu extras install diffusers
        raise BackendError(f"the flux backend needs diffusers and transformers (pip install 'hiscene-sim[gpu]'): {exc}") from exc
    device, dtype = _device_and_dtype(device, dtype, "bfloat16")
    with offline_hub():
        pipe = FluxPipeline.from_pretrained(str(path), local_files_only=True, **_dtype_kwarg(diffusers, "0.42", dtype))
    return pipe.to(device)


def enable_cpu_offload(pipeline: Any, device: str | None = None) -> Any:
    """diffusers' ``enable_model_cpu_offload``: the pipeline's models stay in CPU memory and each moves to
    ``device`` (default: the accelerator) only while it runs, so FLUX.1-dev's peak is its 12B transformer
    (about 24 GB in bf16) instead of all 17B parameters (about 34 GB). Needs accelerate."""
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise BackendError("FLUX CPU offload (--offload, generate.flux.offload) needs accelerate: "
                           "pip install 'hiscene-sim[gpu]'")
    if device is None:
        pipeline.enable_model_cpu_offload()
    else:
        pipeline.enable_model_cpu_offload(device=device)
    return pipeline


class FluxTextToImage:
    """FLUX text-to-image (the :class:`~hiscene_sim.generate.interfaces.TextToImage` protocol).

    Args:
        weights: local diffusers FLUX directory (config key ``generate.flux.weights``).
        pipeline: an already-built ``FluxPipeline`` (or anything with its call signature).
        components: ``FluxPipeline`` constructor arguments (scheduler, vae, text_encoder, tokenizer,
            text_encoder_2, tokenizer_2, transformer); tests build tiny ones. ``pipeline`` is used
            when given, else ``components``, else ``weights``; generation is the same code after.
        device, dtype: where to run (defaults: CUDA if available; bfloat16 on CUDA, float32 on CPU).
            Ignored for a given ``pipeline``.
        settings: :class:`FluxSettings`; keyword overrides (``height=``, ``steps`` as
            ``num_inference_steps=`` ...) may be given instead.
        cpu_offload: load into CPU memory and call diffusers' ``enable_model_cpu_offload(device=device)``
            (:func:`enable_cpu_offload`; needs accelerate) instead of moving the whole pipeline to the GPU:
            FLUX.1-dev needs about 34 GB in bfloat16 otherwise (computed: 16.9B parameters x 2 bytes).
            ``device`` is then where each component runs (default: the accelerator).
    """

    name = "flux"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        pipeline: Any = None,
        components: dict[str, Any] | None = None,
        device: str | None = None,
        dtype: Any = None,
        settings: FluxSettings | None = None,
        cpu_offload: bool = False,
        **overrides: Any,
    ) -> None:
        self.settings = replace(settings) if settings is not None else FluxSettings()
        for key, value in overrides.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown FLUX setting {key!r}; known: {', '.join(FluxSettings.__dataclass_fields__)}")
            setattr(self.settings, key, value)
        self.settings.__post_init__()
        self.weights = None if weights is None else Path(weights).expanduser()
        self.cpu_offload = bool(cpu_offload)
        if pipeline is None and components is not None:
            from diffusers import FluxPipeline

            for module in components.values():  # freshly built modules are in training mode (T5 dropout)
                if hasattr(module, "eval"):
                    module.eval()
            run_device, dtype = _device_and_dtype(device, dtype, "bfloat16")
            pipeline = FluxPipeline(**components).to("cpu" if cpu_offload else run_device, dtype)
            if cpu_offload:
                enable_cpu_offload(pipeline, device)
        elif pipeline is None:
            if cpu_offload:  # loaded into CPU memory; each component visits the accelerator when it runs
                dtype = _device_and_dtype(device, dtype, "bfloat16")[1]  # the precision it runs in, not CPU's default
                pipeline = enable_cpu_offload(load_flux_pipeline(weights, device="cpu", dtype=dtype), device)
            else:
                pipeline = load_flux_pipeline(weights, device=device, dtype=dtype)
        self.pipeline = pipeline
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)

    def generate(self, prompt: str, seeds: list[int]) -> list[ImageCandidate]:
        """One (H, W, 3) uint8 image per seed (seed -> ``torch.Generator("cpu").manual_seed(seed)``).

        ``prompt`` is used as given (the protocol's prompt is already prefixed; see
        :func:`isometric_prompt`). The same seed gives the same image, independent of the other seeds.
        """
        import torch

        if not seeds:
            return []
        s = self.settings
        out: list[ImageCandidate] = []
        for seed in seeds:
            generator = torch.Generator("cpu").manual_seed(int(seed))
            with torch.inference_mode():
                result = self.pipeline(
                    prompt=prompt,
                    height=s.height,
                    width=s.width,
                    num_inference_steps=s.num_inference_steps,
                    guidance_scale=s.guidance_scale,
                    max_sequence_length=s.max_sequence_length,
                    generator=generator,
                    output_type="np",
                )
            images = to_uint8_images(result.images)
            out.append(ImageCandidate(image=images[0], seed=int(seed)))
        return out


# ------------------------------------------------------------------------------------ CLIP
class ClipImageScorer:
    """CLIP image-text similarity (the :class:`~hiscene_sim.generate.interfaces.ImageScorer` protocol).

    ``score`` returns, per image, the cosine similarity of CLIP's L2-normalised image and text
    embeddings (in [-1, 1]; the "CLIP score" of the paper's tables is ``100 * max(cos, 0)``).
    The text is truncated to the tokenizer's maximum length (77 for CLIP).

    Args:
        weights: local transformers CLIP directory (config key ``generate.clip.weights``) holding the
            model, its tokenizer and its image processor (``CLIPProcessor.from_pretrained`` loads them).
        model, processor: already-built ``CLIPModel`` and ``CLIPProcessor`` (tests build tiny ones).
        device, dtype: defaults CUDA if available; float16 on CUDA, float32 on CPU.
        batch_size: images per forward pass.
    """

    name = "clip"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        model: Any = None,
        processor: Any = None,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
    ) -> None:
        if (model is None) != (processor is None):
            raise ValueError("give both model and processor, or neither (then weights)")
        if model is None:
            path = _weights_dir(weights, CLIP_CONFIG_KEY, "CLIP model", "config.json")
            try:
                import transformers
                from transformers import CLIPModel, CLIPProcessor
            except ImportError as exc:  # pragma: no cover
                raise BackendError(f"the clip scorer needs transformers: {exc}") from exc
            from hiscene_sim.generate.checkpoints import check_clip_snapshot
            from hiscene_sim.generate.offline import offline_hub

            check_clip_snapshot(path, CLIP_CONFIG_KEY)
            device, dtype = _device_and_dtype(device, dtype, "float16")
            with offline_hub():
                model = CLIPModel.from_pretrained(str(path), local_files_only=True, **_dtype_kwarg(transformers, "4.56", dtype))
                processor = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
        else:
            device = device or str(next(model.parameters()).device)
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.weights = None if weights is None else Path(weights).expanduser()

    def _text_embedding(self, prompt: str) -> torch.Tensor:
        import torch

        tok = self.processor.tokenizer
        max_len = min(int(getattr(tok, "model_max_length", 77) or 77), self.model.config.text_config.max_position_embeddings)
        inputs = tok([prompt], padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            emb = self.model.get_text_features(**inputs)
        emb = getattr(emb, "pooler_output", emb)  # transformers versions differ in the return type
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def _image_embeddings(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        import torch
        from PIL import Image

        pil = [Image.fromarray(np.asarray(im, dtype=np.uint8)[..., :3]) for im in images]
        pixel_values = self.processor.image_processor(images=pil, return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(self.device, dtype=next(self.model.parameters()).dtype)
        with torch.inference_mode():
            emb = self.model.get_image_features(pixel_values=pixel_values)
        emb = getattr(emb, "pooler_output", emb)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def score(self, prompt: str, images: list[np.ndarray]) -> list[float]:
        """Cosine similarity of each (H, W, 3) uint8 image with ``prompt``; higher is better."""
        import torch

        if not images:
            return []
        text = self._text_embedding(prompt)  # (1, D)
        scores: list[float] = []
        for start in range(0, len(images), self.batch_size):
            img = self._image_embeddings(images[start: start + self.batch_size])  # (b, D)
            scores.extend(float(s) for s in (img @ text.T)[:, 0].cpu().to(torch.float64))
        return scores


# ------------------------------------------------------------------------- candidate choice
def choose_candidate(
    candidates: Sequence[ImageCandidate],
    scorer: ImageScorer | None = None,
    prompt: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Pick the candidate image the scene is built from.

    With a ``scorer``: every candidate is scored against ``prompt`` (its ``score`` field is set) and
    the highest score wins (the first on ties; non-finite scores never win). Without one: the first
    candidate. If every score is non-finite, the first candidate is taken and the record says so.

    Returns:
        index: into ``candidates``.
        record: JSON-serialisable ``{"index", "seed", "method": "clip-score" | "first", "scorer",
            "prompt", "seeds", "scores", "reason"}`` for the pipeline to store.

    Raises:
        ValueError: no candidates, or a scorer without a prompt.
    """
    if not candidates:
        raise ValueError("choose_candidate: no candidates")
    seeds = [int(c.seed) for c in candidates]
    if scorer is None:
        return 0, {
            "index": 0, "seed": seeds[0], "method": "first", "scorer": None, "prompt": prompt, "seeds": seeds,
            "scores": None, "reason": "no image scorer configured: took the first candidate",
        }
    if not prompt:
        raise ValueError("choose_candidate: a scorer needs the prompt to score against")
    raw = [float(s) for s in scorer.score(prompt, [c.image for c in candidates])]
    if len(raw) != len(candidates):
        raise ValueError(f"scorer {scorer.name!r} returned {len(raw)} scores for {len(candidates)} images")
    for c, s in zip(candidates, raw):
        c.score = s
    finite = [s if math.isfinite(s) else -math.inf for s in raw]
    record: dict[str, Any] = {
        "method": "clip-score", "scorer": getattr(scorer, "name", type(scorer).__name__), "prompt": prompt,
        "seeds": seeds, "scores": [s if math.isfinite(s) else None for s in raw],
    }
    if all(s == -math.inf for s in finite):
        record.update(index=0, seed=seeds[0], method="first", reason="every score was non-finite: took the first candidate")
        return 0, record
    index = int(np.argmax(finite))
    record.update(
        index=index, seed=seeds[index],
        reason=f"highest {record['scorer']} image-text similarity {raw[index]:.4f} of {len(candidates)} candidates",
    )
    return index, record
