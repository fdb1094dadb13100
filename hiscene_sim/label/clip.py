"""A CLIP zero-shot labeller: the vocabulary entry whose prompt best matches the object's views.

This is zero-shot classification as the CLIP paper (Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision", sections 3.1.2 and 3.1.4) sets it out:

* each vocabulary entry becomes a prompt through a template, by default the paper's
  ``"a photo of a {}."``; with several templates (a prompt ensemble) the entry's text embedding
  is the mean of its L2-normalised per-template embeddings, normalised again;
* the image embedding is L2-normalised; here the object has several views, so the normalised
  view embeddings are averaged and the mean normalised again (the same embedding-space ensembling
  the paper applies to prompts, applied to views);
* the class probabilities are ``softmax(logit_scale * cosine)`` with the model's learnt
  temperature ``logit_scale = exp(model.logit_scale)``, as in ``CLIPModel.forward``.

Embeddings come from ``transformers.CLIPModel.get_image_features`` / ``get_text_features``. In
transformers 5.x these return a ``BaseModelOutputWithPooling`` whose ``pooler_output`` is the
projected embedding; 4.x returns the tensor itself. Both are accepted.

Weights are a local directory written by ``save_pretrained``: a ``CLIPModel`` (``config.json``
and ``model.safetensors`` or ``pytorch_model.bin``) and its ``CLIPProcessor`` (image processor
and tokenizer), e.g. a snapshot of ``openai/clip-vit-large-patch14``. Nothing is downloaded
(``local_files_only=True``). torch and transformers are imported inside the constructor, so
importing this module is cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.label.base import LABELLERS, LabelAnswer, LabelError, LabelItem, parse_vocabulary

CONFIG_KEY = "--label-clip-weights, or generate.clip.weights in a pipeline"
DEFAULT_TEMPLATE = "a photo of a {}."  # the CLIP paper's default prompt
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOP_K_RAW = 3
TEXT_CACHE_SIZE = 8  # vocabularies whose text embeddings are kept (one per scene is the usual case)


@dataclass(frozen=True)
class ClipLabellerConfig:
    """Settings of :class:`ClipLabeller`.

    Attributes:
        weights: local directory saved with ``save_pretrained`` holding a ``CLIPModel`` and its
            processor (tokenizer + image processor); ``--label-clip-weights`` (in a pipeline also ``generate.clip.weights``).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        prompt_template: a template with one ``{}`` for the vocabulary entry, or a tuple of them
            (a prompt ensemble, averaged in embedding space).
        min_score: an answer whose probability is below this raises :class:`LabelError` (the
            stage then falls back); 0 accepts every answer.
    """

    weights: str | Path
    device: str = "cpu"
    prompt_template: str | tuple[str, ...] = DEFAULT_TEMPLATE
    min_score: float = 0.0

    def __post_init__(self) -> None:
        templates = self.templates
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"prompt_template must contain '{{}}' for the vocabulary entry, got {self.prompt_template!r}")
        if not 0.0 <= float(self.min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")

    @property
    def templates(self) -> tuple[str, ...]:
        t = self.prompt_template
        return (t,) if isinstance(t, str) else tuple(t)


def check_weights_dir(weights: str | Path | None) -> Path:
    """The weights directory, or a :class:`BackendError` naming the path and what is missing."""
    if weights is None or str(weights) == "":
        raise BackendError(f"the clip labeller needs weights: give {CONFIG_KEY}: a local CLIP directory")
    path = Path(weights).expanduser()
    if not path.is_dir():
        raise BackendError(f"clip labeller: weights directory not found: {path} ({CONFIG_KEY})")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("a tokenizer (" + " or ".join(TOKENIZER_FILES) + ")")
    if not any((path / f).is_file() for f in IMAGE_PROCESSOR_FILES):
        missing.append("an image processor (" + " or ".join(IMAGE_PROCESSOR_FILES) + ")")
    if missing:
        raise BackendError(
            f"clip labeller: {path} ({CONFIG_KEY}) lacks {', '.join(missing)}; "
            "expected a CLIPModel and its CLIPProcessor saved with save_pretrained"
        )
    return path


def _as_rgb(image: Any, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise LabelError(f"view {index}: expected an (H, W, 3) RGB image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.round(np.nan_to_num(arr.astype(np.float64))), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _pooled(out: Any) -> Any:
    """The projected embedding from ``get_*_features``: a tensor (transformers 4.x) or ``pooler_output`` (5.x)."""
    return getattr(out, "pooler_output", out)


@LABELLERS.register("clip")
class ClipLabeller:
    """Zero-shot CLIP over a vocabulary (see the module docstring).

    ``ClipLabeller(config)`` or ``ClipLabeller(weights=..., device=..., ...)`` (keywords are
    :class:`ClipLabellerConfig` fields; given with a config they override it), so
    ``LABELLERS.create("clip", config=cfg)`` and ``LABELLERS.create("clip", weights=path)`` both
    work. A missing or incomplete weights directory, or missing torch / transformers, raise
    :class:`BackendError`.
    """

    name = "clip"
    needs_views = True

    def __init__(self, config: ClipLabellerConfig | None = None, **overrides: Any) -> None:
        known = {f.name for f in fields(ClipLabellerConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"ClipLabeller got unknown argument(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        if config is None:
            if overrides.get("weights") is None:
                raise BackendError(f"the clip labeller needs weights: give {CONFIG_KEY}: a local CLIP directory")
            config = ClipLabellerConfig(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        self.config = config
        self.weights = check_weights_dir(config.weights)
        try:
            import torch
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as exc:  # pragma: no cover - both are dev dependencies
            raise BackendError(f"the clip labeller needs torch and transformers: {exc}") from exc
        self._torch = torch
        try:
            model = CLIPModel.from_pretrained(str(self.weights), local_files_only=True)
            self.processor = CLIPProcessor.from_pretrained(str(self.weights), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"clip labeller: cannot load a CLIPModel / CLIPProcessor from {self.weights}: {exc}") from exc
        try:
            self.model = model.to(config.device).eval()
        except (RuntimeError, AssertionError) as exc:
            raise BackendError(f"clip labeller: device {config.device!r} is not usable: {exc}") from exc
        self.device = config.device
        self._text_cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    # ------------------------------------------------------------------ embeddings
    def text_embeddings(self, entries: Sequence[str]):
        """(len(entries), D) L2-normalised text embeddings, one per entry (mean over templates); cached."""
        torch = self._torch
        key = tuple(entries)
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        tok = self.processor.tokenizer
        max_len = min(int(getattr(tok, "model_max_length", 77) or 77), int(self.model.config.text_config.max_position_embeddings))
        per_template = []
        for template in self.config.templates:
            prompts = [template.format(entry) for entry in entries]
            inputs = tok(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(self.device)
            with torch.no_grad():
                emb = _pooled(self.model.get_text_features(**inputs)).float()
            per_template.append(torch.nn.functional.normalize(emb, dim=-1))
        text = torch.nn.functional.normalize(torch.stack(per_template).mean(0), dim=-1)
        self._text_cache[key] = text
        while len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return text

    def image_embedding(self, images: Sequence[np.ndarray]):
        """(D,) the normalised mean of the views' L2-normalised image embeddings."""
        torch = self._torch
        from PIL import Image

        pil = [Image.fromarray(_as_rgb(im, i)) for i, im in enumerate(images)]
        pixel_values = self.processor.image_processor(images=pil, return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(self.device, dtype=next(self.model.parameters()).dtype)
        with torch.no_grad():
            emb = _pooled(self.model.get_image_features(pixel_values=pixel_values)).float()
        views = torch.nn.functional.normalize(emb, dim=-1)
        return torch.nn.functional.normalize(views.mean(0), dim=-1)

    def probabilities(self, images: Sequence[np.ndarray], entries: Sequence[str]) -> np.ndarray:
        """Softmax over ``entries`` of ``logit_scale * cosine`` with the views' mean embedding."""
        torch = self._torch
        image = self.image_embedding(images)
        text = self.text_embeddings(entries)
        with torch.no_grad():
            scale = self.model.logit_scale.detach().float().exp()
            logits = scale * (text @ image)
            probs = torch.softmax(logits, dim=-1)
        return probs.cpu().double().numpy()

    # ------------------------------------------------------------------ the Labeller protocol
    def label(self, item: LabelItem, vocabulary: Sequence[str] | None = None) -> LabelAnswer:
        entries = parse_vocabulary(vocabulary) if vocabulary is not None else []
        if not entries:
            raise LabelError(
                f"{item.object_id}: the clip labeller is zero-shot over a vocabulary and needs one (got none or an empty one)"
            )
        if not item.images:
            raise LabelError(f"{item.object_id}: the clip labeller needs at least one view image (got none)")
        probs = self.probabilities(item.images, entries)
        order = np.argsort(-probs, kind="stable")
        best = int(order[0])
        score = float(probs[best])
        raw = ", ".join(f"{entries[i]} {probs[i]:.3f}" for i in order[:TOP_K_RAW])
        if score < self.config.min_score:
            raise LabelError(f"{item.object_id}: clip's best entry {entries[best]!r} has p={score:.3f} < min_score "
                             f"{self.config.min_score} ({raw})")
        return LabelAnswer(
            label=entries[best],
            backend=self.name,
            model=str(self.weights),
            views=tuple(item.view_names),
            raw=raw[:300],
            score=score,
        )
