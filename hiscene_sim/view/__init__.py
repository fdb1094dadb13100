"""``hiscene view``: a self-contained HTML page per scene (3D viewer, object table, verdict),
and an index page for a batch."""

from hiscene_sim.view.data import ViewConfig, load_view_scene
from hiscene_sim.view.page import PAGE_FILE, ViewPage, write_view

__all__ = ["PAGE_FILE", "ViewConfig", "ViewPage", "load_view_scene", "write_view"]
