"""The drop test in PyBullet, from the export dir's URDFs.

Gravity on, a fixed step of ``1 / config.hz`` (240 Hz by default, PyBullet's own), the
background fixed, everything else free. The start state (penetrations, supports, gaps) is
measured at the exported poses before the first step, the rest state after
``config.seconds``. Deterministic: no randomness, and PyBullet is asked for deterministic
overlapping pairs.

On drift, and why PyBullet's start pose is raised by a computed contact offset: PyBullet
pads every hull by its collision margin, so a body placed exactly on another rests 2 mm
(two margins) above it, and that adds up per layer: a mug on a tray on a table on the floor
rises 6 mm, and a stack of five blocks 1 cm, the whole drift limit, while nothing moved.
That rise is a deterministic property of the contact model, not of the placement, so it is
taken out where it comes from, instead of by a "settle-in" period (which would also hide a
short fall): before stepping, each object is raised, lowest first, by what its padded
supports will push it up: per support, two margins minus the geometric gap (0 to 2 mm,
never more, so an object that starts inside another is not pulled out of it), plus that
support's own offset. Drift is measured from that raised pose, and the offset is reported
(``contact_offset_m``). An object lifted 3 cm has no support within the contact tolerance,
gets no offset, and its fall shows in full.
"""

from __future__ import annotations

import time

import numpy as np

from hiscene_sim.scene import SceneError
from physics.bullet import BulletWorld
from physics.config import ValidationConfig
from physics.manifest import ExportManifest
from physics.verdict import Observation, RestWatch


def contact_offsets(world: BulletWorld) -> dict[str, float]:
    """object id -> how far PyBullet's hull padding will raise it (see the module doc)."""
    cfg = world.config
    pad = 2.0 * cfg.pybullet_hull_margin
    fg = [o.id for o in world.manifest.foreground]
    closest: dict[tuple[str, str], float] = {}  # (object, its support) -> smallest geometric distance
    for q in world.proximities(cfg.contact_tolerance_m, fg):
        if q.a in world.background or q.normal[2] < cfg.support_normal_z or q.distance_m > cfg.contact_tolerance_m:
            continue
        key = (q.a, q.b)
        closest[key] = min(closest.get(key, q.distance_m), q.distance_m)
    offsets: dict[str, float] = {}
    for oid in sorted(fg, key=lambda i: world.z_extent(i)[0]):
        offsets[oid] = max(
            (offsets.get(b, 0.0) + min(max(pad - d, 0.0), pad) for (a, b), d in closest.items() if a == oid),
            default=0.0,
        )
    return offsets


def observe_pybullet(manifest: ExportManifest, config: ValidationConfig) -> Observation:
    if any(o.urdf is None for o in manifest.objects):
        missing = [o.id for o in manifest.objects if o.urdf is None]
        raise SceneError(
            f"{manifest.export_dir}: exported without URDF ({', '.join(missing)}); re-export with --formats urdf,..."
        )
    with BulletWorld(manifest, config) as world:
        start, pairs_start = world.states()
        offsets = contact_offsets(world)
        for oid, dz in offsets.items():
            if dz > 0.0:
                world.move(oid, (0.0, 0.0, dz))
        fg = [o.id for o in manifest.foreground]
        watch = RestWatch(fg, config, config.timestep, config.steps)
        t0 = time.perf_counter()
        for i in range(config.steps):
            world.step()
            if fg:
                watch.add(i, np.stack([world.velocity(oid) for oid in fg]))
        wall = time.perf_counter() - t0
        rest, pairs_rest = world.states()
    speeds, settle = watch.speeds_and_settle()
    return Observation("pybullet", config.timestep, config.steps, wall, start, rest, speeds, settle, pairs_start, pairs_rest,
                       contact_offsets=offsets)
