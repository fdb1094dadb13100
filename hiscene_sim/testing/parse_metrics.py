"""Scoring a parse of a fused scene (:mod:`hiscene_sim.testing.fused_scenes`) against its ground truth.

Everything is measured on the fused surface itself, area-weighted: a ground-truth object is
the set of fused faces whose ``face_object`` is that object, a predicted object the set of
fused faces given to it. IoU = area(in both) / area(in either). This is deterministic and
does not depend on how a prediction is closed (solid voxel fills leak through open parts
such as a mug's mouth).

Two ways in:

* :func:`score_face_labels` - the parser labels the fused mesh's faces directly (the
  primary path): one instance id per face, ids in ``background_ids`` (and negative ids) are
  background.
* :func:`score_parse` - the parser returns world-space meshes: every fused face goes to the
  predicted mesh whose surface is nearest to the face's centroid; faces nearest to a
  ``predicted_background`` mesh are background.

Then ground-truth foreground objects and predicted objects are matched one-to-one by the
Hungarian method (maximising the summed IoU); a ground-truth object left unmatched (or
matched with IoU 0) scores 0. ``mean_iou`` averages over ground-truth foreground objects,
so missing objects and merges cost; extra predictions show in the count
(``n_pred`` vs ``n_gt``) and in ``precision(threshold)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.optimize import linear_sum_assignment

from hiscene_sim.testing.fused_scenes import FusedScene, SurfaceIndex

BACKGROUND = -1


@dataclass
class ObjectScore:
    gt_index: int  # index into FusedScene.objects
    gt_name: str
    gt_label: str
    pred_index: int | None  # matched prediction (index into the predicted list / id order), None if unmatched
    iou: float
    gt_area: float  # fused-surface area of the ground-truth object
    pred_area: float  # fused-surface area of the matched prediction (0 if unmatched)


@dataclass
class ParseScore:
    rows: list[ObjectScore]
    mean_iou: float  # over ground-truth foreground objects; unmatched ones count 0
    n_gt: int
    n_pred: int
    count_exact: bool
    iou_matrix: np.ndarray = field(repr=False)  # (n_gt, n_pred)
    pred_ids: list[int] = field(default_factory=list, repr=False)  # the predicted id of each column
    background_iou: float = float("nan")  # IoU of predicted background vs ground-truth background faces

    @property
    def count_error(self) -> int:
        return self.n_pred - self.n_gt

    def recall(self, threshold: float = 0.5) -> float:
        """Share of ground-truth objects matched with IoU >= threshold."""
        return sum(r.iou >= threshold for r in self.rows) / self.n_gt if self.n_gt else 1.0

    def precision(self, threshold: float = 0.5) -> float:
        """Share of predictions matched to a ground-truth object with IoU >= threshold."""
        return sum(r.iou >= threshold for r in self.rows) / self.n_pred if self.n_pred else float(self.n_gt == 0)

    def summary(self) -> str:
        lines = [f"mean IoU {self.mean_iou:.3f}  objects: {self.n_pred} predicted / {self.n_gt} true"]
        for r in self.rows:
            pred = "-" if r.pred_index is None else str(r.pred_index)
            lines.append(f"  {r.gt_name:<12} {r.gt_label:<8} pred {pred:>3}  IoU {r.iou:.3f}")
        return "\n".join(lines)


def score_face_labels(fused: FusedScene, face_pred: np.ndarray, background_ids: Iterable[int] = ()) -> ParseScore:
    """Score a per-face instance labelling of ``fused.mesh`` (F,) int. Faces whose id is in
    ``background_ids`` or negative are background; every other distinct id is one predicted
    object (columns in ascending id order; ``pred_index`` in the rows is that id)."""
    face_pred = np.asarray(face_pred)
    n_faces = len(fused.mesh.faces)
    if face_pred.shape != (n_faces,):
        raise ValueError(f"face_pred has shape {face_pred.shape}; the fused mesh has {n_faces} faces")
    face_pred = face_pred.astype(np.int64)
    background = np.asarray(sorted({int(b) for b in background_ids}), dtype=np.int64)
    is_bg = (face_pred < 0) | np.isin(face_pred, background)
    pred_ids = sorted(int(i) for i in np.unique(face_pred[~is_bg]))
    column = np.full(n_faces, BACKGROUND, dtype=np.int64)
    if pred_ids:
        column[~is_bg] = np.searchsorted(np.asarray(pred_ids), face_pred[~is_bg])
    return _score(fused, column, pred_ids)


def score_gaussian_labels(fused: FusedScene, means: np.ndarray, labels: np.ndarray, background_ids: Iterable[int] = ()) -> ParseScore:
    """A parse of the fused scene's splat (:func:`hiscene_sim.testing.scene_sets.splat_of`): every
    fused face takes the label of the Gaussian nearest to its centroid, then as
    :func:`score_face_labels`."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(means).query(fused.mesh.triangles_center)
    return score_face_labels(fused, np.asarray(labels)[nearest], background_ids)


