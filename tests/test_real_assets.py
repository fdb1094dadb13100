"""Real assets as other tools write them: a tabletop (pybullet_data's table and mug,
scene-synthesizer's bowl) written Y-up and in centimetres, as a GLB with one node per object
and as a folder of OBJ files with their MTL and texture. The front door must stand it right
side up (``--up auto`` and ``--up y``), in metres with ``--units cm`` (and name that fix when
it is missing), with plausible masses after export and with its colours; single STL / PLY /
OBJ+MTL files keep theirs; bad units, scales and a 40 km mesh fail naming the file and the
value, leaving nothing behind; an exported GLB imports back to the same poses."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trimesh

from exporters.config import ExportConfig
from exporters.export import export_scene
from exporters.materials import MATERIALS, PLAUSIBLE_MARGIN
from hiscene_sim import cli
from hiscene_sim.importer import import_scene
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.inputs import read_scene_input
from hiscene_sim.pybullet_assets import asset_mesh, placement
from hiscene_sim.rotations import rotation_angle_deg
from hiscene_sim.scene import SceneError, load_scene
from hiscene_sim.up_axis import DIRECTIONS, Geometry, guess_up, rotation_to_z_up

TABLE_TOP_Z = 0.625
Z_TO_Y = rotation_to_z_up("+Y").T  # a Z-up world as a Y-up file: z -> y, y -> -z
CM = 100.0  # file units per metre
RED = (255, 51, 51, 255)


@dataclass
class Tabletop:
    world: dict[str, trimesh.Trimesh]  # node -> ground truth in metres, +Z up
    glb: Path  # one node per object, Y-up, cm
    obj_dir: Path  # one OBJ (+ MTL, texture) per object, Y-up, cm


def _bowl() -> trimesh.Trimesh:
    from scene_synthesizer.procedural_assets import BowlAsset

    bowl = BowlAsset(width=0.16, height=0.06).mesh()
    return trimesh.Trimesh(bowl.vertices, bowl.faces, process=False)


def _to_file(matrix: np.ndarray) -> np.ndarray:
    """A transform of the Z-up metre world as the Y-up centimetre file writes it."""
    out = np.eye(4)
    out[:3, :3] = Z_TO_Y @ matrix[:3, :3] @ Z_TO_Y.T
    out[:3, 3] = CM * (Z_TO_Y @ matrix[:3, 3])
    return out


def _file_geometry(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Geometry as a Y-up, centimetre exporter bakes it."""
    out = mesh.copy()
    turn = np.eye(4)
    turn[:3, :3] = CM * Z_TO_Y
    return out.apply_transform(turn)


def _write_obj(mesh: trimesh.Trimesh, path: Path, kd: tuple[float, float, float] | None = None) -> None:
    if kd is not None:  # a plain mesh with a material colour, as modelling tools write it
        path.with_suffix(".mtl").write_text(f"newmtl paint\nKd {kd[0]} {kd[1]} {kd[2]}\n")
        lines = [f"mtllib {path.stem}.mtl", f"o {path.stem}", "usemtl paint"]
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
        path.write_text("\n".join(lines) + "\n")
        return
    text, files = trimesh.exchange.obj.export_obj(mesh, return_texture=True, mtl_name=f"{path.stem}.mtl")
    path.write_text(text)
    for name, data in files.items():
        (path.parent / name).write_bytes(data)


