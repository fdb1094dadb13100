"""The labelling stage's contract: what a labeller is given, what it answers, and how any
answer becomes a clean semantic label (the paper's l_i in C_i = {p_i, r_i, s_i, l_i}).

A labeller sees one object at a time as a :class:`LabelItem`: its object-centric views
(RGB images, for the VLM and CLIP backends) and the geometric facts the weight-free default
uses (what the parser called it, whether other objects rest on its top). It answers a
:class:`LabelAnswer` whose ``label`` has been through :func:`normalise_label`; a labeller
that cannot answer raises :class:`LabelError` and the stage falls back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from hiscene_sim.backends import Registry

MAX_LABEL_WORDS = 4
MAX_LABEL_CHARS = 40
FALLBACK_LABEL = "object"


class LabelError(RuntimeError):
    """A labeller could not give a usable label for one object (the stage retries, then falls back)."""


@dataclass(frozen=True)
class LabelItem:
    """One object to label.

    Attributes:
        object_id: the object's id in ``scene.json``.
        images: object-centric RGB views, (H, W, 3) uint8; empty for labellers that need none.
        view_names: where each image came from (a path relative to the scene dir, or
            ``render:az=30,el=20``), recorded in ``label_source``.
        kind: what parsing called it: ``object``, ``floor``, ``wall`` or ``background``.
        supports: ids of objects resting on this object's top.
        top_area: area (m^2) of its upward-facing surface where what it supports stands (else at its top).
        footprint_area: area (m^2) of its horizontal bounding box.
        supported_footprint: the largest footprint (m^2) of the objects resting on it.
        size: (3,) extents of its axis-aligned bounding box, metres.
        current_label: the label it has now.
    """

    object_id: str
    images: tuple[np.ndarray, ...] = ()
    view_names: tuple[str, ...] = ()
    kind: str = "object"
    supports: tuple[str, ...] = ()
    top_area: float = 0.0
    footprint_area: float = 0.0
    supported_footprint: float = 0.0
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    current_label: str = FALLBACK_LABEL


@dataclass(frozen=True)
class LabelAnswer:
    """A labeller's answer for one object.

    Attributes:
        label: the normalised label (lower case, singular, no article).
        backend: the labeller's registry name.
        model: the model that answered (a weights path, a model name; ``None`` for rules).
        views: the views the answer is based on (``LabelItem.view_names``).
        raw: the raw answer, truncated to a few hundred characters (never holds a secret).
        score: the backend's confidence where it has one (CLIP's probability).
    """

    label: str
    backend: str
    model: str | None = None
    views: tuple[str, ...] = ()
    raw: str = ""
    score: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Labeller(Protocol):
    name: str
    needs_views: bool  # False: the stage does not render views for it

    def label(self, item: LabelItem, vocabulary: Sequence[str] | None = None) -> LabelAnswer:
        """The label of ``item``; with a vocabulary, one of its entries. Raises :class:`LabelError`."""
        ...


LABELLERS: Registry[Labeller] = Registry("labeller", default="geometric")

_ARTICLE = re.compile(r"^(?:a|an|the|some|this|that|one)\s+")
_IRREGULAR = {"people": "person", "shelves": "shelf", "knives": "knife", "leaves": "leaf", "mice": "mouse",
              "feet": "foot", "teeth": "tooth", "children": "child", "men": "man", "women": "woman",
              "geese": "goose", "cacti": "cactus", "loaves": "loaf", "wolves": "wolf", "halves": "half"}
# words ending in s that are singular already
_SINGULAR_S = {"glass", "grass", "gas", "bus", "lens", "chess", "dress", "mattress", "cactus", "bonus",
               "canvas", "atlas", "iris", "tennis", "series", "species", "news", "pants", "scissors",
               "jeans", "shorts", "stairs", "headphones", "cutlery", "compass", "hummus",
               "octopus", "virus", "walrus", "platypus", "abacus", "cross", "moss", "boss", "kiss", "lotus"}


def singular(word: str) -> str:
    """English singular of one lower-case word (the rules nouns of household objects need)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _SINGULAR_S or len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ves") and len(word) > 4:
        return word[:-3] + "f"
    if word.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return word[:-2]
    return word[:-1]


