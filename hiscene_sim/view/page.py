"""One self-contained HTML page per scene: the verdict, the scene in 3D (three.js, inlined),
the object table, the before/after-settle toggle. Everything is in the file (scripts inline,
meshes as base64 typed arrays in a JSON blob) and a Content-Security-Policy forbids the page
to fetch anything, so it works offline and from any folder.

The viewer is three.js r160 (``assets/three.min.js``, MIT, ``assets/LICENSE.three.txt``): the
last release that ships a classic-script build, so it inlines as-is with no bundler (later
releases are ES modules only, which an inline script cannot import without rewriting them).
Its OrbitControls ship as an ES module only; :func:`orbit_controls_script` rewrites its one
import and its one export into a classic script.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hiscene_sim.atomic import atomic_write_text
from hiscene_sim.view.data import SIMULATORS, ViewConfig, ViewObject, ViewScene, load_view_scene

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("assets")
THREE_VERSION = "0.160.0"
PAGE_FILE = "view.html"
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
VERDICT_COLORS = {"stable": "#3fae5a", "unstable": "#d9453b", "static": "#a3a9b1", "-": "#8fa6c4"}
_MUTED_LABELS = ("floor", "ground", "wall", "ceiling", "background")


@dataclass(frozen=True)
class ViewPage:
    path: Path
    bytes: int
    objects: int
    faces_shown: int
    faces_total: int
    seconds: float
    verdict: str | None


def asset(name: str) -> str:
    text = (ASSETS / name).read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the inline <script> early
        raise ValueError(f"{ASSETS / name}: holds '</script', cannot be inlined")
    return text


def orbit_controls_script() -> str:
    """three.js's OrbitControls (an ES module) as a classic script: ``import {...} from 'three'``
    becomes a read of the global ``THREE``, the export a global ``HisceneOrbitControls``."""
    path = ASSETS / "OrbitControls.js"
    text, n_import = re.subn(r"import\s*\{([^}]*)\}\s*from\s*'three';", r"const {\1} = THREE;", asset("OrbitControls.js"), count=1)
    text, n_export = re.subn(r"export\s*\{\s*OrbitControls\s*\};", "window.HisceneOrbitControls = OrbitControls;", text)
    if n_import != 1 or n_export != 1 or re.search(r"^\s*(import|export)\b", text, re.M):
        raise ValueError(f"{path}: not the OrbitControls module this page knows how to inline (three.js r160)")
    return "(function () {\n" + text + "\n})();"


def label_color(label: str) -> str:
    """A colour per label, the same on every page: a hue from the label's hash; floors and
    walls grey."""
    if label.lower() in _MUTED_LABELS:
        return "#b9b4a8" if label.lower() in ("floor", "ground") else "#c9ccd1"
    h = int(hashlib.md5(label.encode("utf-8")).hexdigest()[:8], 16)
    hue, sat, light = (h % 360) / 360.0, 0.50 + (h >> 9) % 20 / 100.0, 0.52 + (h >> 17) % 12 / 100.0
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue, light, sat)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def _mm(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _deg(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _object_data(o: ViewObject) -> dict:
    return {
        "id": o.id, "label": o.label, "background": o.background, "verdict": o.verdict,
        "labelColor": label_color(o.label), "verdictColor": VERDICT_COLORS[o.verdict],
        "poses": {k: list(v) for k, v in o.poses.items()},
        "checks": {s: {"stable": c.stable, "drift": _mm(c.drift_m), "rotation": _deg(c.rotation_deg), "issues": c.issues}
                   for s, c in o.checks.items()},
        "moves": o.moves,
        "visual": o.visual.packed() if o.visual is not None else None,
        "hulls": o.collision.packed() if o.collision is not None else None,
    }


def page_data(scene: ViewScene) -> dict:
    labels = sorted({o.label for o in scene.objects})
    verdicts = [v for v in VERDICT_COLORS if any(o.verdict == v for o in scene.objects)]
    return {
        "name": scene.name, "kind": scene.kind, "defaultPose": scene.default_pose, "groundZ": scene.ground_z,
        "simulators": scene.simulators, "simulatorNames": SIMULATORS,
        "labelLegend": [[label, label_color(label)] for label in labels],
        "verdictLegend": [[v if v != "-" else "not validated", VERDICT_COLORS[v]] for v in verdicts],
        "objects": [_object_data(o) for o in scene.objects],
    }


def _json_for_script(data: dict) -> str:
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the blob
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def _header(scene: ViewScene, back: str | None) -> str:
    e = html.escape
    verdict = scene.verdict or "none"
    badge = scene.verdict or "not validated"
    parts = ["<header>"]
    if back:
        parts.append(f'<a class="back" href="{e(back)}">&larr; all scenes</a>')
    parts.append(f'<h1><span class="badge {verdict}" id="verdict">{e(badge)}</span>{e(scene.name)}</h1>')
    parts.append(f'<div class="summary">{"<br>".join(e(s) for s in scene.summary)}</div>')
    if scene.failures:
        parts.append("<ul id='failures'>" + "".join(f"<li>{e(f)}</li>" for f in scene.failures) + "</ul>")
    parts.append("</header>")
    return "\n".join(parts)


def _toolbar(scene: ViewScene) -> str:
    e = html.escape
    own = any(o.visual is not None and o.visual.colors is not None for o in scene.objects)
    hulls = any(o.collision is not None for o in scene.objects)
    colours = [("label", "label", True), ("verdict", "verdict", scene.verdict is not None), ("own", "own colours", own)]
    radios = "".join(
        f'<label><input type="radio" name="color" value="{v}"{" checked" if v == "label" else ""}'
        f'{"" if ok else " disabled"}> {t}</label>' for v, t, ok in colours)
    parts = [f"<fieldset><legend>colour by</legend>{radios}</fieldset>",
             '<fieldset><legend>show</legend><label><input type="checkbox" id="show-visual" checked> visual meshes</label>'
             f'<label><input type="checkbox" id="show-hulls"{"" if hulls else " disabled"}> collision hulls</label></fieldset>']
    if len(scene.pose_sets) > 1:
        buttons = "".join(f'<button type="button" data-pose="{e(k)}">{e(caption)}</button>' for k, caption in scene.pose_sets.items())
        parts.append(f"<fieldset id='poses'><legend>poses</legend>{buttons}</fieldset>")
    parts.append('<button type="button" id="reset-view">reset view</button>')
    return '<div id="toolbar">' + "".join(parts) + "</div>"


def _table(scene: ViewScene) -> str:
    e = html.escape
    physics = scene.kind == "export"
    head = ["id", "label"] + (["mass (kg)", "hulls"] if physics else [])
    if physics:
        head += ["verdict"] + [f"drift (mm) {SIMULATORS[s]}" for s in scene.simulators]
    rows = []
    for o in scene.objects:
        cells = [f"<td>{e(o.id)}</td>", f"<td>{e(o.label)}</td>"]
        if physics:
            mass = "static" if o.background or o.mass_kg is None else f"{o.mass_kg:.3f}"
            issues = "; ".join(f"{SIMULATORS[s]}: {i}" for s, c in o.checks.items() for i in c.issues)
            verdict_class = "none" if o.verdict == "-" else o.verdict
            cells += [f'<td class="num">{mass}</td>', f'<td class="num">{o.hulls}</td>',
                      f'<td class="verdict-{verdict_class}" title="{e(issues)}">{e(o.verdict)}</td>']
            cells += [f'<td class="num">{_mm(o.checks[s].drift_m) if s in o.checks else "-"}</td>' for s in scene.simulators]
        cls = ' class="background"' if o.background else ""
        rows.append(f'<tr data-id="{e(o.id)}"{cls}>' + "".join(cells) + "</tr>")
    return ('<section id="objects"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table></section>")


def render_page(scene: ViewScene, back: str | None = None) -> str:
    """The page's HTML; ``back``: a link to the batch index (relative)."""
    e = html.escape
    notes = "".join(f"<div>{e(n)}</div>" for n in scene.notes)
    license_text = (ASSETS / "LICENSE.three.txt").read_text(encoding="utf-8").replace("--", "- -")
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(scene.name)}: {e(scene.verdict or 'not validated')} (hiscene view)</title>",
        f"<style>{asset('viewer.css')}</style>",
        "</head><body>",
        _header(scene, back),
        "<main>",
        '<section id="viewer">' + _toolbar(scene) + '<canvas id="view"></canvas><div id="legend"></div>'
        '<p id="webgl-error" hidden></p><div id="details"></div></section>',
        _table(scene),
        "</main>",
        f"<footer>{notes}<div>drag to orbit, right-drag to pan, wheel to zoom; click an object or a row to select it. "
        f"Viewer: three.js r{THREE_VERSION.split('.')[1]} (MIT, below). Written by hiscene view; loads nothing from "
        "the network.</div></footer>",
        f'<script id="hiscene-data" type="application/json">{_json_for_script(page_data(scene))}</script>',
        f"<!-- three.js {THREE_VERSION}, https://threejs.org, license:\n{license_text}\n-->",
        f"<script>{asset('three.min.js')}</script>",
        f"<script>{orbit_controls_script()}</script>",
        f"<script>{asset('viewer.js')}</script>",
        "</body></html>",
        "",
    ])


def write_view(
    source: str | Path, out: str | Path | None = None, config: ViewConfig | None = None, back: str | None = None
) -> ViewPage:
    """Read an export dir (or a scene dir) and write its page (default ``SOURCE/view.html``),
    atomically."""
    t0 = time.perf_counter()
    source = Path(source)
    out = Path(out) if out is not None else source / PAGE_FILE
    scene = load_view_scene(source, config)
    text = render_page(scene, back)
    atomic_write_text(out, text)
    drawn = [o.visual for o in scene.objects if o.visual is not None]
    page = ViewPage(out, len(text.encode("utf-8")), len(scene.objects), sum(v.n_faces for v in drawn),
                    sum(v.source_faces for v in drawn), time.perf_counter() - t0, scene.verdict)
    log.info("view: wrote %s (%.1f MB, %d objects, %d of %d visual faces) in %.1f s", out, page.bytes / 1e6, page.objects,
             page.faces_shown, page.faces_total, page.seconds)
    return page
