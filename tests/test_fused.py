"""Fused scenes (one welded marching-cubes surface with per-vertex ground truth) and the
parse scorer (area IoU over the fused surface, Hungarian matching, object count)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from exporters.watertight import is_closed_volume
from hiscene_sim.testing.fused_scenes import (
    FusedObjectInfo,
    Placed,
    build_fused_scene,
    floor_slab,
    footprint,
    footprints_overlap,
    fuse_meshes,
    inside_polygon,
    load_fused,
    place_objects,
    support_top,
    test_set,
    test_specs,
)
from hiscene_sim.testing.parse_metrics import (
    predicted_face_labels,
    score_face_labels,
    score_parse,
)

BOX = 0.1  # metres
BOX_A = (-0.15, 0.0)
BOX_B = (0.15, 0.0)


@pytest.fixture(scope="module")
def mug_table():
    return build_fused_scene([Placed("table", 0.0, 0.0, 0.0), Placed("mug", 0.2, 0.1, 0.4, support="table")], name="mug_table")


def _box(x: float, y: float, size: float = BOX, color=(30, 200, 30, 255)) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(size, size, size))
    box.apply_translation((x, y, size / 2))
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=np.tile(color, (len(box.vertices), 1)))
    return box


def _info(name: str, mesh: trimesh.Trimesh, background: bool = False) -> FusedObjectInfo:
    return FusedObjectInfo(name, name, background, mesh.bounds.copy(), mesh, None if background else "floor")


@pytest.fixture(scope="module")
def two_boxes():
    """Two 10 cm cubes on a 0.8 m floor slab, 20 cm apart: objects [floor, a, b]."""
    floor = floor_slab(0.8)
    a, b = _box(*BOX_A), _box(*BOX_B, color=(30, 30, 200, 255))
    return fuse_meshes([_info("floor", floor, True), _info("a", a), _info("b", b)], name="two_boxes")


# ---------------------------------------------------------------------------- fused surface


def test_mug_on_table_is_one_welded_closed_surface(mug_table):
    mesh = mug_table.mesh
    assert [o.name for o in mug_table.objects] == ["floor", "table", "mug"]
    assert mesh.body_count == 1  # mug welded to the table, the table to the floor
    assert is_closed_volume(mesh)
    assert 10_000 < len(mesh.faces) < 300_000
    assert mesh.visual.kind == "vertex"
    colors = np.asarray(mesh.visual.vertex_colors)
    assert colors.shape == (len(mesh.vertices), 4)
    # appearance comes from the sources: the mug is red, the floor grey-blue
    mug_color = colors[mug_table.vertex_object == 2].mean(axis=0)
    assert mug_color[0] > 200 and mug_color[1] < 100 and mug_color[2] < 100
    assert np.allclose(colors[mug_table.vertex_object == 0].mean(axis=0)[:3], (150, 150, 160), atol=2)


def test_ground_truth_covers_every_vertex_and_is_proportional(mug_table):
    n_obj = len(mug_table.objects)
    assert mug_table.vertex_object.shape == (len(mug_table.mesh.vertices),)
    assert mug_table.face_object.shape == (len(mug_table.mesh.faces),)
    assert mug_table.vertex_object.min() >= 0 and mug_table.vertex_object.max() < n_obj
    areas = mug_table.object_areas()
    assert (areas > 0).all()
    for obj, fused_area in zip(mug_table.objects, areas):
        # the fused surface is ~half a voxel outside the source and loses the contact faces
        assert 0.7 < fused_area / obj.mesh.area < 1.3, (obj.name, fused_area, obj.mesh.area)
    # the mug sits on the table top, inside the table's footprint
    mug = mug_table.mesh.vertices[mug_table.vertex_object == 2]
    assert mug[:, 2].min() > 0.6


def test_same_seed_same_mesh():
    layout = [Placed("cube", -0.1, 0.0, 0.3), Placed("mug", 0.1, 0.05, 1.0)]
    a = build_fused_scene(layout, seed=3, floor_size=0.5)
    b = build_fused_scene(layout, seed=3, floor_size=0.5)
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices)
    assert np.array_equal(a.mesh.faces, b.mesh.faces)
    assert np.array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
    assert np.array_equal(a.vertex_object, b.vertex_object)
    assert a.mesh.body_count == 1 and is_closed_volume(a.mesh)


@pytest.mark.parametrize("suffix", [".ply", ".glb"])
def test_save_load_round_trip(two_boxes, tmp_path, suffix):
    from hiscene_sim.testing.fused_scenes import save_fused

    path = save_fused(two_boxes, tmp_path / f"scene{suffix}")
    assert (tmp_path / f"scene{suffix}.gt.npz").exists()
    loaded = load_fused(path)
    assert np.allclose(loaded.mesh.vertices, two_boxes.mesh.vertices, atol=1e-6)
    assert np.array_equal(loaded.mesh.faces, two_boxes.mesh.faces)
    assert np.array_equal(loaded.mesh.visual.vertex_colors, two_boxes.mesh.visual.vertex_colors)
    assert np.array_equal(loaded.vertex_object, two_boxes.vertex_object)
    assert np.array_equal(loaded.face_object, two_boxes.face_object)
    assert [(o.name, o.label, o.is_background) for o in loaded.objects] == [
        (o.name, o.label, o.is_background) for o in two_boxes.objects
    ]
    assert np.allclose(loaded.objects[1].mesh.vertices, two_boxes.objects[1].mesh.vertices)
    assert score_face_labels(loaded, loaded.face_object, loaded.background_ids).mean_iou == 1.0


# ---------------------------------------------------------------------------- scoring


def test_ground_truth_scores_perfectly(mug_table):
    score = score_face_labels(mug_table, mug_table.face_object, background_ids=mug_table.background_ids)
    assert score.mean_iou == 1.0 and score.count_exact and score.n_gt == score.n_pred == 2
    assert [r.iou for r in score.rows] == [1.0, 1.0]
    # the source meshes as predicted meshes (nearest surface per face centroid) agree too
    fg = [o.mesh for o in mug_table.objects if not o.is_background]
    bg = [o.mesh for o in mug_table.objects if o.is_background]
    by_mesh = score_parse(mug_table, fg, bg)
    assert by_mesh.count_exact and by_mesh.mean_iou > 0.97
    assert [r.pred_index for r in by_mesh.rows] == [0, 1]


def test_merging_two_objects_drops_iou_and_count(two_boxes):
    merged = np.where(two_boxes.face_object > 0, 7, 0)  # both boxes one instance, floor id 0
    score = score_face_labels(two_boxes, merged, background_ids={0})
    assert score.n_gt == 2 and score.n_pred == 1 and not score.count_exact
    assert score.mean_iou == pytest.approx(0.25, abs=0.02)  # one box matched at ~0.5, the other 0
    assert sorted(r.pred_index is None for r in score.rows) == [False, True]
    # the same through meshes: one mesh holding both boxes
    a, b = two_boxes.objects[1].mesh, two_boxes.objects[2].mesh
    by_mesh = score_parse(two_boxes, [trimesh.util.concatenate([a, b])], [two_boxes.objects[0].mesh])
    assert by_mesh.n_pred == 1 and by_mesh.mean_iou == pytest.approx(0.25, abs=0.03)


def test_half_prediction_gives_half_iou(two_boxes):
    centroid_x = two_boxes.mesh.triangles_center[:, 0]
    # box a predicted only on its -x half (top, -x side, halves of the +-y sides): IoU 0.5
    labels = np.full(len(two_boxes.face_object), -1)
    labels[(two_boxes.face_object == 1) & (centroid_x < BOX_A[0])] = 1
    labels[two_boxes.face_object == 2] = 2
    score = score_face_labels(two_boxes, labels)
    iou = {r.gt_name: r.iou for r in score.rows}
    assert iou["a"] == pytest.approx(0.5, abs=0.03)
    assert iou["b"] == 1.0
    assert score.mean_iou == pytest.approx(0.75, abs=0.02) and score.count_exact
    # over-segmented through meshes: box a as two half boxes -> one half matched, 3 predictions
    left = trimesh.creation.box(extents=(BOX / 2, BOX, BOX))
    left.apply_translation((BOX_A[0] - BOX / 4, BOX_A[1], BOX / 2))
    right = left.copy().apply_translation((BOX / 2, 0, 0))
    b, floor = two_boxes.objects[2].mesh, two_boxes.objects[0].mesh
    split = score_parse(two_boxes, [left, right, b], [floor])
    iou = {r.gt_name: r.iou for r in split.rows}
    assert split.n_pred == 3 and not split.count_exact
    assert iou["a"] == pytest.approx(0.5, abs=0.05) and iou["b"] > 0.97
    # a missed object: only box b predicted, box a's faces go to the nearer floor
    missed = score_parse(two_boxes, [b], [floor])
    iou = {r.gt_name: r.iou for r in missed.rows}
    assert iou["a"] == 0.0 and iou["b"] > 0.97 and missed.n_pred == 1
    assert missed.mean_iou == pytest.approx(0.5, abs=0.02)


def test_score_parse_edge_cases(two_boxes):
    nothing = score_parse(two_boxes, [])
    assert nothing.mean_iou == 0.0 and nothing.n_pred == 0 and all(r.pred_index is None for r in nothing.rows)
    far = _box(5.0, 5.0)
    labels = predicted_face_labels(two_boxes, [far], max_distance=0.05)
    assert (labels == -1).all()
    with pytest.raises(ValueError, match="faces"):
        score_face_labels(two_boxes, np.zeros(3, dtype=int))


# ---------------------------------------------------------------------------- the test set


def test_specs_are_valid_and_deterministic():
    specs = test_specs()
    assert len(specs) == 10
    assert [s.layout for s in specs] == [s.layout for s in test_specs()]
    kinds = {"table": 0, "floor": 0}
    for spec in specs:
        assert 3 <= spec.n_objects <= 8, spec.name
        on_table = any(p.asset == "table" for p in spec.layout)
        kinds["table" if on_table else "floor"] += 1
        assert len({round(p.yaw, 3) for p in spec.layout}) == len(spec.layout)  # varied yaw
        assert not any(p.support == "tray" for p in spec.layout)
        objects = place_objects(spec.layout)
        feet = {o.name: footprint(o.mesh) for o in objects[1:]}
        tops = {o.name: support_top(o.mesh) for o in objects}
        for o in objects[1:]:
            assert inside_polygon(feet[o.name], tops[o.support]), (spec.name, o.name)
            same_support = [p for p in objects[1:] if p.support == o.support and p.name != o.name]
            assert not any(footprints_overlap(feet[o.name], feet[p.name], 0.02) for p in same_support), (spec.name, o.name)
            rest = o.mesh.bounds[0][2] - objects[[x.name for x in objects].index(o.support)].mesh.bounds[1][2]
            assert abs(rest) < 1e-9  # resting on its support
    assert kinds["table"] >= 3 and kinds["floor"] >= 3


@pytest.mark.slow
def test_set_builds_ten_welded_scenes():
    start = time.perf_counter()
    scenes = test_set()
    assert len(scenes) == 10
    for scene in scenes:
        print(f"{scene.name}: {len(scene.mesh.faces)} faces, {scene.n_foreground} objects")
        assert 3 <= scene.n_foreground <= 8
        assert scene.mesh.body_count == 1 and is_closed_volume(scene.mesh)
        assert (scene.object_areas() > 0).all()
        assert score_face_labels(scene, scene.face_object, scene.background_ids).mean_iou == 1.0
    print(f"built in {time.perf_counter() - start:.0f} s")
