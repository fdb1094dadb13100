"""Bad input to ``hiscene export``: every case gets a clear error naming the object and the
problem, or a documented fallback with a warning; nothing half-written is left behind and
no label can escape the export dir or break a URDF / MJCF / USD name."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pybullet as p
import pytest
import trimesh
from pxr import Usd, UsdSemantics

from exporters.config import ExportConfig, RepairConfig
from exporters.export import export_scene
from exporters.watertight import MeshError, is_closed_volume, weld
from hiscene_sim.pybullet_assets import asset_mesh
from hiscene_sim.scene import Pose, Scene, SceneError, SceneObject, save_scene

FAST = ExportConfig(formats=("urdf", "mjcf", "usd"), workers=1)


def _scene(tmp_path: Path, meshes: dict[str, tuple[str, trimesh.Trimesh | bytes]], z: float = 0.1) -> Path:
    """A scene dir with one object per entry {id: (label, mesh or raw file bytes)} plus a floor."""
    scene_dir = tmp_path / "scene"
    (scene_dir / "meshes").mkdir(parents=True)
    objects = []
    for i, (oid, (label, mesh)) in enumerate(meshes.items()):
        path = scene_dir / "meshes" / f"{oid}.glb"
        path.write_bytes(mesh if isinstance(mesh, bytes) else mesh.export(file_type="glb"))
        objects.append(SceneObject(oid, label, f"meshes/{oid}.glb", Pose((0.3 * i, 0.0, z))))
    trimesh.creation.box((2, 2, 0.05)).export(scene_dir / "meshes" / "floor.glb")
    floor = SceneObject("floor", "floor", "meshes/floor.glb", Pose((0, 0, -0.025)))
    save_scene(Scene(objects=objects, background=[floor]), scene_dir)
    return scene_dir


def _box(size=0.1) -> trimesh.Trimesh:
    return trimesh.creation.box((size, size, size))


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is empty (0 bytes)"), (b"glTF" + b"\x00" * 40, "cannot read mesh file")],
)
def test_empty_or_corrupt_mesh_fails_cleanly_and_keeps_the_previous_export(tmp_path, content, message):
    good = _scene(tmp_path, {"cube": ("cube", _box())})
    export_scene(good, tmp_path / "export", FAST)
    before = sorted(str(f.relative_to(tmp_path / "export")) for f in (tmp_path / "export").rglob("*"))
    (good / "meshes" / "cube.glb").write_bytes(content)
    with pytest.raises(MeshError) as err:
        export_scene(good, tmp_path / "export", FAST)
    assert "object 'cube' ('cube')" in str(err.value) and message in str(err.value)
    after = sorted(str(f.relative_to(tmp_path / "export")) for f in (tmp_path / "export").rglob("*"))
    assert after == before  # the previous export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "scene"]  # no temp dir left


def test_missing_mesh_is_named_and_nothing_is_written(tmp_path):
    scene_dir = _scene(tmp_path, {"cube": ("cube", _box())})
    (scene_dir / "meshes" / "cube.glb").unlink()
    with pytest.raises(SceneError, match=r"object 'cube' \('cube'\): mesh file .*cube.glb not found"):
        export_scene(scene_dir, tmp_path / "export", FAST)
    assert not (tmp_path / "export").exists()


def test_nan_vertices_are_dropped_with_a_warning(tmp_path):
    mesh = trimesh.creation.icosphere(radius=0.05)
    mesh.vertices[0] = [np.nan, 0, 0]
    ply = trimesh.exchange.ply.export_ply(mesh)  # GLB would refuse NaN; PLY keeps it
    scene_dir = _scene(tmp_path, {})
    (scene_dir / "meshes" / "ball.ply").write_bytes(ply)
    scene = Scene(objects=[SceneObject("ball", "ball", "meshes/ball.ply", Pose((0, 0, 0.1)))])
    save_scene(scene, scene_dir)
    result = export_scene(scene_dir, tmp_path / "export", FAST)
    assert any("NaN/inf" in w and "'ball'" in w for w in result.warnings)
    assert is_closed_volume(result.objects[0].solid)


def test_triangle_soup_is_repaired_with_a_warning(tmp_path):
    """The duck as a soup: no shared vertices, 5% of the triangles missing, 20 jittered."""
    duck, scale = asset_mesh("duck")
    duck.apply_scale(scale[0])
    rng = np.random.default_rng(0)
    tris = duck.triangles[rng.random(len(duck.faces)) > 0.05]
    tris[:20] += rng.normal(scale=0.002, size=(20, 1, 3))
    soup = trimesh.Trimesh(tris.reshape(-1, 3), np.arange(tris.shape[0] * 3).reshape(-1, 3), process=False)
    assert not soup.is_watertight
    result = export_scene(_scene(tmp_path, {"soup": ("duck", soup)}), tmp_path / "export", FAST)
    obj = result.objects[0]
    assert obj.repair_method in ("pymeshfix", "voxel")
    assert any("'soup'" in w and ("MeshFix" in w or "voxel" in w) for w in result.warnings)
    assert is_closed_volume(obj.solid) and obj.mass.mass > 0
    assert obj.solid.volume == pytest.approx(weld(duck).volume, rel=0.1)


def test_flat_mesh_is_thickened(tmp_path):
    sheet = trimesh.Trimesh([[0, 0, 0], [0.2, 0, 0], [0.2, 0.2, 0], [0, 0.2, 0]], [[0, 1, 2], [0, 2, 3]])
    result = export_scene(_scene(tmp_path, {"paper": ("paper", sheet)}), tmp_path / "export", FAST)
    obj = result.objects[0]
    assert any("flat (zero volume)" in w for w in result.warnings)
    assert is_closed_volume(obj.solid)
    assert 0.001 <= obj.solid.extents.min() <= 0.01 and obj.mass.mass > 0


def test_meshes_over_the_face_limit_are_decimated(tmp_path):
    bunny, scale = asset_mesh("bunny")
    bunny.apply_scale(scale[0])
    config = ExportConfig(formats=("urdf",), workers=1, repair=RepairConfig(max_faces=400))
    result = export_scene(_scene(tmp_path, {"bunny": ("bunny", bunny)}), tmp_path / "export", config)
    assert any("exceed 400; decimated" in w for w in result.warnings)
    assert len(result.objects[0].visual.faces) <= 400
    assert is_closed_volume(weld(result.objects[0].visual))


NASTY = ['Café "mug" <&>', "../../etc/passwd", "a/b\\c", "椅子", "mug", "mug"]


def test_nasty_labels_stay_inside_and_keep_every_format_valid(tmp_path):
    meshes = {f"obj_{i}": (label, _box(0.05)) for i, label in enumerate(NASTY)}
    scene_dir = _scene(tmp_path, meshes, z=0.025)
    export_dir = tmp_path / "export"
    export_scene(scene_dir, export_dir, FAST)
    root = export_dir.resolve()
    assert all(root in f.resolve().parents for f in export_dir.rglob("*"))
    assert not (tmp_path / "etc").exists()
    manifest = json.loads((export_dir / "export.json").read_text())
    assert [o["label"] for o in manifest["objects"]][: len(NASTY)] == NASTY
    for rec in manifest["objects"]:
        ET.parse(export_dir / rec["files"]["urdf"])  # well-formed XML
        cid = p.connect(p.DIRECT)
        assert p.loadURDF(str(export_dir / rec["files"]["urdf"]), physicsClientId=cid) >= 0
        p.disconnect(cid)
    mujoco.MjModel.from_xml_path(str(export_dir / "scene.xml"))
    stage = Usd.Stage.Open(str(export_dir / "scene.usda"))
    for i, label in enumerate(NASTY):
        prim = stage.GetPrimAtPath(f"/World/Objects/obj_{i}")
        assert list(UsdSemantics.LabelsAPI(prim, "class").GetLabelsAttr().Get()) == [label]


def test_export_refuses_to_overwrite_the_scene_dir_or_a_foreign_folder(tmp_path):
    scene_dir = _scene(tmp_path, {"cube": ("cube", _box())})
    with pytest.raises(SceneError, match="must not be the input dir"):
        export_scene(scene_dir, scene_dir, FAST)
    with pytest.raises(SceneError, match="must not be the input dir"):
        export_scene(scene_dir, tmp_path, FAST)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(SceneError, match="refusing to replace it"):
        export_scene(scene_dir, foreign, FAST)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"


@pytest.mark.slow
def test_a_mesh_over_a_million_faces_is_decimated_with_a_warning(tmp_path):
    ball = trimesh.creation.icosphere(subdivisions=8, radius=0.1)  # 1,310,720 faces
    assert len(ball.faces) > 1_000_000
    result = export_scene(_scene(tmp_path, {"ball": ("ball", ball)}), tmp_path / "export", FAST)
    obj = result.objects[0]
    assert any("exceed 1000000; decimated" in w for w in result.warnings)
    assert len(obj.visual.faces) <= 1_000_000 and is_closed_volume(obj.solid)
    assert obj.solid.volume == pytest.approx(4 / 3 * np.pi * 0.1**3, rel=0.01)
