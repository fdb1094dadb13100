"""Consensus of several parses of one scene: the objects that most runs agree on.

Lifting (Eq. 3-4) trains on randomly drawn pixels, and the prototype clustering starts from
random probes, so two seeds give slightly different features and clusters. The object rules
(:mod:`hiscene_sim.object_grouping`) then turn a few faces' difference at a contact into a
different decision: a mug whose bottom ring went to the table's cluster stands on a contact that
climbs its side, and joins the table. On the dev tabletops, seeds 0, 1 and 2 each gave the exact
object count on 10, 8 and 7 of 12 scenes, each failing on different scenes.

So the parse runs the lifting, clustering and rules ``runs`` times with different seeds and keeps
what a majority agrees on, as an ensemble of instance segmentations is combined (mask voting,
then non-maximum suppression):

1. a primitive is background when most runs put it there;
2. every object of every run is a candidate; its support is the number of runs that have an
   object overlapping it with IoU >= ``min_iou`` (area-weighted), its score the sum over the
   runs of its best IoU in each;
3. candidates supported by a majority are accepted in order of score (then area), each taking
   the primitives no accepted object holds yet, unless accepted objects already hold more than
   half of it (it is then a duplicate, or a union of accepted objects);
4. foreground primitives no accepted object took (where the runs disagree) join the neighbouring
   object most of their edges lead to.

A merged object (the table with the mug a run lost into it) overlaps the table of the other runs
with a high IoU too, but less than those runs' plain tables overlap each other, so the plain
table comes first and the merged one is then mostly taken. Written here because this voting over
whole objects of a mesh or splat is specific to this pipeline (scikit-learn's consensus tools
work on labels of points, not on area-weighted objects with a background).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hiscene_sim.lifting_eq3_4 import absorb_unlabelled

log = logging.getLogger(__name__)


@dataclass
class Consensus:
    labels: np.ndarray  # (N,) object id >= 0, -1 for background
    accepted: int  # objects kept
    rejected: list[str] = field(default_factory=list)  # candidates without a majority, and why


def consensus_objects(runs: list[np.ndarray], areas: np.ndarray, pairs: np.ndarray, min_iou: float = 0.5) -> Consensus:
    """Objects most of ``runs`` agree on. ``runs``: per run, an object id per primitive (-1:
    background); ``areas``: each primitive's area; ``pairs``: (E, 2) neighbouring primitives."""
    n_runs = len(runs)
    labels = np.stack([np.asarray(r, dtype=np.int64) for r in runs])
    if n_runs == 1:
        return Consensus(labels[0].copy(), int(labels[0].max()) + 1 if (labels[0] >= 0).any() else 0)
    background = (labels < 0).sum(axis=0) * 2 > n_runs
    # every run's objects get one global candidate id: run r's object o is offsets[r] + o
    offsets = np.concatenate([[0], np.cumsum([int(r.max()) + 1 if (r >= 0).any() else 0 for r in labels])])
    ids = np.where(labels >= 0, labels + offsets[:-1, None], -1)
    n_cand = int(offsets[-1])
    run_of = np.repeat(np.arange(n_runs), np.diff(offsets))
    size = np.zeros(n_cand)
    overlap = np.zeros((n_cand, n_cand))
    for r in range(n_runs):
        mine = ids[r] >= 0
        size += np.bincount(ids[r][mine], weights=areas[mine], minlength=n_cand)
        for s in range(r, n_runs):
            both = mine & (ids[s] >= 0)
            block = np.zeros((n_cand, n_cand))
            np.add.at(block, (ids[r][both], ids[s][both]), areas[both])
            overlap += block if s == r else block + block.T
    iou = overlap / np.maximum(size[:, None] + size[None, :] - overlap, 1e-18)
    support = np.zeros(n_cand, dtype=np.int64)
    score = np.zeros(n_cand)
    for r in range(n_runs):
        best = iou[:, run_of == r].max(axis=1) if np.any(run_of == r) else np.zeros(n_cand)
        support += best >= min_iou
        score += best
    out = np.full(len(areas), -1, dtype=np.int64)
    k = 0
    rejected = []
    for c in np.lexsort((-size, -score)).tolist():
        r = int(run_of[c])
        faces = (ids[r] == c) & ~background
        if support[c] * 2 <= n_runs:
            rejected.append(f"run {r} object {c - offsets[r]} ({size[c]:.3g} m2): in {support[c]} of {n_runs} runs -> no majority")
            continue
        free = faces & (out < 0)
        if areas[free].sum() <= 0.5 * areas[faces].sum():
            continue  # another run's copy of an object already accepted (or a union of accepted ones)
        out[free] = k
        k += 1
    leftover = (out < 0) & ~background
    if leftover.any():
        fill = np.where(background, k, out)  # the background as one more label: a sliver beside it may join it
        fill = absorb_unlabelled(fill, pairs)
        out = np.where(fill == k, -1, fill)
    out[background] = -1
    log.info("consensus of %d runs: %d objects (%d candidates, %d without a majority), %d primitives re-assigned",
             n_runs, k, n_cand, len(rejected), int(leftover.sum()))
    return Consensus(out, k, rejected)
