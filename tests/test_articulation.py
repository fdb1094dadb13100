"""Articulated objects (issue 15): URDF in, links and joints through the scene model, out to
URDF / MJCF / USD per link, validated in PyBullet, MuJoCo and usd-core; ``hiscene add``.

Default run: the scene model (v1 files load, articulation checks), every bad-URDF case, the
frame options, one end-to-end cabinet (a URDF with OBJ / STL meshes, no inertials) through
``hiscene import`` -> ``hiscene export`` -> ``hiscene validate``, a flap / wheel / handle asset
for the hold statuses and the continuous and fixed joints, and ``hiscene add`` into a scene.
The scene-synthesizer assets and a parsed scene are in tests/test_articulation_synth.py.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pybullet as p
import pytest
import trimesh
from pxr import Gf, Usd, UsdGeom, UsdPhysics

from exporters.config import ExportConfig
from exporters.export import export_scene
from hiscene_sim.cli import main
from hiscene_sim.importer import import_scene
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.scene import SceneError, load_scene, save_scene
from hiscene_sim.testing.articulated_assets import write_broken_urdfs, write_cabinet_urdf
from hiscene_sim.urdf_import import read_urdf
from physics.config import ValidationConfig
from physics.report import validate_and_report
from tests.usd_checks import usd_compliance_errors

NO_PICTURES = ValidationConfig(render=False)


# ------------------------------------------------------------------------------ scene model
def test_version_1_scene_loads_and_is_saved_as_version_2(tmp_path):
    old = {"format": "hiscene-scene", "version": 1, "name": "old", "units": "meters", "up_axis": "Z",
           "objects": [{"id": "mug_1", "label": "mug", "mesh": "meshes/mug_1.glb",
                        "pose": {"position": [0, 0, 0.1], "orientation": [1, 0, 0, 0], "scale": [1, 1, 1]}}]}
    (tmp_path / "scene.json").write_text(json.dumps(old))
    scene = load_scene(tmp_path, check_files=False)
    assert scene.objects[0].articulation is None and scene.objects[0].files() == ["meshes/mug_1.glb"]
    save_scene(scene, tmp_path)
    data = json.loads((tmp_path / "scene.json").read_text())
    assert data["version"] == 2 and "articulation" not in data["objects"][0]


@pytest.fixture(scope="module")
def cabinet_scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cabinet_scene")
    urdf = write_cabinet_urdf(root / "asset")
    assert main(["import", str(urdf), "--out", str(root / "scene")]) == 0
    return root / "scene"


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a["joints"][0].update(child="nope"), "joint 'drawer_slide': child link 'nope' is not a link"),
    (lambda a: a["joints"][1].update(child="drawer"), "link 'drawer' already has parent joint 'drawer_slide'"),
    (lambda a: a["joints"][1]["limit"].update(lower=3.0), "joint 'door_hinge': lower limit 3 > upper limit"),
    (lambda a: a["joints"][1].update(axis=[0, 0, 2]), "axis [0.0, 0.0, 2.0] must be a unit vector"),
    (lambda a: a["joints"][0].update(damping=-1), "damping must not be negative"),
    (lambda a: a["links"][0].update(mesh="../x.glb"), "must be a relative path inside the scene dir"),
])
def test_scene_json_articulation_errors_name_the_object_and_the_element(cabinet_scene, tmp_path, mutate, message):
    data = json.loads((cabinet_scene / "scene.json").read_text())
    mutate(data["objects"][0]["articulation"])
    (tmp_path / "scene.json").write_text(json.dumps(data))
    with pytest.raises(SceneError, match="objects\\[0\\] \\(id 'cabinet'\\)") as err:
        load_scene(tmp_path, check_files=False)
    assert message in str(err.value)


def test_articulated_object_takes_only_a_uniform_scale(cabinet_scene, tmp_path):
    data = json.loads((cabinet_scene / "scene.json").read_text())
    data["objects"][0]["pose"]["scale"] = [1.0, 2.0, 1.0]
    (tmp_path / "scene.json").write_text(json.dumps(data))
    with pytest.raises(SceneError, match="one positive uniform scale"):
        load_scene(tmp_path, check_files=False)


# ------------------------------------------------------------------------------ URDF in
@pytest.mark.parametrize("case", ["missing_mesh", "unknown_link", "two_parents", "loop", "lower_above_upper", "not_a_number"])
def test_bad_urdf_is_refused_naming_file_and_element_and_nothing_is_written(tmp_path, case, capsys):
    path, fragment = write_broken_urdfs(tmp_path / "in")[case]
    out = tmp_path / "out"
    with pytest.raises(SceneError) as err:
        import_scene(path, out)
    assert str(path) in str(err.value) and fragment in str(err.value), str(err.value)
    assert not out.exists()
    # the CLI says the same and exits 2; `hiscene add` leaves the scene dir as it was
    assert main(["import", str(path), "--out", str(out)]) == 2 and fragment in capsys.readouterr().err
    scene = tmp_path / "scene"
    import_scene(write_cabinet_urdf(tmp_path / "ok"), scene)
    before = sorted(str(f.relative_to(scene)) for f in scene.rglob("*")), (scene / "scene.json").read_bytes()
    assert main(["add", str(scene), str(path), "--at", "2,0"]) == 2
    assert (sorted(str(f.relative_to(scene)) for f in scene.rglob("*")), (scene / "scene.json").read_bytes()) == before


def test_urdf_reader_keeps_joints_and_resolves_package_paths(tmp_path):
    asset = read_urdf(write_cabinet_urdf(tmp_path / "asset"))
    art = asset.articulation
    assert asset.label == "cabinet" and art.root == "carcass" and art.order() == ["carcass", "drawer", "door"]
    slide, hinge = art.joint("drawer_slide"), art.joint("door_hinge")
    assert (slide.type, slide.axis, slide.lower, slide.upper, slide.damping, slide.friction) == \
        ("prismatic", (0.0, -1.0, 0.0), 0.0, pytest.approx(0.32), 1.0, 0.5)
    assert (hinge.type, hinge.axis, hinge.effort, hinge.velocity) == ("revolute", (0.0, 0.0, -1.0), 10.0, 1.5)
    assert hinge.upper == pytest.approx(math.radians(100), abs=1e-5)
    assert all(link.inertial is None for link in art.links)  # estimated at export
    assert len(asset.meshes["door"].faces) > 0  # package://asset/meshes/door.stl found beside the URDF
    assert asset.frame.up == "+Z" and "REP 103" in asset.frame.reason


def test_urdf_names_that_are_not_valid_names_are_renamed_not_refused(tmp_path):
    """URDF names may hold any character ("door-1", "base link"); the tree is checked with them
    as they are and they are renamed for URDF / MJCF / USD afterwards."""
    urdf = write_cabinet_urdf(tmp_path / "asset")
    text = urdf.read_text()
    for old, new in (('"carcass"', '"base link"'), ('"door"', '"door-1"'), ('"door_hinge"', '"hinge.1"')):
        assert old in text
        text = text.replace(old, new)
    urdf.write_text(text)
    art = read_urdf(urdf).articulation
    names = [link.name for link in art.links] + [j.name for j in art.joints]
    assert len(art.links) == 3 and len(art.joints) == 2
    assert all(n.replace("_", "").isalnum() and not n[0].isdigit() for n in names), names


def test_units_scale_and_up_apply_to_links_joints_and_limits(tmp_path):
    urdf = write_cabinet_urdf(tmp_path / "asset")
    base = read_urdf(urdf)
    # the same cabinet as if written in decimetres and Y-up: --units 'cm' x 10 and --up y
    cm = read_urdf(urdf, InputFrame(up="y", units="cm", scale=10.0))
    f = 0.1
    assert cm.articulation.joint("drawer_slide").upper == pytest.approx(f * base.articulation.joint("drawer_slide").upper)
    assert cm.articulation.joint("door_hinge").upper == pytest.approx(base.articulation.joint("door_hinge").upper)
    assert np.allclose(cm.articulation.joint("door_hinge").origin.position,
                       f * np.asarray(base.articulation.joint("door_hinge").origin.position))
    assert np.allclose(cm.meshes["door"].extents, f * base.meshes["door"].extents)
    # +90 deg about X: the file's +Y (here the cabinet's depth axis) becomes +Z
    assert np.allclose(cm.root_pose[:3, :3] @ [0, 1, 0], [0, 0, 1])
    merged = trimesh.transform_points(cm.merged_mesh().vertices, cm.root_pose)
    assert np.ptp(merged[:, 2]) == pytest.approx(f * base.merged_mesh().extents[1], rel=1e-6)


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def cabinet_export(cabinet_scene, tmp_path_factory):
    export = tmp_path_factory.mktemp("cabinet_export") / "export"
    assert main(["export", str(cabinet_scene), "--out", str(export), "--workers", "1"]) == 0
    report, paths = validate_and_report(export, NO_PICTURES)
    return export, report


def test_cabinet_urdf_is_one_robot_with_its_joints(cabinet_export):
    export, _ = cabinet_export
    manifest = json.loads((export / "export.json").read_text())
    record = manifest["objects"][0]
    tree = ET.parse(export / record["files"]["urdf"]).getroot()
    joints = {j.get("name"): j for j in tree.iter("joint")}
    assert [link.get("name") for link in tree.iter("link")] == ["cabinet", "drawer", "door"]
    hinge = joints["door_hinge"]
    assert hinge.get("type") == "revolute" and hinge.find("parent").get("link") == "cabinet"
    assert float(hinge.find("limit").get("upper")) == pytest.approx(math.radians(100), abs=1e-5)
    assert (hinge.find("dynamics").get("damping"), hinge.find("dynamics").get("friction")) == ("0.05", "0.02")
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(export / record["files"]["urdf"]), flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        info = [p.getJointInfo(body, j, physicsClientId=cid) for j in range(p.getNumJoints(body, physicsClientId=cid))]
        assert [(i[1].decode(), i[2]) for i in info] == [("drawer_slide", p.JOINT_PRISMATIC), ("door_hinge", p.JOINT_REVOLUTE)]
        assert info[0][6:10] == pytest.approx((1.0, 0.5, 0.0, 0.32))  # damping, friction, lower, upper
        # masses: no <inertial> in the input, so volume x the cabinet's density (exporters/materials.py)
        links = {link["name"]: link for link in record["articulation"]["links"]}
        for j, name in ((-1, "carcass"), (0, "drawer"), (1, "door")):
            props = links[name]["mass_properties"]
            assert props["density_source"] == "cabinet" and props["mass"] == pytest.approx(props["volume"] * 350, rel=1e-6)
            assert p.getDynamicsInfo(body, j, physicsClientId=cid)[0] == pytest.approx(props["mass"], rel=1e-6)
        assert record["mass"] == pytest.approx(sum(link["mass"] for link in links.values()))
    finally:
        p.disconnect(cid)


def test_cabinet_mjcf_nests_bodies_along_the_joints(cabinet_export):
    export, _ = cabinet_export
    model = mujoco.MjModel.from_xml_path(str(export / "scene.xml"))

    def body(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)

    def joint(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

    root = body("cabinet")
    for link in ("drawer", "door"):
        assert model.body_parentid[body(f"cabinet__{link}")] == root
    slide, hinge = joint("cabinet__drawer_slide"), joint("cabinet__door_hinge")
    assert model.jnt_type[slide] == mujoco.mjtJoint.mjJNT_SLIDE and model.jnt_type[hinge] == mujoco.mjtJoint.mjJNT_HINGE
    assert model.jnt_limited[hinge] and model.jnt_range[hinge] == pytest.approx([0, math.radians(100)], abs=1e-5)
    assert model.jnt_range[slide] == pytest.approx([0, 0.32])
    assert model.dof_damping[model.jnt_dofadr[slide]] == 1.0 and model.dof_frictionloss[model.jnt_dofadr[slide]] == 0.5
    assert model.nexclude == 3  # the three pairs of links do not collide with each other


def test_cabinet_usd_is_an_isaac_articulation(cabinet_export):
    export, report = cabinet_export
    path = export / "scene.usda"
    stage = Usd.Stage.Open(str(path))
    root = stage.GetPrimAtPath("/World/Objects/cabinet")
    assert root.HasAPI(UsdPhysics.ArticulationRootAPI) and not root.HasAPI(UsdPhysics.RigidBodyAPI)
    links = [c for c in root.GetChildren() if c.HasAPI(UsdPhysics.RigidBodyAPI)]
    assert sorted(c.GetName() for c in links) == ["carcass", "door", "drawer"]
    bodies = [prim for prim in stage.Traverse() if prim.HasAPI(UsdPhysics.RigidBodyAPI)]
    for prim in bodies:  # no rigid body nested under another
        assert not any(prim != b and prim.GetPath().HasPrefix(b.GetPath()) for b in bodies)
    hinge = UsdPhysics.RevoluteJoint(stage.GetPrimAtPath("/World/Objects/cabinet/joints/door_hinge"))
    assert [str(t) for t in hinge.GetBody0Rel().GetTargets()] == ["/World/Objects/cabinet/carcass"]
    assert [str(t) for t in hinge.GetBody1Rel().GetTargets()] == ["/World/Objects/cabinet/door"]
    assert hinge.GetAxisAttr().Get() == "X" and hinge.GetUpperLimitAttr().Get() == pytest.approx(100.0, abs=1e-3)
    drive = UsdPhysics.DriveAPI.Get(hinge.GetPrim(), "angular")
    assert drive.GetDampingAttr().Get() == pytest.approx(0.05 * math.pi / 180) and drive.GetStiffnessAttr().Get() == 0
    # the joint frame, carried into the world from both bodies, is one frame, and its X is the URDF axis
    cache = UsdGeom.XformCache()
    rot0 = Gf.Matrix4d().SetRotate(hinge.GetLocalRot0Attr().Get()) * cache.GetLocalToWorldTransform(
        stage.GetPrimAtPath("/World/Objects/cabinet/carcass"))
    assert np.allclose(rot0.TransformDir(Gf.Vec3d(1, 0, 0)), (0, 0, -1), atol=1e-6)
    usd = report.joints.usd
    assert usd.passed and usd.articulations == ["/World/Objects/cabinet"]
    assert all(r.frame_error_m < 1e-6 and r.frame_error_deg < 1e-3 for r in usd.joints)
    assert usd_compliance_errors(path) == []


def test_cabinet_validates_and_its_joints_hold_and_reach_their_limits(cabinet_export):
    export, report = cabinet_export
    assert report.passed, report.failures
    assert report.pybullet.objects[0].stable and report.mujoco.objects[0].stable
    md = (export / "validation.md").read_text()
    assert "## Joints of articulated objects" in md and "door_hinge" in md
    for sim in (report.joints.pybullet, report.joints.mujoco):
        assert {j.joint for j in sim.joints} == {"drawer_slide", "door_hinge"}
        for j in sim.joints:
            print(f"{sim.simulator:8s} {j.joint:12s} hold {j.hold} {j.hold_moved:.2g} {j.unit}; error at lower "
                  f"{j.lower_error:.2g}, at upper {j.upper_error:.2g} {j.unit}; max link {j.max_link_speed:.2f} m/s")
            tol = 2.0 if j.unit == "deg" else 0.005
            assert j.passed and j.hold == "holds" and j.hold_moved < tol
            assert j.lower_error < tol and j.upper_error < tol
            assert j.max_link_speed < 1.0 and j.finite


# ------------------------------------------------------------------------------ holds, free, slips
FLAP_URDF = """<robot name="flaps">
  <link name="base"><visual><geometry><box size="0.6 0.2 0.2"/></geometry></visual></link>
  {flaps}
  <link name="wheel"><visual><origin rpy="1.5708 0 0"/><geometry><cylinder radius="0.08" length="0.02"/></geometry></visual></link>
  <joint name="wheel_axle" type="continuous"><parent link="base"/><child link="wheel"/>
    <origin xyz="0 -0.12 0"/><axis xyz="0 1 0"/><dynamics damping="0.01"/></joint>
  <link name="handle"><visual><geometry><mesh filename="handle.dae"/></geometry></visual></link>
  <joint name="handle_fixed" type="fixed"><parent link="base"/><child link="handle"/><origin xyz="0 0 0.11"/></joint>
