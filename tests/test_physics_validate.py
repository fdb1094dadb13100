"""Physical plausibility (``hiscene validate``) on small scenes built from pybullet_data meshes
(cube, jenga, duck, mug on a floor): a resting scene passes; a lifted, an overlapping, a sunk
and a tipping object are flagged; ``--settle`` repairs them; the report matches its JSON.

Positions written by the repair are checked independently of the physics package, from the
scene dir's own meshes and poses (trimesh)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pybullet as p
import pytest
import trimesh
from PIL import Image

from exporters.config import ExportConfig
from exporters.export import export_scene
from hiscene_sim.scene import SceneError, load_scene
from hiscene_sim.testing.physics_scenes import Placement, build_scene
from physics.bullet import BulletWorld
from physics.commands import add_validate_parser
from physics.config import PYBULLET_HULL_MARGIN, ValidationConfig
from physics.manifest import read_manifest
from physics.report import validate_and_report
from physics.results import BELOW_FLOOR, DRIFT, FELL_THROUGH_FLOOR, FLOATING, PENETRATION, ROTATION
from physics.settle import settle_scene
from physics.validate import validate_export

QUICK = ExportConfig(formats=("urdf", "mjcf"), workers=1)  # what validation reads; no process pool


def make(root: Path, placements: list[Placement]) -> tuple[Path, Path]:
    build_scene(root / "scene", placements)
    export_scene(root / "scene", root / "export", QUICK)
    return root / "scene", root / "export"


def world_z(scene_dir: Path, object_id: str) -> tuple[float, float]:
    """(bottom, top) z of an object's mesh at its scene.json pose: independent of physics/."""
    obj = load_scene(scene_dir).get(object_id)
    mesh = trimesh.load(scene_dir / obj.mesh, force="mesh")
    mesh.apply_transform(obj.pose.matrix())
    return float(mesh.bounds[0][2]), float(mesh.bounds[1][2])


def world_bounds(scene_dir: Path, object_id: str) -> np.ndarray:
    obj = load_scene(scene_dir).get(object_id)
    mesh = trimesh.load(scene_dir / obj.mesh, force="mesh")
    mesh.apply_transform(obj.pose.matrix())
    return np.asarray(mesh.bounds)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="hiscene")
    add_validate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


RESTING = [
    Placement("cube_1", "cube", (0.0, 0.0)),
    Placement("jenga_1", "jenga", (0.25, 0.0), (0.0, 0.0, 30.0)),
    Placement("cube_2", "cube", (0.25, 0.0), on="jenga_1"),
    Placement("duck_1", "duck", (-0.25, 0.1), (0.0, 0.0, 45.0)),
    Placement("mug_1", "mug", (0.0, 0.25)),
]


@pytest.fixture(scope="module")
def resting(tmp_path_factory) -> tuple[Path, Path]:
    return make(tmp_path_factory.mktemp("resting"), RESTING)


def test_pybullet_pads_hulls_by_the_margin_we_correct_for(tmp_path):
    """Two exported cubes that touch exactly: PyBullet says 2 margins deep, we say 0."""
    _, export = make(tmp_path, [Placement("cube_1", "cube")])
    manifest = read_manifest(export)
    with BulletWorld(manifest, ValidationConfig()) as world:
        raw = p.getClosestPoints(world.bodies["cube_1"], world.bodies["floor"], 0.01, physicsClientId=world.cid)
        assert min(pt[8] for pt in raw) == pytest.approx(-2 * PYBULLET_HULL_MARGIN, abs=1e-6)
        states, pairs = world.states()
    assert states["cube_1"].penetration_m == pytest.approx(0.0, abs=1e-6)
    assert states["cube_1"].support == ("floor",) and pairs == []


def test_resting_scene_passes_in_pybullet_and_mujoco(resting):
    _, export = resting
    report = validate_export(export)
    assert report.passed, report.failures
    for sim in (report.pybullet, report.mujoco):
        assert sim.n_objects == 5 and sim.stable_share == 1.0
        assert sim.penetrating_pairs_start == [] and sim.settle_time_s is not None and sim.settle_time_s < 1.0
        for o in sim.objects:
            assert o.issues == [], (sim.simulator, o.id, o.issues)
            assert o.drift_m < 0.005 and o.rotation_deg < 1.0, (sim.simulator, o.id)
            assert o.linear_speed < 0.01
        assert sim.get("cube_2").support_start == ["jenga_1"] == sim.get("cube_2").support_rest
        assert sim.get("mug_1").support_start == ["floor"]
    assert report.agreement.agree and report.agreement.max_position_difference_m < 0.01
    # deterministic: the same numbers twice
    again = validate_export(export)
    assert [asdict(o) for o in again.pybullet.objects] == [asdict(o) for o in report.pybullet.objects]
    assert [asdict(o) for o in again.mujoco.objects] == [asdict(o) for o in report.mujoco.objects]


