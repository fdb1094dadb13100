"""Which backend runs each generation stage, and every local file the neural backends need.

Every setting has a config key (``generate.flux.weights``, ``generate.instantmesh.repo``, ...),
a command-line flag and, for paths, an environment variable. A value comes from, in order: the
command line, the environment variable, a JSON config file
(``{"generate": {"flux": {"weights": "/models/flux", "offload": true}}}``). Nothing is fetched at
run time: every file a backend reads is one of these paths, and ``hiscene generate --check``
(:mod:`hiscene_sim.generate.preflight`) lists the missing ones before any work. An unknown key
under ``generate`` in a config file is an error (a typo would otherwise be ignored silently).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hiscene_sim.backends import BackendError


@dataclass(frozen=True)
class SettingKey:
    """One configurable setting: where it is set and what it is for (shown by ``--check``)."""

    key: str
    flag: str
    env: str | None
    what: str
    kind: Literal["dir", "file", "file-or-dir", "bool"] = "dir"


_PATHS = (
    SettingKey("generate.flux.weights", "--flux-weights", "HISCENE_FLUX_WEIGHTS",
               "diffusers FluxPipeline snapshot, e.g. FLUX.1-dev (model_index.json, transformer/, vae/, text encoders)"),
    SettingKey("generate.clip.weights", "--clip-weights", "HISCENE_CLIP_WEIGHTS",
               "transformers CLIPModel snapshot with its processor, e.g. clip-vit-large-patch14 (FLUX candidate choice)"),
    SettingKey("generate.trellis.weights", "--trellis-weights", "HISCENE_TRELLIS_WEIGHTS",
               "microsoft/TRELLIS-image-large snapshot (pipeline.json, ckpts/*.json + *.safetensors)"),
    SettingKey("generate.trellis.rembg_model", "--rembg-model", "HISCENE_REMBG_MODEL",
               "rembg's u2net.onnx: TRELLIS removes the background of an RGB image with it", "file"),
    SettingKey("generate.trellis.dinov2_repo", "--dinov2-repo", "HISCENE_DINOV2_REPO",
               "a clone of facebookresearch/dinov2 (hubconf.py): TRELLIS's image encoder code, loaded with torch.hub "
               "source='local'"),
    SettingKey("generate.trellis.dinov2_weights", "--dinov2-weights", "HISCENE_DINOV2_WEIGHTS",
               "the DINOv2 state dict TRELLIS's pipeline.json names (dinov2_vitl14_reg -> dinov2_vitl14_reg4_pretrain.pth)",
               "file"),
    SettingKey("generate.instantmesh.weights", "--instantmesh-weights", "HISCENE_INSTANTMESH_WEIGHTS",
               "InstantMesh checkpoint instant_mesh_large.ckpt (or a folder holding it)", "file-or-dir"),
    SettingKey("generate.instantmesh.repo", "--instantmesh-repo", "HISCENE_INSTANTMESH_REPO",
               "a clone of TencentARC/InstantMesh (its package src/; not needed when it is on PYTHONPATH)"),
    SettingKey("generate.instantmesh.config", "--instantmesh-config", "HISCENE_INSTANTMESH_CONFIG",
               "InstantMesh model YAML (default <repo>/configs/instant-mesh-large.yaml, named after the checkpoint)", "file"),
    SettingKey("generate.instantmesh.dino", "--instantmesh-dino", "HISCENE_INSTANTMESH_DINO",
               "facebook/dino-vitb16 snapshot (config.json, preprocessor_config.json, weights): InstantMesh's image encoder"),
    SettingKey("completion.svd.weights", "--svd-weights", "HISCENE_SVD_WEIGHTS",
               "SVD amodal-completion checkpoint (9-channel UNet)"),
)
_SWITCHES = (
    SettingKey("generate.flux.offload", "--offload", "HISCENE_FLUX_OFFLOAD",
               "FLUX with diffusers enable_model_cpu_offload(): one component on the GPU at a time (needs accelerate)",
               "bool"),
    SettingKey("generate.instantmesh.trust_checkpoint", "--trust-checkpoint", "HISCENE_INSTANTMESH_TRUST_CHECKPOINT",
               "load the InstantMesh checkpoint with torch.load(weights_only=False): runs pickled code, only for a file "
               "you trust", "bool"),
)
#: config key -> its setting (paths)
PATH_KEYS: dict[str, SettingKey] = {s.key: s for s in _PATHS}
#: config key -> its setting (on / off)
SWITCH_KEYS: dict[str, SettingKey] = {s.key: s for s in _SWITCHES}
ALL_KEYS: dict[str, SettingKey] = {**PATH_KEYS, **SWITCH_KEYS}
#: config key -> environment variable (the paths; kept for callers that iterate over weights)
WEIGHT_KEYS: dict[str, str | None] = {k: s.env for k, s in PATH_KEYS.items()}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(tree: Any, prefix: str) -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{prefix}.{k}")]


def _switch(value: Any, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BackendError(f"{where}: {key} must be true or false, got {value!r}")


@dataclass
class GenerateConfig:
    """Backends per stage, the local paths the neural ones need (``weights[config key]``, every
    key of :data:`PATH_KEYS`) and their switches (``switches[config key]``, :data:`SWITCH_KEYS`)."""

    image_backend: str = "flux"  # text -> image
    scene_backend: str = "trellis"  # image -> 3D scene
    completion_backend: str = "geometric"  # or "svd"
    regeneration_backend: str = "geometry"  # or "trellis" (LRM prior + Algorithm 3)
    judge: str = "geometric"  # occlusion judge: or "vlm"
    candidates: int = 4  # FLUX images to choose from
    scene_size: float = 2.0  # metres: the generated scene's longest horizontal side
    seed: int = 0
    weights: dict[str, Path] = field(default_factory=dict)
    switches: dict[str, bool] = field(default_factory=dict)

    @staticmethod
    def load(config_file: Path | None = None, overrides: dict[str, Any] | None = None,
             environ: dict[str, str] | None = None, **fields) -> "GenerateConfig":
        """Read every key of :data:`ALL_KEYS`: ``overrides`` (the command line; None = not given)
        over ``environ`` over ``config_file``."""
        environ = dict(os.environ) if environ is None else environ
        overrides = overrides or {}
        tree: dict = {}
        if config_file is not None:
            try:
                tree = json.loads(Path(config_file).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise BackendError(f"config file {config_file}: {exc}") from None
            if not isinstance(tree, dict):
                raise BackendError(f"config file {config_file}: expected a JSON object, got {type(tree).__name__}")
            unknown = [k for k in _leaves(tree.get("generate", {}), "generate") if k not in ALL_KEYS]
            if unknown:
                raise BackendError(f"config file {config_file}: unknown key(s) {', '.join(unknown)}; known: "
                                   + ", ".join(k for k in ALL_KEYS if k.startswith("generate.")))
        weights = {}
        for key, setting in PATH_KEYS.items():
            value = overrides.get(key) or (environ.get(setting.env) if setting.env else None) or _lookup(tree, key)
            if value:
                weights[key] = Path(value).expanduser()
        switches = {}
        for key, setting in SWITCH_KEYS.items():
            if overrides.get(key) is not None:
                switches[key] = bool(overrides[key])
            elif setting.env and environ.get(setting.env) is not None:
                switches[key] = _switch(environ[setting.env], f"${setting.env}", key)
            elif _lookup(tree, key) is not None:
                switches[key] = _switch(_lookup(tree, key), f"config file {config_file}", key)
        return GenerateConfig(weights=weights, switches=switches, **fields)

    def value(self, key: str) -> Path | bool | None:
        """The configured value of any key of :data:`ALL_KEYS` (None: not set)."""
        if key not in ALL_KEYS:
            raise KeyError(f"unknown config key {key!r}")
        return self.switches.get(key) if key in SWITCH_KEYS else self.weights.get(key)

    def path(self, key: str) -> Path | None:
        """The configured path for ``key`` (not checked), or None."""
        return self.weights.get(key)

    def switch(self, key: str) -> bool:
        return bool(self.switches.get(key, False))

    @property
    def flux_offload(self) -> bool:
        return self.switch("generate.flux.offload")

    @property
    def trust_instantmesh_checkpoint(self) -> bool:
        return self.switch("generate.instantmesh.trust_checkpoint")

    def weights_for(self, key: str) -> Path:
        """The existing local path for ``key``, or a BackendError naming the key, its flag,
        its environment variable and the path it looked for."""
        path = self.weights.get(key)
        setting = PATH_KEYS[key]
        if path is None:
            raise BackendError(f"no path configured for {key} (set {setting.flag}, ${setting.env}, or {key} in a "
                               f"--config JSON file): {setting.what}")
        if not Path(path).exists():
            raise BackendError(f"{key}: path {path} does not exist (from {setting.flag}, ${setting.env} or --config)")
        return Path(path)
