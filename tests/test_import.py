"""``hiscene import``: one object per mesh node, labels cleaned, poses from node transforms,
appearance kept; bad scene files rejected with the file and the problem named."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from hiscene_sim.demo import DESK_LAYOUT
from hiscene_sim.importer import import_scene
from hiscene_sim.scene import SceneError, load_scene


def test_demo_glb_imports_one_object_per_node(desk):
    scene = load_scene(desk.scene_dir)
    assert len(scene.objects) == len(DESK_LAYOUT)
    assert [o.label for o in scene.background] == ["floor"]
    labels = sorted(o.label for o in scene.objects)
    assert labels == sorted(["table", "mug", "duck", "teddy", "lego", "bunny", "jenga", "jenga"])
    assert {o.id for o in scene.objects} >= {"mug_1", "jenga_1", "jenga_2"}


def test_imported_poses_reproduce_the_world_geometry(desk):
    source = trimesh.load(desk.glb, force="scene")
    scene = load_scene(desk.scene_dir)
    for obj in scene.all_objects():
        transform, geom = source.graph[obj.provenance.parameters["node"]]
        expected = trimesh.transform_points(source.geometry[geom].vertices, transform)
        local = trimesh.load(desk.scene_dir / obj.mesh, force="mesh", process=False)
        got = trimesh.transform_points(local.vertices, obj.pose.matrix())
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=obj.id)
    table = scene.get("lego")
    assert not np.allclose(table.pose.scale, 1.0)  # the node's scale went into the pose


def test_textures_and_vertex_colours_survive(desk):
    duck = trimesh.load(desk.scene_dir / "meshes" / "duck.glb", force="mesh")
    assert duck.visual.kind == "texture" and duck.visual.material.baseColorTexture is not None
    mug = trimesh.load(desk.scene_dir / "meshes" / "mug_1.glb", force="mesh")
    assert mug.visual.kind == "vertex"
    assert np.allclose(mug.visual.vertex_colors[0], [255, 51, 51, 255])


def test_obj_with_several_objects(tmp_path):
    box = trimesh.creation.box((0.1, 0.1, 0.1))
    ball = trimesh.creation.icosphere(radius=0.05).apply_translation((0.3, 0, 0))
    lines = []
    offset = 0
    for name, mesh in (("box_1", box), ("ball_2", ball)):
        lines.append(f"o {name}")
        lines += [f"v {x} {y} {z}" for x, y, z in mesh.vertices]
        lines += [f"f {a + 1 + offset} {b + 1 + offset} {c + 1 + offset}" for a, b, c in mesh.faces]
        offset += len(mesh.vertices)
    (tmp_path / "two.obj").write_text("\n".join(lines) + "\n")
    result = import_scene(tmp_path / "two.obj", tmp_path / "scene")
    assert sorted(o.label for o in result.scene.objects) == ["ball", "box"]


def test_single_mesh_ply(tmp_path):
    trimesh.creation.box((0.2, 0.1, 0.05)).export(tmp_path / "block.ply")
    result = import_scene(tmp_path / "block.ply", tmp_path / "scene")
    assert len(result.scene.objects) == 1
    assert load_scene(tmp_path / "scene").objects[0].mesh == result.scene.objects[0].mesh


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.glb", None, "scene file not found"),
        ("scene.fbx", b"x", "unsupported scene file type '.fbx'"),
        ("empty.glb", b"", "scene file is empty"),
        ("corrupt.glb", b"glTF\x02\x00\x00\x00garbage" * 10, "cannot read scene file"),
        ("points.ply", None, "no node holds a triangle mesh"),
    ],
)
def test_bad_scene_files_are_named_with_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if name == "points.ply":
        trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SceneError) as err:
        import_scene(path, tmp_path / "out")
    assert message in str(err.value) and name in str(err.value)
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_folder_that_is_not_a_scene_dir(tmp_path):
    trimesh.creation.box().export(tmp_path / "block.glb")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(SceneError, match="refusing to replace it"):
        import_scene(tmp_path / "block.glb", precious)
    assert (precious / "thesis.txt").read_text() == "do not delete"
