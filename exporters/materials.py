"""Physical material by label: effective density, friction, restitution, plausible size and mass.

Mass = density x the volume enclosed by the watertight visual mesh. The densities are
*effective* densities of that closed volume, not of the raw material: a plush teddy or a
sofa encloses mostly air, a ceramic mug's mesh is usually a thin shell already.

Friction and restitution are per-surface coefficients of the object's outer material; each
simulator combines the two bodies of a contact its own way (PyBullet multiplies them,
PhysX / Isaac averages them, MuJoCo takes the larger friction and mixes ``solref``).

Lookup: the label's words are matched against the keys, longest key first ("coffee table"
before "table"), a plural "s" / "es" tolerated ("coffee tables" -> "coffee table"). An
unknown label gets ``DEFAULT_MATERIAL`` and a WARNING (once per label and process).

Overrides (``ExportConfig.material`` builds them), most specific first:

1. per label: ``ExportConfig.materials = {"mug": {"dynamic_friction": 0.3}}`` sets any
   ``Material`` field for labels matching that key (same word matching);
   ``ExportConfig.densities`` / ``--density mug=1800`` is the same as ``{"density": 1800}``;
2. for every label: ``ExportConfig.static_friction`` / ``dynamic_friction`` / ``restitution``
   are ``None`` (take the table) unless set; a number applies to every object
   (``--friction`` sets both frictions). It is the override key ``"*"``;
3. the table below, by label;
4. ``DEFAULT_MATERIAL`` for an unknown label; ``ExportConfig.default_density`` replaces its density.

``check_plausible`` flags an object whose size or mass is far (``PLAUSIBLE_MARGIN`` times)
outside its category's range: usually a wrong label or a wrong scene scale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

log = logging.getLogger(__name__)

ALL_LABELS = "*"  # override key that applies to every label
PLAUSIBLE_MARGIN = 3.0  # warn only beyond range_max x 3 or below range_min / 3


@dataclass(frozen=True)
class Material:
    density: float  # kg/m^3, effective (of the closed visual mesh)
    static_friction: float
    dynamic_friction: float
    restitution: float  # 0 = no bounce, 1 = elastic
    size_m: tuple[float, float] | None = None  # plausible largest bounding-box extent (min, max), m
    mass_kg: tuple[float, float] | None = None  # plausible mass (min, max), kg

    def __post_init__(self) -> None:
        for name in ("density", "static_friction", "dynamic_friction", "restitution"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not self.density > 0 or min(self.static_friction, self.dynamic_friction) < 0 or not 0 <= self.restitution <= 1:
            raise ValueError(f"invalid material {self}: density > 0, friction >= 0, 0 <= restitution <= 1")
        for name in ("size_m", "mass_kg"):
            span = getattr(self, name)
            if span is not None:
                if len(span) != 2 or not 0 < span[0] <= span[1]:
                    raise ValueError(f"invalid material {self}: {name} must be (min, max) with 0 < min <= max")
                object.__setattr__(self, name, (float(span[0]), float(span[1])))


MATERIAL_FIELDS = tuple(f.name for f in fields(Material))


@dataclass(frozen=True)
class Surface:
    static_friction: float
    dynamic_friction: float
    restitution: float


# Friction: dry coefficients of the object's outer material against the usual supports (wood,
# laminate, tile). Sources: Serway & Jewett, Physics for Scientists and Engineers, table 5.1
# (wood-wood 0.25-0.5 static / 0.2 kinetic, glass-glass 0.94 / 0.4, rubber-concrete 1.0 / 0.8,
# steel-steel 0.74 / 0.57); Engineering ToolBox, "Friction and friction coefficients for some
# common materials" (wood-metal 0.2-0.6, glass-metal 0.5-0.7, wood-brick 0.6, leather-wood 0.3-0.4).
# Kinetic is taken 0.75-0.9 x static (Serway's pairs: 0.4-0.8 x): PyBullet and MuJoCo use the
# kinetic value as their only coefficient, so it is not set lower.
# Restitution: of a whole object landing on a hard floor, not of a ball of its material: a
# flat-bottomed object spends most of the impact on rotation and several contacts, so hard
# objects get 0.1-0.3 (an assumption); padded and plush ones ~0 (the stuffing absorbs the impact).
# Supports (furniture, floors, walls) get restitution 0: MuJoCo averages the two geoms' contact
# damping, and an under-damped support makes whatever rests on it rock while it settles.
WOOD = Surface(0.5, 0.4, 0.0)  # finished wood on wood: the top of 0.25-0.5
CERAMIC = Surface(0.5, 0.4, 0.2)  # glazed ceramic on wood ~0.5 (assumption; glass-metal is 0.5-0.7)
GLASS = Surface(0.6, 0.45, 0.2)  # glass-metal 0.5-0.7; kinetic well below static (glass-glass 0.94 / 0.4)
METAL = Surface(0.45, 0.35, 0.2)  # wood-metal 0.2-0.6, middle
PLASTIC = Surface(0.4, 0.3, 0.3)  # ABS / polypropylene on wood ~0.3-0.5 (assumption); hard toys bounce a little
RUBBER = Surface(0.9, 0.8, 0.3)  # rubber-concrete 1.0 / 0.8; a hollow squeeze toy bounces little
FABRIC = Surface(0.6, 0.5, 0.05)  # upholstery / cotton on wood ~0.5-0.6 (assumption; leather-wood 0.3-0.4)
PLUSH = Surface(0.8, 0.7, 0.02)  # pile fabric catches on surfaces (assumption); stuffing absorbs impacts
PAPER = Surface(0.5, 0.4, 0.1)  # paper / cardboard on wood ~0.4-0.5 (assumption)
FRUIT = Surface(0.5, 0.4, 0.2)  # fruit skin on wood ~0.4-0.6 (assumption; waxy skins at the low end)
FLOOR = Surface(0.6, 0.5, 0.0)  # wood / tile / concrete floors and painted walls (wood-brick 0.6)
# ITF tennis ball: rebound 135-147 cm from 254 cm -> e = 0.73-0.76; FIBA basketball 1.2-1.4 m from 1.8 m -> 0.82-0.88
BALL = Surface(0.8, 0.7, 0.75)

DEFAULT_DENSITY = 500.0
DEFAULT_STATIC_FRICTION = 0.8
DEFAULT_DYNAMIC_FRICTION = 0.6
DEFAULT_RESTITUTION = 0.0
DEFAULT_MATERIAL = Material(DEFAULT_DENSITY, DEFAULT_STATIC_FRICTION, DEFAULT_DYNAMIC_FRICTION, DEFAULT_RESTITUTION)


def _m(density: float, surface: Surface, size_m: tuple[float, float] | None = None,
       mass_kg: tuple[float, float] | None = None) -> Material:
    return Material(density, surface.static_friction, surface.dynamic_friction, surface.restitution, size_m, mass_kg)


# Sizes (largest extent, m) and masses (kg) are typical retail dimensions and weights of the
# category (assumptions); PLAUSIBLE_MARGIN leaves room for real variation. Densities as before:
# effective values of the closed mesh (a sofa or a teddy encloses mostly air).
MATERIALS: dict[str, Material] = {
    # furniture (effective: wood / metal frames and panels)
    "table": _m(500, WOOD, (0.6, 3.0), (10, 80)),
    "desk": _m(500, WOOD, (0.8, 2.2), (15, 80)),
    "coffee table": _m(450, WOOD, (0.5, 1.5), (8, 40)),
    "chair": _m(300, WOOD, (0.4, 1.2), (3, 15)),
    "swivel chair": _m(250, PLASTIC, (0.6, 1.3), (8, 25)),
    "office chair": _m(250, PLASTIC, (0.6, 1.3), (8, 25)),
    "stool": _m(350, WOOD, (0.3, 0.9), (2, 10)),
    "sofa": _m(150, FABRIC, (1.2, 3.0), (30, 120)),
    "couch": _m(150, FABRIC, (1.2, 3.0), (30, 120)),
    "armchair": _m(180, FABRIC, (0.6, 1.2), (15, 50)),
    "bed": _m(200, FABRIC, (1.8, 2.4), (30, 150)),
    "shelf": _m(400, WOOD, (0.3, 2.2), (2, 40)),
    "bookshelf": _m(400, WOOD, (0.6, 2.4), (15, 80)),
    "bookcase": _m(400, WOOD, (0.6, 2.4), (15, 80)),
    "cabinet": _m(350, WOOD, (0.4, 2.2), (10, 100)),
    "drawer": _m(350, WOOD, (0.3, 1.5), (5, 60)),  # a single drawer or a drawer unit
    "chest of drawers": _m(350, WOOD, (0.6, 1.6), (20, 90)),
    "wardrobe": _m(300, WOOD, (1.5, 2.5), (40, 150)),
    "nightstand": _m(400, WOOD, (0.35, 0.8), (5, 25)),
    "bedside table": _m(400, WOOD, (0.35, 0.8), (5, 25)),
    "dresser": _m(350, WOOD, (0.7, 1.8), (25, 90)),
    "tv stand": _m(400, WOOD, (0.8, 2.2), (10, 50)),
    "bench": _m(400, WOOD, (0.8, 2.0), (5, 40)),
    "tray": _m(600, WOOD, (0.25, 0.6), (0.2, 2)),
    # appliances and fixtures (hollow boxes: low effective density)
    "refrigerator": _m(150, METAL, (1.2, 2.0), (40, 150)),
    "fridge": _m(150, METAL, (1.2, 2.0), (40, 150)),
    "microwave": _m(250, METAL, (0.4, 0.6), (8, 25)),
    "sink": _m(300, CERAMIC, (0.4, 1.2), (5, 40)),
    "tv": _m(300, PLASTIC, (0.5, 2.0), (4, 40)),
    "television": _m(300, PLASTIC, (0.5, 2.0), (4, 40)),
    "rug": _m(200, FABRIC, (0.6, 4.0), (1, 40)),  # wool rug ~2.5 kg/m^2 at ~12 mm: ~200 kg/m^3
    "carpet": _m(200, FABRIC, (0.6, 4.0), (1, 40)),
    "trash can": _m(150, PLASTIC, (0.2, 0.9), (0.5, 10)),
    "trash bin": _m(150, PLASTIC, (0.2, 0.9), (0.5, 10)),
    "garbage can": _m(150, PLASTIC, (0.2, 0.9), (0.5, 10)),
    # tabletop objects
    "mug": _m(1800, CERAMIC, (0.07, 0.15), (0.2, 0.6)),
    "cup": _m(1800, CERAMIC, (0.05, 0.15), (0.05, 0.4)),
    "bowl": _m(1800, CERAMIC, (0.1, 0.35), (0.15, 1.2)),
    "plate": _m(2000, CERAMIC, (0.15, 0.35), (0.2, 1.0)),
    "vase": _m(1500, CERAMIC, (0.1, 0.6), (0.2, 5)),
    "bottle": _m(800, GLASS, (0.15, 0.4), (0.03, 1.6)),
    "glass": _m(2500, GLASS, (0.06, 0.2), (0.1, 0.5)),
    "book": _m(700, PAPER, (0.12, 0.4), (0.1, 2.5)),
    "laptop": _m(1200, PLASTIC, (0.25, 0.45), (0.9, 3.5)),
    "keyboard": _m(800, PLASTIC, (0.3, 0.5), (0.3, 1.3)),
    "monitor": _m(600, PLASTIC, (0.35, 0.9), (2, 10)),
    "lamp": _m(600, METAL, (0.2, 1.9), (0.5, 10)),
    "table lamp": _m(600, METAL, (0.2, 0.8), (0.5, 5)),
    "desk lamp": _m(600, METAL, (0.2, 0.8), (0.5, 5)),
    "floor lamp": _m(600, METAL, (1.2, 2.0), (3, 15)),
    "plant": _m(400, CERAMIC, (0.1, 2.0), (0.1, 30)),  # friction of its pot
    "potted plant": _m(500, CERAMIC, (0.1, 2.0), (0.3, 30)),
    "pot": _m(1200, CERAMIC, (0.1, 0.5), (0.3, 6)),  # flower or cooking pot
    "flower pot": _m(1200, CERAMIC, (0.08, 0.5), (0.2, 10)),
    "plant pot": _m(1200, CERAMIC, (0.08, 0.5), (0.2, 10)),
    "pan": _m(1500, METAL, (0.2, 0.5), (0.5, 3)),
    "phone": _m(1500, GLASS, (0.1, 0.2), (0.1, 0.3)),
    "box": _m(300, PAPER, (0.05, 1.0), (0.02, 15)),
    "can": _m(600, METAL, (0.08, 0.2), (0.01, 0.5)),  # empty 15 g, full 0.37 kg
    "remote": _m(700, PLASTIC, (0.1, 0.3), (0.05, 0.3)),
    "clock": _m(500, PLASTIC, (0.08, 0.6), (0.1, 5)),
    "picture frame": _m(700, WOOD, (0.1, 1.2), (0.1, 5)),
    "basket": _m(150, WOOD, (0.2, 0.6), (0.2, 3)),  # wicker: mostly air
    # food (whole fruit floats: apples ~0.8 g/cm^3)
    "fruit": _m(900, FRUIT, (0.02, 0.4), (0.005, 5)),
    "apple": _m(800, FRUIT, (0.05, 0.11), (0.07, 0.35)),
    "banana": _m(950, FRUIT, (0.12, 0.25), (0.08, 0.25)),
    "orange": _m(900, FRUIT, (0.05, 0.11), (0.1, 0.35)),
    # toys and soft things
    "teddy": _m(120, PLUSH, (0.05, 1.0), (0.01, 2)),  # keychain plush ~15 g .. 1 m bear
    "teddy bear": _m(120, PLUSH, (0.05, 1.0), (0.01, 2)),
    "plush": _m(120, PLUSH, (0.05, 1.0), (0.01, 2)),
    "pillow": _m(80, FABRIC, (0.3, 0.9), (0.2, 2)),
    "cushion": _m(80, FABRIC, (0.3, 0.7), (0.1, 1.5)),
    "duck": _m(300, RUBBER, (0.05, 0.3), (0.01, 0.5)),
    "rubber duck": _m(300, RUBBER, (0.05, 0.15), (0.01, 0.2)),
    "toy": _m(500, PLASTIC, (0.03, 0.6), (0.005, 3)),
    "lego": _m(600, PLASTIC, (0.01, 0.5), (0.001, 2)),  # a 2x4 brick is 32 mm, 2.3 g
    "brick": _m(600, PLASTIC, (0.015, 0.25), (0.001, 4)),
    "jenga": _m(650, WOOD, (0.05, 0.3), (0.01, 0.5)),  # 75 mm blocks ~18 g .. garden sets' 30 cm
    "block": _m(650, WOOD, (0.02, 0.5), (0.005, 5)),
    "ball": _m(300, BALL, (0.04, 0.3), (0.002, 1.0)),  # ping-pong 2.7 g .. basketball 0.6 kg
    "bunny": _m(400, PLASTIC, (0.05, 0.5), (0.01, 3)),
    # materials named in the label
    "wood": _m(600, WOOD), "metal": _m(7800, METAL), "steel": _m(7800, METAL), "aluminium": _m(2700, METAL),
    "plastic": _m(1000, PLASTIC), "stone": _m(2500, FLOOR), "ceramic": _m(2000, CERAMIC), "rubber": _m(1100, RUBBER),
    # background (static; mass unused but recorded). "background" is the parse stage's catch-all instance
    "floor": _m(2000, FLOOR), "ground": _m(2000, FLOOR), "wall": _m(1500, FLOOR), "ceiling": _m(1500, FLOOR),
    "background": DEFAULT_MATERIAL,
    "object": DEFAULT_MATERIAL,  # the label of an object no labeller could name: the default, without a warning
}

DENSITY_TABLE: dict[str, float] = {key: m.density for key, m in MATERIALS.items()}

_warned: set[str] = set()


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def match_key(label: str, keys) -> str | None:
    """The key of ``keys`` the label names: an exact match, else the longest key found among
    its words (a plural "s" / "es" tolerated); None if none."""
    words = _words(label)
    normalized = {_words(k): k for k in keys if k != ALL_LABELS}
    if words in normalized:
        return normalized[words]
    for key_words in sorted(normalized, key=len, reverse=True):
        if key_words and re.search(rf"(^| ){re.escape(key_words)}(e?s)?( |$)", words):
            return normalized[key_words]
    return None


def material_for_label(
    label: str, overrides: Mapping[str, Mapping[str, object]] | None = None, default: Material | None = None
) -> tuple[Material, str]:
    """(material, the key that matched: the override's, else the table's, else "default").

    ``overrides``: key -> {Material field: value}, applied over the table's material; the key
    ``"*"`` applies to every label, a matching label key wins over it. ``default``: the
    material of unknown labels (``DEFAULT_MATERIAL``)."""
    overrides = overrides or {}
    table_key = match_key(label, MATERIALS)
    override_key = match_key(label, overrides)
    changes = {**overrides.get(ALL_LABELS, {}), **(overrides[override_key] if override_key else {})}
    unknown = set(changes) - set(MATERIAL_FIELDS)
    if unknown:
        raise ValueError(f"material override for {label!r}: unknown fields {sorted(unknown)}; use {', '.join(MATERIAL_FIELDS)}")
    material = replace(MATERIALS[table_key] if table_key else (default or DEFAULT_MATERIAL), **changes)
    if table_key is None and override_key is None and label not in _warned:
        _warned.add(label)
        log.warning("label %r matches no material; using the default material (density %g kg/m^3, "
                    "static friction %g, dynamic friction %g, restitution %g)", label, material.density,
                    material.static_friction, material.dynamic_friction, material.restitution)
    return material, override_key or table_key or "default"


def density_for_label(
    label: str, overrides: Mapping[str, float] | None = None, default: float | None = None
) -> tuple[float, str]:
    """(density kg/m^3, the key that matched or "default") for a free-text label."""
    fallback = DEFAULT_MATERIAL if default is None else replace(DEFAULT_MATERIAL, density=default)
    material, key = material_for_label(label, {k: {"density": v} for k, v in (overrides or {}).items()}, fallback)
    return material.density, key


def check_plausible(
    label: str, size_m: float, mass_kg: float, object_id: str | None = None, material: tuple[Material, str] | None = None
) -> list[str]:
    """Warnings when the object's largest extent or mass is more than PLAUSIBLE_MARGIN times
    outside its category's range (none for categories without ranges or unknown labels).
    ``material``: the label's (material, key) when already looked up (with overrides)."""
    material, key = material or material_for_label(label)
    who = f"object {object_id!r} labelled {label!r}" if object_id else repr(label)
    a_key = f"{'an' if key[:1] in 'aeiou' else 'a'} {key}"
    out = []
    if material.size_m and not within_plausible(size_m, material.size_m):
        lo, hi = material.size_m
        out.append(f"{who} is {size_m:.3g} m across; {a_key} is {lo:g}-{hi:g} m")
    if material.mass_kg and not within_plausible(mass_kg, material.mass_kg):
        lo, hi = material.mass_kg
        out.append(f"{who} weighs {mass_kg:.3g} kg; {a_key} weighs {lo:g}-{hi:g} kg")
    return out


def within_plausible(value: float, span: tuple[float, float]) -> bool:
    """``value`` inside ``span`` widened ``PLAUSIBLE_MARGIN`` times both ways."""
    return span[0] / PLAUSIBLE_MARGIN <= value <= span[1] * PLAUSIBLE_MARGIN
