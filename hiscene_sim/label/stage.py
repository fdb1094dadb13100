"""``hiscene label``: a semantic label for every object of a scene dir.

Per foreground object the chosen labeller (``geometric``, the weight-free default; ``vlm``;
``clip``) answers from the object's facts (:mod:`.facts`) and, for the image backends, its
object-centric views: those ``complete`` left in ``completion/<id>/`` when there are any,
else views rendered here with the object alone. A failed answer is asked once more
(``retries``), then the object gets the geometric labeller's answer and a warning says why.
Background objects keep their parsed kind (``floor``, ``wall``). Manual labels (``--set
object_3=mug``) win over every backend.

``scene.json`` records per object ``label`` and ``label_source`` (backend, model, views,
the raw answer, attempts, and the fallback's reason), and every object's id follows its
label (``mug_1``, ``mug_2``; its files and completion views are renamed with it). The new
scene dir is built beside the old one and swapped in, so a failure leaves the old one whole.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hiscene_sim.atomic import atomic_directory, check_replaceable
from hiscene_sim.label.base import LABELLERS, LabelAnswer, LabelError, LabelItem, Labeller, normalise_label
from hiscene_sim.label.facts import ObjectFacts, scene_facts
from hiscene_sim.label.geometric import GeometricLabeller
from hiscene_sim.naming import safe_identifier
from hiscene_sim.scene import SCENE_FILE, Provenance, Scene, SceneError, load_scene, save_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelConfig:
    backend: str = "geometric"
    backend_options: dict = field(default_factory=dict)  # e.g. vlm: base_url, model; clip: weights
    vocabulary: tuple[str, ...] = ()
    n_views: int = 4  # views shown to an image backend
    resolution: int = 256  # of the views rendered here
    retries: int = 1  # asks after a failed answer, before the fallback
    overrides: dict[str, str] = field(default_factory=dict)  # object id -> label, applied last
    rename: bool = True  # ids follow labels

    def public(self) -> dict:
        """The settings as JSON-able data without secrets (an API key given in the options), for
        ledgers and batch keys."""
        import json
        from dataclasses import asdict

        data = json.loads(json.dumps(asdict(self), default=str))
        vlm = data["backend_options"].get("config")
        if isinstance(vlm, dict) and vlm.get("api_key"):
            vlm["api_key"] = "***"
        return data


@dataclass(frozen=True)
class ObjectLabel:
    previous_id: str
    object_id: str
    label: str
    answer: LabelAnswer
    attempts: int
    warning: str = ""  # why the fallback was used

    @property
    def fell_back(self) -> bool:
        return bool(self.warning)


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["object_3=mug", "object_5=coffee table"]`` -> ``{"object_3": "mug", ...}`` (labels normalised)."""
    out = {}
    for item in items:
        oid, sep, text = item.partition("=")
        label = normalise_label(text)
        if not sep or not oid.strip() or label is None:
            raise SceneError(f"--set {item!r}: expected OBJECT_ID=LABEL with a short label, e.g. object_3=mug")
        out[oid.strip()] = label
    return out


def _item(facts: ObjectFacts, label: str, images=(), names=()) -> LabelItem:
    return LabelItem(facts.object_id, tuple(images), tuple(names), facts.kind, facts.supports, facts.top_area,
                     facts.footprint_area, facts.supported_footprint, facts.size, label)


