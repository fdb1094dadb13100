"""What an occlusion judge answers about one object-centric view (paper A.3, Fig. 11)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np


class Occlusion(IntEnum):
    """The three answers of the Fig. 11 prompt's question 2."""

    NOT_OCCLUDED = 0
    OCCLUDED = 1
    UNDETERMINED = 2


@dataclass(frozen=True)
class OcclusionVerdict:
    """One judge's answer for one view.

    Attributes:
        occlusion: the answer to "is the target occluded by other objects?".
        description: a short caption of the image (the prompt's question 1), may be empty.
        reason: why (the prompt's ``2_description``), may be empty.
        backend: the judge that answered (``geometric``, ``vlm``).
    """

    occlusion: Occlusion
    description: str = ""
    reason: str = ""
    backend: str = ""


class OcclusionJudge(Protocol):
    """Decides whether the target object is occluded in a view.

    ``image`` is the (H, W, 3) uint8 view with the whole scene present; ``target_label`` the
    object's label (e.g. ``"table"``); ``visible_mask`` / ``occluder_mask`` are (H, W) bool masks
    of the target's visible pixels and of other objects' pixels covering the target's full mask.
    Geometric judges use the masks; a VLM judge looks at the image only.
    """

    name: str

    def judge(
        self, image: np.ndarray, target_label: str, visible_mask: np.ndarray, occluder_mask: np.ndarray
    ) -> OcclusionVerdict: ...
