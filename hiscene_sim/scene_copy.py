"""Copying a scene dir forward: how a stage starts its own output from its input without ever
writing into the input.

A copy holds ``scene.json``, every file the scene names (meshes, Gaussians) and the other
entries beside them (textures, ``completion/`` views, ...), except the names in ``exclude``
(a pipeline's own ``export/``, ``work/`` and ledger live beside the scene it publishes).
Into a new folder the copy is atomic as a whole; into an existing one (a pipeline's output
folder that also holds its ``work/``), each top-level entry is replaced atomically and
``scene.json`` is written last, so a reader sees the old scene or the new one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hiscene_sim.atomic import atomic_directory, atomic_write_bytes
from hiscene_sim.scene import SCENE_FILE, Scene, load_scene, save_scene


def _entries(src: Path, scene: Scene, exclude: tuple[str, ...]) -> list[str]:
    named = {Path(rel).parts[0] for obj in scene.all_objects() for rel in obj.files()}
    beside = {p.name for p in src.iterdir() if not p.name.startswith(".") and p.name != SCENE_FILE}
    return sorted(n for n in named | beside if n not in exclude and (src / n).exists())


def _copy_entry(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_scene_dir(src: str | Path, dst: str | Path, exclude: tuple[str, ...] = (), scene: Scene | None = None) -> Scene:
    """Copy the scene dir ``src`` to ``dst`` (see the module docstring); ``scene``: the scene
    to write as ``dst/scene.json`` instead of ``src``'s own (e.g. with new poses). Returns it."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"{src}: a stage's output must not be its input")
    scene = scene if scene is not None else load_scene(src)
    names = _entries(src, scene, exclude)
    if not dst.exists():
        with atomic_directory(dst) as tmp:
            for name in names:
                _copy_entry(src / name, tmp / name)
            save_scene(scene, tmp)
        return scene
    for name in names:
        if (src / name).is_dir():
            with atomic_directory(dst / name) as tmp:
                shutil.rmtree(tmp)
                shutil.copytree(src / name, tmp)
        else:
            atomic_write_bytes(dst / name, (src / name).read_bytes())
    save_scene(scene, dst)
    return scene
