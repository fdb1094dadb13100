"""The run's neural models: built from the config on first use, and released when the run no longer
needs them (``hiscene_sim.stages.Models`` holds them; this module decides how to build each and when to
let it go).

Which stage uses which model (``stage_models``): ``image`` FLUX (+ CLIP), ``scene3d`` TRELLIS,
``regenerate`` TRELLIS + InstantMesh (the ``trellis`` backend), ``background`` FLUX + TRELLIS. TRELLIS is
loaded once and shared by the scene, regeneration and background stages; it is released after the last
of them. FLUX on the accelerator is the largest model (about 34 GB in bf16): it is released after each
stage that used it unless the next stage uses it too, and loaded again for the background; with
``--offload`` it lives in CPU memory between calls and is kept. Releasing drops the run's reference,
collects garbage and empties CUDA's cache.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from hiscene_sim.generate.config import GenerateConfig

log = logging.getLogger(__name__)

MODEL_NAMES = ("flux", "clip", "trellis", "instantmesh")


def build_model(name: str, config: GenerateConfig) -> Any:
    """The model ``name`` from the configured local paths (BackendError naming the key when one is missing).
    ``clip`` is None when no CLIP weights are configured (the first FLUX candidate is taken then)."""
    if name == "flux":
        from hiscene_sim.generate.flux import FluxTextToImage

        return FluxTextToImage(weights=config.weights_for("generate.flux.weights"), cpu_offload=config.flux_offload)
    if name == "clip":
        from hiscene_sim.generate.flux import ClipImageScorer

        key = "generate.clip.weights"
        return ClipImageScorer(weights=config.weights_for(key)) if config.path(key) else None
    if name == "trellis":
        from hiscene_sim.generate.trellis import TrellisImageTo3D

        return TrellisImageTo3D(weights=config.weights_for("generate.trellis.weights"),
                                rembg_model=config.path("generate.trellis.rembg_model"),
                                dinov2_repo=config.path("generate.trellis.dinov2_repo"),
                                dinov2_weights=config.path("generate.trellis.dinov2_weights"))
    if name == "instantmesh":
        from hiscene_sim.generate.instantmesh import InstantMeshReconstructor

        return InstantMeshReconstructor(weights=config.weights_for("generate.instantmesh.weights"),
                                        repo=config.path("generate.instantmesh.repo"),
                                        config=config.path("generate.instantmesh.config"),
                                        dino=config.path("generate.instantmesh.dino"),
                                        trust_checkpoint=config.trust_instantmesh_checkpoint)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def stage_models(stage: str, config: GenerateConfig) -> tuple[str, ...]:
    """The models ``stage`` uses under ``config``."""
    if stage == "image":
        return ("flux", "clip")
    if stage == "scene3d":
        return ("trellis",)
    if stage == "regenerate":
        return ("trellis", "instantmesh") if config.regeneration_backend == "trellis" else ()
    if stage == "background":
        return ("flux", "trellis")
    return ()


def release_after(stage: str, plan: Sequence[str], config: GenerateConfig, loaded: Iterable[str]) -> list[str]:
    """Which of the ``loaded`` models to release once ``stage`` (a stage of ``plan``, the run's stages in
    order) is done: those no later stage uses, and FLUX on the accelerator unless the next stage uses it."""
    plan = list(plan)
    later = plan[plan.index(stage) + 1:] if stage in plan else []
    out = []
    for name in loaded:
        uses = [s for s in later if name in stage_models(s, config)]
        if not uses:
            out.append(name)
        elif name == "flux" and not config.flux_offload and later and later[0] not in uses:
            out.append(name)
    return sorted(out)


def free_memory() -> None:
    """Collect garbage and, when torch uses CUDA, return cached blocks to the driver."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
