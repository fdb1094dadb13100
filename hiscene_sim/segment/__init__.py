"""2D entity segmentation of rendered views, behind a backend interface.

Backends: ``geometric`` (default, weight-free: boundaries from what the renderer knows
exactly) and ``entityseg`` (detectron2 / CropFormer with local weights). A backend maps a
:class:`~hiscene_sim.render.result.RenderResult` to an (H, W) int mask image, -1 = no entity.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hiscene_sim.backends import Registry
from hiscene_sim.render.result import RenderResult


class Segmenter(Protocol):
    name: str

    def segment(self, view: RenderResult) -> np.ndarray:
        """(H, W) int64 entity ids per pixel, -1 where no entity (background, boundaries)."""
        ...


SEGMENTERS: Registry[Segmenter] = Registry("2D segmentation", default="geometric")

from hiscene_sim.segment import entityseg, geometric  # noqa: E402,F401  (register the backends)
