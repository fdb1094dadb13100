"""Parsing at room scale and on scenes from other generators (scene-synthesizer, pybullet_data,
procedural furniture; :mod:`hiscene_sim.testing.scene_sets`): the background found first, the
object rules, the minimum volume, and a whole room parsed end to end."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from hiscene_sim.object_grouping import GroupingConfig, group_objects
from hiscene_sim.parse import ParseConfig, Primitives, parse_mesh, parts_of_mesh, scene_cameras, scene_scale, write_parsed_scene
from hiscene_sim.parse_background import FLOOR, FOREGROUND, WALL, detect_background
from hiscene_sim.scene import load_scene
from hiscene_sim.testing.fused_scenes import FusedObjectInfo, fuse_meshes
from hiscene_sim.testing.parse_metrics import score_face_labels
from hiscene_sim.testing.scene_sets import SetSpec, build_set_scene, load_set_scene


def _box(name, extents, center, background=False):
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(center)
    mesh.visual.vertex_colors = (180, 160, 140, 255)
    return FusedObjectInfo(name, name.rstrip("_0123456789"), background, mesh.bounds.copy(), mesh)


@pytest.fixture(scope="module")
def corner_room():
    """A 4 x 3 m room corner at a 4 cm pitch (extent/100): floor, two 2.4 m walls, a sofa-like
    block against the -y wall, a low coffee table (0.35 m) standing free."""
    objects = [
        _box("floor", (4.0, 3.0, 0.05), (0, 0, -0.025), True),
        _box("wall_y", (4.0, 0.1, 2.4), (0, -1.45, 1.2), True),
        _box("wall_x", (0.1, 2.9, 2.4), (-1.95, 0.05, 1.2), True),
        _box("sofa", (2.0, 0.9, 0.8), (0.2, -0.94, 0.4)),
        _box("coffee_table", (1.0, 0.6, 0.35), (0.3, 0.4, 0.175)),
    ]
    return fuse_meshes(objects, voxel_size=0.04, seed=0, name="corner")


def test_floor_and_walls_are_found_first_and_never_swallow_furniture(corner_room):
    prims = Primitives.of_mesh(corner_room.mesh)
    scale = scene_scale(prims)
    assert 0.5 * 0.04 < scale.spacing < 2 * 0.04  # the sampling length is about the pitch
    bg = detect_background(prims.centers, prims.normals, prims.areas, prims.zmin, prims.zmax, scale)
    assert abs(bg.floor_z - 0.0) < 0.04
    assert sorted((w.axis, w.side) for w in bg.walls) == [(0, -1), (1, -1)]
    names = [o.name for o in corner_room.objects]
    area = corner_room.mesh.area_faces
    for name, kind in (("floor", FLOOR), ("wall_x", WALL), ("wall_y", WALL)):
        sel = corner_room.face_object == names.index(name)
        assert np.sum(area[sel] * (bg.kind[sel] == kind)) / area[sel].sum() > 0.9, name
    for name in ("sofa", "coffee_table"):  # against a wall, and low: still foreground
        sel = corner_room.face_object == names.index(name)
        assert np.sum(area[sel] * (bg.kind[sel] == FOREGROUND)) / area[sel].sum() > 0.9, name
    # A.1 (a): the corner views face the room from the +x/+y side (the paper's [-5, 95] deg)
    assert abs(bg.corner_azimuth() - 45.0) < 1e-6
    cameras = scene_cameras(np.stack([scale.lo, scale.hi]), ParseConfig(), scale, bg)
    eyes = np.array([c.position for c in cameras]) - (scale.lo + scale.hi) / 2
    assert (eyes[:, 0] > -0.2 * np.abs(eyes).max()).all() and (eyes[:, 1] > -0.2 * np.abs(eyes).max()).all()


def test_objects_merge_unless_one_rests_on_the_other(corner_room):
    """Hand-made clusters: the sofa cut into vertical slices, the coffee table's top apart from
    its legs, a sliver: slices and parts merge (none rests on another: a top is wider than the
    legs under it), the sliver joins what it touches, and the two pieces of furniture stay two
    objects; the wall's rounded edges and corner go to the walls."""
    from hiscene_sim.testing.asset_library import coffee_table

    mesh, _ = coffee_table(np.random.default_rng(0))
    lo, hi = mesh.bounds
    mesh.apply_translation((0.3 - (lo[0] + hi[0]) / 2, 0.4 - (lo[1] + hi[1]) / 2, -lo[2] + 0.001))
    objects = [o for o in corner_room.objects if o.name != "coffee_table"]
    corner_room = fuse_meshes([*objects, FusedObjectInfo("coffee_table", "coffee_table", False, mesh.bounds.copy(), mesh)],
                              voxel_size=0.02, seed=0)
    prims = Primitives.of_mesh(corner_room.mesh)
    scale = scene_scale(prims)
    bg = detect_background(prims.centers, prims.normals, prims.areas, prims.zmin, prims.zmax, scale)
    names = [o.name for o in corner_room.objects]
    obj = corner_room.face_object
    clusters = np.zeros(len(obj), dtype=np.int64)
    sofa = obj == names.index("sofa")
    clusters[sofa] = 1 + (prims.centers[sofa, 0] > 0.2).astype(int) + (prims.centers[sofa, 0] > 0.7)  # three slices
    table = obj == names.index("coffee_table")
    clusters[table] = np.where(prims.centers[table, 2] > mesh.bounds[1][2] - 0.06, 10, 11)  # top vs legs (and shelf)
    sliver = table & (np.abs(prims.centers[:, 0] - 0.3) < 0.05) & (prims.centers[:, 2] > mesh.bounds[1][2] - 0.02)
    clusters[sliver] = 12
    grouping = group_objects(clusters, prims, bg, scale, GroupingConfig())
    fg = grouping.labels >= 0
    assert len(np.unique(grouping.labels[fg])) == 2
    assert len(np.unique(grouping.labels[sofa & fg])) == 1 and len(np.unique(grouping.labels[table & fg])) == 1


