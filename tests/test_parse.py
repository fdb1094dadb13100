"""``hiscene parse`` on a fused scene built from pybullet_data meshes (one welded surface,
so the objects are glued to the floor), scored against the fused scene's ground truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

from hiscene_sim.fused import Placed, build_fused_scene, save_fused
from hiscene_sim.parse_metrics import score_parse
from hiscene_sim.scene import load_scene


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


def test_a_gaussian_splat_scene_parses_through_the_same_lifting(fused):
    """Gaussians sampled from the fused surface (as a 3DGS generator would give them),
    rendered by the CPU splatting renderer; each fused face takes the label of its nearest
    Gaussian for scoring."""
    from scipy.spatial import cKDTree

    from hiscene_sim.parse import ParseConfig, parse_gaussians
    from hiscene_sim.parse_metrics import score_face_labels
    from hiscene_sim.render.gaussians import gaussians_from_mesh

    scene, _ = fused
    gaussians = gaussians_from_mesh(scene.mesh, 40_000, seed=0)
    parsed = parse_gaussians(gaussians, ParseConfig(resolution=384))
    _, nearest = cKDTree(gaussians.means).query(scene.mesh.triangles_center)
    score = score_face_labels(scene, parsed.labels[nearest], parsed.background)
    print(score.summary(), parsed.seconds)
    assert parsed.background  # the floor (its top and bottom sheets may come out as two)
    assert score.mean_iou >= 0.75
    assert abs(score.n_pred - score.n_gt) <= 1
