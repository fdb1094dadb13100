"""Shared fixtures: a CoACD cache per test session, and the demo desk scene (real
pybullet_data meshes) built, imported and exported once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from exporters.config import ExportConfig
from exporters.export import ExportResult, export_scene
from hiscene_sim.demo import build_desk_glb
from hiscene_sim.importer import ImportResult, import_scene


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory, request):
    """Keep the tests off the user's ~/.cache: one CoACD cache for the whole session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HISCENE_CACHE_DIR", str(tmp_path_factory.mktemp("hiscene-cache")))
    mp.setenv("HISCENE_SCENE_CACHE", str(tmp_path_factory.mktemp("scene-sets")))
    request.addfinalizer(mp.undo)


@pytest.fixture(autouse=True)
def _restore_logging():
    """``hiscene``'s main() installs a console log handler at INFO on the root logger; a test that
    calls it must not leave it behind for the next test's captured stdout."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass
class DeskScene:
    glb: Path
    scene_dir: Path
    export_dir: Path
    imported: ImportResult
    exported: ExportResult


@pytest.fixture(scope="session")
def desk(tmp_path_factory, _session_cache) -> DeskScene:
    root = tmp_path_factory.mktemp("desk")
    glb = build_desk_glb(root / "desk_scene.glb")
    imported = import_scene(glb, root / "scene")
    exported = export_scene(root / "scene", root / "export", ExportConfig())
    return DeskScene(glb, root / "scene", root / "export", imported, exported)
