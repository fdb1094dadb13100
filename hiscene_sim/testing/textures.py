"""Procedural texture for fused test scenes: per-vertex colour that varies over an object
(wood grain, fabric weave, speckle), as a textured generator's baked colours do, instead of
one flat colour per object.

Noise is a sum of random sinusoids of the world position (random Fourier features: smooth,
seeded, no grid), at frequencies set in cycles per metre so a chair and a mug get the same
grain density. Each object's texture depends only on its own seed and material, not on the
scene around it.
"""

from __future__ import annotations

import numpy as np


def fourier_noise(points: np.ndarray, rng: np.random.Generator, frequency: float, octaves: int = 3) -> np.ndarray:
    """(N,) smooth noise in about [-1, 1] of world points (N, 3); ``frequency`` in cycles/m."""
    out = np.zeros(len(points))
    amplitude, total = 1.0, 0.0
    for _ in range(octaves):
        directions = rng.normal(size=(4, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        phases = rng.uniform(0, 2 * np.pi, size=4)
        out += amplitude * np.sin(2 * np.pi * frequency * points @ directions.T + phases).mean(axis=1)
        total += amplitude
        amplitude *= 0.5
        frequency *= 2.0
    return out / total * 2.0


def texture(points: np.ndarray, base: np.ndarray, material: str, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float RGB in [0, 255] of ``material`` over ``points`` around ``base`` (N, 3) or (3,)."""
    base = np.broadcast_to(np.asarray(base, dtype=np.float64), (len(points), 3))
    if material == "wood":
        axis = rng.normal(size=3)
        axis[2] *= 0.3
        axis /= np.linalg.norm(axis)
        warp = 3.0 * fourier_noise(points, rng, 2.0)
        grain = np.sin(2 * np.pi * rng.uniform(15, 35) * (points @ axis) + warp)
        shade = 0.82 + 0.14 * grain + 0.06 * fourier_noise(points, rng, 20.0)
    elif material == "fabric":
        shade = 0.88 + 0.08 * fourier_noise(points, rng, 60.0, octaves=2) + 0.06 * fourier_noise(points, rng, 3.0)
    elif material == "plant":
        shade = 0.8 + 0.2 * fourier_noise(points, rng, 8.0)
    elif material in ("floor_wood", "floor_carpet"):
        if material == "floor_wood":  # planks along x with dark seams and grain
            plank = rng.uniform(0.12, 0.2)
            seam = (np.abs(((points[:, 1] / plank) % 1.0) - 0.5) > 0.46).astype(float)
            shade = 0.85 + 0.1 * np.sin(2 * np.pi * 25 * points[:, 0] + 2 * fourier_noise(points, rng, 1.5)) - 0.25 * seam
        else:
            shade = 0.9 + 0.1 * fourier_noise(points, rng, 40.0)
    else:  # ceramic, metal, plastic, paint: faint speckle and shading
        shade = 0.93 + 0.05 * fourier_noise(points, rng, 10.0)
    tint = 1.0 + 0.04 * fourier_noise(points, rng, 1.0)[:, None] * rng.normal(size=3)
    return np.clip(base * shade[:, None] * tint, 0, 255)


def apply_textures(mesh, vertex_object: np.ndarray, materials: list[tuple[str, tuple, bool]], seed: int) -> None:
    """Re-colour ``mesh``'s vertices in place: vertices of object ``i`` (``vertex_object``) get
    ``materials[i] = (material, base colour, keep)``; ``keep`` modulates the vertex colours
    the fusing step took from the object's own texture instead of the base colour."""
    import trimesh

    colors = np.asarray(mesh.visual.vertex_colors, dtype=np.float64).copy() if mesh.visual.kind == "vertex" else \
        np.full((len(mesh.vertices), 4), 255.0)
    for i, (material, base, keep) in enumerate(materials):
        sel = np.flatnonzero(vertex_object == i)
        if len(sel) == 0:
            continue
        rng = np.random.default_rng([seed, i])
        start = colors[sel, :3] if keep else np.asarray(base, dtype=np.float64)
        colors[sel, :3] = texture(mesh.vertices[sel], start, material, rng)
    colors[:, 3] = 255
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.round(colors).astype(np.uint8))