def test_lifted_object_is_flagged_and_settle_puts_it_down(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("jenga_1", "jenga", (0.25, 0.0)),
        Placement("cube_2", "cube", (0.25, 0.0), on="jenga_1", lift=0.03),
    ])
    before = {o.id: o.pose for o in load_scene(scene).objects}
    report = validate_export(export)
    assert not report.passed
    for sim in (report.pybullet, report.mujoco):
        lifted = sim.get("cube_2")
        assert {DRIFT, FLOATING} <= set(lifted.codes) and not lifted.stable
        assert lifted.gap_below_start_m == pytest.approx(0.03, abs=1e-4)
        assert lifted.drift_m > 0.02
        assert sim.get("cube_1").stable and sim.get("jenga_1").stable

    initial, final = settle_scene(export, scene, export_config=QUICK)
    assert not initial.passed and final.passed, final.failures
    assert final.mujoco.passed and final.settle.unresolved == []
    assert [m.id for it in final.settle.iterations for m in it.moves] == ["cube_2"]
    gap = world_z(scene, "cube_2")[0] - world_z(scene, "jenga_1")[1]
    assert -0.0005 < gap < 0.002, f"cube_2 rests {gap * 1000:.2f} mm above the jenga"
    after = load_scene(scene)
    for oid in ("cube_1", "jenga_1"):  # untouched objects keep their poses exactly
        assert after.get(oid).pose == before[oid]
    assert after.provenance[-1].stage == "settle"
    assert read_manifest(export).get("cube_2").position[2] == pytest.approx(after.get("cube_2").pose.position[2])


def test_overlapping_objects_are_flagged_and_separated(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("cube_2", "cube", (0.03, 0.0)),  # 5 cm cubes 3 cm apart: 2 cm overlap
    ])
    report = validate_export(export)
    assert not report.passed
    for sim in (report.pybullet, report.mujoco):
        assert len(sim.penetrating_pairs_start) == 1
        pair = sim.penetrating_pairs_start[0]
        assert (pair.a, pair.b) == ("cube_1", "cube_2") and pair.depth_m == pytest.approx(0.02, abs=5e-4)
        assert all(PENETRATION in o.codes for o in sim.objects)
    assert any("interpenetrate" in f for f in report.failures)

    _, final = settle_scene(export, scene, export_config=QUICK)
    assert final.passed, final.failures
    assert final.pybullet.penetrating_pairs_start == [] == final.mujoco.penetrating_pairs_start
    a, b = world_bounds(scene, "cube_1"), world_bounds(scene, "cube_2")
    assert b[0][0] - a[1][0] > -0.0005  # separated along x, the minimal direction
    assert abs(a[0][2]) < 0.002 and abs(b[0][2]) < 0.002  # both still on the floor


def test_object_below_the_floor_is_flagged(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("under", "cube", (0.25, 0.0), z=-0.2),  # entirely under the floor
        Placement("sunk", "cube", (-0.25, 0.0), lift=-0.03),  # 3 cm into it
    ])
    report = validate_export(export)
    assert not report.passed
    for sim in (report.pybullet, report.mujoco):
        under, sunk = sim.get("under"), sim.get("sunk")
        assert {BELOW_FLOOR, FELL_THROUGH_FLOOR} <= set(under.codes) and not under.stable
        assert {BELOW_FLOOR, PENETRATION} <= set(sunk.codes)
        assert sunk.penetration_start_m == pytest.approx(0.03, abs=5e-4)
        assert sim.get("cube_1").issues == []
    assert any("below the floor" in f for f in report.failures)
    assert cli("validate", str(export), "--no-render") == 1

    _, final = settle_scene(export, scene, export_config=QUICK)
    assert final.passed, final.failures
    for oid in ("under", "sunk"):
        assert -0.0005 < world_z(scene, oid)[0] < 0.002


