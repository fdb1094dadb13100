"""Semantic labels for every object: a Protocol and a registry of labellers (see :mod:`.base`)."""

from hiscene_sim.label.base import LABELLERS, LabelAnswer, LabelError, LabelItem, Labeller, normalise_label, parse_vocabulary

__all__ = ["LABELLERS", "LabelAnswer", "LabelError", "LabelItem", "Labeller", "normalise_label", "parse_vocabulary"]
