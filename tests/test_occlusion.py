"""Object-centric views, Eq. 5 occlusion ratio, A.3 view selection and the geometric
completion, on hand-built scenes whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from hiscene_sim.backends import BackendError
from hiscene_sim.occlusion import JUDGES, GeometricJudge, Occlusion, OcclusionVerdict
from hiscene_sim.occlusion.occlusion_eq5_a3 import SelectionConfig, occlusion_ratio, regions, select_views
from hiscene_sim.occlusion.views import (
    ObjectView,
    ObjectViewConfig,
    ObjectViewRenderer,
    SceneGeometry,
    object_cameras,
)


def _box(size, center, color):
    box = trimesh.creation.box(size)
    box.apply_translation(center)
    box.visual.face_colors = color
    return box


@pytest.fixture(scope="module")
def half_hidden():
    """A 20 cm cube and a tall thin plate covering y < 0 half-way to the first camera: the
    plane y = 0 holds that camera and the cube's centre, so the plate hides exactly the left
    (or right) half of the cube's symmetric silhouette: rho = 0.5."""
    target = _box((0.2, 0.2, 0.2), (0, 0, 0.1), (200, 40, 40, 255))
    eye = object_cameras(target, ObjectViewConfig())[0].position
    assert abs(eye[1]) < 1e-9
    plate = _box((0.01, 2.0, 3.0), (eye[0] / 2, -1.0, 0.1), (40, 40, 200, 255))
    geometry = SceneGeometry.of_meshes(["cube", "plate"], ["box", "plate"], [target, plate])
    renderer = ObjectViewRenderer(geometry, ObjectViewConfig())
    return renderer, renderer.render("cube")


def test_rho_of_a_half_hidden_box_is_one_half(half_hidden):
    _, views = half_hidden
    rho = [occlusion_ratio(v.visible_mask, v.occluder_mask) for v in views]
    assert len(views) == 16
    assert [v.azimuth_deg for v in views] == pytest.approx([22.5 * k for k in range(16)])
    assert all(v.elevation_deg == 30.0 for v in views)
    assert rho[0] == pytest.approx(0.5, abs=0.02)
    # the plate lies on the -y side, between x = 0.1 and the first camera: views from +y see
    # the cube whole, views from behind the plate see nothing of it
    assert rho[2:12] == pytest.approx([0.0] * 10, abs=1e-9)
    assert rho[14] == 1.0 and rho[15] == 1.0
    v = views[0]
    assert not (v.visible_mask & v.occluder_mask).any()
    assert ((v.visible_mask | v.occluder_mask) == v.full_mask).all()
    assert v.occluders(["cube", "plate"]) == ["plate"]


def test_rho_is_exact_on_masks():
    full = np.zeros((10, 10), bool)
    full[2:8, 2:8] = True  # 36 pixels
    occluder = np.zeros_like(full)
    occluder[2:8, 2:5] = True  # 18 hidden
    assert occlusion_ratio(full & ~occluder, occluder) == 0.5
    assert occlusion_ratio(full, np.zeros_like(full)) == 0.0
    assert occlusion_ratio(np.zeros_like(full), full) == 1.0
    assert occlusion_ratio(np.zeros_like(full), np.zeros_like(full)) == 1.0  # not in the picture


def _views_with_rho(rhos):
    """Synthetic views whose masks give exactly these occlusion ratios (100-pixel silhouettes)."""
    views = []
    for i, rho in enumerate(rhos):
        full = np.zeros((10, 10), bool)
        full[:, :] = True
        hidden = np.zeros(100, bool)
        hidden[: int(round(rho * 100))] = True
        hidden = hidden.reshape(10, 10)
        views.append(ObjectView(i, 360.0 * i / len(rhos), 30.0, None, np.zeros((10, 10, 3), np.uint8),
                                full, full & ~hidden, hidden, np.zeros((10, 10), int)))
    return views


class CountingJudge(GeometricJudge):
    def __init__(self):
        super().__init__()
        self.seen = []

    def judge(self, image, target_label, visible_mask, occluder_mask):
        self.seen.append(int(occluder_mask.sum()))
        return super().judge(image, target_label, visible_mask, occluder_mask)