def _on_a_floor(voxel_size=0.008, **meshes):
    """The named meshes (with their colours) on a 2 x 2 m floor, fused at ``voxel_size``:
    (fused scene, primitives, scale, background)."""
    objects = [_box("floor", (2.0, 2.0, 0.05), (0, 0, -0.025), True)]
    objects += [FusedObjectInfo(name, name, False, mesh.bounds.copy(), mesh) for name, mesh in meshes.items()]
    fused = fuse_meshes(objects, voxel_size=voxel_size, seed=0)
    prims = Primitives.of_mesh(fused.mesh)
    scale = scene_scale(prims)
    return fused, prims, scale, detect_background(prims.centers, prims.normals, prims.areas, prims.zmin, prims.zmax, scale)


def test_a_mug_on_a_table_stays_an_object_of_its_own():
    """Resting: the contact is at the mug's bottom, under the mug, and spans its footprint."""
    from hiscene_sim.testing.asset_library import make_asset

    rng = np.random.default_rng(3)
    table = make_asset("synth:table", rng).mesh
    mug = make_asset("synth:mug", rng).mesh
    mug.apply_translation((0.1, 0.0, table.bounds[1][2] + 0.001))
    fused, prims, scale, bg = _on_a_floor(table=table, mug=mug)
    # clusters = the truth, with the table split into its top and legs
    clusters = fused.face_object.copy()
    legs = (fused.face_object == 1) & (prims.centers[:, 2] < table.bounds[1][2] - 0.06)
    clusters[legs] = 7
    grouping = group_objects(clusters, prims, bg, scale)
    score = score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})
    assert score.count_exact and score.mean_iou > 0.95, score.summary()


