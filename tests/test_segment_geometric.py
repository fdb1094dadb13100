"""The weight-free 2D segmenter on real renders: a colour step with no crease (two touching
objects of different colours on one welded surface) is a boundary; a texture's grain is not."""

from __future__ import annotations

import numpy as np
import trimesh

from hiscene_sim.render.cameras import Camera, look_at
from hiscene_sim.render.mesh import render_mesh
from hiscene_sim.segment.geometric import GeometricSegmenter
from hiscene_sim.testing.textures import texture


def _slab(colors_of) -> trimesh.Trimesh:
    """A finely subdivided 0.4 x 0.2 x 0.05 m slab (one surface, no crease on its top) whose
    vertex colours (0-255) come from ``colors_of(vertices)``."""
    mesh = trimesh.creation.box(extents=(0.4, 0.2, 0.05))
    for _ in range(5):
        mesh = mesh.subdivide()
    colors = np.clip(colors_of(mesh.vertices), 0, 255)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.c_[colors, np.full(len(colors), 255)].astype(np.uint8))
    return mesh


def _top_view(mesh: trimesh.Trimesh):
    camera = Camera(160, 160, look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)), "orthographic", ortho_height=0.5)
    return render_mesh(mesh, camera)


def _regions(labels: np.ndarray, min_pixels: int = 50) -> int:
    counts = np.bincount(labels[labels >= 0].ravel())
    return int(np.sum(counts >= min_pixels))


def test_a_colour_step_without_a_crease_splits_two_touching_objects():
    # two bowls of one welded surface meeting smoothly: green on the left, white on the right
    view = _top_view(_slab(lambda v: np.where(v[:, :1] < 0, [[90, 160, 90]], [[225, 225, 220]])))
    labels = GeometricSegmenter(color_edge=0.2).segment(view)
    left, right = labels[80, 40], labels[80, 120]
    assert left >= 0 and right >= 0 and left != right
    assert _regions(labels) == 2
    # what the colour rule adds is what was missing: without it (the default) the slab is one region
    assert _regions(GeometricSegmenter().segment(view)) == 1
    # the boundary is thin: nearly every pixel of the slab keeps an entity
    covered = (labels >= 0) & (view.alpha > 0.5)
    assert covered.sum() >= 0.97 * (view.alpha > 0.5).sum()


def test_wood_grain_is_not_a_boundary():
    # the test sets' wood: stripes of +-14 % brightness every 3-7 cm (a threshold of 0.08
    # cuts this slab into 18 regions)
    view = _top_view(_slab(lambda v: texture(v, np.array([170.0, 120.0, 70.0]), "wood", np.random.default_rng(4))))
    assert _regions(GeometricSegmenter(color_edge=0.2).segment(view)) == 1


def test_color_edges_option_reaches_the_segmenter():
    import argparse

    from hiscene_sim.options import add_parse_options, parse_config_from_args
    from hiscene_sim.segment import SEGMENTERS

    parser = argparse.ArgumentParser()
    add_parse_options(parser)
    config = parse_config_from_args(parser.parse_args(["--color-edges", "0.2"]))
    assert SEGMENTERS.create(config.segmenter, **config.segmenter_options).color_edge == 0.2
    assert parse_config_from_args(parser.parse_args([])).segmenter_options == {}
