"""Object-centric views and occlusion analysis (paper 3.2, A.3).

``views.py``: object-centric views and their exact masks; ``occlusion_eq5_a3.py``: the occlusion
ratio (Eq. 5) and the view selection (A.3).

Judges (is the target occluded in this view?) behind a registry: ``geometric`` (default,
exact, from the 3D scene's instance masks) and ``vlm`` (any OpenAI-compatible vision-language
model with the prompt of Fig. 11; base URL / model / key from config or the environment:
HISCENE_VLM_BASE_URL, HISCENE_VLM_MODEL, OPENAI_API_KEY).
"""

from __future__ import annotations

from hiscene_sim.backends import Registry
from hiscene_sim.occlusion.occlusion_eq5_a3 import GeometricJudge
from hiscene_sim.occlusion.verdict import Occlusion, OcclusionJudge, OcclusionVerdict

JUDGES: Registry[OcclusionJudge] = Registry("occlusion judge", default="geometric")
JUDGES.register("geometric")(GeometricJudge)


@JUDGES.register("vlm")
def _vlm_judge(**options) -> OcclusionJudge:
    from hiscene_sim.occlusion.vlm import VlmConfig, VlmOcclusionJudge

    return VlmOcclusionJudge(VlmConfig.from_dict(options))


__all__ = ["JUDGES", "GeometricJudge", "Occlusion", "OcclusionJudge", "OcclusionVerdict"]
