"""Pictures for the report: an isometric view of the scene at given poses (PyBullet's
software renderer, headless) and a per-object drift chart (matplotlib, Agg canvas)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiscene_sim.atomic import atomic_write_bytes
from physics.bullet import BulletWorld
from physics.config import ValidationConfig
from physics.manifest import ExportManifest, Quat, Vec3, world_points
from physics.results import SimulatorResult

ISO_YAW_DEG = 45.0
ISO_PITCH_DEG = -math.degrees(math.atan(1 / math.sqrt(2)))  # -35.26: the isometric elevation
FOV_DEG = 30.0

Poses = dict[str, tuple[Vec3, Quat]]


@dataclass(frozen=True)
class Camera:
    target: Vec3
    distance: float
    yaw_deg: float = ISO_YAW_DEG
    pitch_deg: float = ISO_PITCH_DEG
    fov_deg: float = FOV_DEG


def isometric_camera(manifest: ExportManifest, poses: Poses) -> Camera:
    """A camera on the isometric diagonal that frames the foreground objects at ``poses``
    (the whole scene when there is no foreground)."""
    objs = manifest.foreground or list(manifest.objects)
    pts = [world_points(manifest.hull_points[o.id], *poses.get(o.id, (o.position, o.orientation))) for o in objs]
    pts = [p for p in pts if len(p)]
    if not pts:
        return Camera((0.0, 0.0, 0.0), 2.0)
    allp = np.concatenate(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 0.05)
    distance = radius / math.sin(math.radians(FOV_DEG) / 2.0) * 1.05
    return Camera(tuple(float(v) for v in (lo + hi) / 2.0), distance)


def render(manifest: ExportManifest, poses: Poses, camera: Camera, config: ValidationConfig) -> np.ndarray:
    """(height, width, 3) uint8 image of the export with its foreground objects at ``poses``."""
    width, height = config.render_width, config.render_height
    with BulletWorld(manifest, config, gravity=False) as world:
        p = world.p
        for oid, (pos, orn) in poses.items():
            if oid in world.bodies and oid not in world.background:
                world.set_pose(oid, pos, orn)
        view = p.computeViewMatrixFromYawPitchRoll(
            list(camera.target), camera.distance, camera.yaw_deg, camera.pitch_deg, 0.0, 2
        )
        near = max(camera.distance / 100.0, 0.005)
        proj = p.computeProjectionMatrixFOV(camera.fov_deg, width / height, near, camera.distance * 10.0)
        _, _, rgba, _, _ = p.getCameraImage(
            width, height, view, proj, renderer=p.ER_TINY_RENDERER, shadow=1,
            lightDirection=[1.0, -1.0, 3.0], physicsClientId=world.cid,
        )
    return np.reshape(np.asarray(rgba, dtype=np.uint8), (height, width, 4))[:, :, :3].copy()


def write_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def drift_chart(results: list[SimulatorResult], config: ValidationConfig, path: Path, title: str = "") -> Path:
    """Horizontal bars per object: translation drift (mm) and rotation (deg), one bar per
    simulator, red where the object is unstable there; dashed lines at the limits. Log
    scale, so a 2 mm settle and a 2 m fall both read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ids = [o.id for o in results[0].objects] if results else []
    n_sims = max(1, len(results))
    fig = Figure(figsize=(11, max(2.5, 0.45 * len(ids) * n_sims + 1.5)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    height = 0.8 / n_sims
    floor_mm, floor_deg = 1e-3, 1e-3
    hatches = ("", "//", "..")
    panels = (
        (axes[0], "translation drift (mm)", lambda o: o.drift_m * 1000.0, config.max_drift_m * 1000.0, floor_mm),
        (axes[1], "rotation (deg)", lambda o: o.rotation_deg, config.max_rotation_deg, floor_deg),
    )
    y = np.arange(len(ids))
    for ax, label, value, limit, floor in panels:
        for k, sim in enumerate(results):
            by_id = {o.id: o for o in sim.objects}
            vals = [max(value(by_id[i]), floor) for i in ids]
            colors = ["#2e7d32" if by_id[i].stable else "#c62828" for i in ids]
            offset = (k - (n_sims - 1) / 2) * height
            ax.barh(y + offset, vals, height=height * 0.9, color=colors, hatch=hatches[k % len(hatches)],
                    edgecolor="white", label=sim.simulator)
            for yy, v in zip(y + offset, vals):
                ax.text(v * 1.1, yy, f"{v:.3g}", va="center", fontsize=7)
        ax.axvline(limit, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, ids)
    axes[0].invert_yaxis()
    if n_sims > 1:
        axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "drift from the exported pose to rest (green: stable, red: unstable, dashed: limit)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path