def normalise_label(text: str | None) -> str | None:
    """A clean label from a free-text answer, or ``None`` when there is none.

    Lower case, letters / digits / spaces / hyphens only (markup, quotes, path pieces and
    newlines cannot survive), no leading article, the last word singular, at most
    ``MAX_LABEL_WORDS`` words and ``MAX_LABEL_CHARS`` characters: a longer answer is a
    sentence, not a label, and gives ``None``.
    """
    if text is None:
        return None
    text = str(text).strip().lower()
    # take the first line / clause of a chatty answer, and drop what markup wraps
    text = re.sub(r"<[^>]*>", " ", text)
    text = re.split(r"[\n\r.;:!?,(\[{|]", text, maxsplit=1)[0]
    words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text)
    while words and _ARTICLE.match(" ".join(words[:1]) + " "):
        words = words[1:]
    if not words or len(words) > MAX_LABEL_WORDS:
        return None
    words[-1] = singular(words[-1])
    label = " ".join(words)
    if len(label) > MAX_LABEL_CHARS or not re.search(r"[a-z]", label):
        return None
    return label


def parse_vocabulary(text: str | Sequence[str] | None) -> list[str]:
    """``"table, chair,Mugs"`` (or a list, or a file's lines) -> ``["table", "chair", "mug"]``:
    normalised, de-duplicated, in order. Entries that do not normalise are dropped."""
    if text is None:
        return []
    parts = re.split(r"[,\n]", text) if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in parts:
        label = normalise_label(part)
        if label and label not in out:
            out.append(label)
    return out


def match_vocabulary(label: str, vocabulary: Sequence[str]) -> str | None:
    """The vocabulary entry ``label`` names: itself, or the entry whose words end it
    (``"white coffee mug"`` -> ``"mug"``; longest entry first), else ``None``."""
    if label in vocabulary:
        return label
    for entry in sorted(vocabulary, key=len, reverse=True):
        if re.search(rf"(^| ){re.escape(entry)}$", label) or re.search(rf"(^| ){re.escape(entry)}( |$)", label):
            return entry
    return None


_PROMPT_SPLIT = re.compile(r",|;|\band\b|\bwith\b|\bon\b|\bin\b|\bunder\b|\bnext to\b|\bbeside\b|\bnear\b|\bof\b|\bby\b")
_COUNT = re.compile(r"^(?:\d+|two|three|four|five|six|seven|eight|nine|ten|several|many|few|a few|some)\s+")


def prompt_vocabulary(prompt: str, known: Sequence[str] = ()) -> list[str]:
    """The nouns of a scene prompt, as a vocabulary: ``"a minimalist workspace with a desk, a
    laptop and a swivel chair"`` -> ``["workspace", "desk", "laptop", "swivel chair"]``.

    The prompt is cut at commas and at the joining words ("and", "with", "on", ...); from each
    piece the article and count go, and what stays is the longest ``known`` category it
    ends with, or ends nearest the end (``known``: e.g. the material table's keys), else its last word.
    A rule, not a parser: adjectives before an unknown noun are dropped."""
    out: list[str] = []
    known_sorted = [k.lower() for k in known]
    for piece in _PROMPT_SPLIT.split(prompt.lower()):
        words = " ".join(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", piece))
        words = _ARTICLE.sub("", words)
        words = _COUNT.sub("", words)
        if not words:
            continue
        singular_words = " ".join(singular(w) for w in words.split())
        # the head noun is the last one: of the known categories in the piece, the one ending last
        # (then the longest: "swivel chair" before "chair")
        hits = [(m.end(), len(k), k) for k in known_sorted for m in re.finditer(rf"(?:^| ){re.escape(k)}(?= |$)", singular_words)]
        hit = max(hits)[2] if hits else None
        noun = hit or singular(words.split()[-1])
        if noun in ("view", "scene", "image") and not hit:  # "Isometric view of ..."
            continue
        label = normalise_label(noun)
        if label and label not in out:
            out.append(label)
    return out
