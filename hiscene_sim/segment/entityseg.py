"""The ``entityseg`` backend: EntitySeg / CropFormer (detectron2) with local weights.

detectron2 is not on PyPI: install it from https://github.com/facebookresearch/detectron2
and the EntitySeg project (CropFormer) from https://github.com/qqlu/Entity, then point
``config_file`` at the CropFormer YAML and ``weights`` at its checkpoint. Nothing is
imported until the backend is created, and a missing package or file fails before any work
with the setting and the path it looked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiscene_sim.backends import BackendError
from hiscene_sim.render.result import RenderResult
from hiscene_sim.segment.base import SEGMENTERS


@dataclass
class EntitySegSegmenter:
    config_file: str
    weights: str
    score_threshold: float = 0.5
    device: str = "cpu"
    name: str = "entityseg"
    _predictor: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for key in ("config_file", "weights"):
            path = Path(getattr(self, key))
            if not path.is_file():
                raise BackendError(f"entityseg: segment.entityseg.{key} = {path} not found")
        try:
            from detectron2.config import get_cfg
            from detectron2.engine import DefaultPredictor
        except ImportError as exc:
            raise BackendError(
                "entityseg: needs detectron2, which is not on PyPI; install it from "
                f"https://github.com/facebookresearch/detectron2 and CropFormer from https://github.com/qqlu/Entity ({exc})"
            ) from None
        cfg = get_cfg()
        try:  # CropFormer adds its own config keys
            from mask2former import add_maskformer2_config  # type: ignore[import-not-found]

            add_maskformer2_config(cfg)
        except ImportError:
            pass
        cfg.merge_from_file(self.config_file)
        cfg.MODEL.WEIGHTS = self.weights
        cfg.MODEL.DEVICE = self.device
        self._predictor = DefaultPredictor(cfg)

    def segment(self, view: RenderResult) -> np.ndarray:
        image = view.color_uint8()[:, :, ::-1]  # detectron2 predictors take BGR
        instances = self._predictor(image)["instances"].to("cpu")
        masks = instances.pred_masks.numpy().astype(bool)
        scores = instances.scores.numpy()
        labels = np.full(masks.shape[1:], -1, dtype=np.int64)
        for rank, k in enumerate(np.argsort(scores)):  # higher scores painted last, so they win
            if scores[k] >= self.score_threshold:
                labels[masks[k]] = rank
        labels[view.alpha <= 0.5] = -1
        _, labels_flat = np.unique(labels, return_inverse=True)
        return np.where(labels >= 0, labels_flat.reshape(labels.shape) - (labels.min() < 0), -1)


@SEGMENTERS.register("entityseg")
def _make_entityseg(**kwargs) -> EntitySegSegmenter:
    return EntitySegSegmenter(**kwargs)
