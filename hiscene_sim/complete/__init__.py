"""Amodal completion (paper 3.3, B): an occluded object view in, the whole object out.

Backends: ``geometric`` (default, weight-free: re-render the object without its occluders,
:mod:`.geometric`) and ``svd`` (the Stable Video Diffusion amodal completion model with a
9-channel UNet input, local weights, :mod:`.svd`).
"""

from hiscene_sim.complete import geometric, svd  # noqa: F401  (register the backends; svd imports torch lazily)
from hiscene_sim.complete.base import COMPLETERS, Completer, CompletionRequest, CompletionResult

__all__ = ["COMPLETERS", "Completer", "CompletionRequest", "CompletionResult"]