@pytest.mark.parametrize("height_share", [0.35, 0.7])
def test_a_strip_of_a_cans_side_in_the_tables_cluster_is_cut_off_at_the_crease(height_share):
    """The lifted clusters put the lower part of one side of a can (a similar colour, never
    separated in 2D) into the table's cluster. Cut at the concave crease where the can meets the
    table, the strip goes back to the can; without the cut it stays with the table (a low strip)
    or takes the can with it (a high one: the contact climbs the can's side)."""
    import dataclasses

    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    can = trimesh.creation.cylinder(radius=0.05, height=0.14, sections=48)
    can.apply_translation((0.1, 0.0, 0.77))
    fused, prims, scale, bg = _on_a_floor(table=table, can=can)
    is_can = fused.face_object == 2
    lo, hi = prims.zmin[is_can].min(), prims.zmax[is_can].max()
    strip = is_can & (prims.centers[:, 0] > 0.1) & (prims.centers[:, 2] < lo + height_share * (hi - lo))
    clusters = fused.face_object.copy()
    clusters[strip] = 1

    def can_iou(config):
        grouping = group_objects(clusters, prims, bg, scale, config)
        score = score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})
        return score, score.rows[[r.gt_name for r in score.rows].index("can")].iou

    cut, cut_iou = can_iou(GroupingConfig())
    assert cut.count_exact and cut_iou > 0.95, cut.summary()
    uncut, uncut_iou = can_iou(dataclasses.replace(GroupingConfig(), crease=0.0))
    assert uncut_iou < cut_iou - 0.05, uncut.summary()


def test_a_cluster_is_cut_only_along_its_concave_creases():
    """A box standing on a slab, fused into one surface and one cluster: the only faces that fold
    inwards past the threshold are at the box's foot, where its sides meet the slab (not along
    the box's convex edges, not on its faces), and cutting there gives the box and the slab."""
    from hiscene_sim.creases import face_fold, split_at_creases

    slab = trimesh.creation.box(extents=(0.6, 0.6, 0.1))
    slab.apply_translation((0, 0, 0.05))
    block = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    block.apply_translation((0, 0, 0.2))
    fused = fuse_meshes([FusedObjectInfo(n, n, False, m.bounds.copy(), m) for n, m in (("slab", slab), ("block", block))],
                        voxel_size=0.008, seed=0)
    prims = Primitives.of_mesh(fused.mesh)
    config = GroupingConfig()
    fold = face_fold(prims.pairs, prims.centers, prims.normals, prims.areas, config.crease_smoothing)
    crease = fold >= config.crease
    height, beside = prims.centers[:, 2], np.max(np.abs(prims.centers[:, :2]), axis=1)
    assert crease.sum() > 20
    assert np.all((height[crease] > 0.1) & (height[crease] < 0.13) & (np.abs(beside[crease] - 0.1) < 0.02))
    n = len(fold)
    pieces = split_at_creases(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), prims, prims.adjacency(), config.crease,
                              config.crease_smoothing, config.crease_min_piece * prims.spacing)
    score = score_face_labels(fused, pieces, set())
    assert score.count_exact and score.mean_iou > 0.95, score.summary()


def test_no_object_under_the_minimum_volume_is_written(corner_room, tmp_path):
    """A parse whose labels give a few faces an instance of their own: the writer drops it
    (its hull is under the minimum volume) and says so in the provenance."""
    from hiscene_sim.parse import ParsedScene

    labels = np.array([10, 11, 12, 3, 4])[corner_room.face_object]  # floor, walls, sofa, table
    tiny = np.flatnonzero(corner_room.face_object == 3)[:3]
    labels[tiny] = 9
    parsed = ParsedScene(labels, {10, 11, 12}, 0, {}, 0.0, {10: "floor", 11: "wall", 12: "wall"}, min_volume=(3 * 0.04) ** 3)
    scene = write_parsed_scene(parts_of_mesh(corner_room.mesh, labels), parsed, tmp_path / "out", tmp_path / "x.ply", ParseConfig())
    assert len(scene.objects) == 2
    written = load_scene(tmp_path / "out")
    assert any("hull volume" in line for line in written.provenance[0].parameters["dropped"])
    for o in written.objects:
        mesh = trimesh.load(tmp_path / "out" / o.mesh, force="mesh")
        assert mesh.convex_hull.volume >= parsed.min_volume


def test_what_the_rules_drop_stays_background_without_a_floor():
    """A scene with no floor (one object on its own): primitives the object rules sent to the
    background form a background instance, never an object."""
    from hiscene_sim.parse import _with_background
    from hiscene_sim.parse_background import Background

    mesh = trimesh.creation.box(extents=(0.3, 0.2, 0.1))
    prims = Primitives.of_mesh(mesh)
    labels = np.zeros(len(mesh.faces), dtype=np.int64)
    labels[:2] = -1  # dropped by a rule
    background = Background(np.zeros(len(labels), dtype=np.int8), np.full(len(labels), -1), None)
    out, kinds = _with_background(labels, prims, background)
    assert kinds == {1: "background"} and set(out[:2]) == {1} and set(out[2:]) == {0}