def test_view_selection_follows_a3_including_a_region_where_every_view_fails():
    # region 0: every view occluded, one below tau; region 1: every view above tau (fails);
    # region 2: unoccluded views; region 3: mixed
    rhos = [0.6, 0.3, 0.7, 0.5,  0.45, 0.9, 0.41, 1.0,  0.0, 0.0, 0.0, 0.0,  0.8, 0.0, 0.39, 0.2]
    judge = CountingJudge()
    decisions = select_views(_views_with_rho(rhos), "box", judge, SelectionConfig(tau=0.4, seed=0))
    assert [d.rho for d in decisions] == pytest.approx(rhos)
    assert [d.region for d in decisions] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    selected = [d for d in decisions if d.selected]
    assert [d.region for d in selected] == [0, 2, 3]  # at most one per region; region 1 contributes nothing
    assert next(d for d in selected if d.region == 0).index == 1 and selected[0].needs_completion
    assert not next(d for d in selected if d.region == 2).needs_completion  # unoccluded: used as it is
    assert all(d.tried and "no view of this region qualifies" in d.reason for d in decisions if d.region == 1)
    assert all(d.rho >= 0.4 for d in decisions if d.tried and not d.selected)
    # the judge saw exactly the tried views, nothing after a region's pick
    assert len(judge.seen) == sum(d.tried for d in decisions)
    for r in range(4):
        region = [d for d in decisions if d.region == r]
        if any(d.selected for d in region):
            assert all(d.rho >= 0.4 for d in region if d.tried and not d.selected)
    # the same seed gives the same choice; the tried order depends on it
    again = select_views(_views_with_rho(rhos), "box", GeometricJudge(), SelectionConfig(tau=0.4, seed=0))
    assert [d.to_json() for d in again] == [d.to_json() for d in decisions]
    orders = {tuple(d.index for d in select_views(_views_with_rho(rhos), "box", GeometricJudge(), SelectionConfig(seed=s))
                    if d.selected) for s in range(12)}
    assert len(orders) > 1
    # tau is configurable: with tau = 0.95 region 1 qualifies
    loose = select_views(_views_with_rho(rhos), "box", GeometricJudge(), SelectionConfig(tau=0.95, seed=0))
    assert any(d.selected for d in loose if d.region == 1)


def test_a_judge_that_cannot_tell_falls_back_to_the_measured_ratio():
    class Unsure:
        name = "unsure"

        def judge(self, *args):
            return OcclusionVerdict(Occlusion.UNDETERMINED, backend=self.name)

    decisions = select_views(_views_with_rho([0.0, 0.0, 0.7, 0.7]), "box", Unsure(), SelectionConfig(n_regions=2))
    assert [d.selected for d in decisions].count(True) == 1
    assert all(not d.selected for d in decisions[2:])