def _completion_views(scene_dir: Path, obj, k: int) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``k`` of the object-alone images ``complete`` wrote, evenly spread."""
    from PIL import Image

    rels = [r for r in (obj.extra.get("completion") or {}).get("images", []) if (scene_dir / r).is_file()]
    if not rels:
        return [], []
    pick = [rels[int(i)] for i in np.unique(np.linspace(0, len(rels) - 1, min(k, len(rels))).round().astype(int))]
    return [np.asarray(Image.open(scene_dir / r).convert("RGB")) for r in pick], pick


def _rendered_views(renderer, object_id: str, k: int) -> tuple[list[np.ndarray], list[str]]:
    from hiscene_sim.occlusion.views import object_cameras

    k_obj = renderer.geometry.index(object_id)
    images, names = [], []
    for camera in object_cameras(renderer.geometry.meshes[k_obj], renderer.config)[:k]:
        image, _, _ = renderer.render_alone(object_id, camera)
        images.append(image)
        names.append(f"render:az={camera.azimuth_deg:g},el={camera.elevation_deg:g}")
    return images, names


def ask(labeller: Labeller, item: LabelItem, vocabulary: Sequence[str] | None, retries: int,
        fallback: Callable[[], LabelAnswer]) -> tuple[LabelAnswer, int, str]:
    """(answer, attempts, warning): the labeller's answer, asked up to ``1 + retries`` times,
    else the fallback's with the last error as the warning."""
    error = ""
    for attempt in range(1, retries + 2):
        try:
            return labeller.label(item, vocabulary), attempt, ""
        except LabelError as err:
            error = str(err)
            log.info("%s: %s labeller, attempt %d: %s", item.object_id, labeller.name, attempt, error)
    answer = fallback()
    warning = f"{labeller.name} labeller failed after {retries + 1} attempt(s) ({error}); fell back to {answer.backend}: {answer.label!r}"
    log.warning("%s: %s", item.object_id, warning)
    return answer, retries + 1, warning


def new_ids(scene: Scene, labels: dict[str, str]) -> dict[str, str]:
    """Old id -> new id for the foreground objects: ``<label>_<n>``, numbered per label in
    scene order, never an id the background has."""
    taken = {o.id for o in scene.background}
    counts: dict[str, int] = {}
    out = {}
    for obj in scene.objects:
        base = safe_identifier(labels[obj.id])
        n = counts.get(base, 0) + 1
        while f"{base}_{n}".lower() in {t.lower() for t in taken}:
            n += 1
        counts[base] = n
        out[obj.id] = f"{base}_{n}"
        taken.add(out[obj.id])
    return out


def _renamed_path(rel: str, old: str, new: str) -> str:
    """``meshes/object_3.glb`` -> ``meshes/mug_1.glb``; ``completion/object_3/x.png`` -> ``completion/mug_1/x.png``."""
    p = Path(rel)
    if p.stem == old:
        return str(p.with_name(new + p.suffix))
    parts = list(p.parts)
    if len(parts) >= 2 and parts[0] == "completion" and parts[1] == old:
        parts[1] = new
        return str(Path(*parts))
    return rel


def _rewrite(value, old: str, new: str):
    if isinstance(value, str):
        return _renamed_path(value, old, new) if "/" in value else value
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    return value


def _file_moves(scene: Scene, mapping: dict[str, str]) -> dict[Path, Path]:
    """Old -> new path (relative to the scene dir) of every renamed object's files and folders
    (mesh, Gaussians, completion views)."""
    moves: dict[Path, Path] = {}
    for obj in scene.objects:
        old, new = obj.id, mapping[obj.id]
        if old == new:
            continue
        for rel in (obj.mesh, obj.extra.get("gaussians")):
            if isinstance(rel, str):
                moves[Path(rel)] = Path(_renamed_path(rel, old, new))
        moves[Path("completion") / old] = Path("completion") / new
    return moves


def _copy_moved(src: Path, dst: Path, moves: dict[Path, Path]) -> None:
    """Copy the scene dir ``src`` (but its ``scene.json``) into the empty ``dst``, every path
    under a key of ``moves`` to its new place."""
    for entry in sorted(src.rglob("*")):
        rel = entry.relative_to(src)
        if entry.is_dir() or rel == Path(SCENE_FILE) or any(part.startswith(".") for part in rel.parts):
            continue
        target = next((b / rel.relative_to(a) for a, b in moves.items() if rel == a or a in rel.parents), rel)
        (dst / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry, dst / target)