</robot>"""
FLAP = """<link name="flap_{i}"><visual><origin xyz="0 0.1 0"/><geometry><box size="0.15 0.2 0.01"/></geometry></visual>
    <inertial><origin xyz="0 0.1 0"/><mass value="0.2"/><inertia ixx="0.0007" iyy="0.0004" izz="0.001" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <joint name="flap_{i}" type="revolute"><parent link="base"/><child link="flap_{i}"/>
    <origin xyz="{x} 0.1 0.105"/><axis xyz="1 0 0"/><limit lower="-1.6" upper="0.5"/><dynamics friction="{friction}"/></joint>"""


def test_hold_reports_free_holds_and_slips_and_drives_continuous_joints(tmp_path):
    """Three horizontal flaps sticking out at zero: gravity pulls each down with 0.2 kg x 9.81 x
    0.1 m = 0.196 N m. Without friction it falls (free: reported, not a failure), with 0.5 N m it
    holds, with 0.05 N m it slips (a failure); the wheel's continuous joint is driven to +-90 deg."""
    flaps = "\n  ".join(FLAP.format(i=i, x=x, friction=f) for i, (x, f) in enumerate(((-0.2, 0.0), (0.0, 0.5), (0.2, 0.05))))
    urdf = tmp_path / "flaps.urdf"
    urdf.write_text(FLAP_URDF.format(flaps=flaps))
    trimesh.creation.box((0.1, 0.02, 0.02)).export(tmp_path / "handle.dae")  # a COLLADA link mesh (pycollada)
    import_scene(urdf, tmp_path / "scene")
    art = load_scene(tmp_path / "scene").objects[0].articulation
    assert art.root == "base" and {j.type for j in art.joints} == {"revolute", "continuous", "fixed"}
    handle = trimesh.load(tmp_path / "scene" / art.link("handle").mesh, force="mesh")
    assert handle.extents == pytest.approx((0.1, 0.02, 0.02), abs=1e-6)
    export_scene(tmp_path / "scene", tmp_path / "export", ExportConfig(workers=1))
    report, _ = validate_and_report(tmp_path / "export", NO_PICTURES)
    for sim in (report.joints.pybullet, report.joints.mujoco):
        by = {j.joint: j for j in sim.joints}
        print(sim.simulator, {n: (j.hold, round(j.hold_moved, 2), j.passed) for n, j in by.items()})
        assert by["flap_0"].hold == "free" and by["flap_0"].hold_moved > 10 and by["flap_0"].passed
        assert by["flap_1"].hold == "holds" and by["flap_1"].passed
        assert by["flap_2"].hold == "slips" and not by["flap_2"].passed
        wheel = by["wheel_axle"]
        assert wheel.type == "continuous" and wheel.lower is None and wheel.passed
        assert wheel.lower_error < 2.0 and wheel.upper_error < 2.0
        assert "handle_fixed" not in by
    assert not report.passed and any("flap_2" in f and "despite friction" in f for f in report.failures)
    assert not any("flap_0" in f for f in report.failures)


