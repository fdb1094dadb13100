"""2D entity segmentation of rendered views, behind a backend interface.

Backends: ``geometric`` (default, weight-free: boundaries from what the renderer knows
exactly) and ``entityseg`` (detectron2 / CropFormer with local weights). A backend maps a
:class:`~hiscene_sim.render.result.RenderResult` to an (H, W) int mask image, -1 = no entity.
The interface and the registry are in :mod:`.base`.
"""

from __future__ import annotations

from hiscene_sim.segment import entityseg, geometric  # noqa: F401  (register the backends)
from hiscene_sim.segment.base import SEGMENTERS, Segmenter

__all__ = ["SEGMENTERS", "Segmenter"]