def test_scene_sets_are_seeded():
    a = build_set_scene(SetSpec("tabletop", "dev", 1))
    b = build_set_scene(SetSpec("tabletop", "dev", 1))
    assert np.array_equal(a.mesh.faces, b.mesh.faces) and np.allclose(a.mesh.vertices, b.mesh.vertices)
    assert np.array_equal(a.face_object, b.face_object)
    assert np.array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
    labels = {o.label for o in a.objects}
    assert "floor" in labels and "table" in labels and a.n_foreground >= 3
    # textured: an object's colours vary over it
    table = [i for i, o in enumerate(a.objects) if o.label == "table"][0]
    colors = a.mesh.visual.vertex_colors[a.vertex_object == table, :3].astype(float)
    assert colors.std(axis=0).max() > 5


def test_a_room_from_another_generator_parses_into_its_furniture():
    """A dev-split room (scene-synthesizer tables and shelves, procedural sofas and plants,
    pybullet_data items; one welded textured surface): the count within 20 %, IoU >= 0.7, and
    every object above the minimum volume."""
    spec = SetSpec("room", "dev", 2)
    fused = load_set_scene(spec)
    parsed = parse_mesh(fused.mesh, ParseConfig())
    score = score_face_labels(fused, parsed.labels, parsed.background)
    print(score.summary(), parsed.background_kinds, parsed.dropped)
    assert "floor" in parsed.background_kinds.values()
    assert abs(score.n_pred - score.n_gt) <= 0.2 * score.n_gt
    assert score.mean_iou >= 0.7


def test_an_object_balanced_on_a_small_base_stays_an_object_of_its_own():
    """A figure on a narrow foot: its contact is far shorter than its width (no footprint),
    but all of it is at its bottom, under its centre, on a broad table top."""
    import dataclasses

    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    foot = trimesh.creation.cylinder(radius=0.012, height=0.05)
    foot.apply_translation((0.1, 0.0, 0.725))
    body = trimesh.creation.box(extents=(0.3, 0.24, 0.12))
    body.apply_translation((0.1, 0.0, 0.81))
    figure = trimesh.util.concatenate([foot, body])
    fused, prims, scale, bg = _on_a_floor(table=table, figure=figure)

    def score(config):
        grouping = group_objects(fused.face_object.copy(), prims, bg, scale, config)
        return score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})

    kept = score(GroupingConfig())
    assert kept.count_exact and kept.mean_iou > 0.95, kept.summary()
    # the rule is what keeps it: without it the figure joins the table
    merged = score(dataclasses.replace(GroupingConfig(), balanced_support=np.inf))
    assert not merged.count_exact, merged.summary()


def _teddy_on_a_table(teddy_color):
    """A 10 x 8 x 5 cm rounded lump of ``teddy_color`` on a tan table, fused at 1.2 cm (the lump
    is 4 samples tall): (fused scene, primitives, scale, background)."""
    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    table.visual.vertex_colors = (200, 150, 100, 255)
    teddy = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    teddy.apply_scale((0.05, 0.04, 0.03))
    teddy.apply_translation((0.1, 0.0, 0.7 + 0.02))  # sunk 1 cm into the top: a gentle fillet, no crease
    teddy.visual.vertex_colors = teddy_color
    return _on_a_floor(0.012, table=table, teddy=teddy)


