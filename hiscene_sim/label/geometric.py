"""The weight-free default labeller: classes a simulator can use, read from the geometry.

* ``floor`` and ``wall``: what parsing found as floor and walls (the background's kind);
* ``table``: a support surface, a foreground object with a large flat top that other
  objects rest on (its upward area where they stand is at least ``min_flat`` of its
  footprint, and ``min_ratio`` times the footprint of the largest object on it: a desk
  under a laptop, a shelf under a bowl, not a bowl under a fruit);
* ``object``: everything else;

and an object its input already named (an imported node ``mug_2``) keeps its name.

The rules are ratios of the objects' own sizes, so they hold at any scene scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hiscene_sim.label.base import FALLBACK_LABEL, LABELLERS, LabelAnswer, LabelItem, match_vocabulary

# words naming support surfaces, for a vocabulary that has one
SUPPORT_WORDS = ("table", "desk", "counter", "countertop", "workbench", "bench", "shelf", "nightstand", "dresser",
                 "cabinet", "sideboard", "stand", "island")


@dataclass(frozen=True)
class GeometricLabelConfig:
    min_flat: float = 0.3  # upward area where things stand / the support's footprint
    min_ratio: float = 2.0  # that area / the largest footprint resting on it


@LABELLERS.register("geometric")
class GeometricLabeller:
    name = "geometric"
    needs_views = False

    def __init__(self, config: GeometricLabelConfig | None = None) -> None:
        self.config = config or GeometricLabelConfig()

    def is_support(self, item: LabelItem) -> bool:
        c = self.config
        return (item.kind == "object" and bool(item.supports) and item.top_area >= c.min_flat * item.footprint_area
                and item.top_area >= c.min_ratio * item.supported_footprint)

    def label(self, item: LabelItem, vocabulary: Sequence[str] | None = None) -> LabelAnswer:
        if item.kind in ("floor", "wall"):
            label, why = item.kind, f"parsed as {item.kind}"
        elif item.kind != "object":
            label, why = item.current_label, "background"
        elif item.current_label != FALLBACK_LABEL:
            label, why = item.current_label, "named by its input (kept)"
        elif self.is_support(item):
            label = "table"
            why = (f"support surface: {len(item.supports)} object(s) rest on a flat top of {item.top_area:.3g} m2 "
                   f"({item.top_area / max(item.footprint_area, 1e-12):.0%} of its footprint)")
            # with a vocabulary, its own word for a support if it has one ("desk")
            if vocabulary:
                label = next((v for v in vocabulary if match_vocabulary(v, SUPPORT_WORDS)), label)
        else:
            label, why = FALLBACK_LABEL, "no support surface"
        return LabelAnswer(label, self.name, None, (), why)