@pytest.fixture(scope="module")
def tabletop(tmp_path_factory) -> Tabletop:
    root = tmp_path_factory.mktemp("tabletop")
    table, _ = asset_mesh("table")  # textured
    mug, mug_scale = asset_mesh("mug")  # red vertex colours
    bowl = _bowl()
    placed = {
        "table": (table, np.eye(4)),
        "mug_1": (mug, placement(mug, mug_scale, 0.35, 0.2, 0.6, TABLE_TOP_Z)),
        "bowl": (bowl, placement(bowl, (1, 1, 1), -0.3, -0.15, 0.0, TABLE_TOP_Z)),
    }
    world = {name: mesh.copy().apply_transform(matrix) for name, (mesh, matrix) in placed.items()}
    scene = trimesh.Scene()
    for name, (mesh, matrix) in placed.items():
        local = _file_geometry(mesh)
        if name == "bowl":
            local.visual = trimesh.visual.ColorVisuals(local, vertex_colors=np.tile((40, 90, 230, 255), (len(local.vertices), 1)))
        scene.add_geometry(local, node_name=name, geom_name=name, transform=_to_file(matrix))
    glb = root / "tabletop_yup_cm.glb"
    glb.write_bytes(scene.export(file_type="glb"))
    obj_dir = root / "tabletop_obj"
    obj_dir.mkdir()
    _write_obj(_file_geometry(world["table"]), obj_dir / "table.obj")
    _write_obj(_file_geometry(world["mug_1"]), obj_dir / "mug.obj")
    _write_obj(_file_geometry(world["bowl"]), obj_dir / "bowl.obj", kd=(0.15, 0.35, 0.9))
    return Tabletop(world, glb, obj_dir)


def _world(scene_dir: Path, oid: str) -> trimesh.Trimesh:
    obj = load_scene(scene_dir).get(oid)
    return trimesh.load(scene_dir / obj.mesh, force="mesh", process=False).apply_transform(obj.pose.matrix())


def _assert_right_side_up(scene_dir: Path, truth: dict[str, trimesh.Trimesh], ids: dict[str, str]) -> None:
    table = _world(scene_dir, ids["table"])
    up = table.face_normals[:, 2] > 0.999
    top = up & (table.triangles_center[:, 2] > table.bounds[1, 2] - 1e-3)
    assert table.area_faces[top].sum() == pytest.approx(1.5, rel=0.02)  # the 1.5 x 1.0 m top faces up, at the top
    assert table.bounds[1, 2] == pytest.approx(TABLE_TOP_Z, abs=1e-3) and table.bounds[0, 2] == pytest.approx(0, abs=1e-3)
    feet = table.vertices[table.vertices[:, 2] < 0.01]
    assert len(feet) and np.all(np.abs(feet[:, :2]) <= table.bounds[1, :2] + 1e-6)  # legs under the top
    mug = _world(scene_dir, ids["mug_1"])
    assert mug.bounds[0, 2] == pytest.approx(TABLE_TOP_Z, abs=1e-3)  # stands on the table
    assert mug.bounds[1, 2] - mug.bounds[0, 2] == pytest.approx(0.1, abs=2e-3)  # upright: 10 cm tall
    for name, oid in ids.items():  # every vertex where it belongs, to 1 mm
        got = _world(scene_dir, oid)
        np.testing.assert_allclose(got.bounds, truth[name].bounds, atol=1e-3, err_msg=name)


