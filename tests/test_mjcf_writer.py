"""MJCF writer: the written scene.xml compiles in MuJoCo, carries the right masses and
inertia, keeps labels, and simulates objects resting on a background floor."""

from __future__ import annotations

import dataclasses
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import trimesh

mujoco = pytest.importorskip("mujoco")
pybullet_data = pytest.importorskip("pybullet_data")

from exporters.config import ExportConfig  # noqa: E402
from exporters.layout import MJCF_FILE, write_object_files  # noqa: E402
from exporters.mjcf import read_label, restitution_dampratio, write_mjcf  # noqa: E402
from exporters.prepare import ObjectTask, PreparedObject, prepare_object  # noqa: E402
from hiscene_sim.scene import Pose, SceneObject  # noqa: E402

NASTY_LABEL = 'Café "mug" <&> ../x'
FLOOR_THICKNESS = 0.05
GAP = 0.001  # lowest hull point above the floor top


def _quat_matrix(q) -> np.ndarray:
    return trimesh.transformations.quaternion_matrix(np.asarray(q, dtype=float))[:3, :3]


def _resting(obj: PreparedObject, x: float, y: float) -> PreparedObject:
    """``obj`` moved so its lowest hull point is GAP above z = 0 (the floor top)."""
    rot = _quat_matrix(obj.orientation)
    zmin = min(float((np.asarray(h.vertices) @ rot.T)[:, 2].min()) for h in obj.hulls)
    return dataclasses.replace(obj, position=(x, y, GAP - zmin))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> list[PreparedObject]:
    data = Path(pybullet_data.getDataPath())
    scene_dir = tmp_path_factory.mktemp("scene")
    for name in ("duck.obj", "duck.mtl", "duckCM.png", "bunny.obj"):
        shutil.copy(data / name, scene_dir / name)
    (scene_dir / "table").mkdir()
    for name in ("table.obj", "table.mtl", "table.png"):
        shutil.copy(data / "table" / name, scene_dir / "table" / name)
    trimesh.creation.box((1.0, 1.0, FLOOR_THICKNESS)).export(scene_dir / "floor.obj")
    config = ExportConfig(cache_dir=tmp_path_factory.mktemp("cache"))

    yaw = (math.cos(0.3), 0.0, 0.0, math.sin(0.3))  # 0.6 rad about z
    upright = (math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)  # bunny.obj is y-up
    specs = [
        ("duck", NASTY_LABEL, "duck.obj", 0.05, yaw, False),
        ("bunny", "bunny", "bunny.obj", 0.05, upright, False),
        ("cube", "wooden block", "table/table.obj", 0.05, (1.0, 0.0, 0.0, 0.0), False),  # 1 m cube -> 5 cm
        ("floor", "floor", "floor.obj", 1.0, (1.0, 0.0, 0.0, 0.0), True),
    ]
    out = []
    for oid, label, mesh, s, q, background in specs:
        obj = SceneObject(oid, label, mesh, Pose(orientation=q, scale=(s, s, s)))
        out.append(prepare_object(ObjectTask(scene_dir, obj, background, config)))
    duck, bunny, cube, floor = out
    return [
        _resting(duck, -0.2, 0.0),
        _resting(bunny, 0.0, 0.1),
        _resting(cube, 0.2, -0.1),
        dataclasses.replace(floor, position=(0.0, 0.0, -FLOOR_THICKNESS / 2)),
    ]


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("export")
    files = {o.id: write_object_files(o, export_dir) for o in prepared}
    path = write_mjcf(prepared, files, export_dir, ExportConfig())
    return path, files


@pytest.fixture(scope="module")
def model(exported):
    path, _ = exported
    return mujoco.MjModel.from_xml_path(str(path))


def _foreground(prepared):
    return [o for o in prepared if not o.is_background]


def test_writes_scene_xml_that_compiles(exported, model, prepared):
    path, _ = exported
    assert path.name == MJCF_FILE and path.is_file()
    ET.parse(path)  # well-formed XML, whatever the labels hold
    fg = _foreground(prepared)
    assert model.nbody == 1 + len(prepared)  # world + one body per object
    assert model.njnt == len(fg)
    assert int(np.sum(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE)) == len(fg)
    for obj in fg:
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.id)
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"{obj.id}_joint")
        assert body > 0 and model.jnt_bodyid[joint] == body
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "floor")
    assert model.body_jntnum[floor] == 0 and model.body_weldid[floor] == 0  # static