# ------------------------------------------------------------------------------ hiscene add
def _room(path: Path) -> Path:
    """A GLB with a floor (top at z = 0) and a table (a 0.7 m top on four legs) at the origin."""
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box((4, 4, 0.05)), node_name="floor",
                       transform=trimesh.transformations.translation_matrix((0, 0, -0.025)))
    parts = [trimesh.creation.box((1.0, 0.6, 0.04)).apply_translation((0, 0, 0.68))]
    parts += [trimesh.creation.box((0.05, 0.05, 0.66)).apply_translation((x, y, 0.33)) for x in (-0.45, 0.45) for y in (-0.25, 0.25)]
    scene.add_geometry(trimesh.util.concatenate(parts), node_name="table")
    scene.export(path)
    return path


def test_add_places_a_cabinet_on_the_floor_and_a_box_on_the_table_and_the_scene_validates(tmp_path, capsys):
    scene = tmp_path / "scene"
    import_scene(_room(tmp_path / "room.glb"), scene, InputFrame(up="z"))
    urdf = write_cabinet_urdf(tmp_path / "asset")
    assert main(["add", str(scene), str(urdf), "--at", "1.2,0.4", "--yaw", "90"]) == 0
    trimesh.creation.box((0.12, 0.08, 0.06)).export(tmp_path / "crate.stl")
    assert main(["add", str(scene), str(tmp_path / "crate.stl"), "--at", "0.2,0.1", "--on", "table", "--up", "z"]) == 0
    loaded = load_scene(scene)
    cabinet, crate = loaded.get("cabinet"), loaded.get("crate")
    assert cabinet.articulation is not None and crate.articulation is None
    from hiscene_sim.add_asset import world_mesh

    cab = world_mesh(scene, cabinet).bounds
    assert cab[0, 2] == pytest.approx(0.0, abs=1e-6)  # on the floor's top
    assert (cab[0, :2] + cab[1, :2]) / 2 == pytest.approx((1.2, 0.4), abs=1e-6)
    assert cab[1, 0] - cab[0, 0] == pytest.approx(0.4 + 0.018 + 0.025, abs=1e-3)  # turned: its depth (and front) along x
    box = world_mesh(scene, crate).bounds
    assert box[0, 2] == pytest.approx(0.70, abs=1e-6) and (box[0, :2] + box[1, :2]) / 2 == pytest.approx((0.2, 0.1))
    assert [p.stage for p in loaded.provenance][-2:] == ["add", "add"]
    export = tmp_path / "export"
    export_scene(scene, export, ExportConfig(workers=1))
    report, _ = validate_and_report(export, NO_PICTURES, settle=True, scene_dir=scene)
    assert report.passed, report.failures
    assert report.joints.passed and len(report.joints.pybullet.joints) == 2
    # a support that is not under the footprint is an error, and nothing changes
    before = (scene / "scene.json").read_bytes()
    assert main(["add", str(scene), str(tmp_path / "crate.stl"), "--at", "3,3", "--on", "table"]) == 2
    assert main(["add", str(scene), str(tmp_path / "crate.stl"), "--at", "0.5,0", "--on", "table"]) == 2  # half over the edge
    assert "under only" in capsys.readouterr().err
    assert (scene / "scene.json").read_bytes() == before and not (scene / "meshes" / "crate_2.glb").exists()
