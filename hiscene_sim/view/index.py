"""``hiscene batch --summary DIR --html``: one page per scene (``<export>/view.html``) and
``DIR/index.html`` with one card per scene (its render, status, objects, labels) linking to
its page. The index holds no script; its thumbnails are inline PNGs."""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hiscene_sim.atomic import atomic_write_text
from hiscene_sim.view.data import ViewConfig
from hiscene_sim.view.page import CSP, PAGE_FILE, asset, write_view

log = logging.getLogger(__name__)

INDEX_FILE = "index.html"
THUMBNAIL = (320, 240)


@dataclass
class BatchPages:
    index: Path
    pages: dict[str, Path] = field(default_factory=dict)  # row name -> its page
    errors: dict[str, str] = field(default_factory=dict)  # row name -> why it has no page
    seconds: float = 0.0


def _thumbnail(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail(THUMBNAIL)
            buffer = io.BytesIO()
            im.save(buffer, format="PNG", optimize=True)
    except OSError as exc:
        log.warning("%s: no thumbnail (%s)", path, exc)
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _card(row: dict, batch_dir: Path, page: Path | None, error: str | None) -> str:
    e = html.escape
    status = row.get("status") or "failed"
    name = str(row.get("name"))
    render = batch_dir / row["render"] if row.get("render") else None
    thumb = _thumbnail(render) if render is not None and render.is_file() else None
    lines = []
    if row.get("variant_of"):
        lines.append(f"variant of {row['variant_of']}")
    if row.get("objects") is not None:
        stable = "" if row.get("pybullet_objects") is None else (
            f", stable: PyBullet {row.get('pybullet_stable')}/{row.get('pybullet_objects')}"
            + ("" if row.get("mujoco_objects") is None else f", MuJoCo {row.get('mujoco_stable')}/{row.get('mujoco_objects')}"))
        lines.append(f"{row['objects']} objects{stable}")
    labels = sorted(set(row.get("labels") or []))
    if labels:
        lines.append("labels: " + ", ".join(labels[:10]) + (" ..." if len(labels) > 10 else ""))
    if row.get("max_drift_cm") is not None:
        lines.append(f"max drift {row['max_drift_cm']:.2f} cm")
    why = row.get("error") or error or "; ".join((row.get("failures") or [])[:2])
    body = (f'<img alt="" src="{thumb}">' if thumb else "") + f'<h2><span class="badge {e(status)}">{e(status)}</span>{e(name)}</h2>'
    body += "".join(f"<p>{e(x)}</p>" for x in lines) + (f'<p class="error">{e(why)}</p>' if why else "")
    if page is None:
        return f'<div class="card" data-scene="{e(name)}">{body}</div>'
    href = Path(os.path.relpath(page, batch_dir)).as_posix()
    return f'<a class="card" data-scene="{e(name)}" href="{e(href)}">{body}</a>'


def write_batch_pages(batch_dir: str | Path, rows: list[dict], config: ViewConfig | None = None) -> BatchPages:
    """A page for every row with an export, then the index (atomically, each)."""
    t0 = time.perf_counter()
    batch_dir = Path(batch_dir)
    result = BatchPages(batch_dir / INDEX_FILE)
    cards = []
    for row in rows:
        name = str(row.get("name"))
        page = error = None
        export = batch_dir / row["export"] if row.get("export") else None
        if export is not None and (export / "export.json").is_file():
            back = Path(os.path.relpath(result.index, export)).as_posix()
            try:
                page = write_view(export, export / PAGE_FILE, config, back=back).path
                result.pages[name] = page
            except (OSError, ValueError) as exc:
                error = f"no page: {exc}"
                result.errors[name] = error
                log.warning("batch view: %s: %s", name, error)
        else:
            result.errors[name] = "no export"
        cards.append(_card(row, batch_dir, page, error))
    counts = {s: sum(1 for r in rows if (r.get("status") or "failed") == s) for s in ("ok", "unstable", "failed")}
    title = f"hiscene batch: {batch_dir.name}"
    text = "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{asset('viewer.css')}</style>",
        "</head><body>",
        f"<header><h1>{html.escape(title)}</h1><div class='summary'>{len(rows)} scene(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {html.escape(str(batch_dir))}</div></header>",
        '<div class="cards">', *cards, "</div>",
        "<footer>Each card links to the scene's page (hiscene view). Written by hiscene batch --summary --html.</footer>",
        "</body></html>",
        "",
    ])
    atomic_write_text(result.index, text)
    result.seconds = time.perf_counter() - t0
    log.info("batch view: %d page(s) and %s in %.1f s", len(result.pages), result.index, result.seconds)
    return result
