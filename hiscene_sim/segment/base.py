"""The 2D segmentation backend interface and its registry (backends import this module only;
``hiscene_sim.segment`` imports the backends so that they register)."""

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
