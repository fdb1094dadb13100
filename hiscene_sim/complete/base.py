"""The amodal completion interface (paper 3.3): one occluded object view in, the whole object out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hiscene_sim.backends import Registry
from hiscene_sim.render.cameras import Camera


@dataclass(eq=False)
class CompletionRequest:
    """One object-centric view to complete.

    Attributes:
        image: (H, W, 3) uint8 view rendered with the rest of the scene present.
        visible_mask: (H, W) bool, pixels where the target object is seen.
        full_mask: (H, W) bool, the target's whole (amodal) silhouette from the 3D scene; neural
            backends do not need it (they predict it), the geometric one and the metrics do.
        label: the object's label, e.g. ``"mug"``.
        object_id: the object's id in the scene dir.
        camera: the view's camera (world frame of the scene).
    """

    image: np.ndarray
    visible_mask: np.ndarray
    full_mask: np.ndarray
    label: str
    object_id: str
    camera: Camera


@dataclass(eq=False)
class CompletionResult:
    """The completed view.

    Attributes:
        image: (H, W, 3) uint8, the target object alone, whole, on a white background.
        amodal_mask: (H, W) bool, the object's predicted whole silhouette.
        backend: the backend that produced it.
    """

    image: np.ndarray
    amodal_mask: np.ndarray
    backend: str


class Completer(Protocol):
    name: str

    def complete(self, request: CompletionRequest) -> CompletionResult: ...


COMPLETERS: Registry[Completer] = Registry("amodal completion", default="geometric")
