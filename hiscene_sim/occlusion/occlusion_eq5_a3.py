"""The occlusion ratio of paper Eq. 5 and the view selection of A.3.

Eq. 5 (:func:`occlusion_ratio`): rho = A_other / (A_other + A_target), from a view's exact masks
(:mod:`hiscene_sim.occlusion.views`).

A.3 (:func:`select_views`): 16 views in 4 regions of 4; per region, views are tried in a
seeded random order; a view the judge finds unoccluded is taken as it is; an occluded view is
taken (and sent to amodal completion) when its occlusion ratio rho (Eq. 5) is below tau,
otherwise discarded and the next view of the region is tried; a region where every view fails
contributes nothing and the others go on. :class:`GeometricJudge` is the default judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hiscene_sim.occlusion.verdict import Occlusion, OcclusionJudge, OcclusionVerdict
from hiscene_sim.occlusion.views import ObjectView


# ------------------------------------------------------------------------------ Eq. 5
def occlusion_ratio(visible_mask: np.ndarray, occluder_mask: np.ndarray) -> float:
    """Eq. 5: rho = A_other / (A_other + A_target), areas in pixels.

    A_target is the target's visible area; A_other the area of other objects inside the
    target's whole (amodal) silhouette, i.e. the part of it they hide. (Other objects that
    are merely in the picture beside the target do not occlude it and are not counted.) A box
    half hidden behind another gives 0.5; an unoccluded view 0; a fully hidden one 1.
    """
    other = int(np.count_nonzero(occluder_mask))
    target = int(np.count_nonzero(visible_mask))
    if other + target == 0:
        return 1.0  # the target is not in the picture at all: as bad as fully hidden
    return other / (other + target)


# ------------------------------------------------------------------------------ A.3
@dataclass(frozen=True)
class SelectionConfig:
    tau: float = 0.4  # A.3: views with rho < tau go to completion, others are discarded
    n_regions: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.n_regions < 1:
            raise ValueError(f"n_regions must be >= 1, got {self.n_regions}")


@dataclass
class ViewDecision:
    """What A.3 decided for one view."""

    index: int
    azimuth_deg: float
    elevation_deg: float
    region: int
    rho: float  # Eq. 5, exact from the instance masks (computed for every view)
    tried: bool = False  # the judge looked at it
    verdict: OcclusionVerdict | None = None
    selected: bool = False
    needs_completion: bool = False  # selected and occluded: goes to amodal completion
    reason: str = "not tried: an earlier view of its region was taken"

    def to_json(self) -> dict:
        out = {
            "index": self.index, "azimuth": round(self.azimuth_deg, 3), "elevation": round(self.elevation_deg, 3),
            "region": self.region, "rho": round(self.rho, 4), "tried": self.tried, "selected": self.selected,
            "completed": self.needs_completion, "reason": self.reason,
        }
        if self.verdict is not None:
            out["judge"] = {"backend": self.verdict.backend, "occlusion": int(self.verdict.occlusion),
                            "reason": self.verdict.reason, "description": self.verdict.description}
        return out


def regions(n_views: int, n_regions: int) -> list[list[int]]:
    """Consecutive azimuth blocks: views are ordered by azimuth, region r holds
    ``n_views / n_regions`` neighbours (the last regions take one fewer when it doesn't divide)."""
    if n_regions > n_views:
        raise ValueError(f"{n_regions} regions need at least as many views, got {n_views}")
    return [b.tolist() for b in np.array_split(np.arange(n_views), n_regions)]


def select_views(views: list[ObjectView], label: str, judge: OcclusionJudge, config: SelectionConfig) -> list[ViewDecision]:
    """One :class:`ViewDecision` per view, in view order. The random order in which a region's
    views are tried comes from ``config.seed`` (same seed, same choice)."""
    rng = np.random.default_rng(config.seed)
    decisions = []
    for r, members in enumerate(regions(len(views), config.n_regions)):
        for i in members:
            v = views[i]
            decisions.append(ViewDecision(i, v.azimuth_deg, v.elevation_deg, r, occlusion_ratio(v.visible_mask, v.occluder_mask)))
    for members in regions(len(views), config.n_regions):
        order = rng.permutation(members).tolist()
        for n_tried, i in enumerate(order):
            d, v = decisions[i], views[i]
            d.tried = True
            d.verdict = judge.judge(v.image, label, v.visible_mask, v.occluder_mask)
            if d.verdict.occlusion == Occlusion.NOT_OCCLUDED:
                d.selected, d.reason = True, "not occluded: used as it is"
            elif d.rho < config.tau:  # occluded, or the judge could not tell: measure it
                d.selected, d.needs_completion, d.reason = True, True, f"occluded, rho {d.rho:.3f} < tau {config.tau}: amodal completion"
            else:
                d.reason = f"occluded, rho {d.rho:.3f} >= tau {config.tau}: discarded"
            if d.selected:
                break
        else:
            for i in order:
                decisions[i].reason += "; no view of this region qualifies"
    return decisions


class GeometricJudge:
    """The exact default: the target is occluded when other objects hide more than
    ``min_hidden`` of its whole silhouette (a few anti-aliasing-free boundary pixels do not
    count)."""

    name = "geometric"

    def __init__(self, min_hidden: float = 0.002) -> None:
        self.min_hidden = min_hidden

    def judge(self, image: np.ndarray, target_label: str, visible_mask: np.ndarray, occluder_mask: np.ndarray) -> OcclusionVerdict:
        hidden = int(np.count_nonzero(occluder_mask))
        whole = hidden + int(np.count_nonzero(visible_mask))
        if whole == 0:
            return OcclusionVerdict(Occlusion.OCCLUDED, reason="the target is not visible at all", backend=self.name)
        share = hidden / whole
        if share > self.min_hidden:
            return OcclusionVerdict(Occlusion.OCCLUDED, reason=f"{100 * share:.1f}% of its silhouette is hidden", backend=self.name)
        return OcclusionVerdict(Occlusion.NOT_OCCLUDED, reason="nothing in front of it", backend=self.name)
