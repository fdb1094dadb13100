"""The batch's dataset manifest: ``DIR/manifest.jsonl`` (one JSON object a line and scene,
variants included as their own rows), ``DIR/manifest.parquet`` (the same, flat columns for
pandas / polars / DuckDB), ``DIR/contact_sheet.png`` (one render per scene) and the summary
table ``hiscene batch --summary DIR`` prints.

Paths in the manifest are relative to DIR, so the folder can be moved or shared as a whole.

Columns (``None`` where they do not apply):

- ``name``, ``status`` (``ok``: exported and passes validation; ``unstable``: exported, fails
  validation after settling; ``failed``: an error, in ``error``), ``input`` (a path, or
  ``prompts.txt:LINE``), ``kind``, ``prompt`` and ``seed`` (prompts), ``made_by`` (parse /
  import / copy / generate), ``variant_of`` and ``variant`` for variants;
- ``objects``, ``background``, ``labels``; ``export``, ``scene_dir``, ``render``;
- validation: ``passed``, ``pybullet_stable`` / ``pybullet_objects``, ``mujoco_stable`` /
  ``mujoco_objects``, ``stable_share``, ``max_drift_cm``, ``max_rotation_deg``,
  ``max_penetration_mm``, ``collision_pairs``, ``agreement``, ``settle_rounds``,
  ``settled_objects``, ``unresolved``, ``failures``;
- variants: ``variants_requested``, ``variants_kept``, ``variants_rejected``,
  ``variant_rejections`` (which and why), ``jitter`` (per object, for a variant);
- ``seconds`` (per stage and ``total``; in Parquet ``seconds_<stage>``), ``error``,
  ``error_type``, ``retryable``, ``key``, ``host``, ``finished``, ``reused`` (taken from an
  earlier run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hiscene_sim.atomic import atomic_write_bytes, atomic_write_text

MANIFEST_JSONL = "manifest.jsonl"
MANIFEST_PARQUET = "manifest.parquet"
CONTACT_SHEET = "contact_sheet.png"

COLUMNS = (
    "name", "status", "input", "kind", "prompt", "seed", "made_by", "variant_of", "variant",
    "objects", "background", "labels", "export", "scene_dir", "render",
    "passed", "pybullet_stable", "pybullet_objects", "mujoco_stable", "mujoco_objects", "stable_share",
    "max_drift_cm", "max_rotation_deg", "max_penetration_mm", "collision_pairs", "agreement",
    "settle_rounds", "settled_objects", "unresolved", "failures",
    "variants_requested", "variants_kept", "variants_rejected", "variant_rejections",
    "seconds", "error", "error_type", "retryable", "key", "host", "finished", "reused",
)
_DROP = ("format", "variant_records", "reasons", "rejected_draws")
_INT = ("seed", "objects", "background", "pybullet_stable", "pybullet_objects", "mujoco_stable", "mujoco_objects",
        "collision_pairs", "settle_rounds", "settled_objects", "variants_requested", "variants_kept", "variants_rejected")
_FLOAT = ("stable_share", "max_drift_cm", "max_rotation_deg", "max_penetration_mm", "agreement")
COLUMN_TYPES = {**{c: "int" for c in _INT}, **{c: "float" for c in _FLOAT}, **{c: "bool" for c in ("passed", "retryable", "reused")},
                **{c: "list" for c in ("labels", "unresolved", "failures")}}


def manifest_rows(records: list[dict]) -> list[dict]:
    """One row per scene, its kept variants right after it; every row has every column."""
    rows = []
    for record in records:
        group = [record, *({**v, "reused": record.get("reused", False)} for v in record.get("variant_records") or [])]
        for r in group:
            row = {c: r.get(c) for c in COLUMNS}
            row.update({k: v for k, v in r.items() if k not in COLUMNS and k not in _DROP})
            rows.append(row)
    return rows


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def write_jsonl(out_dir: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)
    path = Path(out_dir) / MANIFEST_JSONL
    atomic_write_text(path, text)
    return path


def read_manifest(out_dir: str | Path) -> list[dict]:
    path = Path(out_dir) / MANIFEST_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no batch manifest here (run `hiscene batch INPUT... --out {out_dir}` first)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def flat_rows(rows: list[dict]) -> list[dict]:
    """Parquet-friendly rows: ``seconds`` -> ``seconds_<stage>`` floats, lists of dicts -> JSON text."""
    stages = sorted({k for r in rows for k in (r.get("seconds") or {})})
    out = []
    for r in rows:
        flat = {}
        for k, v in r.items():
            if k == "seconds":
                for s in stages:
                    value = (v or {}).get(s)
                    flat[f"seconds_{s}"] = None if value is None else float(value)
            elif isinstance(v, dict) or (isinstance(v, list) and any(not isinstance(x, str) for x in v)):
                flat[k] = json.dumps(v, ensure_ascii=False, default=_json_default)
            elif isinstance(v, float) and not math.isfinite(v):
                flat[k] = None
            else:
                flat[k] = v
        out.append(flat)
    keys = list(dict.fromkeys(k for r in out for k in r))
    return [{k: r.get(k) for k in keys} for r in out]


def write_parquet(out_dir: Path, rows: list[dict]) -> Path | None:
    """The manifest as Parquet (None when pyarrow is not installed)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    flat = flat_rows(rows) if rows else [{c: None for c in COLUMNS if c != "seconds"}]
    columns: dict[str, list] = {k: [r[k] for r in flat] for k in flat[0]}
    arrays = {}
    for k, values in columns.items():
        kind = "float" if k.startswith("seconds_") else COLUMN_TYPES.get(k)
        if kind == "list":
            arrays[k] = pa.array([v if isinstance(v, list) else None for v in values], type=pa.list_(pa.string()))
        elif kind in ("int", "float", "bool"):
            cast = {"int": int, "float": float, "bool": bool}[kind]
            typ = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}[kind]
            arrays[k] = pa.array([None if v is None else cast(v) for v in values], type=typ)
        else:  # text, and any column we do not know
            kinds = {type(v) for v in values if v is not None}
            if kinds <= {int} or kinds <= {float} or kinds <= {bool}:
                arrays[k] = pa.array(values, type=None if kinds else pa.string())
            else:
                arrays[k] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if not rows:
        arrays = {k: a.slice(0, 0) for k, a in arrays.items()}
    table = pa.table(arrays)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = Path(out_dir) / MANIFEST_PARQUET
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def write_outputs(out_dir: Path, records: list[dict], parquet: bool = True, sheet: bool = True) -> dict[str, Path]:
    rows = manifest_rows(records)
    out = {"jsonl": write_jsonl(out_dir, rows)}
    if parquet:
        path = write_parquet(out_dir, rows)
        if path is not None:
            out["parquet"] = path
    if sheet and rows:
        out["contact_sheet"] = write_contact_sheet(out_dir, rows)
    return out


