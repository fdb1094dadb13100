"""The weight-free default amodal completion: the 3D scene is known, so remove the occluders.

The target is rendered alone from the view's camera (same shading as the scene view), which
shows every part of it that the scene hid. What it cannot show is geometry that was never
generated: where the fused scene welded the target to a neighbour, parsing cut it open, and a
ray through that hole sees the object's inside (a back face) or the background through it.
Those pixels are filled from the nearest object pixels (scipy's distance transform: no
library inpaints a masked image in one call here; skimage's biharmonic inpainting is 100x
slower at these sizes and no better on flat object colours).

What it cannot do: hallucinate geometry hidden in 3D (the far side of a cut-open contact stays
a flat fill), and any shading or shadow baked into the object's texture by the generator stays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hiscene_sim.complete.base import COMPLETERS, CompletionRequest, CompletionResult


def fill_from_nearest(image: np.ndarray, holes: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Copy into every ``holes`` pixel the colour of the nearest ``source`` pixel."""
    if not holes.any() or not source.any():
        return image
    _, (ii, jj) = ndimage.distance_transform_edt(~source, return_indices=True)
    out = image.copy()
    out[holes] = image[ii[holes], jj[holes]]
    return out


@COMPLETERS.register("geometric")
class GeometricCompleter:
    """Completion by re-rendering the target without its occluders
    (an :class:`~hiscene_sim.occlusion.views.ObjectViewRenderer` of the scene)."""

    name = "geometric"

    def __init__(self, renderer) -> None:
        self.renderer = renderer

    def complete(self, request: CompletionRequest) -> CompletionResult:
        image, primitive, back = self.renderer.render_alone(request.object_id, request.camera)
        hit = primitive >= 0
        silhouette = ndimage.binary_fill_holes(hit)
        holes = back | (silhouette & ~hit)  # seen through a cut: the inside, or the background
        front = hit & ~back
        completed = fill_from_nearest(image, holes, front)
        completed[~silhouette] = 255
        return CompletionResult(completed, silhouette, self.name)
