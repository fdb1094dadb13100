"""Labels drive physics: per-object density, friction and restitution from the material table
reach every writer (PyBullet, MuJoCo, USD, export.json); overrides, unknown labels and
implausible sizes are handled and reported."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import mujoco
import numpy as np
import pybullet as p
import pytest
import trimesh
from pxr import Usd, UsdPhysics, UsdShade

from exporters.config import ExportConfig
from exporters.export import export_scene
from exporters.materials import (
    DEFAULT_MATERIAL,
    MATERIALS,
    check_plausible,
    density_for_label,
    material_for_label,
)
from exporters.mjcf import restitution_dampratio
from exporters.pybullet_loader import load_scene as load_pybullet_scene
from hiscene_sim.scene import Pose, Scene, SceneObject, save_scene
from physics.manifest import read_manifest

UNKNOWN = "frobnicator gizmo"  # matches no key of the table

# id -> (label, mesh file, scale, position)
OBJECTS = {
    "mug_1": ("mug", "mug.obj", 1.0, (0.0, 0.0, 0.05)),
    "sofa": ("sofa", "sofa.obj", 1.0, (1.5, 0.0, 0.4)),
    "tables": ("coffee tables", "slab.obj", 1.0, (-1.5, 0.0, 0.025)),
    "gizmo": (UNKNOWN, "slab.obj", 0.1, (0.0, 1.0, 0.0025)),
    "big_mug": ("mug", "mug.obj", 30.0, (0.0, -3.0, 1.5)),  # 3 m tall: implausible
}


def _build_scene(scene_dir: Path) -> None:
    (scene_dir / "meshes").mkdir(parents=True)
    trimesh.creation.cylinder(radius=0.04, height=0.1, sections=24).export(scene_dir / "meshes" / "mug.obj")
    trimesh.creation.box((2.0, 0.9, 0.8)).export(scene_dir / "meshes" / "sofa.obj")
    trimesh.creation.box((1.0, 0.6, 0.05)).export(scene_dir / "meshes" / "slab.obj")
    trimesh.creation.box((8.0, 8.0, 0.1)).export(scene_dir / "meshes" / "floor.obj")
    objects = [
        SceneObject(oid, label, f"meshes/{mesh}", Pose(position, scale=(s, s, s)))
        for oid, (label, mesh, s, position) in OBJECTS.items()
    ]
    floor = SceneObject("floor", "floor", "meshes/floor.obj", Pose((0.0, 0.0, -0.05)))
    save_scene(Scene(objects=objects, background=[floor], name="materials"), scene_dir)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("materials")
    _build_scene(root / "scene")
    records = _Records()
    logging.getLogger().addHandler(records)
    try:
        export_scene(root / "scene", root / "export", ExportConfig(workers=1))
    finally:
        logging.getLogger().removeHandler(records)
    manifest = json.loads((root / "export" / "export.json").read_text())
    return root, {o["id"]: o for o in manifest["objects"]}, records.messages


def _expected(oid: str):
    return MATERIALS["floor"] if oid == "floor" else material_for_label(OBJECTS[oid][0])[0]


def test_table_gives_mug_and_sofa_different_surfaces():
    mug, sofa = MATERIALS["mug"], MATERIALS["sofa"]
    assert mug.dynamic_friction != sofa.dynamic_friction and mug.restitution != sofa.restitution
    assert mug.density == 1800 and sofa.density == 150  # the densities kept from the old table
    assert DEFAULT_MATERIAL.dynamic_friction not in (mug.dynamic_friction, sofa.dynamic_friction)


def test_export_json_records_each_objects_material(export):
    _, objects, _ = export
    assert objects["mug_1"]["material_key"] == "mug" and objects["sofa"]["material_key"] == "sofa"
    assert objects["tables"]["material_key"] == "coffee table"  # plural of a compound key
    assert objects["gizmo"]["material_key"] == "default"
    for oid, rec in objects.items():
        m = DEFAULT_MATERIAL if oid == "gizmo" else _expected(oid)
        got = (rec["static_friction"], rec["dynamic_friction"], rec["restitution"], rec["density"])
        assert got == pytest.approx((m.static_friction, m.dynamic_friction, m.restitution, m.density)), oid
    assert objects["mug_1"]["dynamic_friction"] != objects["sofa"]["dynamic_friction"]
    # mass = density x closed volume
    assert objects["mug_1"]["mass"] == pytest.approx(1800 * np.pi * 0.04**2 * 0.1, rel=0.02)


def test_implausible_size_is_warned_in_export_json_and_log(export):
    _, objects, messages = export
    big = [w for w in objects["big_mug"]["warnings"] if "across" in w]
    assert len(big) == 1 and "'big_mug'" in big[0] and "3 m across" in big[0] and "a mug is" in big[0]
    assert any("weighs" in w for w in objects["big_mug"]["warnings"])  # ~27 t of ceramic
    assert big[0] in messages  # logged at WARNING too
    for oid in ("mug_1", "sofa", "tables"):
        assert not [w for w in objects[oid]["warnings"] if "across" in w or "weighs" in w], oid


def test_unknown_label_falls_back_and_is_logged(export, caplog):
    _, objects, messages = export
    assert any(UNKNOWN in m and "default material" in m for m in messages)
    label = f"unheard-of thing {uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="exporters.materials"):
        material, key = material_for_label(label)
        material_for_label(label)
    assert (material, key) == (DEFAULT_MATERIAL, "default")
    warned = [r for r in caplog.records if label in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING  # once per label
    assert "default material" in warned[0].getMessage()


def test_pybullet_bodies_have_their_labels_friction(export):
    root, objects, _ = export
    cid = p.connect(p.DIRECT)
    try:
        bodies = load_pybullet_scene(root / "export", cid)
        for oid, body in bodies.items():
            info = p.getDynamicsInfo(body, -1, physicsClientId=cid)
            m = DEFAULT_MATERIAL if oid == "gizmo" else _expected(oid)
            # a static body's friction is PyBullet's neutral 1: a contact takes the moving object's (exporters/contact.py)
            lateral = 1.0 if objects[oid]["background"] else m.dynamic_friction
            assert info[1] == pytest.approx(lateral), oid  # lateral friction
            assert info[5] == pytest.approx(m.restitution), oid
        lateral = {oid: p.getDynamicsInfo(bodies[oid], -1, physicsClientId=cid)[1] for oid in ("mug_1", "sofa")}
        assert lateral["mug_1"] != pytest.approx(lateral["sofa"])
    finally:
        p.disconnect(cid)


def test_mjcf_geoms_have_their_labels_friction_and_solref(export):
    root, objects, _ = export
    model = mujoco.MjModel.from_xml_path(str(root / "export" / "scene.xml"))
    for oid in objects:
        m = DEFAULT_MATERIAL if oid == "gizmo" else _expected(oid)
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, oid)
        geoms = [g for g in np.flatnonzero(model.geom_bodyid == body) if model.geom_contype[g]]
        assert geoms, oid
        for g in geoms:
            # a static geom's friction is MuJoCo's neutral 0: a contact takes the moving object's (exporters/contact.py)
            friction = 0.0 if objects[oid]["background"] else m.dynamic_friction
            assert model.geom_friction[g][0] == pytest.approx(friction), oid
            assert model.geom_solref[g][1] == pytest.approx(restitution_dampratio(m.restitution)), oid


def test_usd_colliders_are_bound_to_their_labels_physics_material(export):
    root, objects, _ = export
    stage = Usd.Stage.Open(str(root / "export" / "scene.usda"))
    for oid, rec in objects.items():
        m = DEFAULT_MATERIAL if oid == "gizmo" else _expected(oid)
        group = stage.GetPrimAtPath(f"/World/{'Background' if rec['background'] else 'Objects'}/{oid}/collision")
        hulls = group.GetChildren()
        assert hulls, oid
        for hull in hulls:
            material, _ = UsdShade.MaterialBindingAPI(hull).ComputeBoundMaterial("physics")
            api = UsdPhysics.MaterialAPI(material.GetPrim())
            got = (api.GetStaticFrictionAttr().Get(), api.GetDynamicFrictionAttr().Get(), api.GetRestitutionAttr().Get())
            assert got == pytest.approx((m.static_friction, m.dynamic_friction, m.restitution)), oid
            assert material.GetPrim().GetAttribute("hiscene:material").Get() == rec["material_key"]


def test_overrides_per_label_win_over_global_values_which_win_over_the_table(export, tmp_path):
    config = ExportConfig(restitution=0.5, dynamic_friction=0.3, materials={"mug": {"dynamic_friction": 0.9}})
    mug, key = config.material("red mugs")
    sofa, _ = config.material("sofa")
    assert key == "mug" and mug.dynamic_friction == 0.9 and mug.restitution == 0.5
    assert sofa.dynamic_friction == 0.3 and sofa.restitution == 0.5 and sofa.static_friction == MATERIALS["sofa"].static_friction
    assert ExportConfig(densities={"sofa": 99.0}).material("sofa")[0].density == 99.0
    assert ExportConfig(default_density=42.0).material(UNKNOWN)[0].density == 42.0
    with pytest.raises(ValueError, match="unknown fields"):
        ExportConfig(materials={"mug": {"fricton": 0.1}})
    with pytest.raises(ValueError):
        ExportConfig(materials={"mug": {"restitution": 2.0}})

    # through an export: the MJCF carries the overrides and export.json gives them back
    root, _, _ = export
    config = ExportConfig(formats=("mjcf",), workers=1, restitution=0.5, materials={"mug": {"dynamic_friction": 0.9}})
    export_scene(root / "scene", tmp_path / "export", config)
    model = mujoco.MjModel.from_xml_path(str(tmp_path / "export" / "scene.xml"))
    for oid, friction in (("mug_1", 0.9), ("sofa", MATERIALS["sofa"].dynamic_friction)):
        g = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{oid}_hull_000")
        assert model.geom_friction[g][0] == pytest.approx(friction)
        assert model.geom_solref[g][1] == pytest.approx(restitution_dampratio(0.5))
    recovered = read_manifest(tmp_path / "export").export_config()
    assert recovered.materials == {"mug": {"dynamic_friction": 0.9}}
    assert (recovered.restitution, recovered.dynamic_friction, recovered.static_friction) == (0.5, None, None)


def test_word_matching_plurals_and_compounds():
    assert material_for_label("coffee tables")[1] == "coffee table"
    assert material_for_label("Coffee Table")[1] == "coffee table"
    assert material_for_label("wooden table")[1] == "table"
    assert material_for_label("Mugs")[1] == "mug"
    assert material_for_label("boxes")[1] == "box"
    assert material_for_label("teddy bears")[1] == "teddy bear"
    assert material_for_label("potted plant")[1] == "potted plant"
    assert material_for_label("mugshot")[1] != "mug"  # whole words only
    # density_for_label still works, with its overrides and fallback
    assert density_for_label("red mug") == (1800.0, "mug")
    assert density_for_label("red mug", {"mug": 900.0}) == (900.0, "mug")
    assert density_for_label(UNKNOWN, None, 77.0) == (77.0, "default")


def test_check_plausible():
    assert check_plausible("mug", 0.1, 0.35) == []
    assert check_plausible("mug", 0.3, 1.2) == []  # within the x3 margin
    warnings = check_plausible("mug", 3.0, 0.35, "mug_1")
    assert len(warnings) == 1 and warnings[0].startswith("object 'mug_1' labelled 'mug' is 3 m across")
    assert len(check_plausible("sofa", 0.2, 0.5)) == 2  # a 20 cm, 0.5 kg sofa
    assert check_plausible(UNKNOWN, 100.0, 1e6) == []  # no range to check against
    assert check_plausible("floor", 100.0, 1e6) == []