def test_a_small_object_of_another_colour_in_the_tables_cluster_is_cut_out_as_a_colour_island():
    """The 2D segmentation never separated the lump from the table (no crease at its foot), so
    the lifted clusters put all of it in the table's cluster. Its colour sets it apart: cut out
    as a colour island it is an object resting on the table; without the cut it is lost. A lump
    of the table's own colour is not cut out (nothing tells it apart)."""
    import dataclasses

    fused, prims, scale, bg = _teddy_on_a_table((110, 40, 35, 255))
    assert prims.colors is not None
    clusters = np.where(fused.face_object == 2, 1, fused.face_object)  # the teddy in the table's cluster
    no_crease = dataclasses.replace(GroupingConfig(), crease=0.0)  # this test is about the colour alone

    def teddy_iou(config):
        grouping = group_objects(clusters, prims, bg, scale, config)
        score = score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})
        return score, score.rows[[r.gt_name for r in score.rows].index("teddy")].iou

    cut, cut_iou = teddy_iou(no_crease)
    assert cut.count_exact and cut_iou > 0.8, cut.summary()
    uncut, uncut_iou = teddy_iou(dataclasses.replace(no_crease, island_color=0.0))
    assert uncut.n_pred == 1 and uncut_iou == 0.0, uncut.summary()

    fused, prims, scale, bg = _teddy_on_a_table((200, 150, 100, 255))
    grouping = group_objects(np.where(fused.face_object == 2, 1, fused.face_object), prims, bg, scale, no_crease)
    assert len(np.unique(grouping.labels[grouping.labels >= 0])) == 1


def test_a_pattern_on_an_objects_surface_is_not_a_colour_island():
    """Colour alone does not make an island: a flat patch of another colour on a table top (a
    placemat's print) does not rise above the top, and a red band round a can's side is not on
    an up-facing surface. Neither is cut out."""
    from hiscene_sim.colour_islands import split_colour_islands

    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    can = trimesh.creation.cylinder(radius=0.05, height=0.14, sections=48)
    can.apply_translation((-0.2, 0.0, 0.77))
    fused, prims, scale, _ = _on_a_floor(table=table, can=can)
    colors = np.full((len(prims.centers), 3), 0.75)
    center = prims.centers
    print_patch = (fused.face_object == 1) & (np.abs(center[:, 0] - 0.15) < 0.08) & (np.abs(center[:, 1]) < 0.06) & (center[:, 2] > 0.69)
    band = (fused.face_object == 2) & (np.abs(center[:, 2] - 0.77) < 0.03)
    colors[print_patch | band] = (0.7, 0.1, 0.1)
    assert prims.areas[print_patch].sum() > 0.01 and prims.areas[band].sum() > 0.01
    fg = fused.face_object > 0
    _, n_islands = split_colour_islands(fused.face_object.copy(), fg, prims, colors, 0.25, 2 * prims.spacing, 1.5 * prims.spacing)
    assert n_islands == 0


class _SampleGraph:
    """A hand-made neighbour graph of surface samples (every sample ``step`` x ``step``): a table
    top as a grid of up-facing samples, upright rings of outward-facing ones, and the pairs
    between them, as :class:`Primitives` for the object rules."""

    def __init__(self, step: float = 0.02):
        self.step = step
        self.centers, self.normals, self.labels, self.zmin, self.zmax = [], [], [], [], []
        self.pairs = set()

    def add(self, center, normal, label, half_height=0.0) -> int:
        self.centers.append(center)
        self.normals.append(normal)
        self.labels.append(label)
        self.zmin.append(center[2] - half_height)
        self.zmax.append(center[2] + half_height)
        return len(self.centers) - 1

    def top(self, label, holes) -> dict:
        """A 1 x 0.8 m grid at z = 0, with no sample within any (xy, radius) of ``holes``."""
        grid = {}
        for gx in range(-25, 26):
            for gy in range(-20, 21):
                xy = np.array([gx, gy]) * self.step
                if all(np.linalg.norm(xy - c) > r + 0.5 * self.step for c, r in holes):
                    grid[gx, gy] = self.add((*xy, 0.0), (0, 0, 1), label)
        for (gx, gy), p in grid.items():
            for q in (grid.get((gx + 1, gy)), grid.get((gx, gy + 1))):
                if q is not None:
                    self.pairs.add((p, q))
        return grid

    def ring(self, label, center, radius, rows, around=24) -> dict:
        """Rows of outward-facing samples from z = 0 up, each ``step`` tall."""
        ring = {}
        for a in range(around):
            angle = 2 * np.pi * a / around
            for h in range(rows):
                z = (h + 0.5) * self.step
                ring[a, h] = self.add((*(np.asarray(center) + radius * np.array([np.cos(angle), np.sin(angle)])), z),
                                      (np.cos(angle), np.sin(angle), 0), label, 0.5 * self.step)
        for (a, h), p in ring.items():
            self.pairs.add((p, ring[(a + 1) % around, h]))
            if h + 1 < rows:
                self.pairs.add((p, ring[a, h + 1]))
        return ring

    def nearest(self, samples, xy) -> int:
        samples = np.asarray(list(samples))
        return int(samples[np.argmin(np.linalg.norm(np.asarray(self.centers)[samples, :2] - xy, axis=1))])

    def stand(self, ring, grid, skip=()):
        """The ring's bottom row paired with the top's samples under it."""
        for (a, h), p in ring.items():
            if h == 0 and a not in skip:
                self.pairs.add((p, self.nearest(grid.values(), np.asarray(self.centers[p][:2]))))

    def primitives(self) -> Primitives:
        pairs = np.array(sorted(self.pairs))
        centers = np.array(self.centers, dtype=float)
        return Primitives(centers, np.array(self.normals, dtype=float), np.full(len(centers), self.step ** 2),
                          np.array(self.zmin), np.array(self.zmax), pairs, centers[pairs, 2].mean(axis=1),
                          centers[pairs, :2].mean(axis=1), np.full(len(pairs), self.step), self.step)


