"""The frame of a scene file: which axis is up and what a unit is. The front door
(:mod:`hiscene_sim.inputs`) puts every mesh or splat it reads into the scene format's frame
(metres, +Z up) here, so that every stage sees Z-up geometry in metres.

* ``up``: ``z`` keeps the file's axes; ``y`` turns a Y-up file (glTF by its spec, most OBJ
  exporters) +90 deg about X (y -> z, z -> -y); ``auto`` (default) guesses the up axis from the
  geometry (:mod:`hiscene_sim.up_axis`). trimesh keeps a glTF's coordinates as stored, Y-up.
* ``units`` and ``scale``: coordinates x ``UNITS[units]`` x ``scale``; the sizes that result are
  checked against the objects' labels (:mod:`hiscene_sim.units`).

What was done, and why, is a :class:`FrameReport`: logged at INFO, its warnings at WARNING, and
recorded in scene.json provenance by import and parse.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import trimesh

from hiscene_sim.naming import clean_label
from hiscene_sim.scene import SceneError
from hiscene_sim.units import UNITS, Sized, check_sizes, metres_per_unit
from hiscene_sim.up_axis import Geometry, guess_up, rotation_to_z_up

log = logging.getLogger(__name__)

UP_CHOICES = ("auto", "y", "z")
GLTF_SUFFIXES = (".glb", ".gltf")


def usual_up(suffixes) -> tuple[str, ...]:
    """The usual up axes of files with these suffixes, most usual first: glTF is +Y by its
    spec; other formats (OBJ, PLY, STL) carry no convention, so +Z, as written, comes first."""
    suffixes = [s.lower() for s in suffixes]
    return ("+Y", "+Z") if suffixes and all(s in GLTF_SUFFIXES for s in suffixes) else ("+Z", "+Y")


@dataclass(frozen=True)
class InputFrame:
    """How to read a scene file's coordinates (the ``--up``, ``--units``, ``--scale`` options)."""

    up: str = "auto"
    units: str = "m"
    scale: float = 1.0

    def check(self, where: str) -> None:
        """SceneError naming ``where`` and the value for an unusable setting."""
        if self.up not in UP_CHOICES:
            raise SceneError(f"{where}: unknown up axis {self.up!r}; use --up {', '.join(UP_CHOICES)}")
        if self.units not in UNITS:
            raise SceneError(f"{where}: unknown unit {self.units!r}; use --units {', '.join(UNITS)}")
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise SceneError(f"{where}: --scale must be a positive finite number, got {scale!r}")

    @property
    def metres_per_unit(self) -> float:
        return metres_per_unit(self.units, self.scale)


AS_WRITTEN = InputFrame(up="z")  # files this project wrote itself: metres, +Z up


@dataclass
class FrameReport:
    """What the front door did to a file's coordinates."""

    requested: InputFrame
    up: str  # the file's axis that became +Z ("+Y", ...)
    reason: str
    warnings: list[str] = field(default_factory=list)
    scores_deg: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.up != "+Z" or self.requested.metres_per_unit != 1.0

    def transform(self) -> np.ndarray:
        """4x4: file coordinates -> scene coordinates (metres, +Z up)."""
        m = np.eye(4)
        m[:3, :3] = rotation_to_z_up(self.up) * self.requested.metres_per_unit
        return m

    def summary(self) -> str:
        r = self.requested
        units = f"{r.units}" + (f" x {r.scale:g}" if r.scale != 1 else "")
        return f"file {self.up} up -> +Z, units {units} (x{r.metres_per_unit:g} to metres): {self.reason}"

    def to_json(self) -> dict:
        return {"up_requested": self.requested.up, "up": self.up, "reason": self.reason, "units": self.requested.units,
                "scale": self.requested.scale, "metres_per_unit": self.requested.metres_per_unit,
                "warnings": list(self.warnings)}


def _decide(where: str, frame: InputFrame, scene: Geometry, parts: list[Geometry] | None,
            sized: list[Sized], scene_size: float, usual: tuple[str, ...]) -> FrameReport:
    frame.check(where)
    warnings = check_sizes(where, scene_size, sized, frame.units, frame.scale)  # absurd sizes fail before any work
    if frame.up == "z":
        report = FrameReport(frame, "+Z", "given: --up z (the file's axes kept)", warnings)
    elif frame.up == "y":
        report = FrameReport(frame, "+Y", "given: --up y (+90 deg about X: y -> z, z -> -y)", warnings)
    else:
        guess = guess_up(scene, parts, usual)
        report = FrameReport(frame, guess.direction, guess.reason, warnings, guess.scores_deg)
    log.info("%s: %s", where, report.summary())
    for warning in report.warnings:
        log.warning("%s", warning)
    return report


