"""Density by label: a documented, overridable table (kg/m^3).

Mass = density x the volume enclosed by the watertight visual mesh. The values are
*effective* densities of that closed volume, not of the raw material: a plush teddy or a
sofa encloses mostly air, a ceramic mug's mesh is usually a thin shell already. Override
per label with ``ExportConfig.densities`` or ``hiscene export --density mug=1800``.
The table is matched against the label's words, longest key first ("coffee table" before
"table"); the fallback is ``DEFAULT_DENSITY``.
"""

from __future__ import annotations

import re

DEFAULT_DENSITY = 500.0

DENSITY_TABLE: dict[str, float] = {
    # furniture (effective: wood / metal frames and panels)
    "table": 500.0, "desk": 500.0, "coffee table": 450.0, "chair": 300.0, "swivel chair": 250.0,
    "stool": 350.0, "sofa": 150.0, "couch": 150.0, "armchair": 180.0, "bed": 200.0, "shelf": 400.0,
    "bookshelf": 400.0, "cabinet": 350.0, "drawer": 350.0, "wardrobe": 300.0, "tray": 600.0,
    # tabletop objects
    "mug": 1800.0, "cup": 1800.0, "bowl": 1800.0, "plate": 2000.0, "vase": 1500.0, "bottle": 800.0,
    "glass": 2500.0, "book": 700.0, "laptop": 1200.0, "keyboard": 800.0, "monitor": 600.0,
    "lamp": 600.0, "plant": 400.0, "pot": 1200.0, "phone": 1500.0, "box": 300.0, "can": 600.0,
    # toys and soft things
    "teddy": 120.0, "teddy bear": 120.0, "plush": 120.0, "pillow": 80.0, "cushion": 80.0,
    "duck": 300.0, "rubber duck": 300.0, "toy": 500.0, "lego": 600.0, "brick": 600.0,
    "jenga": 650.0, "block": 650.0, "ball": 300.0, "bunny": 400.0,
    # materials
    "wood": 600.0, "metal": 7800.0, "steel": 7800.0, "aluminium": 2700.0, "plastic": 1000.0,
    "stone": 2500.0, "ceramic": 2000.0, "rubber": 1100.0,
    # background (static; mass unused but recorded)
    "floor": 2000.0, "ground": 2000.0, "wall": 1500.0, "ceiling": 1500.0,
}

DEFAULT_STATIC_FRICTION = 0.8
DEFAULT_DYNAMIC_FRICTION = 0.6
DEFAULT_RESTITUTION = 0.0


def density_for_label(label: str, overrides: dict[str, float] | None = None, default: float | None = None) -> tuple[float, str]:
    """(density kg/m^3, the table key that matched or "default") for a free-text label."""
    words = " ".join(re.findall(r"[a-z0-9]+", label.lower()))
    for table in (overrides or {}, DENSITY_TABLE):
        normalized = {" ".join(re.findall(r"[a-z0-9]+", k.lower())): (k, v) for k, v in table.items()}
        if words in normalized:
            key, value = normalized[words]
            return float(value), key
        for key_words in sorted(normalized, key=len, reverse=True):
            if key_words and re.search(rf"(^| ){re.escape(key_words)}s?( |$)", words):
                key, value = normalized[key_words]
                return float(value), key
    return float(default if default is not None else DEFAULT_DENSITY), "default"