def test_a_fragment_joins_the_neighbour_its_surface_runs_on_into():
    """A table top, a mug standing on it, and a sliver of the top beside the mug's foot in a
    cluster of its own, too narrow to carry the mug. The sliver touches the mug at twice as many
    edges as the top (a finer surface on the mug's side), but its surface runs on into the top:
    it joins the top, and the mug stays an object resting on it."""
    from hiscene_sim.object_grouping import merge_unless_resting

    g = _SampleGraph()
    mug_xy, radius, step = np.array([0.2, 0.0]), 0.05, g.step
    grid = g.top(0, [(mug_xy, radius)])
    ring = g.ring(1, mug_xy, radius, rows=5)
    arc = range(4)
    sliver = {a: g.add((*(mug_xy + (radius + 0.4 * step) * np.array([np.cos(2 * np.pi * a / 24), np.sin(2 * np.pi * a / 24)])), 0.0),
                       (0, 0, 1), 2) for a in arc}
    g.stand(ring, grid, skip=arc)
    for a, p in sliver.items():
        g.pairs.update({(p, ring[a, 0]), (p, ring[a + 1, 0])})  # two edges each on the mug's side
        g.pairs.add((p, g.nearest(grid.values(), mug_xy + (np.asarray(g.centers[p][:2]) - mug_xy) * (1 + step / radius))))
        if a + 1 in sliver:
            g.pairs.add((p, sliver[a + 1]))
    labels = np.array(g.labels)
    merged = merge_unless_resting(labels.copy(), g.primitives(), 1.5 * step, GroupingConfig(), [])
    assert len(np.unique(merged)) == 2
    assert np.all(merged[labels == 2] == merged[labels == 0][0])
    assert merged[labels == 1][0] != merged[labels == 0][0]



def _two_mugs_welded(second_color):
    """Two 8 cm mugs 7 cm apart on a tan table, fused at 1 cm: the voxels weld them into one
    lump along a contact longer than either is wide. (fused scene, primitives, scale, background)."""
    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    table.visual.vertex_colors = (200, 150, 100, 255)
    mugs = []
    for x, color in ((0.0, (60, 70, 160, 255)), (0.07, second_color)):
        mug = trimesh.creation.cylinder(radius=0.04, height=0.1)
        mug.apply_translation((x, 0.0, 0.75))
        mug.visual.vertex_colors = color
        mugs.append(mug)
    return _on_a_floor(0.01, table=table, mug_a=mugs[0], mug_b=mugs[1])


def test_two_standing_objects_of_different_colours_stay_apart_however_long_their_contact():
    """Two mugs welded side by side, each standing on the table: their contact is longer than a
    mug is wide, which the touch rule reads as a cut through one object. Their colours differ, so
    they stay two; without the colour test (or with one colour) they are one lump."""
    import dataclasses

    def count(second_color, config):
        fused, prims, scale, bg = _two_mugs_welded(second_color)
        grouping = group_objects(fused.face_object.copy(), prims, bg, scale, config)
        score = score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})
        return score

    apart = count((200, 60, 50, 255), GroupingConfig())
    assert apart.count_exact and apart.mean_iou > 0.9, apart.summary()
    assert count((200, 60, 50, 255), dataclasses.replace(GroupingConfig(), apart_color=0.0)).n_pred == 2
    assert count((60, 70, 160, 255), GroupingConfig()).n_pred == 2  # one colour: nothing tells them apart


