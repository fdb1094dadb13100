"""Background structure generation (paper D): the scene prompt rewritten to begin with
"A background of ...", generated like the scene, and integrated back into the scene dir.

Integration: the generated background (metres, +Z up, from the image-to-3D adapter) is
scaled uniformly so its footprint fits the parsed background's footprint, centred on it, and
lowered so its floor sits on the parsed floor's top (both heights by
``hiscene_sim.floor.floor_height``). It is added as a static background object labelled
``background``; the flat parsed floor stays the physical support under the objects, so a
generated floor that is not perfectly flat cannot tip them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import trimesh

from hiscene_sim.atomic import atomic_write_bytes
from hiscene_sim.floor import floor_height
from hiscene_sim.scene import Pose, Provenance, SceneObject, save_scene

BACKGROUND_ID = "background_generated"


def background_prompt(prompt: str) -> str:
    """"a cozy reading corner" -> "A background of a cozy reading corner" (an existing
    "Isometric view of" prefix is dropped; the caller adds it again)."""
    text = " ".join(str(prompt).split())
    text = re.sub(r"^isometric view of\s+", "", text, flags=re.IGNORECASE)
    if re.match(r"^a background of\b", text, flags=re.IGNORECASE):
        return text[0].upper() + text[1:]
    return f"A background of {text}"


def fit_background(generated: trimesh.Trimesh, footprint_lo: np.ndarray, footprint_hi: np.ndarray, floor_z: float) -> np.ndarray:
    """4x4 similarity placing ``generated`` over the footprint (x, y) with its floor at
    ``floor_z``."""
    lo, hi = generated.bounds
    size = np.maximum(hi[:2] - lo[:2], 1e-9)
    scale = float(np.min((np.asarray(footprint_hi[:2]) - np.asarray(footprint_lo[:2])) / size))
    centre = (lo[:2] + hi[:2]) / 2
    target = (np.asarray(footprint_lo[:2]) + np.asarray(footprint_hi[:2])) / 2
    m = np.eye(4)
    m[:3, :3] *= scale
    m[:2, 3] = target - scale * centre
    m[2, 3] = floor_z - scale * floor_height(generated)
    return m


def add_generated_background(in_dir: Path, out_dir: Path, generated: trimesh.Trimesh, prompt: str) -> str:
    """The scene dir ``in_dir`` copied forward to ``out_dir`` with the generated background
    object added (or replaced); returns a description of where it went."""
    from exporters.mesh_io import load_mesh
    from hiscene_sim.scene_copy import copy_scene_dir

    scene_dir = Path(out_dir)
    scene = copy_scene_dir(in_dir, scene_dir)
    kept = [o for o in scene.background if o.id != BACKGROUND_ID]
    if not kept:
        raise ValueError(f"{scene_dir}: no parsed background to fit the generated one to")
    meshes = [load_mesh(scene_dir / o.mesh, f"background {o.id!r}").apply_transform(o.pose.matrix()) for o in kept]
    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    floors = [m for o, m in zip(kept, meshes) if o.label == "floor"]
    floor_z = max(floor_height(m) for m in floors) if floors else float(lo[2])
    placement = fit_background(generated, lo, hi, floor_z)
    local = generated.copy()
    local.apply_transform(placement)
    rel = f"meshes/{BACKGROUND_ID}.glb"
    atomic_write_bytes(scene_dir / rel, local.export(file_type="glb"))
    scene.background = kept + [SceneObject(BACKGROUND_ID, "background", rel, Pose(),
                                           Provenance("background", "flux+trellis", {"prompt": prompt}))]
    save_scene(scene, scene_dir)
    return f"x {lo[0]:.2f}..{hi[0]:.2f}, y {lo[1]:.2f}..{hi[1]:.2f}, floor at z = {floor_z:.3f} (scale {placement[0, 0]:.3f})"
