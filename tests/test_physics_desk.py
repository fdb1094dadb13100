"""The demo desk scene (real pybullet_data meshes) through ``hiscene validate --settle``: it
passes in PyBullet and MuJoCo, and a spoiled copy (a mug lifted 3 cm, a jenga block sunk
1 cm into the table) is repaired until it does. Works on copies: the session's ``desk``
fixture stays as it is for the other tests."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from exporters.export import export_scene
from hiscene_sim.demo import TABLE_TOP
from hiscene_sim.scene import Pose, load_scene, save_scene
from physics.commands import demo_validation
from physics.report import validate_and_report
from physics.results import DRIFT, FLOATING, PENETRATION
from physics.validate import validate_export


@pytest.fixture()
def desk_copy(desk, tmp_path):
    scene, export = tmp_path / "scene", tmp_path / "export"
    shutil.copytree(desk.scene_dir, scene)
    shutil.copytree(desk.export_dir, export)
    return scene, export


def _bottom(scene_dir, object_id) -> float:
    obj = load_scene(scene_dir).get(object_id)
    mesh = trimesh.load(scene_dir / obj.mesh, force="mesh")
    mesh.apply_transform(obj.pose.matrix())
    return float(mesh.bounds[0][2])


def test_demo_scene_passes_after_settle_in_pybullet_and_mujoco(desk_copy):
    scene, export = desk_copy
    lines: list[str] = []
    report = demo_validation(export, scene, echo=lines.append)
    assert report.passed, report.failures
    assert report.pybullet.passed and report.mujoco.passed
    assert report.pybullet.n_objects == report.mujoco.n_objects == 8  # the floor is background
    assert report.agreement.max_position_difference_m < 0.01
    assert report.settle is not None and report.settle.passed and report.settle.unresolved == []
    assert "PASS" in lines[0] and lines[-1].endswith(str(export / "validation.md"))
    data = json.loads((export / "validation.json").read_text())
    assert data["verdict"] == "PASS" and data["mujoco"]["passed"]
    for name in ("validation.md", "render_before.png", "render_after.png", "drift.png"):
        assert (export / name).is_file(), name


def test_spoiled_demo_scene_is_repaired_by_settle(desk_copy):
    scene_dir, export = desk_copy
    scene = load_scene(scene_dir)
    mug, jenga = scene.get("mug_1"), scene.get("jenga_2")
    mug.pose = replace(mug.pose, position=tuple(np.add(mug.pose.position, (0.0, 0.0, 0.03))))
    jenga.pose = Pose(tuple(np.add(jenga.pose.position, (0.0, 0.0, -0.01))), jenga.pose.orientation, jenga.pose.scale)
    save_scene(scene, scene_dir)
    export_scene(scene_dir, export)

    before = validate_export(export)
    for sim in (before.pybullet, before.mujoco):  # the lifted mug floats and drifts; the sunk jenga overlaps
        assert {DRIFT, FLOATING} <= set(sim.get("mug_1").codes)
        assert PENETRATION in sim.get("jenga_2").codes
        assert sim.get("jenga_2").penetration_start_m == pytest.approx(0.01, abs=1e-3)
        assert sim.get("duck").stable and sim.get("table").stable

    report, paths = validate_and_report(export, settle=True, scene_dir=scene_dir)
    initial = report.settle
    assert not initial.initially_passed
    assert any("mug_1" in f for f in initial.initial_failures) and any("jenga_2" in f for f in initial.initial_failures)
    moved = {m.id for it in report.settle.iterations for m in it.moves}
    assert {"mug_1", "jenga_2"} <= moved
    assert report.passed, report.failures
    assert report.pybullet.passed and report.mujoco.passed
    for oid in ("mug_1", "jenga_2"):
        assert abs(_bottom(scene_dir, oid) - TABLE_TOP) < 0.002, oid
    md = paths.markdown.read_text()
    assert "## Placement repair (--settle)" in md and "mug_1" in md
    first = json.loads(paths.json.read_text())["settle"]["iterations"][0]
    assert set(first["failing_before"]) >= {"mug_1", "jenga_2"}

