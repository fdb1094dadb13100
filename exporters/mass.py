"""Mass, centre of mass and inertia from the watertight volume and a density (by label: exporters/materials.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

MIN_MASS = 1e-3  # kg; lighter bodies make simulators unstable


@dataclass(frozen=True)
class MassProperties:
    mass: float  # kg
    center_of_mass: tuple[float, float, float]  # m, in the object's (unscaled, rigid) local frame
    inertia: tuple[tuple[float, float, float], ...]  # 3x3 kg m^2 about the centre of mass, local axes
    volume: float  # m^3 of the watertight mesh
    density: float  # kg/m^3 actually used (after any clamping to MIN_MASS)
    density_source: str  # the material key the density came from (see exporters.materials), or "default"

    def principal_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """(moments (3,), rotation (3,3) with the principal axes as columns, det +1)."""
        moments, axes = np.linalg.eigh(np.asarray(self.inertia))
        if np.linalg.det(axes) < 0:
            axes[:, 2] *= -1
        return np.maximum(moments, 1e-12), axes


def compute_mass_properties(
    solid: trimesh.Trimesh, label: str, density: float, source: str
) -> tuple[MassProperties, list[str]]:
    """Mass properties of the closed mesh ``solid`` (metres) filled at ``density`` (kg/m^3);
    ``source``: where the density came from, recorded."""
    warnings: list[str] = []
    volume = float(solid.volume)
    if not np.isfinite(volume) or volume <= 0:
        raise ValueError(f"{label!r}: watertight mesh has no positive volume ({volume})")
    if density * volume < MIN_MASS:
        warnings.append(
            f"{label!r}: mass {density * volume:.2e} kg from density {density} x volume {volume:.2e} m^3 "
            f"is below {MIN_MASS} kg; density raised so the mass is {MIN_MASS} kg"
        )
        density = MIN_MASS / volume
    mesh = solid.copy()
    mesh.density = density
    inertia = np.asarray(mesh.moment_inertia, dtype=np.float64)
    inertia = 0.5 * (inertia + inertia.T)
    return (
        MassProperties(
            mass=float(mesh.mass),
            center_of_mass=tuple(float(v) for v in mesh.center_mass),
            inertia=tuple(tuple(float(v) for v in row) for row in inertia),
            volume=volume,
            density=float(density),
            density_source=source,
        ),
        warnings,
    )


def combine_mass_properties(parts: list[tuple[MassProperties, np.ndarray]], source: str) -> MassProperties:
    """The mass properties of rigidly joined parts, each given in its own frame with its 4x4
    part-to-whole transform (rigid): masses add, centres of mass average by mass, inertia
    tensors are rotated into the whole's axes and moved to the common centre of mass
    (parallel axis theorem)."""
    if not parts:
        raise ValueError("no parts to combine")
    masses = np.array([p.mass for p, _ in parts], dtype=np.float64)
    total = float(masses.sum())
    coms = np.array([t[:3, :3] @ np.asarray(p.center_of_mass) + t[:3, 3] for p, t in parts])
    com = (masses[:, None] * coms).sum(axis=0) / total
    inertia = np.zeros((3, 3))
    for (p, t), c, m in zip(parts, coms, masses):
        r = t[:3, :3]
        d = c - com
        inertia += r @ np.asarray(p.inertia) @ r.T + m * (float(d @ d) * np.eye(3) - np.outer(d, d))
    inertia = 0.5 * (inertia + inertia.T)
    volume = float(sum(p.volume for p, _ in parts))
    return MassProperties(
        mass=total, center_of_mass=tuple(float(v) for v in com), inertia=tuple(tuple(float(v) for v in r) for r in inertia),
        volume=volume, density=total / volume if volume > 0 else 0.0, density_source=source,
    )