def label_scene(scene_dir: str | Path, config: LabelConfig | None = None, out_dir: str | Path | None = None,
                progress: Callable[[int, int, str], None] | None = None, labeller: Labeller | None = None) -> list[ObjectLabel]:
    """Label every foreground object of ``scene_dir`` (see the module docstring); the result is
    written to ``out_dir`` (a new scene dir) or, without it, replaces ``scene_dir``."""
    config = config or LabelConfig()
    scene_dir = Path(scene_dir)
    scene = load_scene(scene_dir)
    ids = {o.id for o in scene.objects}
    unknown = sorted(set(config.overrides) - ids)
    if unknown:
        raise SceneError(f"{scene_dir / SCENE_FILE}: --set names no foreground object: {', '.join(unknown)} "
                         f"(objects: {', '.join(sorted(ids))})")
    if out_dir is not None:
        check_replaceable(out_dir, SCENE_FILE, protect=scene_dir)
    # the backend first: a misconfigured one fails before any work
    labeller = labeller or LABELLERS.create(config.backend, **config.backend_options)
    geometric = GeometricLabeller()
    t0 = time.perf_counter()
    from hiscene_sim.occlusion.views import ObjectViewConfig, ObjectViewRenderer, SceneGeometry

    geometry = SceneGeometry.of_scene(scene, scene_dir)
    facts = scene_facts(scene, scene_dir, geometry)
    renderer = None
    vocabulary = list(config.vocabulary) or None
    results: list[ObjectLabel] = []
    for n, obj in enumerate(scene.objects):
        f = facts[obj.id]
        images, names = [], []
        if labeller.needs_views and obj.id not in config.overrides:
            images, names = _completion_views(scene_dir, obj, config.n_views)
            if not images:
                renderer = renderer or ObjectViewRenderer(geometry, ObjectViewConfig(n_views=max(config.n_views, 1),
                                                                                     resolution=config.resolution))
                images, names = _rendered_views(renderer, obj.id, config.n_views)
        item = _item(f, obj.label, images, names)
        if obj.id in config.overrides:
            answer, attempts, warning = LabelAnswer(config.overrides[obj.id], "manual", None, (), "--set"), 0, ""
        else:
            answer, attempts, warning = ask(labeller, item, vocabulary, config.retries, lambda: geometric.label(item, vocabulary))
        results.append(ObjectLabel(obj.id, obj.id, answer.label, answer, attempts, warning))
        if progress is not None:
            progress(n + 1, len(scene.objects), obj.id)
    mapping = new_ids(scene, {r.previous_id: r.label for r in results}) if config.rename else {o.id: o.id for o in scene.objects}
    results = [replace(r, object_id=mapping[r.previous_id]) for r in results]
    moves = _file_moves(scene, mapping)
    for obj, r in zip(scene.objects, results):
        obj.label = r.label
        obj.extra = _rewrite(obj.extra, r.previous_id, r.object_id)
        obj.mesh = _renamed_path(obj.mesh, r.previous_id, r.object_id)
        source = {"backend": r.answer.backend, "model": r.answer.model, "views": list(r.answer.views),
                  "raw": r.answer.raw, "attempts": r.attempts}
        if r.answer.score is not None:
            source["score"] = round(float(r.answer.score), 4)
        if r.warning:
            source["fallback"] = r.warning
        if r.previous_id != r.object_id:
            source["previous_id"] = r.previous_id
        obj.extra["label_source"] = source
        obj.id = r.object_id
    for obj in scene.background:
        obj.extra.setdefault("label_source", {"backend": "parse", "model": None, "views": [], "raw": facts[obj.id].kind,
                                              "attempts": 0})
    seconds = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for r in results:
        counts[r.answer.backend] = counts.get(r.answer.backend, 0) + 1
    scene.provenance.append(Provenance(
        "label", labeller.name,
        {"vocabulary": list(config.vocabulary), "n_views": config.n_views, "retries": config.retries,
         "answered_by": counts, "fallbacks": sum(r.fell_back for r in results), "ids": mapping,
         **({"model": getattr(getattr(labeller, "config", None), "model", None)} if labeller.name == "vlm" else {})},
        seconds=round(seconds, 3),
    ))
    target = Path(out_dir) if out_dir is not None else scene_dir
    with atomic_directory(target) as tmp:
        _copy_moved(scene_dir, tmp, moves)
        save_scene(scene, tmp)
    log.info("label: %d objects by %s in %.2fs (%s)", len(results), labeller.name, seconds,
             ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return results