def test_regions_split_views_by_azimuth():
    assert regions(16, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    with pytest.raises(ValueError):
        regions(3, 4)


def test_vlm_judge_without_configuration_fails_before_any_request(monkeypatch):
    for var in ("HISCENE_VLM_BASE_URL", "HISCENE_VLM_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BackendError, match="HISCENE_VLM_BASE_URL|base_url"):
        JUDGES.create("vlm")


def test_geometric_completion_removes_the_occluder(half_hidden):
    from hiscene_sim.complete import COMPLETERS, CompletionRequest
    from hiscene_sim.complete.stage import occluder_pixels_left

    renderer, views = half_hidden
    v = views[0]
    completer = COMPLETERS.create("geometric", renderer=renderer)
    result = completer.complete(CompletionRequest(v.image, v.visible_mask, v.full_mask, "box", "cube", v.camera))
    assert result.image.shape == v.image.shape and result.image.dtype == np.uint8
    assert (result.amodal_mask == v.full_mask).all()
    alone, _, _ = renderer.render_alone("cube", v.camera)
    assert occluder_pixels_left(result, v, alone, 12) == 0
    # the occluded input really showed the plate there (blue), the completion shows the cube (red)
    hidden = v.occluder_mask
    assert hidden.sum() > 1000
    assert (v.image[hidden][:, 2] > v.image[hidden][:, 0]).mean() > 0.99
    assert (result.image[hidden][:, 0] > result.image[hidden][:, 2]).mean() > 0.99
    assert (result.image[~result.amodal_mask] == 255).all()
    # leaving the view as it was is caught by the metric
    from hiscene_sim.complete.base import CompletionResult

    unchanged = CompletionResult(v.image, v.full_mask, "none")
    assert occluder_pixels_left(unchanged, v, alone, 12) == hidden.sum()


def test_geometric_completion_fills_holes_cut_by_parsing():
    """A cube with its front faces removed (what parsing leaves where an object was welded to
    a neighbour): the renderer sees the back faces through the hole; the completion fills it
    from the object's own colour and the silhouette has no hole."""
    from hiscene_sim.complete import COMPLETERS, CompletionRequest

    cube = trimesh.creation.box((0.2, 0.2, 0.2), subdivisions=None)
    cube = cube.subdivide().subdivide()
    cube.apply_translation((0, 0, 0.1))
    keep = cube.face_normals[:, 0] < 0.9  # drop the +x side, facing the azimuth-0 camera
    open_cube = trimesh.Trimesh(cube.vertices, cube.faces[keep], process=False)
    open_cube.visual.face_colors = (30, 160, 30, 255)
    geometry = SceneGeometry.of_meshes(["cube"], ["box"], [open_cube])
    renderer = ObjectViewRenderer(geometry, ObjectViewConfig(n_views=4))
    v = renderer.render("cube")[0]
    _, primitive, back = renderer.render_alone("cube", v.camera)
    assert back.sum() > 500  # the hole shows the inside
    result = COMPLETERS.create("geometric", renderer=renderer).complete(
        CompletionRequest(v.image, v.visible_mask, v.full_mask, "box", "cube", v.camera))
    inside = result.amodal_mask
    assert inside[back].all()
    g = result.image[inside].astype(int)
    assert (g[:, 1] > g[:, 0] + 40).mean() > 0.99  # green everywhere inside the silhouette


def test_complete_command_records_views_and_completions(tmp_path):
    """``hiscene complete`` on a scene dir: a mug in front of a box hides part of it."""
    from hiscene_sim.cli import main
    from hiscene_sim.scene import Pose, Scene, SceneObject, load_scene, save_scene

    scene_dir = tmp_path / "scene"
    (scene_dir / "meshes").mkdir(parents=True)
    box = _box((0.3, 0.3, 0.3), (0, 0, 0.15), (200, 160, 40, 255))
    post = _box((0.08, 0.08, 0.6), (0, 0, 0.3), (40, 40, 200, 255))
    floor = _box((2, 2, 0.02), (0, 0, -0.01), (120, 120, 120, 255))
    objects = []
    for oid, mesh, pos in (("crate", box, (0, 0, 0)), ("post", post, (0.35, 0.0, 0))):
        mesh.export(scene_dir / "meshes" / f"{oid}.glb")
        objects.append(SceneObject(oid, oid, f"meshes/{oid}.glb", Pose(pos)))
    floor.export(scene_dir / "meshes" / "floor.glb")
    save_scene(Scene(objects=objects, background=[SceneObject("floor", "floor", "meshes/floor.glb")], name="t"), scene_dir)

    assert main(["-q", "complete", str(scene_dir), "--resolution", "128"]) == 0
    scene = load_scene(scene_dir)
    crate = scene.get("crate").extra["completion"]
    assert crate["backend"] == "geometric" and crate["judge"] == "geometric" and crate["tau"] == 0.4
    assert len(crate["views"]) == 16
    assert {"azimuth", "elevation", "rho", "selected"} <= set(crate["views"][0])
    assert 1 <= sum(v["selected"] for v in crate["views"]) <= 4
    assert any(v["rho"] > 0.01 for v in crate["views"])  # the post hides part of the crate
    assert crate["occluder_pixels_left"] == 0
    for rel in crate["images"]:
        assert (scene_dir / rel).is_file()
    out = scene_dir / "completion" / "crate"
    assert (out / "contact.png").is_file() and (out / "view_00_masks.png").is_file()
    cams = json.loads((out / "cameras.json").read_text())["views"]
    assert len(cams) == 16 and np.array(cams[0]["world_to_camera"]).shape == (4, 4)
    # a second run replaces the completion folder and the record, nothing else is left
    assert main(["-q", "complete", str(scene_dir), "--resolution", "128", "--seed", "3"]) == 0
    assert sorted(p.name for p in scene_dir.iterdir()) == ["completion", "meshes", "scene.json"]
    assert [p.stage for p in load_scene(scene_dir).provenance].count("complete") == 2
    # a misconfigured backend fails before anything is written
    before = (scene_dir / "scene.json").read_text()
    assert main(["-q", "complete", str(scene_dir), "--judge", "nonesuch"]) == 2
    assert (scene_dir / "scene.json").read_text() == before
