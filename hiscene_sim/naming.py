"""Labels and names: a node name becomes a semantic label, a label becomes a safe identifier.

Labels are free text and are written verbatim (escaped) wherever a consumer stores text.
Identifiers name files, URDF links, MJCF bodies and USD prims, so they are reduced to
``[A-Za-z0-9_]`` and can never hold a path separator, ``..``, quotes or markup.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from hiscene_sim.scene import ID_PATTERN

_SUFFIX = re.compile(r"(?:[\s_.\-]*(?:\(\d+\)|\d+))+$")
MAX_ID_LENGTH = 48


def clean_label(node_name: str) -> str:
    """A semantic label from a scene-file node name: ``chair_2`` -> ``chair``,
    ``Office_Chair.001`` -> ``office chair``, ``mug (3)`` -> ``mug``. Empty -> ``object``."""
    text = _SUFFIX.sub("", node_name.strip())
    text = re.sub(r"[_\s]+", " ", text).strip().lower()
    return text or "object"


def safe_identifier(text: str, taken: Iterable[str] = ()) -> str:
    """An identifier matching ``scene.ID_PATTERN`` derived from ``text`` and unique
    (ignoring case) among ``taken``: ``"Café <mug> & co/.."`` -> ``cafe_mug_co``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    ident = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()[:MAX_ID_LENGTH].strip("_")
    if not ident:
        ident = "object"
    if ident[0].isdigit():
        ident = f"_{ident}"
    used = {t.lower() for t in taken}
    candidate, n = ident, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{ident}_{n}"
    assert ID_PATTERN.match(candidate), candidate
    return candidate
