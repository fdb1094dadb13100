"""InstantMesh's image encoder under transformers 5, without patching the InstantMesh clone.

InstantMesh's ``src/models/encoder/dino.py`` (TencentARC/InstantMesh, commit 08822c5) is a copy of
transformers 4.34's ViT with adaptive layer norm. Two things it uses are gone in transformers 5:

* line 31: ``from transformers.pytorch_utils import find_pruneable_heads_and_indices, prune_linear_layer``
  -- ``find_pruneable_heads_and_indices`` was removed (``prune_linear_layer`` is still there), so the
  module fails to import;
* ``ViTModel.forward`` calls ``self.get_head_mask(head_mask, num_hidden_layers)``, a ``PreTrainedModel``
  method that was removed.

:func:`patch_transformers` puts the function back into ``transformers.pytorch_utils`` (only when it is
missing) before InstantMesh is imported; :func:`patch_dino` gives the module's ``ViTPreTrainedModel`` the
method (only when missing). Both are re-implementations of the documented behaviour, written here because
transformers no longer ships them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["find_pruneable_heads_and_indices", "get_head_mask", "patch_dino", "patch_transformers"]


def find_pruneable_heads_and_indices(heads: Iterable[int], n_heads: int, head_size: int,
                                     already_pruned_heads: Iterable[int]) -> tuple[set[int], Any]:
    """The heads still to prune (``heads`` minus those already pruned, original numbering) and the
    (n_kept * head_size,) long tensor of rows to keep in a layer that has ``n_heads`` heads left: each
    head's position in that layer is its original index less the pruned heads below it."""
    import torch

    already = set(already_pruned_heads)
    to_prune = set(heads) - already
    positions = {h - sum(1 for p in already if p < h) for h in to_prune}
    kept = torch.tensor([i for i in range(n_heads) if i not in positions], dtype=torch.long)
    index = (kept[:, None] * head_size + torch.arange(head_size, dtype=torch.long)[None, :]).reshape(-1)
    return to_prune, index


def get_head_mask(self: Any, head_mask: Any, num_hidden_layers: int, is_attention_chunked: bool = False) -> Any:
    """transformers 4's ``PreTrainedModel.get_head_mask``: None -> one None per layer; a (heads,) or
    (layers, heads) mask -> (layers, 1, heads, 1, 1) in the model's dtype (``1`` keeps a head)."""
    import torch

    if head_mask is None:
        return [None] * num_hidden_layers
    mask = torch.as_tensor(head_mask)
    if mask.dim() == 1:
        mask = mask[None, None, :, None, None].expand(num_hidden_layers, -1, -1, -1, -1)
    elif mask.dim() == 2:
        mask = mask[:, None, :, None, None]
    else:
        raise ValueError(f"head_mask must have 1 or 2 dimensions, got {mask.dim()}")
    mask = mask.to(dtype=getattr(self, "dtype", torch.float32))
    return mask.unsqueeze(-1) if is_attention_chunked else mask


def patch_transformers() -> bool:
    """Add ``find_pruneable_heads_and_indices`` to ``transformers.pytorch_utils`` if missing; True if added."""
    from transformers import pytorch_utils

    if hasattr(pytorch_utils, "find_pruneable_heads_and_indices"):
        return False
    pytorch_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices
    return True


def patch_dino(module: Any) -> bool:
    """Give ``module.ViTPreTrainedModel`` (InstantMesh's dino.py) ``get_head_mask`` if it lacks it; True if added."""
    cls = getattr(module, "ViTPreTrainedModel", None)
    if cls is None or hasattr(cls, "get_head_mask"):
        return False
    cls.get_head_mask = get_head_mask
    return True
