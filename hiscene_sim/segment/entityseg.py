"""The ``entityseg`` backend: EntitySeg / CropFormer (detectron2) with local weights.

detectron2 is not on PyPI: install it from https://github.com/facebookresearch/detectron2 and
put CropFormer (``Entityv2/CropFormer`` of https://github.com/qqlu/Entity) on ``PYTHONPATH``
(docs/install-gpu.md), then point ``config_file`` at a CropFormer YAML
(``configs/entityv2/entity_segmentation/cropformer_*.yaml``) and ``weights`` at its checkpoint.
Nothing is imported until the backend is created; a missing file or package fails before any
work, naming the setting, the path or the package. How the model is set up and called is in
:mod:`hiscene_sim.segment.cropformer` (upstream's demo predictor, step by step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.render.result import RenderResult
from hiscene_sim.segment.base import SEGMENTERS
from hiscene_sim.segment.cropformer import (
    CONFIG_KEY,
    CropFormerApi,
    build_config,
    cropformer_inputs,
    import_cropformer,
    predict,
    resolve_device,
)

log = logging.getLogger(__name__)


def labels_from_masks(masks: np.ndarray, scores: np.ndarray, alpha: np.ndarray, score_threshold: float) -> np.ndarray:
    """Entity masks (N, H, W) bool with scores (N,) -> (H, W) int64 ids 0..K-1, -1 elsewhere.

    Masks scoring below ``score_threshold`` are dropped (as upstream's demo does with its
    confidence threshold); where kept masks overlap, the higher score wins (painted last); pixels
    with ``alpha <= 0.5`` (no surface rendered) are -1; ids are renumbered densely in the order of
    rising score, so an entity that lost every pixel leaves no gap.
    """
    labels = np.full(alpha.shape, -1, dtype=np.int64)
    keep = np.flatnonzero(scores >= score_threshold)
    for rank, k in enumerate(keep[np.argsort(scores[keep], kind="stable")]):
        labels[masks[k]] = rank
    labels[alpha <= 0.5] = -1
    present = np.unique(labels[labels >= 0])
    dense = np.full(len(keep) + 1, -1, dtype=np.int64)  # index rank + 1; -1 stays -1
    dense[present + 1] = np.arange(len(present))
    return dense[labels + 1]


@dataclass
class EntitySegSegmenter:
    """CropFormer entity segmentation of each rendered view.

    Args:
        config_file: the CropFormer YAML (``segment.entityseg.config_file``, ``--entityseg-config``).
        weights: its checkpoint (``segment.entityseg.weights``, ``--entityseg-weights``).
        score_threshold: entities scoring below it are dropped (upstream's demo default 0.5).
        device: torch device; default ``cuda`` when torch sees a GPU, else ``cpu``.
        api: the upstream callables (default: :func:`import_cropformer`); tests pass stand-ins.
    """

    config_file: str
    weights: str
    score_threshold: float = 0.5
    device: str | None = None
    api: CropFormerApi | None = field(default=None, repr=False)
    name: str = "entityseg"
    _cfg: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for key in ("config_file", "weights"):
            value = getattr(self, key)
            if not value or not Path(value).is_file():
                raise BackendError(f"entityseg: {CONFIG_KEY}.{key} = {value or '(not set)'} not found")
        t0 = time.perf_counter()
        api = self.api if self.api is not None else import_cropformer()
        self.device = resolve_device(self.device)
        self._cfg = build_config(api, self.config_file, self.weights, self.device)
        predictor = api.default_predictor(self._cfg)  # builds CropFormer, eval(), loads MODEL.WEIGHTS
        self._model = predictor.model
        self.api = api
        log.info("entityseg: CropFormer from %s (%s) on %s in %.1f s", self.config_file, Path(self.weights).name,
                 self.device, time.perf_counter() - t0)

    def segment(self, view: RenderResult) -> np.ndarray:
        t0 = time.perf_counter()
        inputs = cropformer_inputs(view.color_uint8(), self._cfg, self.api)
        masks, scores = predict(self._model, inputs)
        labels = labels_from_masks(masks, scores, view.alpha, self.score_threshold)
        log.debug("entityseg: %dx%d view: %d entities, %d kept (score >= %.2f, on the surface) in %.2f s", view.width,
                  view.height, len(scores), int(labels.max()) + 1, self.score_threshold, time.perf_counter() - t0)
        return labels


@SEGMENTERS.register("entityseg")
def _make_entityseg(**kwargs) -> EntitySegSegmenter:
    return EntitySegSegmenter(**kwargs)