def score_parse(
    fused: FusedScene,
    predicted: Sequence[trimesh.Trimesh],
    predicted_background: Sequence[trimesh.Trimesh] = (),
    max_distance: float | None = None,
    spacing: float | None = None,
) -> ParseScore:
    """Score world-space predicted meshes: each fused face goes to the predicted mesh (object
    or background) whose surface is nearest to its centroid. Faces farther than
    ``max_distance`` (metres) from every prediction count as background (None: no limit).
    ``pred_index`` in the rows indexes ``predicted``."""
    face_pred = predicted_face_labels(fused, predicted, predicted_background, max_distance, spacing)
    return _score(fused, face_pred_to_columns(face_pred, len(predicted)), list(range(len(predicted))))


def predicted_face_labels(
    fused: FusedScene,
    predicted: Sequence[trimesh.Trimesh],
    predicted_background: Sequence[trimesh.Trimesh] = (),
    max_distance: float | None = None,
    spacing: float | None = None,
) -> np.ndarray:
    """(F,) int: for every fused face, the index in ``predicted`` of the nearest predicted
    surface, or -1 where that is background (or beyond ``max_distance``)."""
    predicted = list(predicted)
    meshes = predicted + list(predicted_background)
    n_faces = len(fused.mesh.faces)
    usable = [i for i, m in enumerate(meshes) if m is not None and len(m.faces) > 0]
    if not usable:
        return np.full(n_faces, BACKGROUND, dtype=np.int64)
    spacing = spacing or fused.voxel_size
    index = SurfaceIndex([meshes[i] for i in usable], spacing=spacing)
    nearest, dist, _, _ = index.query(fused.mesh.triangles_center)
    which = np.asarray(usable, dtype=np.int64)[nearest]
    labels = np.where(which < len(predicted), which, BACKGROUND)
    if max_distance is not None:
        labels = np.where(dist <= max_distance, labels, BACKGROUND)
    return labels.astype(np.int64)


def face_pred_to_columns(face_pred: np.ndarray, n_pred: int) -> np.ndarray:
    face_pred = np.asarray(face_pred, dtype=np.int64)
    return np.where((face_pred >= 0) & (face_pred < n_pred), face_pred, BACKGROUND)


def _score(fused: FusedScene, column: np.ndarray, pred_ids: list[int]) -> ParseScore:
    """``column`` (F,): the predicted column of each face, -1 for background."""
    area = np.asarray(fused.mesh.area_faces, dtype=np.float64)
    gt = np.asarray(fused.face_object, dtype=np.int64)
    # an object the fusing left no face of (swallowed by a neighbour at a coarse pitch) is not in the scene
    present = np.bincount(gt, weights=area, minlength=len(fused.objects)) > 0
    fg = [i for i in fused.foreground_ids if present[i]]
    n_gt, n_pred = len(fg), len(pred_ids)
    gt_row = np.full(len(fused.objects), -1, dtype=np.int64)
    gt_row[fg] = np.arange(n_gt)
    row = gt_row[gt]  # -1 for ground-truth background
    gt_area = np.bincount(row[row >= 0], weights=area[row >= 0], minlength=n_gt)
    pred_area = np.bincount(column[column >= 0], weights=area[column >= 0], minlength=n_pred)
    both = (row >= 0) & (column >= 0)
    inter = np.zeros((n_gt, n_pred))
    np.add.at(inter, (row[both], column[both]), area[both])
    union = gt_area[:, None] + pred_area[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)

    match: dict[int, int] = {}
    if n_gt and n_pred:
        r, c = linear_sum_assignment(iou, maximize=True)
        match = {int(a): int(b) for a, b in zip(r, c) if iou[a, b] > 0}
    rows = []
    for k, obj_index in enumerate(fg):
        obj = fused.objects[obj_index]
        col = match.get(k)
        rows.append(
            ObjectScore(
                gt_index=obj_index,
                gt_name=obj.name,
                gt_label=obj.label,
                pred_index=None if col is None else pred_ids[col],
                iou=float(iou[k, col]) if col is not None else 0.0,
                gt_area=float(gt_area[k]),
                pred_area=float(pred_area[col]) if col is not None else 0.0,
            )
        )
    gt_bg, pred_bg = row < 0, column < 0
    bg_union = area[gt_bg | pred_bg].sum()
    background_iou = float(area[gt_bg & pred_bg].sum() / bg_union) if bg_union > 0 else float("nan")
    mean_iou = float(np.mean([r.iou for r in rows])) if rows else 1.0
    return ParseScore(
        rows=rows,
        mean_iou=mean_iou,
        n_gt=n_gt,
        n_pred=n_pred,
        count_exact=n_gt == n_pred,
        iou_matrix=iou,
        pred_ids=list(pred_ids),
        background_iou=background_iou,
    )
