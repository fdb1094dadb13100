"""Scene model: round trip, validation errors that name the problem, atomic save, poses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hiscene_sim.naming import clean_label, safe_identifier
from hiscene_sim.scene import Pose, Provenance, Scene, SceneError, SceneObject, load_scene, save_scene


def _scene() -> Scene:
    return Scene(
        objects=[SceneObject("mug", "mug", "meshes/mug.glb", Pose((0.1, 0.2, 0.3), (math.cos(0.2), 0, 0, math.sin(0.2)), (1, 2, 3)))],
        background=[SceneObject("floor", "floor", "meshes/floor.glb")],
        provenance=[Provenance("import", "trimesh", {"source": "x.glb"}, seconds=0.5)],
        name="desk",
    )


def _write(tmp_path, data) -> None:
    (tmp_path / "scene.json").write_text(json.dumps(data))


def test_round_trip_keeps_everything(tmp_path):
    scene = _scene()
    save_scene(scene, tmp_path)
    data = json.loads((tmp_path / "scene.json").read_text())
    assert data["format"] == "hiscene-scene" and data["version"] == 2
    assert data["units"] == "meters" and data["up_axis"] == "Z"
    loaded = load_scene(tmp_path, check_files=False)
    assert loaded.to_json() == scene.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["scene.json"]  # no temp files left


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("format"), "'format' must be 'hiscene-scene'"),
        (lambda d: d.update(version=99), "unsupported version 99"),
        (lambda d: d.update(up_axis="Y"), "up_axis must be Z"),
        (lambda d: d["objects"][0].pop("label"), "objects[0]: missing required key 'label'"),
        (lambda d: d["objects"][0].update(label="  "), "label must be a non-empty string"),
        (lambda d: d["objects"][0].update(id="../evil"), "id '../evil' is not valid"),
        (lambda d: d["objects"][0].update(mesh="../outside.glb"), "must be a relative path inside the scene dir"),
        (lambda d: d["objects"][0].update(mesh="/etc/passwd"), "must be a relative path inside the scene dir"),
        (lambda d: d["objects"][0]["pose"].update(orientation=[1, 1, 0, 0]), "quaternion [w,x,y,z] must have unit norm"),
        (lambda d: d["objects"][0]["pose"].update(position=[0, float("nan"), 0]), "finite numbers"),
        (lambda d: d["objects"][0]["pose"].update(scale=[1, 0, 1]), "every scale factor must be non-zero"),
        (lambda d: d["background"][0].update(id="MUG"), "duplicates objects[0]"),
    ],
)
def test_validation_names_the_problem(tmp_path, mutate, message):
    data = _scene().to_json()
    mutate(data)
    _write(tmp_path, data)
    with pytest.raises(SceneError) as err:
        load_scene(tmp_path, check_files=False)
    assert message in str(err.value)
    assert "scene.json" in str(err.value)


def test_invalid_json_and_missing_mesh_are_reported(tmp_path):
    (tmp_path / "scene.json").write_text('{"format": ')
    with pytest.raises(SceneError, match=r"invalid JSON at line 1"):
        load_scene(tmp_path)
    save_scene(_scene(), tmp_path)
    with pytest.raises(SceneError, match=r"object 'mug' \('mug'\): mesh file .*mug.glb not found"):
        load_scene(tmp_path)


def test_save_refuses_an_invalid_scene_and_keeps_the_old_file(tmp_path):
    save_scene(_scene(), tmp_path)
    before = (tmp_path / "scene.json").read_text()
    bad = _scene()
    bad.objects[0].id = "bad id"
    with pytest.raises(SceneError):
        save_scene(bad, tmp_path)
    assert (tmp_path / "scene.json").read_text() == before


@pytest.mark.parametrize("scale", [(1, 1, 1), (0.5, 2.0, 3.0), (-1.0, 1.0, 1.0)])
def test_pose_matrix_round_trip(scale):
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    pose = Pose((1.0, -2.0, 0.5), tuple(q), scale)
    again = Pose.from_matrix(pose.matrix())
    np.testing.assert_allclose(again.matrix(), pose.matrix(), atol=1e-9)
    np.testing.assert_allclose(again.scale, scale, atol=1e-9)


def test_world_is_position_plus_rotated_scaled_local():
    pose = Pose((1, 2, 3), (math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)), (2, 1, 1))  # 90 deg about z
    local = np.array([1.0, 0.0, 0.0])
    world = pose.matrix() @ np.append(local, 1)
    np.testing.assert_allclose(world[:3], [1, 4, 3], atol=1e-12)  # x scaled to 2, turned onto +y


@pytest.mark.parametrize(
    "node, label", [("chair_2", "chair"), ("Office_Chair.001", "office chair"), ("mug (3)", "mug"), ("table", "table"), ("", "object"), ("_7", "object")]
)
def test_clean_label(node, label):
    assert clean_label(node) == label


@pytest.mark.parametrize("text", ['Café "mug" & co', "../../etc/passwd", "<script>", "椅子", "", "  ", "9lives", "a/b\\c"])
def test_safe_identifier_is_safe_everywhere(text):
    ident = safe_identifier(text)
    assert ident and len(ident) <= 64
    assert all(c.isascii() and (c.isalnum() or c == "_") for c in ident)
    assert not ident[0].isdigit()


def test_safe_identifier_is_unique_ignoring_case():
    taken = ["mug", "Mug_2"]
    assert safe_identifier("MUG", taken) == "mug_3"


def test_atomic_outputs_get_the_modes_open_and_mkdir_give(tmp_path):
    """mkstemp / mkdtemp make 0600 / 0700 entries; written outputs must be readable like any file
    (the umask decides), and a replaced file keeps its mode."""
    import os
    import stat

    from hiscene_sim.atomic import atomic_directory, atomic_write_bytes

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask
    os.chmod(tmp_path / "a.json", 0o640)
    atomic_write_bytes(tmp_path / "a.json", b"{ }")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    with atomic_directory(tmp_path / "out") as tmp:
        atomic_write_bytes(tmp / "scene.json", b"{}")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "out" / "scene.json").stat().st_mode) == 0o666 & ~umask
