"""The export of the demo desk scene (real pybullet_data meshes), checked in each consumer:
PyBullet, MuJoCo, usd-core and trimesh. Counts, labels, masses and poses must match the
scene dir."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pybullet as p
import pytest
import trimesh
from pxr import Usd, UsdGeom, UsdPhysics, UsdSemantics

from exporters.collision import hull_union_iou
from exporters.config import ExportConfig
from exporters.export import export_scene
from exporters.pybullet_loader import link_frame_pose
from exporters.pybullet_loader import load_scene as load_pybullet_scene
from exporters.watertight import is_closed_volume, weld
from hiscene_sim.scene import load_scene
from tests.usd_checks import usd_compliance_errors


@pytest.fixture()
def bullet():
    cid = p.connect(p.DIRECT)
    yield cid
    p.disconnect(cid)


def _manifest(desk) -> dict:
    return json.loads((desk.export_dir / "export.json").read_text())


def test_manifest_matches_the_scene_dir(desk):
    scene = load_scene(desk.scene_dir)
    manifest = _manifest(desk)
    by_id = {o["id"]: o for o in manifest["objects"]}
    assert sorted(by_id) == sorted(o.id for o in scene.all_objects())
    for obj in scene.all_objects():
        rec = by_id[obj.id]
        assert rec["label"] == obj.label
        assert rec["background"] == (obj in scene.background)
        np.testing.assert_allclose(rec["position"], obj.pose.position, atol=1e-12)
        np.testing.assert_allclose(rec["orientation"], obj.pose.orientation, atol=1e-12)
    assert {o["label"] for o in manifest["objects"]} >= {"table", "mug", "duck", "teddy", "lego", "bunny", "jenga", "floor"}


def test_visual_meshes_are_watertight_and_hulls_cover_them(desk):
    for obj in desk.exported.objects:
        visual = trimesh.load(desk.export_dir / "objects" / obj.id / "visual.obj", force="mesh")
        assert is_closed_volume(weld(visual)), obj.id
        hulls = [trimesh.load(desk.export_dir / h, force="mesh") for h in desk.exported.files[obj.id].hulls]
        assert len(hulls) == len(obj.hulls) >= 1
        for h in hulls:  # convex: the hull of its vertices encloses no more volume
            assert h.volume == pytest.approx(h.convex_hull.volume, rel=1e-6), obj.id
        assert hull_union_iou(obj.solid, hulls) > 0.6, obj.id
    # appearance kept: the duck keeps its texture, the mug its vertex colours
    assert (desk.export_dir / "objects" / "duck" / "texture.png").is_file()
    mug = trimesh.load(desk.export_dir / "objects" / "mug_1" / "visual.obj", force="mesh", process=False)
    assert mug.visual.kind == "vertex" and np.mean(mug.visual.vertex_colors[:, 0]) > 200  # red


def test_each_urdf_loads_standalone_with_its_mass_and_hulls(desk, bullet):
    for obj in desk.exported.objects:
        urdf = desk.export_dir / desk.exported.files[obj.id].urdf
        body = p.loadURDF(str(urdf), flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=bullet)
        assert body >= 0
        assert p.getNumJoints(body, physicsClientId=bullet) == 0
        mass = p.getDynamicsInfo(body, -1, physicsClientId=bullet)[0]
        assert mass == pytest.approx(0.0 if obj.is_background else obj.mass.mass, rel=1e-6)
        shapes = p.getCollisionShapeData(body, -1, physicsClientId=bullet)
        assert len(shapes) == len(obj.hulls), obj.id
        inertia = p.getDynamicsInfo(body, -1, physicsClientId=bullet)[2]
        if not obj.is_background:
            np.testing.assert_allclose(sorted(inertia), sorted(obj.mass.principal_axes()[0]), rtol=1e-5)
        p.removeBody(body, physicsClientId=bullet)


def test_whole_scene_loads_as_independent_bodies_that_stay_put(desk, bullet):
    bodies = load_pybullet_scene(desk.export_dir, bullet)
    manifest = _manifest(desk)
    assert len(set(bodies.values())) == len(manifest["objects"]) == p.getNumBodies(physicsClientId=bullet)
    start = {k: link_frame_pose(b, bullet)[0] for k, b in bodies.items()}
    for rec in manifest["objects"]:
        np.testing.assert_allclose(start[rec["id"]], rec["position"], atol=1e-6)
    for _ in range(240):  # 1 s at PyBullet's default 240 Hz
        p.stepSimulation(physicsClientId=bullet)
    for rec in manifest["objects"]:
        end = link_frame_pose(bodies[rec["id"]], bullet)[0]
        drift = np.linalg.norm(np.subtract(end, start[rec["id"]]))
        assert drift < 0.01, f"{rec['id']} moved {drift:.4f} m"
    # bodies are independent: pushing the mug moves the mug only
    p.resetBaseVelocity(bodies["mug_1"], [0, 0, 1.0], [0, 0, 0], physicsClientId=bullet)
    p.stepSimulation(physicsClientId=bullet)
    assert p.getBaseVelocity(bodies["mug_1"], physicsClientId=bullet)[0][2] > 0.9
    assert abs(p.getBaseVelocity(bodies["table"], physicsClientId=bullet)[0][2]) < 0.01


def test_mjcf_loads_and_simulates_without_nans(desk):
    model = mujoco.MjModel.from_xml_path(str(desk.export_dir / "scene.xml"))
    data = mujoco.MjData(model)
    objects = desk.exported.objects
    assert model.njnt == sum(not o.is_background for o in objects)
    for obj in objects:
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.id)
        assert body > 0, obj.id
        if not obj.is_background:
            assert model.body_mass[body] == pytest.approx(obj.mass.mass, rel=1e-6)
            np.testing.assert_allclose(model.body_pos[body], obj.position, atol=1e-9)
    for _ in range(300):
        mujoco.mj_step(model, data)
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "table")
    assert data.xpos[table][2] > -0.01  # did not fall through the floor


def test_usd_stage_has_schemas_labels_and_passes_compliance(desk):
    path = desk.export_dir / "scene.usda"
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == "Z"
    assert stage.GetDefaultPrim().GetPath() == "/World"
    for obj in desk.exported.objects:
        prim = stage.GetPrimAtPath(f"/World/{'Background' if obj.is_background else 'Objects'}/{obj.id}")
        assert prim.IsValid(), obj.id
        assert prim.HasAPI(UsdPhysics.RigidBodyAPI) != obj.is_background
        labels = UsdSemantics.LabelsAPI(prim, "class").GetLabelsAttr().Get()
        assert list(labels) == [obj.label]
        assert prim.GetAttribute("semantic:Semantics:params:semanticData").Get() == obj.label
        if not obj.is_background:
            assert UsdPhysics.MassAPI(prim).GetMassAttr().Get() == pytest.approx(obj.mass.mass, rel=1e-6)
        hulls = [c for c in stage.GetPrimAtPath(prim.GetPath().AppendChild("collision")).GetChildren()]
        assert len(hulls) == len(obj.hulls)
        world = UsdGeom.XformCache().GetLocalToWorldTransform(prim)
        np.testing.assert_allclose(np.array(world)[3, :3], obj.position, atol=1e-6)
    assert usd_compliance_errors(path) == []


def test_glb_reloads_with_every_object(desk):
    scene = trimesh.load(desk.export_dir / "scene.glb", force="scene")
    assert sorted(scene.graph.nodes_geometry) == sorted(o.id for o in desk.exported.objects)
    for obj in desk.exported.objects:
        transform, geom = scene.graph[obj.id]
        x, y, z = obj.position
        np.testing.assert_allclose(transform[:3, 3], (x, z, -y), atol=1e-6)  # glTF is Y-up: scene +Z is the file's +Y
        assert len(scene.geometry[geom].faces) == len(obj.visual.faces)


def test_reexport_uses_the_collision_cache_and_replaces_atomically(desk, tmp_path):
    config = ExportConfig(formats=("urdf",))
    result = export_scene(desk.scene_dir, tmp_path / "again", config)
    assert all(o.hulls_from_cache for o in result.objects)
    assert [len(o.hulls) for o in result.objects] == [len(o.hulls) for o in desk.exported.objects]
    (tmp_path / "again" / "stale.txt").write_text("from the previous export")
    export_scene(desk.scene_dir, tmp_path / "again", config)
    assert not (tmp_path / "again" / "stale.txt").exists()  # replaced as a whole
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temp dirs left
