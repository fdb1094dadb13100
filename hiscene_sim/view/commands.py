"""``hiscene view``, and the page that ``hiscene demo`` / ``hiscene generate`` end with.

Wiring (in ``hiscene_sim.cli.build_parser``)::

    from hiscene_sim.view.commands import add_view_parser
    add_view_parser(sub)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

VIEW_BACKENDS = "backends: trimesh + fast-simplification (decimation), three.js r160 inlined (the 3D viewer)"


def add_view_parser(sub) -> None:
    from hiscene_sim.view.config import ViewConfig

    d = ViewConfig()
    p = sub.add_parser(
        "view", help="export dir (or scene dir) -> one self-contained HTML page: verdict, 3D viewer, object table",
        description="Write one HTML file that works offline: the validation verdict, the scene in 3D (orbit / zoom; "
        "colour by label, by verdict or the meshes' own colours; the collision hulls; before / after settling), and "
        "the object table (id, label, mass, hulls, verdict, drift in PyBullet and MuJoCo); click an object or a row to "
        "highlight it in both. A scene dir shows its meshes at the scene poses, without physics. Visual meshes are "
        "decimated to --max-faces for the viewer. " + VIEW_BACKENDS,
    )
    p.add_argument("source", type=Path, metavar="EXPORT_DIR", help="an export dir (export.json) or a scene dir (scene.json)")
    p.add_argument("--out", type=Path, default=None, help="the page (default EXPORT_DIR/view.html)")
    p.add_argument("--max-faces", type=int, default=d.max_faces,
                   help=f"visual faces in the page, all objects together (default {d.max_faces:,})")
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    from hiscene_sim.view.config import ViewConfig
    from hiscene_sim.view.page import write_view

    if args.max_faces < 1000:
        raise ValueError(f"--max-faces must be at least 1000, got {args.max_faces}")
    page = write_view(args.source, args.out, ViewConfig(max_faces=args.max_faces))
    print(f"wrote {page.path} ({page.bytes / 1e6:.1f} MB, verdict {page.verdict or 'not validated'}); "
          "open it in a browser (works offline)")
    return 0


def write_page_after_run(export_dir: Path | None, echo: Callable[[str], None] = print) -> Path | None:
    """The last step of ``hiscene demo`` / ``hiscene generate``: write ``EXPORT/view.html`` and
    say where it is. The run's outputs are complete without it, so a failure here is a
    warning, not a failed run."""
    from hiscene_sim.view.page import write_view

    if export_dir is None or not (Path(export_dir) / "export.json").is_file():
        return None
    try:
        page = write_view(export_dir)
    except (OSError, ValueError) as exc:
        log.warning("could not write the scene's page: %s", exc)
        echo(f"warning: no view.html ({exc}); try `hiscene view {export_dir}`")
        return None
    echo(f"view the scene: {page.path} (open it in a browser; {page.bytes / 1e6:.1f} MB, works offline)")
    return page.path