def test_tall_thin_object_that_tips_is_flagged(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("pole", "cube", (0.3, 0.0), (15.0, 0.0, 0.0), scale=(0.02, 0.02, 0.3)),  # 2 x 2 x 30 cm, 15 deg
    ])
    report = validate_export(export)
    assert not report.passed
    for sim in (report.pybullet, report.mujoco):
        pole = sim.get("pole")
        assert {DRIFT, ROTATION} <= set(pole.codes) and not pole.stable
        assert pole.rotation_deg > 45.0
        assert pole.support_start == ["floor"] and not pole.floating  # it was standing, then fell
        assert sim.get("cube_1").stable and sim.stable_share == 0.5

    _, final = settle_scene(export, scene, export_config=QUICK)
    assert final.passed, final.failures
    bottom, top = world_z(scene, "pole")
    assert -0.0005 < bottom < 0.002 and top < 0.03  # lying on the floor


def test_report_files_exist_and_match_validation_json(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("cube_2", "cube", (0.2, 0.0), lift=0.03),
    ])
    report, paths = validate_and_report(export, report_dir=tmp_path / "report")
    assert not report.passed
    for path in (paths.json, paths.markdown, *paths.images.values()):
        assert path.is_file() and path.stat().st_size > 0, path
    cfg = ValidationConfig()
    for name in ("before", "after"):
        with Image.open(paths.images[name]) as img:
            assert img.size == (cfg.render_width, cfg.render_height)
            assert len(np.unique(np.asarray(img.convert("L")))) > 10  # a picture, not a blank
    with Image.open(paths.images["drift"]) as img:
        assert img.format == "PNG"

    data = json.loads(paths.json.read_text())
    assert data["verdict"] == "FAIL" and data["passed"] is False
    assert data["images"] == {"before": "render_before.png", "after": "render_after.png", "drift": "drift.png"}
    md = paths.markdown.read_text()
    assert "**Verdict: FAIL**" in md
    for failure in data["failures"]:
        assert failure in md

    def table(title: str) -> list[dict[str, str]]:
        block = md.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
        header = [c.strip() for c in block[0].strip("|").split("|")]
        return [dict(zip(header, (c.strip() for c in row.strip("|").split("|")))) for row in block[2:]]

    def close(cell: str, value: float | None, scale: float = 1.0, digits: int = 2) -> None:
        if value is None:
            assert cell == "-"
        else:
            assert float(cell) == pytest.approx(value * scale, abs=0.51 * 10 ** -digits), (cell, value)

    for title, key in (("PyBullet objects", "pybullet"), ("MuJoCo objects", "mujoco")):
        rows = {r["id"]: r for r in table(title)}
        assert sorted(rows) == sorted(o["id"] for o in data[key]["objects"])
        for o in data[key]["objects"]:
            row = rows[o["id"]]
            close(row["drift (mm)"], o["drift_m"], 1000)
            close(row["contact offset (mm)"], o["contact_offset_m"], 1000)
            close(row["rotation (deg)"], o["rotation_deg"])
            close(row["penetration t=0 (mm)"], o["penetration_start_m"], 1000)
            close(row["gap below t=0 (mm)"], o["gap_below_start_m"], 1000)
            close(row["speed (m/s)"], o["linear_speed"], 1, 4)
            close(row["settle (s)"], o["settle_time_s"], 1, 3)
            assert row["stable"] == ("yes" if o["stable"] else "no")
            assert row["issues"] == (", ".join(i["code"] for i in o["issues"]) or "-")
    scene_rows = {r["simulator"]: r for r in table("Scene")}
    for name, key in (("PyBullet", "pybullet"), ("MuJoCo", "mujoco")):
        sim = data[key]
        assert int(scene_rows[name]["stable"]) == sim["n_stable"]
        close(scene_rows[name]["stable share"], sim["stable_share"], 1, 3)
        assert int(scene_rows[name]["collision pairs at t=0"]) == len(sim["penetrating_pairs_start"])
        close(scene_rows[name]["time to settle (s)"], sim["settle_time_s"], 1, 3)
        assert scene_rows[name]["verdict"] == ("PASS" if sim["passed"] else "FAIL")
    for row in table("PyBullet vs MuJoCo"):
        rec = next(r for r in data["agreement"]["objects"] if r["id"] == row["id"])
        close(row["motion difference (mm)"], rec["position_difference_m"], 1000)
        close(row["rest distance (mm)"], rec["rest_distance_m"], 1000)
        close(row["rotation difference (deg)"], rec["rotation_difference_deg"])
    for image in data["images"].values():
        assert f"]({image})" in md


