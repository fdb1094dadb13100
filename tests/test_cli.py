"""The ``hiscene`` command as a user runs it: a multi-node GLB of real pybullet_data objects
goes through ``hiscene import`` and ``hiscene export`` untouched by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pybullet as p

from exporters.pybullet_loader import load_scene as load_pybullet_scene


def hiscene(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hiscene_sim", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def test_help_names_the_backends():
    out = hiscene("export", "--help")
    assert out.returncode == 0
    assert "backends (CPU, no weights)" in out.stdout and "CoACD" in out.stdout


def test_import_then_export_a_pybullet_data_glb(desk, tmp_path):
    out = hiscene("import", str(desk.glb), "--out", str(tmp_path / "scene"))
    assert out.returncode == 0, out.stderr
    assert "imported 8 objects and 1 background" in out.stdout
    out = hiscene("-q", "export", str(tmp_path / "scene"), "--out", str(tmp_path / "export"), "--formats", "urdf,mjcf")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["formats"] == ["urdf", "mjcf"] and not (tmp_path / "export" / "scene.usda").exists()
    assert len(manifest["objects"]) == 9
    cid = p.connect(p.DIRECT)
    try:
        assert len(load_pybullet_scene(tmp_path / "export", cid)) == 9
    finally:
        p.disconnect(cid)


def test_errors_are_one_line_with_exit_status_2(tmp_path):
    out = hiscene("export", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert out.returncode == 2
    assert "error:" in out.stderr and "nope" in out.stderr and "Traceback" not in out.stderr
    out = hiscene("export", str(tmp_path), "--out", str(tmp_path / "x"), "--formats", "urdf,fbx")
    assert out.returncode == 2 and "unknown export formats ['fbx']" in out.stderr
