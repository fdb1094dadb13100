"""Rendering layer: cameras / viewpoints (paper A.1), exact mesh ray casting, Gaussian splatting
(CPU reference and, on a CUDA machine, gsplat), 3DGS PLY I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.ndimage import binary_erosion

from hiscene_sim.render import (
    Camera,
    GaussianRenderer,
    Gaussians,
    MeshRenderer,
    gaussians_from_mesh,
    gsplat_available,
    load_3dgs_ply,
    look_at,
    normalize_scene,
    render_gaussian_views,
    render_gaussians,
    render_gaussians_gsplat,
    render_mesh,
    render_views,
    sample_surface,
    save_3dgs_ply,
    viewpoints,
)
from hiscene_sim.render._ply import read_ply_vertices, write_ply_vertices
from hiscene_sim.render.gaussians import SH_C0
from hiscene_sim.rotations import quaternions_to_matrices

SIDE_COLORS = {  # outward normal axis -> uint8 colour
    (1, 0, 0): (230, 30, 30), (-1, 0, 0): (30, 230, 30), (0, 1, 0): (30, 30, 230),
    (0, -1, 0): (230, 230, 30), (0, 0, 1): (30, 230, 230), (0, 0, -1): (230, 30, 230),
}


def colored_box(extents=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """A box whose six sides have distinct face colours."""
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(center)
    colors = np.zeros((len(box.faces), 4), dtype=np.uint8)
    for i, n in enumerate(np.rint(box.face_normals).astype(int)):
        colors[i] = (*SIDE_COLORS[tuple(n)], 255)
    box.visual.face_colors = colors
    return box


def side_camera(projection: str, size: int = 64, eye=(3.0, 0.0, 0.0)) -> Camera:
    return Camera(size, size, look_at(eye, (0.0, 0.0, 0.0)), projection=projection,
                  fov_y_deg=60.0, ortho_height=2.0)


def spherical(eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.linalg.norm(eyes, axis=1)
    az = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    el = np.degrees(np.arcsin(np.clip(eyes[:, 2] / r, -1, 1)))
    return r, az, el


# ----------------------------------------------------------------- cameras
BOUNDS = np.array([[1.0, -2.0, 0.5], [5.0, 1.0, 2.5]])  # an off-centre, non-cubic scene


def test_normalize_scene_maps_into_unit_sphere():
    center, scale = normalize_scene(BOUNDS)
    corners = np.array([[x, y, z] for x in BOUNDS[:, 0] for y in BOUNDS[:, 1] for z in BOUNDS[:, 2]])
    r = np.linalg.norm((corners - center) * scale, axis=1)
    np.testing.assert_allclose(center, [3.0, -0.5, 1.5])
    np.testing.assert_allclose(r, 1.0)


@pytest.mark.parametrize("kind", ["corner", "open"])
def test_viewpoints_follow_paper_a1(kind):
    cams = viewpoints(kind, bounds=BOUNDS, width=32, height=24)
    assert len(cams) == 40
    center, scale = normalize_scene(BOUNDS)
    eyes = (np.array([c.position for c in cams]) - center) * scale
    r, az, el = spherical(eyes)
    np.testing.assert_allclose(r, 2.0, atol=1e-9)
    exp_az = np.linspace(-5, 95, 8) if kind == "corner" else np.arange(8) * 45.0
    exp_el = np.array([-10.0, 15.0, 40.0, 65.0, 90.0])
    np.testing.assert_allclose(el.reshape(5, 8), np.repeat(exp_el[:, None], 8, axis=1), atol=1e-6)
    az_ok = el < 89.9  # azimuth is undefined looking straight down: check the metadata there
    wrapped = (az.reshape(5, 8) - exp_az[None, :] + 180.0) % 360.0 - 180.0
    assert np.all(np.abs(wrapped[az_ok.reshape(5, 8)]) < 1e-6)
    np.testing.assert_allclose([c.azimuth_deg for c in cams], np.tile(exp_az, 5))
    np.testing.assert_allclose([c.elevation_deg for c in cams], np.repeat(exp_el, 8))
    assert all(c.projection == "orthographic" for c in cams)
    # orthographic image covers the normalised unit sphere
    np.testing.assert_allclose([c.ortho_height for c in cams], 2.0 / scale)


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_viewpoints_look_at_the_scene_centre(projection):
    cams = viewpoints("corner", bounds=BOUNDS, width=40, height=30, projection=projection)
    center, scale = normalize_scene(BOUNDS)
    for c in cams:
        uv, depth = c.project(center[None])
        np.testing.assert_allclose(uv[0], [20.0, 15.0], atol=1e-9)
        np.testing.assert_allclose(depth[0], 2.0 / scale, rtol=1e-9)
        np.testing.assert_allclose(c.forward, (center - c.position) / np.linalg.norm(center - c.position), atol=1e-12)
        # image "up" is towards increasing elevation: +Z goes up the image below 90 degrees
        if c.elevation_deg < 89.0:
            uv_up, _ = c.project((center + [0.0, 0.0, 0.1])[None])
            assert uv_up[0, 1] < 15.0 and abs(uv_up[0, 0] - 20.0) < 1e-6
    if projection == "perspective":
        assert cams[0].fov_y_deg == pytest.approx(60.0)
        # the unit sphere exactly fills the field of view: tangent rays at the image border
        c = cams[0]
        edge_dir = c.rays_through([[20.0, 0.0]])[1][0]
        to_c = center - c.position
        dist = np.linalg.norm(np.cross(to_c, edge_dir))
        assert dist * scale == pytest.approx(1.0, rel=1e-6)


def test_look_at_straight_down_is_valid():
    m = look_at((0.0, 0.0, 5.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    r = m[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r[2], [0.0, 0.0, -1.0])
    cam = viewpoints("open", n_azimuth=1, n_elevation=1, elevation_range=(90.0, 90.0))[0]
    np.testing.assert_allclose(cam.forward, [0.0, 0.0, -1.0], atol=1e-12)


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_project_and_rays_agree(projection):
    rng = np.random.default_rng(1)
    cam = Camera(48, 32, look_at((2.0, -1.0, 1.5), (0.1, 0.2, 0.0)), projection=projection,
                 fov_y_deg=50.0, ortho_height=1.7)
    origins, dirs = cam.rays()
    assert origins.shape == dirs.shape == (48 * 32, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    # a point along each pixel's ray projects back to that pixel's centre
    t = rng.uniform(0.5, 3.0, len(origins))
    uv, depth = cam.project(origins + t[:, None] * dirs)
    np.testing.assert_allclose(uv, cam.pixel_centers(), atol=1e-8)
    assert np.all(depth > 0)
    # a ray through a projected point's pixel centre passes within half a pixel of it
    pts = rng.uniform(-0.5, 0.5, (200, 3)) + [0.1, 0.2, 0.0]
    uv, depth = cam.project(pts)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 48) & (uv[:, 1] >= 0) & (uv[:, 1] < 32)
    assert inside.sum() > 100
    pts, uv, depth = pts[inside], uv[inside], depth[inside]
    pix = np.floor(uv).astype(int)
    k = pix[:, 1] * 48 + pix[:, 0]
    o, d = origins[k], dirs[k]
    dist = np.linalg.norm(np.cross(pts - o, d), axis=1)
    pixel_size = depth / cam.focal if projection == "perspective" else np.full(len(pts), 1.0 / cam.focal)
    assert np.all(dist <= 0.5 * math.sqrt(2.0) * pixel_size * (1 + 1e-9))
    # row-major: pixel (row 0, column 1) is index 1
    np.testing.assert_allclose(cam.pixel_centers()[1], [1.5, 0.5])


# -------------------------------------------------------------------- mesh
@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_mesh_box_face_ids_depth_normals(projection):
    box = colored_box()
    cam = side_camera(projection)
    r = render_mesh(box, cam)
    plus_x = set(np.flatnonzero(box.face_normals[:, 0] > 0.99))
    assert len(plus_x) == 2
    assert r.primitive[32, 32] in plus_x
    hit = r.primitive >= 0
    assert set(np.unique(r.primitive[hit])) <= plus_x  # only the +x side is visible
    np.testing.assert_allclose(r.depth[hit], 2.5, atol=1e-5)  # the face is at x = 0.5, camera at 3
    assert np.all(np.isinf(r.depth[~hit]))
    np.testing.assert_allclose(r.normal[hit], np.tile([1.0, 0.0, 0.0], (hit.sum(), 1)), atol=1e-6)
    assert np.all(r.normal[~hit] == 0)
    np.testing.assert_allclose(r.color[hit], np.tile(np.array(SIDE_COLORS[(1, 0, 0)]) / 255.0, (hit.sum(), 1)),
                               atol=1e-6)
    np.testing.assert_allclose(r.color[~hit], 1.0)  # white background
    # one-hot weights
    assert r.weights.shape == (64 * 64, len(box.faces))
    np.testing.assert_allclose(np.asarray(r.weights.sum(axis=1)).ravel(), r.alpha.ravel())
    rows = np.flatnonzero(hit.ravel())
    np.testing.assert_array_equal(r.weights[rows].indices, r.primitive.ravel()[rows])
    # silhouette size: orthographic 1 unit = 32 px; perspective f * 0.5 / 2.5 on each side
    row = hit[32]
    if projection == "orthographic":
        assert row.sum() == 32
    else:
        f = 32.0 / math.tan(math.radians(30.0))
        assert abs(row.sum() - 2 * f * 0.5 / 2.5) <= 1.0


def test_mesh_oblique_view_depth_is_along_view_axis():
    box = colored_box()
    cam = Camera(80, 80, look_at((2.0, 1.5, 1.2), (0.0, 0.0, 0.0)), projection="perspective", fov_y_deg=45.0)
    r = render_mesh(box, cam)
    hit = r.primitive >= 0
    o, d = cam.rays()
    t = r.depth.ravel()[hit.ravel()] / (d[hit.ravel()] @ cam.forward)
    pts = o[hit.ravel()] + t[:, None] * d[hit.ravel()]
    # every recovered hit point lies on the box surface, on the face that was reported
    assert np.all(np.abs(pts) <= 0.5 + 1e-5)
    assert np.all(np.max(np.abs(pts), axis=1) >= 0.5 - 1e-5)
    fn = box.face_normals[r.primitive[hit]]
    np.testing.assert_allclose(np.einsum("ij,ij->i", pts, fn), 0.5, atol=1e-5)
    # three sides are visible, normals face the camera
    assert len({tuple(np.rint(n).astype(int)) for n in fn}) == 3
    assert np.all(np.einsum("ij,ij->i", r.normal[hit], -d[hit.ravel()]) > 0)


def test_mesh_vertex_colors_are_interpolated():
    tri = trimesh.Trimesh([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0, 1, 2]], process=False)
    tri.visual.vertex_colors = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]], dtype=np.uint8)
    cam = Camera(40, 40, look_at((0.5, 0.5, 2.0), (0.5, 0.5, 0.0), up=(0.0, 1.0, 0.0)), ortho_height=1.2)
    r = render_mesh(tri, cam)
    hit = (r.primitive >= 0).ravel()
    assert hit.sum() > 300
    o, _ = cam.rays()
    pts = o[hit]
    expected = np.stack([1.0 - pts[:, 0] - pts[:, 1], pts[:, 0], pts[:, 1]], axis=1)
    np.testing.assert_allclose(r.color.reshape(-1, 3)[hit], expected, atol=2e-5)
    np.testing.assert_allclose(r.depth.ravel()[hit], 2.0, atol=1e-6)
    # shading with the headlight: the triangle faces the camera, so nothing changes
    shaded = render_mesh(tri, cam, shade=True)
    np.testing.assert_allclose(shaded.color, r.color, atol=1e-6)


def test_mesh_texture_sampling():
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[:4, :4] = (255, 0, 0)  # top-left (v > 0.5, u < 0.5)
    img[:4, 4:] = (0, 255, 0)
    img[4:, :4] = (0, 0, 255)
    img[4:, 4:] = (255, 255, 0)
    v = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    quad = trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], process=False)
    quad.visual = trimesh.visual.TextureVisuals(uv=v[:, :2], image=Image.fromarray(img))
    cam = Camera(64, 64, look_at((0.5, 0.5, 2.0), (0.5, 0.5, 0.0), up=(0.0, 1.0, 0.0)), ortho_height=1.0)
    r = render_mesh(quad, cam)
    assert np.all(r.primitive >= 0)
    np.testing.assert_allclose(r.color[16, 16], [1, 0, 0], atol=1e-6)  # image top-left = +y, -x
    np.testing.assert_allclose(r.color[16, 48], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(r.color[48, 16], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(r.color[48, 48], [1, 1, 0], atol=1e-6)


def test_mesh_shading_darkens_oblique_faces():
    box = colored_box()
    cam = Camera(48, 48, look_at((2.0, 1.5, 1.2), (0.0, 0.0, 0.0)), ortho_height=2.2)
    flat = render_mesh(box, cam)
    lit = render_mesh(box, cam, shade=True, ambient=0.2)
    hit = flat.primitive >= 0
    assert np.all(lit.color[hit] <= flat.color[hit] + 1e-6)
    assert np.mean(lit.color[hit]) < np.mean(flat.color[hit]) - 0.05
    np.testing.assert_array_equal(lit.primitive, flat.primitive)


def test_mesh_two_coloured_boxes_and_views():
    red = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    red.apply_translation((-1.0, 0.0, 0.4))
    red.visual.face_colors = (255, 0, 0, 255)
    blue = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    blue.apply_translation((1.0, 0.0, 0.4))
    blue.visual.face_colors = (0, 0, 255, 255)
    scene = trimesh.util.concatenate([red, blue])
    cams = viewpoints("open", bounds=scene.bounds, width=48, height=48)
    results = render_views(scene, cams)
    assert len(results) == 40
    for cam, r in zip(cams, results):
        colors = {tuple(c) for c in np.rint(r.color[r.primitive >= 0] * 255).astype(int)}
        assert colors <= {(255, 0, 0), (0, 0, 255)}
    top = cams[-1]  # elevation 90
    r = results[-1]
    for center, rgb in (((-1.0, 0.0, 0.8), (1, 0, 0)), ((1.0, 0.0, 0.8), (0, 0, 1))):
        uv, _ = top.project(np.array([center]))
        j, i = np.floor(uv[0]).astype(int)
        np.testing.assert_allclose(r.color[i, j], rgb)
        np.testing.assert_allclose(r.depth[i, j], top.project(np.array([center]))[1][0], atol=1e-5)
    # the two boxes together cover both colours in every view that sees them side by side
    assert all(len({tuple(c) for c in np.rint(r.color[r.primitive >= 0] * 255).astype(int)}) == 2
               for r in results[-8:])


def test_mesh_vertex_normals_and_scene_input():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    scene = trimesh.Scene([sphere])
    cam = Camera(32, 32, look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0)), ortho_height=2.4)
    r_face = render_mesh(scene, cam)
    r_vert = render_mesh(sphere, cam, normals="vertex")
    hit = (r_vert.primitive >= 0).ravel()
    np.testing.assert_array_equal(r_face.primitive, r_vert.primitive)
    o, d = cam.rays()
    pts = o[hit] + (r_vert.depth.ravel()[hit])[:, None] * d[hit]
    radial = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    err_vert = 1 - np.einsum("ij,ij->i", r_vert.normal.reshape(-1, 3)[hit], radial)
    err_face = 1 - np.einsum("ij,ij->i", r_face.normal.reshape(-1, 3)[hit], radial)
    assert err_vert.mean() < 0.25 * err_face.mean()
    np.testing.assert_allclose(np.linalg.norm(r_vert.normal.reshape(-1, 3)[hit], axis=1), 1.0, atol=1e-6)


def test_mesh_trimesh_fallback_agrees_with_embree():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    cam = Camera(24, 24, look_at((2.0, 0.7, 0.9), (0.0, 0.0, 0.0)), projection="perspective", fov_y_deg=50.0)
    a = MeshRenderer(mesh, backend="embree").render(cam)
    b = MeshRenderer(mesh, backend="trimesh").render(cam)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert np.mean(a.primitive == b.primitive) > 0.97
    hit = a.alpha > 0
    np.testing.assert_allclose(a.depth[hit], b.depth[hit], atol=1e-5)


# --------------------------------------------------------------- Gaussians
def test_gaussians_from_mesh_are_flat_discs_on_the_surface():
    box = colored_box()
    g = gaussians_from_mesh(box, 3000, seed=3)
    s = sample_surface(box, 3000, seed=3)
    assert len(g) == 3000
    np.testing.assert_allclose(g.means, s.points, atol=1e-6)
    normals = g.normals()
    np.testing.assert_allclose(np.abs(np.einsum("ij,ij->i", normals, s.normals)), 1.0, atol=1e-5)
    sigma = math.sqrt(6.0 / 3000)
    np.testing.assert_allclose(np.sort(g.scales, axis=1)[:, 1:], sigma, rtol=1e-5)
    assert np.all(g.scales.min(axis=1) < 0.05 * sigma)
    assert np.all(g.opacities >= 0.9)
    expected = np.array([SIDE_COLORS[tuple(n)] for n in np.rint(s.normals).astype(int)]) / 255.0
    np.testing.assert_allclose(g.colors, expected, atol=1e-6)


def _naive_render(g: Gaussians, cam: Camera, background=(1.0, 1.0, 1.0)):
    """Per-pixel Python loop version of the 3DGS forward pass, written independently."""
    h, w = cam.height, cam.width
    f = cam.focal
    cx, cy = cam.principal_point
    rot = cam.rotation
    items = []
    for k in range(len(g)):
        p = rot @ g.means[k].astype(np.float64) + cam.translation
        if p[2] <= 0.01:
            continue
        rq = quaternions_to_matrices(g.rotations[k:k + 1])[0]
        cov = rot @ rq @ np.diag(g.scales[k].astype(np.float64) ** 2) @ rq.T @ rot.T
        if cam.projection == "perspective":
            lx, ly = 1.3 * 0.5 * w / f, 1.3 * 0.5 * h / f
            tx, ty = np.clip(p[0] / p[2], -lx, lx), np.clip(p[1] / p[2], -ly, ly)
            jac = np.array([[f / p[2], 0, -f * tx / p[2]], [0, f / p[2], -f * ty / p[2]]])
            u, v = f * p[0] / p[2] + cx, f * p[1] / p[2] + cy
        else:
            jac = np.array([[f, 0, 0], [0, f, 0]])
            u, v = f * p[0] + cx, f * p[1] + cy
        c2 = jac @ cov @ jac.T + 0.3 * np.eye(2)
        op = float(g.opacities[k])
        ext = min(3.0, math.sqrt(2 * math.log(max(op * 255.0, 1.0))))
        items.append((p[2], k, u, v, np.linalg.inv(c2), ext * math.sqrt(c2[0, 0]), ext * math.sqrt(c2[1, 1]), op))
    items.sort(key=lambda it: it[0])
    color = np.zeros((h, w, 3))
    alpha_img = np.zeros((h, w))
    weights = np.zeros((h * w, len(g)))
    for i in range(h):
        for j in range(w):
            t = 1.0
            for z, k, u, v, inv, rx, ry, op in items:
                d = np.array([j + 0.5 - u, i + 0.5 - v])
                if abs(d[0]) > rx or abs(d[1]) > ry:
                    continue
                a = min(0.99, op * math.exp(-0.5 * d @ inv @ d))
                if a < 1.0 / 255.0:
                    continue
                if t * (1 - a) < 1e-4:
                    break
                weights[i * w + j, k] = t * a
                color[i, j] += t * a * g.colors[k]
                t *= 1 - a
            alpha_img[i, j] = 1 - t
    color += (1 - alpha_img)[..., None] * np.asarray(background)
    return np.clip(color, 0, 1), alpha_img, weights


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_gaussian_renderer_matches_naive_loop(projection):
    rng = np.random.default_rng(7)
    n = 40
    q = rng.normal(size=(n, 4))
    g = Gaussians(
        means=rng.uniform(-0.6, 0.6, (n, 3)),
        scales=np.exp(rng.uniform(np.log(0.02), np.log(0.3), (n, 3))),
        rotations=q,
        opacities=rng.uniform(0.3, 1.0, n),
        colors=rng.uniform(0, 1, (n, 3)),
    )
    g.opacities[:5] = 1.0  # exercise the 0.99 clamp and the early stop
    cam = Camera(20, 14, look_at((2.2, -1.0, 0.8), (0.0, 0.0, 0.0)), projection=projection,
                 fov_y_deg=55.0, ortho_height=1.8)
    color, alpha, weights = _naive_render(g, cam)
    for chunk in (1 << 20, 7):  # one chunk, and many tiny chunks (carried transmittance, culling)
        r = render_gaussians(g, cam, max_pairs_per_chunk=chunk)
        np.testing.assert_allclose(r.alpha, alpha, atol=2e-5)
        np.testing.assert_allclose(r.color, color, atol=2e-5)
        np.testing.assert_allclose(r.weights.toarray(), weights, atol=2e-5)
        dense = weights.copy()
        dense[dense == 0] = -1
        expected_prim = np.where(alpha.ravel() > 0, dense.argmax(axis=1), -1)
        np.testing.assert_array_equal(r.primitive.ravel(), expected_prim)


@pytest.fixture(scope="module")
def box_scene():
    box = colored_box()
    n = 50000
    g = gaussians_from_mesh(box, n, seed=0)
    faces = sample_surface(box, n, seed=0).face_ids
    return box, g, faces


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_gaussian_render_agrees_with_mesh_render(box_scene, projection):
    box, g, faces = box_scene
    cams = viewpoints("corner", bounds=box.bounds, width=128, height=128, projection=projection)
    # Views at elevations 15 and 65. Edge-on sides pile all their discs onto one line, so the
    # splatted silhouette is about 1-2 px wider than the mesh's (IoU 0.91 looking straight down).
    for cam in (cams[11], cams[28]):
        rm = render_mesh(box, cam)
        rg = render_gaussians(g, cam)
        sm, sg = rm.mask(), rg.mask()
        iou = (sm & sg).sum() / (sm | sg).sum()
        assert iou > 0.9, iou
        both = sm & sg
        assert np.mean(np.abs(rg.color[both] - rm.color[both])) < 0.06
        # expected depth blends disc centres (biased towards the camera by about a disc radius on
        # oblique sides): compare loosely here, exactly in test_gaussian_depth_on_a_plane
        assert np.median(np.abs(rg.depth[both] - rm.depth[both])) < 0.05
        assert np.median(np.einsum("ij,ij->i", rg.normal[both], rm.normal[both])) > 0.99
        # weights: rows sum to the coverage, never above 1
        rows = np.asarray(rg.weights.sum(axis=1)).ravel()
        np.testing.assert_allclose(rows, rg.alpha.ravel(), atol=1e-5)
        assert rows.max() <= 1.0 + 1e-6
        assert rg.weights.shape == (128 * 128, len(g))
        # the dominant Gaussian of a covered pixel lies on a side facing the camera (inside the
        # silhouette; at its edge, discs of the hidden sides straddling the edge may win)
        assert np.all(rg.primitive[sg] >= 0)
        inner = binary_erosion(sm, iterations=2)
        for region, share in ((inner, 1.0), (sg, 0.95)):
            prim = rg.primitive[region & sg]
            fn = box.face_normals[faces[prim]]
            to_cam = cam.directions_to_camera(g.means[prim])
            assert np.mean(np.einsum("ij,ij->i", fn, to_cam) > 0) >= share
        assert np.all(rg.primitive[rg.alpha == 0] == -1)
        assert np.all(np.isinf(rg.depth[rg.alpha == 0]))


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_gaussian_depth_and_normal_on_a_plane(projection):
    plane = trimesh.Trimesh([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    g = gaussians_from_mesh(plane, 4000, seed=1)
    cam = Camera(32, 32, look_at((0.0, 0.0, 2.0), (0.0, 0.0, 0.0), up=(0, 1, 0)), projection=projection,
                 fov_y_deg=40.0, ortho_height=1.5)
    r = render_gaussians(g, cam)
    assert r.mask().all()
    np.testing.assert_allclose(r.depth, 2.0, atol=1e-5)
    np.testing.assert_allclose(r.normal.reshape(-1, 3), np.tile([0, 0, 1.0], (32 * 32, 1)), atol=1e-5)


def test_gaussian_renderer_views_match_single_renders(box_scene):
    _, g, _ = box_scene
    cams = viewpoints("open", n_azimuth=2, n_elevation=1, width=24, height=20, projection="perspective")
    views = render_gaussian_views(g, cams, background=(0.0, 0.0, 0.0))
    renderer = GaussianRenderer(g, background=(0.0, 0.0, 0.0))
    for cam, v in zip(cams, views, strict=True):
        single = render_gaussians(g, cam, background=(0.0, 0.0, 0.0))
        again = renderer.render(cam)
        for r in (single, again):
            np.testing.assert_array_equal(v.color, r.color)
            np.testing.assert_array_equal(v.primitive, r.primitive)
            assert (v.weights != r.weights).nnz == 0


def test_gaussian_render_empty_and_behind_camera():
    g = Gaussians(means=[[0.0, 0.0, 5.0]], scales=[[0.1, 0.1, 0.1]], rotations=[[1, 0, 0, 0]],
                  opacities=[0.9], colors=[[1, 0, 0]])
    cam = Camera(8, 8, look_at((0.0, 0.0, 0.0), (0.0, 0.0, -1.0)), projection="perspective")
    r = render_gaussians(g, cam, background=(0.0, 0.0, 0.0))
    assert r.weights.nnz == 0 and np.all(r.primitive == -1) and np.all(r.color == 0)
    empty = g.subset(np.zeros(1, dtype=bool))
    r = render_gaussians(empty, side_camera("orthographic", 8))
    assert len(empty) == 0 and r.weights.shape == (64, 0) and np.all(np.isinf(r.depth))


# --------------------------------------------------------------------- PLY
def _random_gaussians(n: int, sh_k: int, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    return Gaussians(
        means=rng.normal(size=(n, 3)),
        scales=np.exp(rng.normal(-3, 0.5, (n, 3))),
        rotations=rng.normal(size=(n, 4)),
        opacities=rng.uniform(0.01, 0.99, n),
        colors=rng.uniform(0, 1, (n, 3)),
        sh_rest=rng.normal(size=(n, sh_k, 3)) if sh_k else None,
    )


@pytest.mark.parametrize("sh_k", [0, 15])
def test_3dgs_ply_round_trip(tmp_path, sh_k):
    g = _random_gaussians(500, sh_k)
    path = tmp_path / "g.ply"
    save_3dgs_ply(g, path)
    names = list(read_ply_vertices(path))
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(3 * sh_k)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected
    h = load_3dgs_ply(path)
    for field in ("means", "scales", "rotations", "opacities", "colors"):
        np.testing.assert_allclose(getattr(h, field), getattr(g, field), rtol=1e-5, atol=1e-6)
    if sh_k:
        np.testing.assert_allclose(h.sh_rest, g.sh_rest, rtol=1e-6)
        # 3DGS layout: f_rest is channel-major (all R coefficients first)
        raw = read_ply_vertices(path)
        np.testing.assert_allclose(raw["f_rest_1"], g.sh_rest[:, 1, 0], rtol=1e-6)
        np.testing.assert_allclose(raw[f"f_rest_{sh_k}"], g.sh_rest[:, 0, 1], rtol=1e-6)
    else:
        assert h.sh_rest is None


def test_3dgs_ply_reads_fields_by_name(tmp_path):
    """A TRELLIS-style file: no f_rest, fields in another order, an extra field, raw values."""
    rng = np.random.default_rng(2)
    n = 50
    raw = {
        "rot_3": rng.normal(size=n), "rot_2": rng.normal(size=n), "rot_1": rng.normal(size=n),
        "rot_0": rng.normal(size=n) + 3.0,
        "scale_0": rng.normal(-4, 1, n), "scale_1": rng.normal(-4, 1, n), "scale_2": rng.normal(-4, 1, n),
        "opacity": rng.normal(size=n), "x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n),
        "f_dc_0": rng.normal(size=n), "f_dc_1": rng.normal(size=n), "f_dc_2": rng.normal(size=n),
        "extra": rng.normal(size=n),
    }
    path = tmp_path / "trellis.ply"
    write_ply_vertices(path, {k: v.astype(np.float32) for k, v in raw.items()})
    g = load_3dgs_ply(path)
    f = {k: v.astype(np.float32).astype(np.float64) for k, v in raw.items()}
    np.testing.assert_allclose(g.means, np.stack([f["x"], f["y"], f["z"]], 1), rtol=1e-6)
    np.testing.assert_allclose(g.colors, 0.5 + SH_C0 * np.stack([f[f"f_dc_{i}"] for i in range(3)], 1), rtol=1e-5)
    np.testing.assert_allclose(g.opacities, 1 / (1 + np.exp(-f["opacity"])), rtol=1e-5)
    np.testing.assert_allclose(g.scales, np.exp(np.stack([f[f"scale_{i}"] for i in range(3)], 1)), rtol=1e-5)
    q = np.stack([f[f"rot_{i}"] for i in range(4)], 1)
    np.testing.assert_allclose(g.rotations, q / np.linalg.norm(q, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert g.sh_rest is None

    # ascii and big-endian files load too
    lines = ["ply", "format ascii 1.0", "comment hi", "element vertex 2"]
    lines += [f"property float {k}" for k in ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2",
                                               "rot_0", "rot_1", "rot_2", "rot_3", "f_dc_0", "f_dc_1", "f_dc_2"]]
    lines += ["end_header", "1 2 3 0 0 0 0 1 0 0 0 0 0 0", "4 5 6 0 0 0 0 1 0 0 0 0 0 0"]
    (tmp_path / "a.ply").write_text("\n".join(lines) + "\n")
    ga = load_3dgs_ply(tmp_path / "a.ply")
    np.testing.assert_allclose(ga.means, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(ga.opacities, 0.5)
    np.testing.assert_allclose(ga.colors, 0.5)

    xyz = {k: np.zeros(3, np.float32) for k in ("x", "y", "z")}
    write_ply_vertices(tmp_path / "pc.ply", xyz)
    with pytest.raises(ValueError, match="missing vertex properties"):
        load_3dgs_ply(tmp_path / "pc.ply")


def test_3dgs_ply_big_endian(tmp_path):
    g = _random_gaussians(20, 0, seed=5)
    save_3dgs_ply(g, tmp_path / "le.ply")
    raw = read_ply_vertices(tmp_path / "le.ply")
    header = ["ply", "format binary_big_endian 1.0", "element vertex 20"]
    header += [f"property float {k}" for k in raw] + ["end_header"]
    body = np.empty(20, dtype=[(k, ">f4") for k in raw])
    for k, v in raw.items():
        body[k] = v
    (tmp_path / "be.ply").write_bytes(("\n".join(header) + "\n").encode() + body.tobytes())
    h = load_3dgs_ply(tmp_path / "be.ply")
    np.testing.assert_allclose(h.means, g.means, rtol=1e-6)
    np.testing.assert_allclose(h.opacities, g.opacities, rtol=1e-5)


# ------------------------------------------------------------------- gsplat
def test_gsplat_raises_clearly_without_cuda():
    if gsplat_available():
        pytest.skip("CUDA and gsplat are available here")
    g = _random_gaussians(4, 0)
    with pytest.raises(RuntimeError, match="CUDA|gsplat"):
        render_gaussians_gsplat(g, side_camera("perspective", 8))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_gsplat_agrees_with_cpu_renderer(box_scene, projection):
    pytest.importorskip("gsplat", reason="gsplat is not installed (pip install gsplat)")
    box, g, _ = box_scene
    cams = viewpoints("corner", bounds=box.bounds, width=128, height=96, projection=projection)
    for cam in (cams[11], cams[36]):
        ref = render_gaussians(g, cam)
        out = render_gaussians_gsplat(g, cam, with_weights=True)
        s_ref, s_out = ref.mask(), out.mask()
        iou = (s_ref & s_out).sum() / (s_ref | s_out).sum()
        # differences: float32 on the GPU, gsplat's circular 3-sigma footprint vs our ellipse box
        assert iou > 0.97, iou
        assert np.mean(np.abs(out.alpha - ref.alpha)) < 0.02
        assert np.mean(np.abs(out.color - ref.color)) < 0.02
        both = s_ref & s_out
        assert np.median(np.abs(out.depth[both] - ref.depth[both])) < 0.01
        assert np.median(np.einsum("ij,ij->i", out.normal[both], ref.normal[both])) > 0.99
        np.testing.assert_array_equal(out.primitive, ref.primitive)