def test_a_strip_of_the_tables_side_in_a_mugs_cluster_goes_back_to_the_table():
    """A mug stands flush at the table's edge, so its side runs straight on into the table's
    side with no crease between them, and the lifted clusters put a strip of the table's side
    under the mug into the mug's cluster. That strip has the table's colour: it goes back to the
    table, and the mug, now ending at its foot, rests on the table. Without that step the mug's
    cluster reaches below the table top, so nothing rests there and the mug is lost."""
    import dataclasses

    table = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    table.apply_translation((0, 0, 0.35))
    table.visual.vertex_colors = (200, 150, 100, 255)
    mug = trimesh.creation.cylinder(radius=0.04, height=0.1)
    mug.apply_translation((0.1, 0.3 - 0.04, 0.75))  # its side flush with the table's +y side
    mug.visual.vertex_colors = (60, 70, 160, 255)
    fused, prims, scale, bg = _on_a_floor(0.01, table=table, mug=mug)
    strip = ((fused.face_object == 1) & (prims.normals[:, 1] > 0.7) & (np.abs(prims.centers[:, 0] - 0.1) < 0.04)
             & (prims.centers[:, 2] > 0.62))
    assert strip.sum() > 10
    clusters = np.where(strip, 2, fused.face_object)
    no_crease = dataclasses.replace(GroupingConfig(), crease=0.0)  # the colour alone, as at a flush edge

    def score(config):
        grouping = group_objects(clusters, prims, bg, scale, config)
        return score_face_labels(fused, np.where(grouping.labels >= 0, grouping.labels, 99), {99})

    back = score(no_crease)
    assert back.count_exact and back.mean_iou > 0.9, back.summary()
    lost = score(dataclasses.replace(no_crease, island_strays=False))
    assert lost.n_pred == 1 and lost.mean_iou < 0.6, lost.summary()


def _lump_on_a_ridge(slope_deg, lump_color):
    """A 10 x 8 x 6 cm lump of ``lump_color`` straddling the ridge of a tan block whose top slopes
    down both ways by ``slope_deg`` (0: a flat table), fused at 1.2 cm."""
    rise = 0.3 * np.tan(np.radians(slope_deg))
    corners = [(x, y, z) for x in (-0.4, 0.4) for y in (-0.3, 0.3) for z in (0.0, 0.6)] + [(x, 0.0, 0.6 + rise) for x in (-0.4, 0.4)]
    block = trimesh.convex.convex_hull(np.array(corners, dtype=float))
    block.visual.vertex_colors = (200, 150, 100, 255)
    lump = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    lump.apply_scale((0.05, 0.04, 0.03))
    lump.apply_translation((0.1, 0.0, 0.6 + rise + 0.02))
    lump.visual.vertex_colors = lump_color
    return _on_a_floor(0.012, block=block, lump=lump)


def test_a_part_of_its_supports_very_colour_on_no_flat_top_is_a_piece_of_the_support():
    """A lump in a cluster of its own, resting on a ridge (a clump of leaves lying on a plant's
    foliage): of the support's own colour and texture it is a piece of the support; of another
    colour, or with the colour test off, an object resting there. On a flat top a lump of the
    table's very colour still rests there (a can on a table of its own colour)."""
    import dataclasses

    def n_objects(slope, color, config=GroupingConfig()):
        fused, prims, scale, bg = _lump_on_a_ridge(slope, color)
        grouping = group_objects(fused.face_object.copy(), prims, bg, scale, config)
        return len(np.unique(grouping.labels[grouping.labels >= 0]))

    tan, red = (200, 150, 100, 255), (110, 40, 35, 255)
    assert n_objects(25, tan) == 1
    assert n_objects(25, red) == 2
    assert n_objects(25, tan, dataclasses.replace(GroupingConfig(), rest_color=0.0)) == 2
    assert n_objects(0, tan) == 2