# ----------------------------------------------------------------------------------------
# the contact sheet

STATUS_RGB = {"ok": (46, 160, 67), "unstable": (219, 138, 23), "failed": (207, 34, 46)}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def write_contact_sheet(out_dir: Path, rows: list[dict], tile: tuple[int, int] = (256, 192), max_tiles: int = 400) -> Path:
    """One tile per scene (its render after settling), a caption bar coloured by status;
    scenes without a render (failed, --no-render) get their status and error as text."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    shown = rows[:max_tiles]
    n = max(1, len(shown))
    cols = min(n, max(1, math.ceil(math.sqrt(n * 4 / 3))), 8)
    rows_n = math.ceil(n / cols)
    w, h = tile
    cap = 34
    sheet = Image.new("RGB", (cols * w, rows_n * (h + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(13), _font(11)
    for i, row in enumerate(shown):
        x, y = (i % cols) * w, (i // cols) * (h + cap)
        status = row.get("status") or "failed"
        render = out_dir / row["render"] if row.get("render") else None
        if render is not None and render.is_file():
            with Image.open(render) as im:
                im = im.convert("RGB")
                im.thumbnail((w, h))
                sheet.paste(im, (x + (w - im.width) // 2, y + (h - im.height) // 2))
        else:
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(235, 235, 235))
            text = (row.get("error") or "no render") if status == "failed" else "no render"
            lines = [text[k:k + 38] for k in range(0, min(len(text), 38 * 6), 38)]
            for j, line in enumerate(lines):
                draw.text((x + 6, y + 8 + 15 * j), line, fill=(90, 90, 90), font=small)
        draw.rectangle([x, y + h, x + w - 1, y + h + cap - 1], fill=STATUS_RGB.get(status, (120, 120, 120)))
        draw.text((x + 5, y + h + 3), str(row.get("name"))[:34], fill=(255, 255, 255), font=font)
        detail = status
        if row.get("pybullet_objects") is not None:
            detail += f"  {row.get('objects')} obj, {row.get('pybullet_stable')}/{row.get('pybullet_objects')} stable"
        draw.text((x + 5, y + h + 18), detail, fill=(255, 255, 255), font=small)
        draw.rectangle([x, y, x + w - 1, y + h + cap - 1], outline=(255, 255, 255))
    path = out_dir / CONTACT_SHEET
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ----------------------------------------------------------------------------------------
# the summary table


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_counts(rows: list[dict]) -> dict[str, int]:
    scenes = [r for r in rows if not r.get("variant_of")]
    out = {s: sum(1 for r in scenes if r.get("status") == s) for s in ("ok", "unstable", "failed")}
    out["scenes"] = len(scenes)
    out["variants"] = sum(1 for r in rows if r.get("variant_of"))
    out["variants_rejected"] = sum(r.get("variants_rejected") or 0 for r in scenes)
    return out


def print_summary(rows: list[dict], title: str = "batch", file=None) -> dict[str, int]:
    """The manifest as a table; returns the counts."""
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    stream = file or sys.stdout
    console = Console(file=stream, soft_wrap=True)
    if not console.is_terminal:
        console = Console(file=stream, soft_wrap=True, width=max(console.width, 180))
    table = Table(title=title)
    for col in ("name", "status", "objects", "stable PyBullet", "stable MuJoCo", "drift cm", "settle", "variants", "s"):
        table.add_column(col, no_wrap=True)
    table.add_column("error / why", overflow="fold")
    colours = {"ok": "green", "unstable": "yellow", "failed": "red"}
    for r in rows:
        status = r.get("status") or "failed"
        why = r.get("error") or "; ".join((r.get("failures") or [])[:2]) or ""
        if r.get("variant_rejections"):
            why = (why + "; " if why else "") + "rejected: " + "; ".join(
                f"{v['variant']}: {(v.get('reasons') or ['?'])[0]}" for v in r["variant_rejections"][:3])
        pb = None if r.get("pybullet_objects") is None else f"{r['pybullet_stable']}/{r['pybullet_objects']}"
        mj = None if r.get("mujoco_objects") is None else f"{r['mujoco_stable']}/{r['mujoco_objects']}"
        kept = None if r.get("variants_requested") is None else f"{r['variants_kept']}/{r['variants_requested']}"
        table.add_row(
            Text(("  " if r.get("variant_of") else "") + str(r.get("name"))), Text(status, style=colours.get(status, "white")),
            _fmt(r.get("objects")), _fmt(pb), _fmt(mj), _fmt(r.get("max_drift_cm")), _fmt(r.get("settle_rounds")),
            _fmt(kept), _fmt((r.get("seconds") or {}).get("total"), 1), Text(why[:160] + ("..." if len(why) > 160 else "")),
        )
    console.print(table)
    counts = summary_counts(rows)
    line = (f"{counts['scenes']} scene(s): {counts['ok']} ok, {counts['unstable']} unstable, {counts['failed']} failed")
    if counts["variants"] or counts["variants_rejected"]:
        line += f"; {counts['variants']} variant(s) kept, {counts['variants_rejected']} rejected"
    console.print(line)
    return counts