def _largest_extent(vertices: np.ndarray) -> float:
    finite = vertices[np.all(np.isfinite(vertices), axis=1)]
    return float(np.max(np.ptp(finite, axis=0))) if len(finite) else math.nan


def frame_graph(where: str, graph: trimesh.Scene, frame: InputFrame,
                usual: tuple[str, ...] = ("+Z", "+Y")) -> tuple[trimesh.Scene, FrameReport]:
    """A flat copy of a scene graph in the scene frame: each mesh node keeps its name and its
    geometry (scaled to metres), under its world transform turned up; and the report. Node sizes
    for the plausibility check come from the node names' labels."""
    factor = _factor(where, frame)
    nodes = sorted(graph.graph.nodes_geometry)
    world = {node: graph.graph[node] for node in nodes}
    parts, sized = [], []
    for node, (transform, geom_name) in world.items():
        geometry = graph.geometry[geom_name]
        if not isinstance(geometry, trimesh.Trimesh) or not len(geometry.faces):
            continue
        vertices = trimesh.transform_points(geometry.vertices, transform)
        parts.append(Geometry(vertices, geometry.faces))
        size = _largest_extent(vertices) * factor
        if math.isfinite(size):
            sized.append(Sized(str(node), clean_label(str(node)), size))
    scene = _concatenate(parts)
    report = _decide(where, frame, scene, parts, sized, _largest_extent(scene.vertices) * factor, usual)
    if not report.changed:
        return graph, report
    rotation = rotation_to_z_up(report.up)
    out = trimesh.Scene()
    for name in {geom for _, geom in world.values()}:
        geometry = graph.geometry[name]
        out.geometry[name] = geometry.copy().apply_scale(factor) if factor != 1.0 else geometry
    for node, (transform, geom_name) in world.items():
        matrix = np.eye(4)
        matrix[:3, :3] = rotation @ transform[:3, :3]
        matrix[:3, 3] = factor * (rotation @ transform[:3, 3])
        out.graph.update(frame_to=node, frame_from=out.graph.base_frame, matrix=matrix, geometry=geom_name)
    return out, report


def _concatenate(parts: list[Geometry]) -> Geometry:
    if not parts:
        return Geometry(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Geometry(np.concatenate([p.vertices for p in parts]),
                    np.concatenate([p.faces + o for p, o in zip(parts, offsets)]))


def frame_mesh(where: str, mesh: trimesh.Trimesh, frame: InputFrame,
               usual: tuple[str, ...] = ("+Z", "+Y")) -> tuple[trimesh.Trimesh, FrameReport]:
    """A fused mesh in the scene frame (transformed in place), and the report."""
    report = _decide(where, frame, Geometry(mesh.vertices, mesh.faces), None, [],
                     _largest_extent(mesh.vertices) * _factor(where, frame), usual)
    if report.changed:
        mesh.apply_transform(report.transform())
    return mesh, report


def frame_gaussians(where: str, gaussians, frame: InputFrame):
    """3D Gaussians in the scene frame (centres and scales to metres, rotations turned up):
    (a new Gaussians, the report). ``auto`` judges by the centres alone."""
    from hiscene_sim.render.gaussians import Gaussians
    from hiscene_sim.rotations import quaternion_from_rotation, quaternion_multiply

    means = np.asarray(gaussians.means, dtype=float)
    report = _decide(where, frame, Geometry(means), None, [], _largest_extent(means) * _factor(where, frame), ("+Z", "+Y"))
    if not report.changed:
        return gaussians, report
    factor, rotation = frame.metres_per_unit, rotation_to_z_up(report.up)
    turn = np.asarray(quaternion_from_rotation(rotation), dtype=float)
    g = gaussians
    moved = Gaussians(means @ rotation.T * factor, np.asarray(g.scales) * factor,
                      quaternion_multiply(turn, np.asarray(g.rotations, dtype=float)), g.opacities, g.colors, g.sh_rest)
    return moved, report


def _factor(where: str, frame: InputFrame) -> float:
    frame.check(where)
    return frame.metres_per_unit
