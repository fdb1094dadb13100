"""scene-synthesizer's procedural articulated assets (issue 15's "done when"): a base cabinet
with a drawer and a door, a microwave and a refrigerator, written to URDF by scene-synthesizer
(boxes and OBJ meshes, placeholder inertials, a ``world`` link fixed to the base), through
``hiscene import`` -> ``hiscene export`` -> validation in PyBullet, MuJoCo and usd-core. Then
the demo, which adds a cabinet with ``hiscene add`` to a parsed scene (slow).

The cabinet runs by default; the microwave, the refrigerator and the demo are ``slow``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hiscene_sim.cli import main
from physics.config import ValidationConfig
from physics.report import validate_and_report
from tests.usd_checks import usd_compliance_errors

ASSETS = {  # name -> (procedural asset, keyword arguments)
    "cabinet": ("BaseCabinetAsset", dict(width=0.6, depth=0.5, height=0.7, num_drawers_vertical=1,
                                         lower_compartment_types=("door_right",), num_shelves=0)),
    "microwave": ("MicrowaveAsset", {}),
    "refrigerator": ("RefrigeratorAsset", {}),
}


@pytest.fixture(scope="session")
def synth_urdfs(tmp_path_factory) -> dict[str, Path]:
    """Each asset written once per session by scene-synthesizer (its meshes beside the URDF)."""
    import scene_synthesizer as synth
    from scene_synthesizer import procedural_assets as pa

    root = tmp_path_factory.mktemp("synth")
    out = {}
    for name, (cls, kwargs) in ASSETS.items():
        scene = synth.Scene()
        scene.add_object(getattr(pa, cls)(**kwargs), name)
        scene.export(str(root / name / f"{name}.urdf"), write_mesh_files=True)
        out[name] = root / name / f"{name}.urdf"
    return out


def _through(urdf: Path, tmp: Path):
    scene, export = tmp / "scene", tmp / "export"
    assert main(["import", str(urdf), "--out", str(scene)]) == 0
    assert main(["export", str(scene), "--out", str(export), "--workers", "1"]) == 0
    report, _ = validate_and_report(export, ValidationConfig(render=False))
    return export, report


def _check(name: str, export: Path, report, moving: dict[str, str]) -> None:
    assert report.passed, report.failures
    assert report.pybullet.objects[0].stable and report.mujoco.objects[0].stable
    for sim in (report.joints.pybullet, report.joints.mujoco):
        assert {j.joint: j.type for j in sim.joints} == moving
        for j in sim.joints:
            print(f"{name:12s} {sim.simulator:8s} {j.joint:28s} {j.type:9s} range {j.lower:g}..{j.upper:g} {j.unit}: "
                  f"hold {j.hold} ({j.hold_moved:.2g}); error at lower {j.lower_error:.2g}, at upper {j.upper_error:.2g} "
                  f"{j.unit}; max link {j.max_link_speed:.2f} m/s, {j.max_link_angular_speed:.2f} rad/s")
            tol = 2.0 if j.unit == "deg" else 0.005
            assert j.passed and j.hold == "holds" and j.lower_error < tol and j.upper_error < tol
    usd = report.joints.usd
    assert usd.passed and usd.articulations == [f"/World/Objects/{name}"] and len(usd.joints) == len(moving)
    assert usd_compliance_errors(export / "scene.usda") == []


def test_synth_cabinet_drawer_and_door(synth_urdfs, tmp_path):
    export, report = _through(synth_urdfs["cabinet"], tmp_path)
    _check("cabinet", export, report, {"cabinet_corpus_to_drawer_0_0": "prismatic", "cabinet_corpus_to_door_0_1": "revolute"})
    # the `world` -> `cabinet` -> `cabinet_corpus` fixed chain without geometry is folded into the object's pose
    from hiscene_sim.scene import load_scene

    art = load_scene(tmp_path / "scene").objects[0].articulation
    assert art.root == "cabinet_corpus" and {link.name for link in art.links} == \
        {"cabinet_corpus", "cabinet_drawer_0_0", "cabinet_door_0_1"}
    assert art.joint("cabinet_corpus_to_door_0_1").upper == pytest.approx(math.pi / 2)


@pytest.mark.slow
@pytest.mark.parametrize("name, moving", [
    ("microwave", {"microwave_door_joint": "revolute"}),
    ("refrigerator", {"refrigerator_door_joint": "revolute", "refrigerator_freezer_door_joint": "revolute"}),
])
def test_synth_microwave_and_refrigerator(synth_urdfs, tmp_path, name, moving):
    export, report = _through(synth_urdfs[name], tmp_path)
    _check(name, export, report, moving)


@pytest.mark.slow
def test_demo_adds_a_cabinet_to_the_parsed_desk_and_validates(tmp_path, capsys):
    """`hiscene demo`: the fused desk parsed, then a cabinet added with `hiscene add`'s function on
    the parsed floor, re-exported, settled and validated, its joints included."""
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "4. one articulated object" in out and "joints in PyBullet" in out and "joints in MuJoCo" in out
    from hiscene_sim.scene import load_scene

    scene = load_scene(tmp_path / "demo" / "scene")
    cabinet = [o for o in scene.objects if o.articulation is not None]
    assert len(cabinet) == 1 and cabinet[0].provenance.stage == "add"
    md = (tmp_path / "demo" / "scene" / "export" / "validation.md").read_text()
    assert "**Verdict: PASS**" in md and "door_hinge" in md and "drawer_slide" in md