# ------------------------------------------------------------------------------ up axis and units
@pytest.mark.parametrize("up", ["auto", "y"])
def test_yup_centimetre_glb_imports_right_side_up_in_metres(tabletop, tmp_path, up, caplog):
    caplog.set_level(logging.INFO)
    result = import_scene(tabletop.glb, tmp_path / "scene", InputFrame(up=up, units="cm"))
    assert result.warnings == []
    _assert_right_side_up(tmp_path / "scene", tabletop.world, {"table": "table", "mug_1": "mug_1", "bowl": "bowl"})
    frame = load_scene(tmp_path / "scene").provenance[0].parameters["frame"]
    assert frame["up"] == "+Y" and frame["units"] == "cm" and frame["metres_per_unit"] == pytest.approx(0.01)
    assert frame["reason"].startswith("auto" if up == "auto" else "given")
    assert any("+Y up -> +Z" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


@pytest.mark.parametrize("up", ["auto", "y"])
def test_yup_centimetre_obj_folder_imports_right_side_up_with_colours(tabletop, tmp_path, up):
    result = import_scene(tabletop.obj_dir, tmp_path / "scene", InputFrame(up=up, units="cm"))
    assert sorted(o.label for o in result.scene.objects) == ["bowl", "mug", "table"]
    ids = {o.label: o.id for o in result.scene.objects}
    _assert_right_side_up(tmp_path / "scene", tabletop.world, {"table": ids["table"], "mug_1": ids["mug"], "bowl": ids["bowl"]})
    table = trimesh.load(tmp_path / "scene" / "meshes" / f"{ids['table']}.glb", force="mesh")
    assert table.visual.kind == "texture" and table.visual.material.baseColorTexture is not None
    mug = trimesh.load(tmp_path / "scene" / "meshes" / f"{ids['mug']}.glb", force="mesh")
    assert mug.visual.kind == "vertex" and np.allclose(mug.visual.vertex_colors[0], RED, atol=1)
    bowl = trimesh.load(tmp_path / "scene" / "meshes" / f"{ids['bowl']}.glb", force="mesh")
    assert np.allclose(bowl.visual.material.baseColorFactor, (38, 89, 230, 255), atol=2)


def test_a_floor_file_in_a_folder_becomes_background(tabletop, tmp_path):
    folder = tmp_path / "room"
    folder.mkdir()
    for f in tabletop.obj_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    _file_geometry(trimesh.creation.box((3, 3, 0.02)).apply_translation((0, 0, -0.01))).export(folder / "floor_1.stl")
    result = import_scene(folder, tmp_path / "scene", InputFrame(units="cm"))
    assert [o.label for o in result.scene.background] == ["floor"] and len(result.scene.objects) == 3
    assert load_scene(tmp_path / "scene").provenance[0].parameters["frame"]["up"] == "+Y"


@pytest.mark.parametrize("up", list(DIRECTIONS))
def test_auto_finds_the_tabletop_up_whichever_axis_it_was_written_with(tabletop, up):
    turn = rotation_to_z_up(up).T  # the Z-up world as a file with `up` up
    parts = [Geometry(m.vertices @ turn.T, m.faces) for m in tabletop.world.values()]
    merged = trimesh.util.concatenate(list(tabletop.world.values()))
    assert guess_up(Geometry(merged.vertices @ turn.T, merged.faces), parts).direction == up
    # a lone mug stands both ways up along its axis: the format's usual axis when it stands on it
    mug = parts[list(tabletop.world).index("mug_1")]
    if up in ("+Y", "+Z"):
        assert guess_up(mug, [mug], ("+Z", "+Y")).direction == up


def test_without_units_the_warning_names_the_fix(tabletop, tmp_path, caplog):
    result = import_scene(tabletop.glb, tmp_path / "scene", InputFrame(up="y"))
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert "mug_1 is 11 m across; a mug is 0.07-0.15 m" in warning and "table is 150 m across" in warning
    assert "--units cm?" in warning and "3 of 3 labelled objects" in warning
    assert any(r.levelno == logging.WARNING and "--units cm?" in r.getMessage() for r in caplog.records)
    # centimetres read as millimetres: the same unit is the fix; a factor no unit gives is a --scale
    result = import_scene(tabletop.glb, tmp_path / "scene2", InputFrame(up="y", units="mm"))
    assert "mug_1 is 0.011 m across" in result.warnings[0] and "--units cm? (x10 would make" in result.warnings[0]
    result = import_scene(tabletop.glb, tmp_path / "scene3", InputFrame(up="y", scale=1e-4))
    assert "(read as m x 0.0001)" in result.warnings[0] and "--scale 0.01? (x100 would make" in result.warnings[0]


def test_cli_prints_the_frame_and_the_warning(tabletop, tmp_path):
    out = subprocess.run([sys.executable, "-m", "hiscene_sim", "import", str(tabletop.glb), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "frame: file +Y up -> +Z" in out.stdout
    assert any(line.startswith("warning: ") and "--units cm?" in line for line in out.stdout.splitlines())


def test_unlabelled_scene_size_is_checked(tmp_path):
    box = trimesh.creation.box((0.8, 0.5, 0.4))
    box.export(tmp_path / "thing.ply")
    mesh = read_scene_input(tmp_path / "thing.ply", "parse", InputFrame(units="mm"))
    assert "the scene is 0.0008 m across" in mesh.frame.warnings[0] and "--units m?" in mesh.frame.warnings[0]
    assert read_scene_input(tmp_path / "thing.ply", "parse").frame.warnings == []


def test_parse_input_and_gaussians_are_turned_up(tabletop, tmp_path):
    """A fused Y-up file for parsing, and 3D Gaussians (centres, scales and rotations) as a splat."""
    from hiscene_sim.render.gaussians import Gaussians, save_3dgs_ply

    fused = trimesh.util.concatenate([_file_geometry(m) for m in tabletop.world.values()])
    fused.export(tmp_path / "fused.glb")
    source = read_scene_input(tmp_path / "fused.glb", "parse", InputFrame(units="cm"))
    assert source.frame.up == "+Y"
    truth = trimesh.util.concatenate(list(tabletop.world.values()))
    np.testing.assert_allclose(source.mesh.bounds, truth.bounds, atol=1e-3)

    points, _ = trimesh.sample.sample_surface(truth, 3000, seed=0)
    n = len(points)
    rotations = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    scales = np.tile([0.004, 0.002, 0.001], (n, 1))
    file_points = points @ Z_TO_Y.T * CM
    save_3dgs_ply(Gaussians(file_points, scales * CM, rotations, np.full(n, 0.9), np.full((n, 3), 0.5)), tmp_path / "splat.ply")
    splat = read_scene_input(tmp_path / "splat.ply", "parse", InputFrame(units="cm"))
    assert splat.frame.up == "+Y"
    np.testing.assert_allclose(splat.gaussians.means, points, atol=1e-4)
    np.testing.assert_allclose(splat.gaussians.scales, scales, rtol=1e-4)
    # the Gaussians' local axes turn with the scene: the file's (identity) frame is Y-up
    np.testing.assert_allclose(splat.gaussians.rotation_matrices()[0], rotation_to_z_up("+Y"), atol=1e-5)


# ------------------------------------------------------------------------------ single files keep their colours
@pytest.mark.parametrize("fmt", ["ply", "stl", "obj"])
def test_single_mesh_files_import_with_their_colours(tabletop, tmp_path, fmt):
    mug = trimesh.Trimesh(tabletop.world["mug_1"].vertices, tabletop.world["mug_1"].faces, process=False)
    mug.apply_translation((0, 0, -TABLE_TOP_Z))
    local = _file_geometry(mug)
    path = tmp_path / f"mug.{fmt}"
    if fmt == "ply":
        local.visual = trimesh.visual.ColorVisuals(local, vertex_colors=np.tile(RED, (len(local.vertices), 1)))
        local.export(path)
    elif fmt == "stl":
        local.export(path)  # STL carries no colour
    else:
        _write_obj(local, path, kd=(1.0, 0.2, 0.2))
    result = import_scene(path, tmp_path / "scene", InputFrame(units="cm"))
    assert [o.label for o in result.scene.objects] == ["mug"] and result.warnings == []
    assert load_scene(tmp_path / "scene").provenance[0].parameters["frame"]["up"] == "+Y"
    got = _world(tmp_path / "scene", result.scene.objects[0].id)
    np.testing.assert_allclose(got.bounds, mug.bounds, atol=1e-3)  # standing, in metres
    saved = trimesh.load(tmp_path / "scene" / result.scene.objects[0].mesh, force="mesh")
    if fmt == "ply":
        assert saved.visual.kind == "vertex" and np.allclose(saved.visual.vertex_colors[0], RED)
    elif fmt == "obj":
        assert np.allclose(saved.visual.material.baseColorFactor, (255, 51, 51, 255), atol=1)


# ------------------------------------------------------------------------------ bad input
@pytest.fixture
def quiet_cli(monkeypatch):
    monkeypatch.setattr(cli, "_setup_logging", lambda verbosity: None)  # keep pytest's logging as it is
    return cli.main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "0"], "--scale must be a positive finite number, got 0.0"),
        (["--scale", "-2"], "--scale must be a positive finite number, got -2.0"),
        (["--scale", "nan"], "--scale must be a positive finite number, got nan"),
        (["--units", "furlong"], "unknown unit 'furlong'"),
        (["--scale", "100"], "the scene is 1.5e+04 m across (read as m x 100): over 10 km"),
    ],
)
def test_bad_units_and_scales_fail_naming_the_file_and_leave_nothing(tabletop, tmp_path, quiet_cli, capsys, args, message):
    out = tmp_path / "scene"
    assert quiet_cli(["import", str(tabletop.glb), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hiscene import: error: ") and str(tabletop.glb) in err and message in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_40_km_mesh_fails_and_a_nan_mesh_fails(tmp_path, quiet_cli, capsys):
    trimesh.creation.box((40_000, 300, 10)).export(tmp_path / "huge.ply")
    assert quiet_cli(["parse", str(tmp_path / "huge.ply"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "huge.ply: the scene is 4e+04 m across" in err and "--units mm" in err and not (tmp_path / "out").exists()
    nan = trimesh.creation.box()
    nan.vertices[:] = np.nan
    (tmp_path / "nan.ply").write_bytes(trimesh.exchange.ply.export_ply(nan))
    with pytest.raises(SceneError, match=r"nan.ply: the scene has no finite size"):
        import_scene(tmp_path / "nan.ply", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_frame_options_reach_generate_and_batch():
    parser = cli.build_parser()
    for argv in (["generate", "--from-scene", "x.glb", "--out", "o"], ["batch", "in.txt", "--out", "o"]):
        args = parser.parse_args([*argv, "--up", "y", "--units", "in", "--scale", "2"])
        frame = cli.input_frame_from_args(args)
        assert frame == InputFrame("y", "in", 2.0) and frame.metres_per_unit == pytest.approx(0.0508)


# ------------------------------------------------------------------------------ export: masses and the round trip
@pytest.fixture(scope="module")
def exported(tabletop, tmp_path_factory):
    root = tmp_path_factory.mktemp("exported")
    import_scene(tabletop.glb, root / "scene", InputFrame(units="cm"))
    export_scene(root / "scene", root / "export", ExportConfig(formats=("urdf", "glb"), workers=1))
    return root / "scene", root / "export"


def test_masses_are_plausible_after_export(exported):
    _, export_dir = exported
    manifest = json.loads((export_dir / "export.json").read_text())
    for rec in manifest["objects"]:
        lo, hi = MATERIALS[rec["material_key"]].mass_kg
        assert lo / PLAUSIBLE_MARGIN <= rec["mass"] <= hi * PLAUSIBLE_MARGIN, rec["id"]
        assert not [w for w in rec["warnings"] if "across" in w or "weighs" in w], rec["warnings"]
    masses = {rec["label"]: rec["mass"] for rec in manifest["objects"]}
    assert 10 <= masses["table"] <= 80 and 0.15 <= masses["bowl"] <= 1.2


def _assert_same_poses(scene_dir: Path, reimported: Path) -> None:
    before, after = load_scene(scene_dir), load_scene(reimported)
    assert sorted(o.id for o in after.all_objects()) == sorted(o.id for o in before.all_objects())
    for obj in before.all_objects():
        again = after.get(obj.id)
        np.testing.assert_allclose(again.pose.position, obj.pose.position, atol=1e-3, err_msg=obj.id)
        assert rotation_angle_deg(again.pose.orientation, obj.pose.orientation) < 0.1, obj.id


def test_exported_glb_imports_back_to_the_same_poses(exported, tmp_path):
    scene_dir, export_dir = exported
    import_scene(export_dir / "scene.glb", tmp_path / "again")  # --up auto, metres
    _assert_same_poses(scene_dir, tmp_path / "again")


def test_exported_glb_is_y_up_as_the_gltf_spec_says(exported, tmp_path):
    scene_dir, export_dir = exported
    import_scene(export_dir / "scene.glb", tmp_path / "again", InputFrame(up="y"))
    _assert_same_poses(scene_dir, tmp_path / "again")


def test_the_real_asset_tabletop_validates_on_the_ground_plane(tabletop, tmp_path):
    """No floor in the file: the export adds a ground plane under it, and the table with its mug
    and bowl stands still on it in PyBullet and MuJoCo."""
    from physics.validate import validate_export

    import_scene(tabletop.glb, tmp_path / "scene", InputFrame(units="cm"))
    export_scene(tmp_path / "scene", tmp_path / "export", ExportConfig(formats=("urdf", "mjcf"), workers=1))
    ground = json.loads((tmp_path / "export" / "export.json").read_text())["ground"]
    assert ground["added"] and ground["z"] == pytest.approx(0.0, abs=2e-3)
    report = validate_export(tmp_path / "export")
    assert report.passed, report.failures
