"""Nothing is fetched at run time: the guards the neural adapters load their models under.

* :func:`offline_hub` -- the Hugging Face libraries in offline mode while a model loads
  (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` / ``HF_DATASETS_OFFLINE`` / ``DIFFUSERS_OFFLINE``, and
  ``huggingface_hub.constants.HF_HUB_OFFLINE``, which huggingface_hub read from the environment when it
  was imported and checks before every request). A file that is not on disk then fails instead of
  downloading; our own ``from_pretrained`` calls also pass ``local_files_only=True``.
* :func:`local_dinov2` -- TRELLIS builds its image encoder with
  ``torch.hub.load("facebookresearch/dinov2", name, pretrained=True)`` (``trellis_image_to_3d.py``,
  ``_init_image_cond_model``), which asks GitHub for the default branch and downloads the weights when
  they are not cached. Inside this context that one call is answered from a local clone
  (``torch.hub.load(repo, name, source="local", pretrained=False)``) and a local state dict
  (``torch.load(weights_only=True)``, ``load_state_dict(strict=True)`` as DINOv2's hubconf does).
* :func:`rembg_session` -- rembg's ``new_session("u2net")`` downloads ``u2net.onnx`` when it is missing
  (``rembg/sessions/u2net.py``, ``pooch.retrieve``). The ``u2net_custom`` session
  (``rembg/sessions/u2net_custom.py``) runs the same network with the same pre- and post-processing from a
  given ``model_path`` and never downloads; newer rembg only accepts a path inside ``$U2NET_HOME``, so that
  is set to the model's folder while the session is made.

Written by hand (no library offers these): each is a few lines around the upstream call it guards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hiscene_sim.backends import BackendError

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE")
DINOV2_HUB_REPO = "facebookresearch/dinov2"


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """The Hugging Face hub libraries refuse every request inside this context (restored after)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - diffusers / transformers bring it
        constants = None
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    with _environ({k: "1" for k in OFFLINE_ENV}):
        if constants is not None:
            constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            if constants is not None:
                constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def local_dinov2(repo: str | Path, weights: str | Path) -> Iterator[list[str]]:
    """Inside: ``torch.hub.load("facebookresearch/dinov2", name, ...)`` builds ``name`` from the local clone
    ``repo`` and loads the state dict ``weights``. Any other ``torch.hub.load`` of a GitHub repository
    raises (it would go online). Yields the list of model names it built (for the record)."""
    import torch

    repo, weights = Path(repo), Path(weights)
    original = torch.hub.load
    built: list[str] = []

    def load(repo_or_dir: str, model: str, *args: Any, source: str = "github", **kwargs: Any) -> Any:
        if source == "local":
            return original(repo_or_dir, model, *args, source=source, **kwargs)
        if str(repo_or_dir).split(":")[0] != DINOV2_HUB_REPO:
            raise BackendError(f"torch.hub.load({repo_or_dir!r}, {model!r}) would download; no local copy is configured")
        kwargs.pop("pretrained", None)
        module = original(str(repo), model, *args, source="local", pretrained=False, **kwargs)
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
        built.append(model)
        return module

    torch.hub.load = load
    try:
        yield built
    finally:
        torch.hub.load = original


def rembg_session(model_path: str | Path, key: str = "generate.trellis.rembg_model") -> Any:
    """A rembg session over the local ``u2net.onnx`` at ``model_path`` (never downloads)."""
    path = Path(model_path).expanduser().resolve()
    if not path.is_file():
        raise BackendError(f"rembg model not found: {path} (config key {key})")
    try:
        import rembg
    except ImportError as exc:
        raise BackendError(f"TRELLIS's background removal needs rembg (pip install rembg onnxruntime-gpu): {exc}") from exc
    with _environ({"U2NET_HOME": str(path.parent)}):
        return rembg.new_session("u2net_custom", model_path=str(path))
