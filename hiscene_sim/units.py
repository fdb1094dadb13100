"""Units of scene files and whether the sizes they give are plausible.

A scene file's numbers are read as ``--units`` (metres by default) times ``--scale``. The sizes
that result are checked against what the objects are:

* every object whose label has a plausible size in the material table
  (``exporters.materials``: a mug is 0.07-0.15 m, a table 0.6-3 m) and is more than
  ``PLAUSIBLE_MARGIN`` times outside it is named in a warning, with the unit or scale factor that
  brings the most labelled objects into range (``--units cm``, ``--scale 0.5``);
* a scene with no such object is checked as a whole: a tabletop to a large room is
  ``SCENE_SIZE_M`` across; outside that it is warned about the same way;
* a scene over ``MAX_SCENE_M`` across, or with no finite coordinate, is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporters.materials import MATERIALS, PLAUSIBLE_MARGIN, match_key, within_plausible
from hiscene_sim.scene import SceneError

UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}
SCENE_SIZE_M = (0.05, 50.0)  # largest extent of a tabletop .. a large room
MAX_SCENE_M = 10_000.0  # 10 km: no tabletop or room, whatever the units
_POWERS = tuple(10.0**k for k in range(-6, 7) if k)
MAX_NAMED = 5


@dataclass(frozen=True)
class Sized:
    """An object of the scene file: its name, its label and its largest extent in metres."""

    name: str
    label: str
    size_m: float


@dataclass(frozen=True)
class _Fix:
    factor: float
    in_range: int
    flag: str  # "--units cm" / "--scale 0.5"


def metres_per_unit(units: str, scale: float) -> float:
    return UNITS[units] * scale


def size_range(label: str) -> tuple[str, tuple[float, float]] | None:
    """(material key, plausible largest extent in m) of a label, or None."""
    key = match_key(label, MATERIALS)
    if key is None or MATERIALS[key].size_m is None:
        return None
    return key, MATERIALS[key].size_m


def _flag(factor: float, units: str, scale: float) -> str:
    """The option that multiplies the current sizes by ``factor``."""
    for name, metres in UNITS.items():
        if name != units and math.isclose(metres, UNITS[units] * factor, rel_tol=1e-9):
            return f"--units {name}"
    return f"--scale {scale * factor:.6g}"


def _log_outside(size: float, span: tuple[float, float]) -> float:
    lo, hi = span
    return max(0.0, math.log10(lo / size) if size < lo else math.log10(size / hi) if size > hi else 0.0)


def _best_fix(sizes: list[tuple[float, tuple[float, float]]], units: str, scale: float) -> _Fix | None:
    """The power of ten or unit change that brings the most sizes into their ranges; among
    equals the one leaving them least far outside, then a change of ``--units``, then the one
    nearest the ranges' middles (in log scale). None if none does better than no change."""
    def rank(factor: float) -> tuple[int, float, bool, float]:
        scaled = [(s * factor, span) for s, span in sizes]
        inside = sum(span[0] <= s <= span[1] for s, span in scaled)
        off_middle = sum(abs(math.log10(s / math.sqrt(span[0] * span[1]))) for s, span in scaled)
        return (inside, -sum(_log_outside(s, span) for s, span in scaled),
                _flag(factor, units, scale).startswith("--units"), -off_middle)

    factors = {*_POWERS, *(m / UNITS[units] for name, m in UNITS.items() if name != units)}
    best = max(sorted(factors), key=rank)
    if rank(best)[:2] <= rank(1.0)[:2]:
        return None
    return _Fix(best, rank(best)[0], _flag(best, units, scale))


def _m(value: float) -> str:
    return f"{value:.3g} m"


def check_sizes(where: str, scene_size_m: float, objects: list[Sized], units: str, scale: float) -> list[str]:
    """Warnings (as text) for implausible sizes; SceneError for an absurd or non-finite scene."""
    setting = f"read as {units}" + (f" x {scale:g}" if scale != 1 else "")
    if not math.isfinite(scene_size_m):
        raise SceneError(f"{where}: the scene has no finite size ({scene_size_m}); its coordinates are NaN or infinite")
    known = [(o, *r) for o in objects if (r := size_range(o.label)) is not None and o.size_m > 0]
    if scene_size_m > MAX_SCENE_M:
        fix = _best_fix([(scene_size_m, SCENE_SIZE_M)], units, scale)
        hint = f"; if the file is in other units, try {fix.flag} ({_m(scene_size_m * fix.factor)})" if fix else ""
        raise SceneError(f"{where}: the scene is {_m(scene_size_m)} across ({setting}): over {MAX_SCENE_M / 1000:g} km, "
                         f"no tabletop or room{hint}")
    if known:
        return _check_objects(where, known, units, scale, setting)
    lo, hi = SCENE_SIZE_M
    if lo / PLAUSIBLE_MARGIN <= scene_size_m <= hi:
        return []
    fix = _best_fix([(scene_size_m, SCENE_SIZE_M)], units, scale) if scene_size_m > 0 else None
    hint = f": {fix.flag}? (x{fix.factor:g} would make it {_m(scene_size_m * fix.factor)})" if fix else ""
    return [f"{where}: the scene is {_m(scene_size_m)} across ({setting}); a tabletop or a room is {lo:g}-{hi:g} m{hint}"]


def _check_objects(where: str, known: list, units: str, scale: float, setting: str) -> list[str]:
    off = [(o, key, span) for o, key, span in known if not within_plausible(o.size_m, span)]
    if not off:
        return []
    parts = [f"{o.name} is {_m(o.size_m)} across; {'an' if key[0] in 'aeiou' else 'a'} {key} is {span[0]:g}-{span[1]:g} m"
             for o, key, span in off[:MAX_NAMED]]
    if len(off) > MAX_NAMED:
        parts.append(f"and {len(off) - MAX_NAMED} more")
    fix = _best_fix([(o.size_m, span) for o, _, span in known], units, scale)
    hint = ""
    if fix:
        first = off[0][0]
        hint = (f": {fix.flag}? (x{fix.factor:g} would make {first.name} {_m(first.size_m * fix.factor)} and bring "
                f"{fix.in_range} of {len(known)} labelled objects into range)")
    return [f"{where}: {len(off)} of {len(known)} labelled objects implausibly sized ({setting}): " + "; ".join(parts) + hint]
