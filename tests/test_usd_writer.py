"""exporters.usd: the stage Isaac Sim / Isaac Lab load, read back with pxr."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pybullet_data
import pytest
import trimesh
from pxr import Usd, UsdGeom, UsdPhysics, UsdSemantics, UsdShade

from exporters.config import ExportConfig
from exporters.layout import ObjectFiles, write_object_files
from exporters.prepare import ObjectTask, PreparedObject, prepare_object
from exporters.usd import write_usd
from hiscene_sim.scene import Pose, SceneObject
from tests.usd_checks import usd_compliance_errors  # noqa: E402

NASTY = 'Café "mug" <&> ../x'
DATA = Path(pybullet_data.getDataPath())


def _quat(axis: tuple[float, float, float], degrees: float) -> tuple[float, float, float, float]:
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    h = np.radians(degrees) / 2
    return (float(np.cos(h)), *(float(v) for v in np.sin(h) * a))


def _rotation(q) -> np.ndarray:
    return Pose(orientation=tuple(float(v) for v in q)).rotation_matrix()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, list[PreparedObject], dict[str, ObjectFiles]]:
    tmp = tmp_path_factory.mktemp("usd")
    scene_dir, export_dir = tmp / "scene", tmp / "export"
    (scene_dir / "meshes").mkdir(parents=True)
    shutil.copytree(DATA / "table", scene_dir / "meshes" / "table")
    for name in ("duck.obj", "duck.mtl", "duckCM.png", "bunny.obj"):
        shutil.copy(DATA / name, scene_dir / "meshes" / name)
    # a vertex-coloured box (PLY keeps vertex colours) and a floor slab
    box = trimesh.creation.box((0.1, 0.06, 0.04))
    n = len(box.vertices)
    rgba = np.column_stack([np.linspace(0, 255, n), np.full((n, 2), 90), np.full(n, 255)]).astype(np.uint8)
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=rgba)
    box.export(scene_dir / "meshes" / "box.ply")
    trimesh.creation.box((2.0, 2.0, 0.1)).export(scene_dir / "meshes" / "floor.obj")

    config = ExportConfig(cache_dir=tmp / "cache", static_friction=0.7, dynamic_friction=0.5, restitution=0.1)
    specs = [
        (SceneObject("table", "table", "meshes/table/table.obj", Pose((0.0, 0.0, 0.05), _quat((0, 0, 1), 30), (0.1,) * 3)), False),
        (SceneObject("duck", "rubber duck", "meshes/duck.obj", Pose((0.3, -0.1, 0.2), _quat((1, 0.5, 0.2), 70), (0.05,) * 3)), False),
        (SceneObject("bunny_1", NASTY, "meshes/bunny.obj", Pose((-0.3, 0.2, 0.1), _quat((0, 1, 0), -45), (0.05,) * 3)), False),
        (SceneObject("box", "box", "meshes/box.ply", Pose((0.0, 0.4, 0.03))), False),
        (SceneObject("floor", "floor", "meshes/floor.obj", Pose((0.0, 0.0, -0.05))), True),
    ]
    objects = [prepare_object(ObjectTask(scene_dir, o, bg, config)) for o, bg in specs]
    files = {o.id: write_object_files(o, export_dir) for o in objects}
    path = write_usd(objects, files, export_dir, config)
    return path, objects, files


def _prim(stage: Usd.Stage, obj: PreparedObject) -> Usd.Prim:
    parent = "Background" if obj.is_background else "Objects"
    prim = stage.GetPrimAtPath(f"/World/{parent}/{obj.id}")
    assert prim.IsValid(), obj.id
    return prim


def test_stage_metadata_and_physics_scene(exported) -> None:
    path, _, _ = exported
    assert path.name == "scene.usda" and path.is_file()
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdPhysics.GetStageKilogramsPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert stage.GetDefaultPrim().GetPath() == "/World"
    assert stage.GetDefaultPrim().IsA(UsdGeom.Xform)
    scene = UsdPhysics.Scene(stage.GetPrimAtPath("/World/PhysicsScene"))
    assert scene
    assert tuple(scene.GetGravityDirectionAttr().Get()) == (0.0, 0.0, -1.0)
    assert scene.GetGravityMagnitudeAttr().Get() == pytest.approx(9.81)


def test_bodies_mass_and_inertia(exported) -> None:
    path, objects, _ = exported
    stage = Usd.Stage.Open(str(path))
    for obj in objects:
        prim = _prim(stage, obj)
        if obj.is_background:
            assert not prim.HasAPI(UsdPhysics.RigidBodyAPI)
            assert not prim.HasAPI(UsdPhysics.MassAPI)
            continue
        assert prim.HasAPI(UsdPhysics.RigidBodyAPI) and prim.HasAPI(UsdPhysics.MassAPI)
        mass = UsdPhysics.MassAPI(prim)
        assert mass.GetMassAttr().Get() == pytest.approx(obj.mass.mass, rel=1e-6)
        assert np.allclose(mass.GetCenterOfMassAttr().Get(), obj.mass.center_of_mass, atol=1e-6)
        q = mass.GetPrincipalAxesAttr().Get()
        r = _rotation([q.GetReal(), *q.GetImaginary()])
        tensor = r @ np.diag(np.asarray(mass.GetDiagonalInertiaAttr().Get(), dtype=float)) @ r.T
        inertia = np.asarray(obj.mass.inertia)
        assert np.allclose(tensor, inertia, rtol=1e-4, atol=1e-6 * np.abs(inertia).max()), obj.id


def test_world_transform_matches_pose(exported) -> None:
    path, objects, _ = exported
    stage = Usd.Stage.Open(str(path))
    cache = UsdGeom.XformCache()
    for obj in objects:
        m = np.asarray(cache.GetLocalToWorldTransform(_prim(stage, obj)))  # row-vector convention
        expected = Pose(obj.position, obj.orientation).rigid_matrix()
        assert np.allclose(m.T, expected, atol=1e-9), obj.id


def test_collision_hulls(exported) -> None:
    path, objects, _ = exported
    stage = Usd.Stage.Open(str(path))
    for obj in objects:
        group = stage.GetPrimAtPath(_prim(stage, obj).GetPath().AppendChild("collision"))
        hulls = [p for p in group.GetChildren() if p.IsA(UsdGeom.Mesh)]
        assert len(hulls) == len(obj.hulls) > 0
        for i, prim in enumerate(hulls):
            assert prim.GetName() == f"hull_{i:03d}"
            assert prim.HasAPI(UsdPhysics.CollisionAPI) and prim.HasAPI(UsdPhysics.MeshCollisionAPI)
            assert UsdPhysics.MeshCollisionAPI(prim).GetApproximationAttr().Get() == UsdPhysics.Tokens.convexHull
            assert UsdGeom.Imageable(prim).ComputePurpose() == UsdGeom.Tokens.guide
            assert len(UsdGeom.Mesh(prim).GetPointsAttr().Get()) == len(obj.hulls[i].vertices)
            material, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial("physics")
            physics = UsdPhysics.MaterialAPI(material.GetPrim())
            assert physics.GetStaticFrictionAttr().Get() == pytest.approx(0.7)
            assert physics.GetDynamicFrictionAttr().Get() == pytest.approx(0.5)
            assert physics.GetRestitutionAttr().Get() == pytest.approx(0.1)


def test_semantic_labels_both_schemas(exported) -> None:
    path, objects, _ = exported
    stage = Usd.Stage.Open(str(path))
    assert any(o.label == NASTY for o in objects)
    for obj in objects:
        prim = _prim(stage, obj)
        assert prim.HasAPI(UsdSemantics.LabelsAPI, "class")
        assert list(UsdSemantics.LabelsAPI(prim, "class").GetLabelsAttr().Get()) == [obj.label]
        assert list(prim.GetAttribute("semantics:labels:class").Get()) == [obj.label]
        # not a registered schema in usd-core, so GetAppliedSchemas() omits it: read the metadata
        assert "SemanticsAPI:Semantics" in prim.GetMetadata("apiSchemas").GetAddedOrExplicitItems()
        assert prim.GetAttribute("semantic:Semantics:params:semanticType").Get() == "class"
        assert prim.GetAttribute("semantic:Semantics:params:semanticData").Get() == obj.label
        assert prim.GetAttribute("hiscene:label").Get() == obj.label
        assert prim.GetAttribute("hiscene:id").Get() == obj.id


def test_visual_mesh_closed_with_appearance(exported) -> None:
    path, objects, files = exported
    stage = Usd.Stage.Open(str(path))
    seen_texture = seen_vertex_colors = False
    for obj in objects:
        mesh = UsdGeom.Mesh(stage.GetPrimAtPath(_prim(stage, obj).GetPath().AppendChild("visual")))
        assert mesh and mesh.GetSubdivisionSchemeAttr().Get() == UsdGeom.Tokens.none
        counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get())
        faces = np.asarray(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
        points = np.asarray(mesh.GetPointsAttr().Get())
        assert (counts == 3).all() and len(faces) == len(counts)
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, uses = np.unique(edges, axis=0, return_counts=True)
        assert (uses == 2).all(), f"{obj.id}: visual mesh not closed"
        extent = np.asarray(mesh.GetExtentAttr().Get())
        assert np.allclose(extent, [points.min(axis=0), points.max(axis=0)], atol=1e-6)
        volume = trimesh.Trimesh(points, faces, process=False).volume
        assert volume == pytest.approx(obj.solid.volume, rel=1e-3)  # same surface, outward

        material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
        assert material and material.GetPath() == mesh.GetPath().GetParentPath().AppendPath("Looks/material")
        shaders = {p.GetName(): UsdShade.Shader(p) for p in material.GetPrim().GetChildren()}
        st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
        if files[obj.id].texture:
            seen_texture = True
            assert st and st.GetInterpolation() == UsdGeom.Tokens.faceVarying
            assert len(st.ComputeFlattened()) == 3 * len(faces)
            file = shaders["diffuse_texture"].GetInput("file").Get()
            assert file.path == f"./{files[obj.id].texture}"
            assert Path(file.resolvedPath).is_file()
        else:
            assert not st
        color = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("displayColor")
        if obj.visual.visual.kind == "vertex":
            seen_vertex_colors = True
            assert color.GetInterpolation() in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.faceVarying)
            assert "color_reader" in shaders
    assert seen_texture and seen_vertex_colors


def test_compliance_checker(exported) -> None:
    """usd-core 26.x dropped the Python ``UsdUtils.ComplianceChecker``; its rules (stage
    metadata, shader Sdr types, material bindings, missing assets, encapsulation) live on
    as UsdValidation validators, which also check the UsdPhysics schemas."""
    path, _, _ = exported
    assert usd_compliance_errors(path) == []
