"""``hiscene parse`` on a fused scene built from pybullet_data meshes (one welded surface,
so the objects are glued to the floor), scored against the fused scene's ground truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

from hiscene_sim.scene import load_scene
from hiscene_sim.testing.fused_scenes import Placed, build_fused_scene, save_fused
from hiscene_sim.testing.parse_metrics import score_parse


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    scene = build_fused_scene([Placed("cube", -0.3, 0.0, 0.3), Placed("mug", 0.2, 0.2, 1.0), Placed("duck", 0.1, -0.3, 2.0)], seed=0)
    path = save_fused(scene, tmp_path_factory.mktemp("fused") / "three_on_floor.glb")
    return scene, path


def test_parse_separates_objects_welded_to_the_floor(fused, tmp_path):
    scene, path = fused
    assert scene.mesh.body_count == 1  # really one welded surface
    out = subprocess.run(
        [sys.executable, "-m", "hiscene_sim", "parse", str(path), "--out", str(tmp_path / "parsed")],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr
    assert "backends (CPU, no weights)" in out.stdout
    parsed = load_scene(tmp_path / "parsed")
    assert [o.label for o in parsed.background] == ["floor"]
    meshes = []
    for obj in parsed.objects:
        mesh = trimesh.load(tmp_path / "parsed" / obj.mesh, force="mesh")
        meshes.append(mesh.apply_transform(obj.pose.matrix()))
    background = [trimesh.load(tmp_path / "parsed" / o.mesh, force="mesh").apply_transform(o.pose.matrix()) for o in parsed.background]
    score = score_parse(scene, meshes, background)
    print(score.summary() if hasattr(score, "summary") else score)
    assert score.count_exact and score.n_pred == 3
    assert score.mean_iou >= 0.8
    assert min(row.iou for row in score.rows) >= 0.7
    assert np.isfinite([o.pose.position for o in parsed.objects]).all()


def _world_meshes(scene_dir, objects):
    return [trimesh.load(scene_dir / o.mesh, force="mesh").apply_transform(o.pose.matrix()) for o in objects]


def test_a_gaussian_splat_scene_parses_through_the_same_lifting(fused, tmp_path):
    """Gaussians sampled from the fused surface (as a 3DGS generator would give them), saved
    as a 3DGS PLY and parsed by ``hiscene parse``: the CPU splatting renderer feeds the same
    lifting; every object keeps its Gaussians and gets a closed mesh built from them, which is
    scored against the fused scene's ground truth."""
    from hiscene_sim.render.gaussians import gaussians_from_mesh, load_3dgs_ply, save_3dgs_ply
    from hiscene_sim.testing.parse_metrics import score_gaussian_labels

    scene, _ = fused
    gaussians = gaussians_from_mesh(scene.mesh, 40_000, seed=0)
    save_3dgs_ply(gaussians, tmp_path / "splat.ply")
    out = subprocess.run(
        [sys.executable, "-m", "hiscene_sim", "parse", str(tmp_path / "splat.ply"), "--out", str(tmp_path / "parsed"),
         "--resolution", "384"],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr
    assert "40000 Gaussians" in out.stdout and "splat render" in out.stdout
    parsed = load_scene(tmp_path / "parsed")
    assert parsed.background
    means, owner = [], []
    for k, obj in enumerate(parsed.all_objects()):
        mesh = trimesh.load(tmp_path / "parsed" / obj.mesh, force="mesh")
        assert mesh.is_watertight, obj.id
        splat = load_3dgs_ply(tmp_path / "parsed" / obj.extra["gaussians"])
        # the Gaussians are in the object's local frame, like its mesh
        assert np.all(splat.means.min(axis=0) >= mesh.bounds[0] - 0.01) and np.all(splat.means.max(axis=0) <= mesh.bounds[1] + 0.01)
        means.append(splat.means + np.asarray(obj.pose.position))
        owner.append(np.full(len(splat), k))
    means, owner = np.vstack(means), np.concatenate(owner)
    assert len(means) >= 0.99 * len(gaussians)
    # each fused face takes the object of its nearest written Gaussian
    by_gaussians = score_gaussian_labels(scene, means, owner, set(range(len(parsed.objects), len(parsed.all_objects()))))
    # and the meshes built from each object's Gaussians (about a voxel fatter) score too
    by_meshes = score_parse(scene, _world_meshes(tmp_path / "parsed", parsed.objects), _world_meshes(tmp_path / "parsed", parsed.background))
    print(by_gaussians.summary(), by_meshes.summary(), out.stdout)
    assert by_gaussians.count_exact and by_meshes.count_exact
    assert by_gaussians.mean_iou >= 0.8
    # the meshes are rebuilt from ~50-250 Gaussians per object and the floor's from 40k: every
    # mesh is about a voxel fat, and the floor's takes the objects' lowest rim
    assert by_meshes.mean_iou >= 0.65


def test_a_corner_scene_keeps_its_walls_and_floor_as_background():
    """Two walls meeting in a corner, welded to the floor and to each other (the A.1 corner
    views): the walls are recognised as background, the objects in front of them are found."""
    from hiscene_sim.parse import ParseConfig, parse_mesh
    from hiscene_sim.testing.fused_scenes import FusedObjectInfo, fuse_meshes, place_objects
    from hiscene_sim.testing.parse_metrics import score_face_labels

    infos = place_objects([Placed("cube", 0.2, 0.3, 0.3), Placed("duck", 0.4, -0.1, 1.0), Placed("mug", -0.5, -0.5, 0.5)])
    for name, size, center in (("wall_x", (0.03, 2.0, 1.0), (-1.0, 0, 0.5)), ("wall_y", (2.0, 0.03, 1.0), (0, -1.0, 0.5))):
        wall = trimesh.creation.box(size)
        wall.apply_translation(center)
        wall.visual.vertex_colors = (200, 200, 190, 255)
        infos.append(FusedObjectInfo(name, "wall", True, wall.bounds.copy(), wall, None))
    fused = fuse_meshes(infos, seed=0)
    parsed = parse_mesh(fused.mesh, ParseConfig(views="corner"))
    score = score_face_labels(fused, parsed.labels, parsed.background)
    print(parsed.background_kinds, score.summary())
    assert set(parsed.background_kinds.values()) == {"floor", "wall"}
    # every wall face ends up in a wall instance
    walls = [k for k, kind in parsed.background_kinds.items() if kind == "wall"]
    wall_faces = np.isin(fused.face_object, [i for i, o in enumerate(fused.objects) if o.name.startswith("wall")])
    assert np.isin(parsed.labels[wall_faces], walls).mean() > 0.9
    assert score.count_exact and score.mean_iou >= 0.85


def test_runs_in_worker_processes_give_the_same_objects_as_one_after_another(fused, monkeypatch):
    """The consensus runs (seeds s, s+1, s+2) are independent: forked in parallel or run in turn,
    the same input and seed give the same labels."""
    from hiscene_sim import parse as parse_module
    from hiscene_sim.lifting_eq3_4 import LiftConfig

    scene, _ = fused
    config = parse_module.ParseConfig(runs=3, resolution=256, lift=LiftConfig(iterations=200))
    monkeypatch.setattr(parse_module, "_cores", lambda: 2)
    parallel = parse_module.parse_mesh(scene.mesh, config)
    monkeypatch.setattr(parse_module, "_cores", lambda: 1)
    steps = []
    in_turn = parse_module.parse_mesh(scene.mesh, config, progress=lambda i, n, loss: steps.append((i, n)))
    np.testing.assert_array_equal(parallel.labels, in_turn.labels)
    assert parallel.background == in_turn.background
    assert steps[-1] == (600, 600) and len(steps) == 600  # one bar over the three runs
    assert len(parallel.foreground()) >= 2
