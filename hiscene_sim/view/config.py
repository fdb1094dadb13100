"""The view page's settings, apart from the modules that build the page: ``hiscene``'s parser
reads their defaults at start-up without importing trimesh."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewConfig:
    """The face budget of the visual meshes shown (collision hulls are shown as exported)."""

    max_faces: int = 300_000  # all objects together
    max_faces_per_object: int = 60_000
    min_faces_per_object: int = 500
