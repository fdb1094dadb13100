"""``hiscene generate``: a fused pybullet_data scene through every stage to a validated sim
export, a resumed run that skips finished stages, and the failures that must come before any
work."""

from __future__ import annotations

import json
import time

import numpy as np
import pybullet as p
import pytest

from hiscene_sim.cli import main
from hiscene_sim.ledger import Ledger, StageRecord, stage_key
from hiscene_sim.scene import load_scene
from hiscene_sim.testing.fused_scenes import Placed, build_fused_scene, save_fused


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    fused = build_fused_scene([Placed("cube", -0.25, 0.1, 0.4), Placed("duck", 0.2, -0.15, 1.0)], seed=0)
    path = save_fused(fused, root / "two_on_floor.glb")
    t0 = time.perf_counter()
    rc = main(["-q", "generate", "--from-scene", str(path), "--out", str(root / "out")])
    return root / "out", path, rc, time.perf_counter() - t0


def test_from_scene_gives_a_validated_export_with_one_rigid_body_per_object(generated):
    out, _, rc, _ = generated
    assert rc == 0  # validation passed
    scene = load_scene(out)
    assert len(scene.objects) == 2 and [o.label for o in scene.background] == ["floor"]
    for obj in scene.objects:
        assert obj.extra["regeneration"]["backend"] == "geometry"
        assert len(obj.extra["completion"]["views"]) == 16
    validation = json.loads((out / "export" / "validation.json").read_text())
    assert validation["passed"] and validation["pybullet"]["n_stable"] == 2
    export = json.loads((out / "export" / "export.json").read_text())
    ids = {o["id"] for o in export["objects"]}
    assert {o.id for o in scene.objects} <= ids
    # every object is its own rigid body in PyBullet, with mass, resting where it was put
    cid = p.connect(p.DIRECT)
    try:
        for obj in scene.objects:
            urdf = out / "export" / "objects" / obj.id / f"{obj.id}.urdf"
            body = p.loadURDF(str(urdf), physicsClientId=cid)
            assert p.getDynamicsInfo(body, -1, physicsClientId=cid)[0] > 0
    finally:
        p.disconnect(cid)
    ledger = json.loads((out / "pipeline.json").read_text())
    assert [s["name"] for s in ledger["stages"]] == ["scene3d", "parse", "complete", "label", "regenerate", "background", "export", "validate"]
    assert all(s["backend"] and s["seconds"] >= 0 for s in ledger["stages"])