def test_masses_and_inertia(model, prepared):
    for obj in _foreground(prepared):
        b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.id)
        assert model.body_mass[b] == pytest.approx(obj.mass.mass, rel=1e-6)
        np.testing.assert_allclose(model.body_ipos[b], obj.mass.center_of_mass, rtol=1e-6, atol=1e-9)
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.body_iquat[b])
        rot = rot.reshape(3, 3)
        tensor = rot @ np.diag(model.body_inertia[b]) @ rot.T
        expected = np.asarray(obj.mass.inertia)
        np.testing.assert_allclose(tensor, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
        # body pose as given
        np.testing.assert_allclose(model.body_pos[b], obj.position, atol=1e-12)
        q = np.asarray(obj.orientation) / np.linalg.norm(obj.orientation)
        assert abs(abs(float(np.dot(model.body_quat[b], q))) - 1.0) < 1e-9


def test_geoms_visual_and_collision(model, prepared, exported):
    _, files = exported
    for obj in prepared:
        b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.id)
        geoms = np.flatnonzero(model.geom_bodyid == b)
        visual = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{obj.id}_visual")
        assert visual in geoms
        assert model.geom_contype[visual] == 0 and model.geom_conaffinity[visual] == 0
        assert model.geom_type[visual] == mujoco.mjtGeom.mjGEOM_MESH
        hulls = [g for g in geoms if g != visual]
        assert len(hulls) == len(files[obj.id].hulls) == len(obj.hulls)
        for g in hulls:
            assert model.geom_contype[g] == 1 and model.geom_conaffinity[g] == 1
            assert model.geom_group[g] == 3
            # a static geom's friction is MuJoCo's neutral 0: a contact takes the moving object's (exporters/contact.py)
            friction = 0.0 if obj.is_background else ExportConfig().material(obj.label)[0].dynamic_friction
            assert model.geom_friction[g][0] == pytest.approx(friction)
            assert model.geom_condim[g] == 6  # rolling friction acts
    # the textured duck gets its texture through its material, the bunny a flat colour
    duck_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "duck_visual")
    duck_mat = model.geom_matid[duck_geom]
    assert files["duck"].texture is not None
    assert (model.mat_texid[duck_mat] >= 0).any()
    assert model.mesh_texcoordnum[model.geom_dataid[duck_geom]] > 0
    bunny_mat = model.geom_matid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "bunny_visual")]
    assert (model.mat_texid[bunny_mat] < 0).all()


def test_labels_recoverable(model, prepared):
    for obj in prepared:
        assert read_label(model, obj.id) == obj.label
    assert read_label(model, "duck") == NASTY_LABEL
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXT, "label:duck")
    assert mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_TEXT, i) == "label:duck"
    assert NASTY_LABEL.encode() in bytes(model.text_data)


def test_objects_rest_on_the_floor(model, prepared):
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, o.id) for o in _foreground(prepared)]
    start = data.xpos[ids].copy()
    for _ in range(500):  # 1 s
        mujoco.mj_step(model, data)
        assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    assert np.all(data.xpos[ids, 2] > -0.01), data.xpos[ids]
    moved = np.linalg.norm(data.xpos[ids] - start, axis=1)
    assert np.all(moved < 0.02), moved
    assert np.all(np.abs(data.qvel) < 0.05), data.qvel  # settled
    assert data.ncon > 0


def test_label_edge_cases_and_degenerate_hulls(prepared, tmp_path):
    cube = next(o for o in prepared if o.id == "cube")
    floor = next(o for o in prepared if o.id == "floor")
    # a tiny (1e-15 m^3) but not flat hull: MuJoCo's default mesh inertia would reject it
    # ("mesh volume is too small"), and a flat sliver that is dropped
    tiny = trimesh.creation.box((1e-5, 1e-5, 1e-5))
    flat = trimesh.Trimesh(
        [[0, 0, 0], [0.01, 0, 0], [0, 0.01, 0], [0.01, 0.01, 1e-9]], [[0, 1, 2], [1, 3, 2], [0, 2, 3], [0, 3, 1]]
    )
    label = "ctrl\x01char\ttab\nnewline ]]> 🦆"
    odd = dataclasses.replace(cube, id="odd", label=label, hulls=[*cube.hulls, tiny, flat])
    objects = [odd, floor]
    files = {o.id: write_object_files(o, tmp_path) for o in objects}
    path = write_mjcf(objects, files, tmp_path, ExportConfig(restitution=0.5))
    m = mujoco.MjModel.from_xml_path(str(path))
    body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "odd")
    assert int(np.sum(m.geom_bodyid == body)) == 1 + len(cube.hulls) + 1  # visual + hulls + tiny, no flat
    assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"odd_hull_{len(cube.hulls) + 1:03d}") == -1
    assert read_label(m, "odd") == label.replace("\x01", "\ufffd")
    # restitution 0.5 -> an underdamped contact (dampratio < 1); 0 -> critical damping
    assert m.geom_solref[0][1] == pytest.approx(restitution_dampratio(0.5)) and restitution_dampratio(0.5) < 1
    assert restitution_dampratio(0.0) == 1.0
    zeta = restitution_dampratio(0.5)
    assert math.exp(-zeta * math.pi / math.sqrt(1 - zeta**2)) == pytest.approx(0.5)
