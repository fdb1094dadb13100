"""``hiscene view``: a self-contained HTML page per scene (3D viewer, object table, verdict),
and an index page for a batch.

The names below are imported on first use: ``hiscene`` imports :mod:`hiscene_sim.view.commands`
at start-up, and the page builders pull in trimesh."""

from __future__ import annotations

import importlib

_EXPORTS = {"ViewConfig": "config", "load_view_scene": "data", "PAGE_FILE": "page", "ViewPage": "page", "write_view": "page"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