def test_a_second_run_resumes_and_skips_every_finished_stage(generated, capsys):
    out, path, _, first_seconds = generated
    before = (out / "scene.json").read_text()
    t0 = time.perf_counter()
    assert main(["generate", "--from-scene", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("skipped: done in an earlier run") == 8
    assert (out / "scene.json").read_text() == before
    assert time.perf_counter() - t0 < first_seconds / 3


def test_ledger_reruns_a_stage_whose_inputs_or_outputs_changed(tmp_path):
    ledger = Ledger(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    key = stage_key("parse", "upstream", {"seed": 0})
    ledger.record(StageRecord("parse", key, "cpu", {"seed": 0}, ["a.txt"], 1.0))
    again = Ledger(tmp_path)  # read back from pipeline.json
    assert again.done("parse", key) is not None
    assert again.done("parse", stage_key("parse", "upstream", {"seed": 1})) is None  # a parameter changed
    assert again.done("parse", stage_key("parse", "other", {"seed": 0})) is None  # an earlier stage changed
    (tmp_path / "a.txt").unlink()
    assert again.done("parse", key) is None  # its output is gone


def test_missing_weights_fail_before_any_work(tmp_path, capsys, monkeypatch):
    for var in ("HISCENE_FLUX_WEIGHTS", "HISCENE_TRELLIS_WEIGHTS", "HISCENE_CLIP_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    assert main(["generate", "a cozy reading corner", "--out", str(out)]) == 2
    assert "generate.flux.weights" in capsys.readouterr().err
    assert not out.exists()
    assert main(["generate", "a cozy reading corner", "--out", str(out), "--flux-weights", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "generate.flux.weights" in err and str(tmp_path / "nope") in err
    image = tmp_path / "iso.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["generate", "--from-image", str(image), "--out", str(out)]) == 2
    assert "generate.trellis.weights" in capsys.readouterr().err
    assert main(["generate", "--from-image", str(image), "--out", str(out), "--completion", "svd",
                 "--trellis-weights", str(tmp_path)]) == 2
    assert "completion.svd.weights" in capsys.readouterr().err
    assert not out.exists()


def test_bad_requests_are_refused(tmp_path, capsys):
    assert main(["generate", "--from-scene", str(tmp_path / "missing.glb"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.glb" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path / "o")]) == 2  # nothing to start from
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    scene = tmp_path / "s.glb"
    scene.write_bytes(b"not a glb")
    assert main(["generate", "--from-scene", str(scene), "--out", str(theirs)]) == 2
    assert "not a hiscene generate output" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "keep me"


class SceneThenRoom:
    """TRELLIS-shaped pipeline (``run`` -> ``{"mesh": [MeshExtractResult-like]}`` in TRELLIS's
    frame: Z up, inside [-0.5, 0.5]^3): the first call returns a fused scene, the next ones a
    room (floor and two walls) for the background stage."""

    def __init__(self, scene_mesh):
        import trimesh

        room = [trimesh.creation.box((2.0, 2.0, 0.05)), trimesh.creation.box((0.05, 2.0, 1.0)), trimesh.creation.box((2.0, 0.05, 1.0))]
        room[0].apply_translation((0, 0, -0.025))
        room[1].apply_translation((-1.0, 0, 0.5))
        room[2].apply_translation((0, -1.0, 0.5))
        self.meshes = [scene_mesh, trimesh.util.concatenate(room)]
        self.prompts = []

    def run(self, image, **kwargs):
        from tests.test_generate_adapters import FakeMeshExtractResult

        mesh = self.meshes[min(len(self.prompts), 1)]
        self.prompts.append(kwargs.get("seed"))
        lo, hi = mesh.bounds
        v = (mesh.vertices - (lo + hi) / 2) / float(np.max(hi - lo))  # TRELLIS's normalisation
        colors = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0 if mesh.visual.kind == "vertex" else np.full((len(v), 3), 0.6)
        return {"mesh": [FakeMeshExtractResult(v, mesh.faces, np.hstack([colors, np.zeros_like(v)]))]}


def test_a_prompt_runs_through_flux_and_the_trellis_adapter(tmp_path, monkeypatch, caplog):
    """The prompt path with a tiny FLUX (upstream diffusers classes) and TRELLIS loaded from a local
    snapshot through upstream's loading path (a stand-in ``trellis`` package, tests/generate_fixtures.py;
    DINOv2 and rembg's model local, the Hub offline): image candidates, 3D scene, parse ... validate, and
    the background regenerated from "A background of ..." (paper D) with the same TRELLIS, loaded once
    and released after its last stage."""
    import logging
    import sys

    from hiscene_sim.generate.config import GenerateConfig
    from hiscene_sim.generate.flux import FluxTextToImage
    from hiscene_sim.generate.pipeline import GenerateRequest, generate_scene
    from tests.generate_fixtures import dinov2_repo, fake_rembg_module, install_fake_trellis, trellis_snapshot
    from tests.test_generate_adapters import SETTINGS, _tiny_flux_components

    flux = FluxTextToImage(components=_tiny_flux_components(tmp_path), device="cpu", **SETTINGS)
    fused = build_fused_scene([Placed("cube", -0.25, 0.1, 0.4), Placed("duck", 0.2, -0.15, 1.0)], seed=0)
    fake = SceneThenRoom(fused.mesh)
    trellis = install_fake_trellis(tmp_path / "site", monkeypatch)
    trellis.pipelines.BUILD = lambda path, args: fake
    monkeypatch.setitem(sys.modules, "rembg", fake_rembg_module())
    repo, state = dinov2_repo(tmp_path / "dinov2")
    (tmp_path / "u2net").mkdir()
    (tmp_path / "u2net" / "u2net.onnx").write_bytes(b"onnx")
    config = GenerateConfig(candidates=2, weights={
        "generate.trellis.weights": trellis_snapshot(tmp_path / "TRELLIS-image-large"),
        "generate.trellis.dinov2_repo": repo, "generate.trellis.dinov2_weights": state,
        "generate.trellis.rembg_model": tmp_path / "u2net" / "u2net.onnx"})
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="hiscene_sim.stages")
    result = generate_scene(GenerateRequest(out, prompt="a cube and a duck on the floor"), config,
                            models={"flux": flux, "clip": None})
    assert result.passed
    assert len(trellis.pipelines.LOADS) == 1 and fake.prompts == [0, 0]  # one TRELLIS for the scene and the background
    assert "after background: released trellis" in caplog.text
    assert [s.name for s in result.stages] == ["image", "scene3d", "parse", "complete", "label", "regenerate", "background", "export", "validate"]
    label = next(p for p in load_scene(out).provenance if p.stage == "label")
    assert label.parameters["vocabulary"] == ["cube", "duck", "floor"]  # the prompt's nouns
    record = json.loads((out / "work" / "candidates.json").read_text())
    assert record["method"] == "first" and len(record["seeds"]) == 2
    assert (out / "work" / "candidate_1.png").is_file()
    scene = load_scene(out)
    assert len(scene.objects) == 2
    generated = [o for o in scene.background if o.label == "background"]
    assert len(generated) == 1 and generated[0].provenance.parameters["prompt"] == "Isometric view of A background of a cube and a duck on the floor"
    # the generated room is fitted to the parsed floor: same footprint, its floor at the floor's top
    import trimesh

    room = trimesh.load(out / generated[0].mesh, force="mesh")
    floor = next(o for o in scene.background if o.label == "floor")
    floor_mesh = trimesh.load(out / floor.mesh, force="mesh").apply_transform(floor.pose.matrix())
    assert np.allclose(room.bounds[:, :2], floor_mesh.bounds[:, :2], atol=0.05)
    assert abs(room.bounds[0][2] + 0.05 * room.extents[0] / 2.0 - floor_mesh.bounds[1][2]) < 0.03