def test_cli_exit_status_json_and_settle(resting, tmp_path, capsys):
    _, export = resting
    assert cli("validate", str(export), "--json", "--no-render", "--report-dir", str(tmp_path / "r1")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "PASS" and out["pybullet"]["n_objects"] == 5
    assert (tmp_path / "r1" / "validation.json").is_file()

    root = tmp_path / "lifted"
    scene, lifted = make(root, [Placement("cube_1", "cube"), Placement("cube_2", "cube", (0.2, 0.0), lift=0.03)])
    assert cli("validate", str(lifted), "--no-mujoco", "--no-render") == 1
    summary = capsys.readouterr().out
    assert "FAIL" in summary and "cube_2" in summary and str(lifted / "validation.md") in summary
    # --settle finds the scene dir through export.json's source
    assert cli("validate", str(lifted), "--settle", "--no-render", "--max-drift-cm", "1", "--seconds", "1") == 0
    data = json.loads((lifted / "validation.json").read_text())
    assert data["settle"]["passed"] and data["settle"]["scene_dir"] == str(scene.resolve())
    assert data["mujoco"]["passed"]
    capsys.readouterr()
    # a looser limit lets the lifted drop pass the drift test (the floating check still fails it)
    shutil.rmtree(root)
    scene, lifted = make(root, [Placement("cube_1", "cube"), Placement("cube_2", "cube", (0.2, 0.0), lift=0.03)])
    assert cli("validate", str(lifted), "--no-render", "--max-drift-cm", "5", "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert [i["code"] for i in out["pybullet"]["objects"][1]["issues"]] == [FLOATING]


def test_errors_raise(tmp_path):
    with pytest.raises(SceneError, match="export.json"):
        cli("validate", str(tmp_path), "--no-render")
    with pytest.raises(ValueError):
        ValidationConfig(max_drift_m=0)
    with pytest.raises(ValueError):
        ValidationConfig(seconds=float("nan"))


def test_export_config_is_recovered_from_the_manifest(tmp_path):
    build_scene(tmp_path / "scene", [Placement("cube_1", "cube")])
    config = ExportConfig(formats=("urdf", "mjcf"), workers=1, densities={"cube": 1234.0}, dynamic_friction=0.5)
    export_scene(tmp_path / "scene", tmp_path / "export", config)
    recovered = read_manifest(tmp_path / "export").export_config()
    assert recovered.formats == ("urdf", "mjcf")
    assert recovered.densities == {"cube": 1234.0}
    assert recovered.dynamic_friction == 0.5 and recovered.collision == config.collision


def test_report_numbers_use_no_negative_zero(resting, tmp_path):
    _, export = resting
    _, paths = validate_and_report(export, ValidationConfig(render=False, mujoco=False), report_dir=tmp_path)
    md = paths.markdown.read_text()
    assert not re.search(r"\| -0\.0+ \|", md)
    assert "MuJoCo cross-check skipped" in md


def test_settle_says_which_objects_it_cannot_fix(tmp_path):
    scene, export = make(tmp_path, [
        Placement("cube_1", "cube", (0.0, 0.0)),
        Placement("stray", "cube", (3.0, 0.0), z=0.5),  # beyond the 2 m floor: nothing can hold it
    ])
    initial, final = settle_scene(export, scene, export_config=QUICK)
    assert not initial.passed and not final.passed
    unresolved = {u.id: u for u in final.settle.unresolved}
    assert list(unresolved) == ["stray"]
    assert any("fell below the floor" in r for r in unresolved["stray"].reasons)
    assert any(r.startswith("PyBullet:") for r in unresolved["stray"].reasons)
    assert load_scene(scene).get("stray").pose.position == (3.0, 0.0, 0.5)  # not written back


def test_tall_stack_at_rest_passes_despite_pybullet_padding(tmp_path):
    """Six jenga blocks stacked: PyBullet floats each 2 mm on its padded hulls (1.2 cm at the
    top, past the 1 cm limit); the contact offset takes that out, so only real motion counts."""
    blocks = [Placement("block_0", "jenga", (0.0, 0.0))]
    blocks += [Placement(f"block_{i}", "jenga", (0.0, 0.0), (0.0, 0.0, 90.0 * (i % 2)), on=f"block_{i - 1}") for i in range(1, 6)]
    _, export = make(tmp_path, blocks)
    report = validate_export(export)
    assert report.passed, report.failures
    top = report.pybullet.get("block_5")
    assert top.contact_offset_m == pytest.approx(6 * 2 * PYBULLET_HULL_MARGIN, abs=1e-5)
    assert top.rest_position[2] - top.start_position[2] == pytest.approx(0.012, abs=1e-3)  # the padding float
    assert top.drift_m < 0.001 and report.mujoco.get("block_5").drift_m < 0.001
    assert report.agreement.max_position_difference_m < 0.001
