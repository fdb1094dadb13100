"""Semantic labels for every object: a Protocol and a registry of labellers (:mod:`.base`),
the weight-free ``geometric`` default, the ``vlm`` and ``clip`` backends, and the stage
(:mod:`.stage`). Importing this package registers the backends; their heavy imports happen
when one is built."""

from hiscene_sim.label import clip, geometric, vlm  # noqa: F401 (registration)
from hiscene_sim.label.base import LABELLERS, LabelAnswer, LabelError, LabelItem, Labeller, normalise_label, parse_vocabulary

__all__ = ["LABELLERS", "LabelAnswer", "LabelError", "LabelItem", "Labeller", "normalise_label", "parse_vocabulary"]
