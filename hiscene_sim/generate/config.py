"""Which backend runs each generation stage, and where its local weights are.

Every neural stage names a config key (``generate.flux.weights``, ...). A value comes from, in
order: the command line, the environment variable next to it, a JSON config file
(``{"generate": {"flux": {"weights": "/models/flux"}}}``). A stage that needs weights and has
none, or whose path does not exist, fails before any work with the key and the path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hiscene_sim.backends import BackendError

# config key -> environment variable
WEIGHT_KEYS = {
    "generate.flux.weights": "HISCENE_FLUX_WEIGHTS",
    "generate.clip.weights": "HISCENE_CLIP_WEIGHTS",
    "generate.trellis.weights": "HISCENE_TRELLIS_WEIGHTS",
    "generate.instantmesh.weights": "HISCENE_INSTANTMESH_WEIGHTS",
    "completion.svd.weights": "HISCENE_SVD_WEIGHTS",
}


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class GenerateConfig:
    """Backends per stage and the weight paths they need (``weights[config key]``)."""

    image_backend: str = "flux"  # text -> image
    scene_backend: str = "trellis"  # image -> 3D scene
    completion_backend: str = "geometric"  # or "svd"
    regeneration_backend: str = "geometry"  # or "trellis" (LRM prior + Algorithm 3)
    judge: str = "geometric"  # occlusion judge: or "vlm"
    candidates: int = 4  # FLUX images to choose from
    scene_size: float = 2.0  # metres: the generated scene's longest horizontal side
    seed: int = 0
    weights: dict[str, Path] = field(default_factory=dict)

    @staticmethod
    def load(config_file: Path | None = None, overrides: dict[str, str | Path | None] | None = None,
             environ: dict[str, str] | None = None, **fields) -> "GenerateConfig":
        environ = dict(os.environ) if environ is None else environ
        tree = {}
        if config_file is not None:
            try:
                tree = json.loads(Path(config_file).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise BackendError(f"config file {config_file}: {exc}") from None
        weights = {}
        for key, env in WEIGHT_KEYS.items():
            value = (overrides or {}).get(key) or environ.get(env) or _lookup(tree, key)
            if value:
                weights[key] = Path(value).expanduser()
        return GenerateConfig(weights=weights, **fields)

    def weights_for(self, key: str) -> Path:
        """The existing local path for ``key``, or a BackendError naming the key, its
        environment variable and the path it looked for."""
        path = self.weights.get(key)
        env = WEIGHT_KEYS[key]
        if path is None:
            raise BackendError(f"no weights configured for {key} (set --{key.split('.')[1]}-weights, ${env}, "
                               f"or {key} in a --config JSON file)")
        if not Path(path).exists():
            raise BackendError(f"{key}: weights path {path} does not exist (from the command line, ${env} or --config)")
        return Path(path)
