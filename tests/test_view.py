"""``hiscene view``: the self-contained HTML page of a validated export, checked as data (the
page's JSON blob, its size, the decimation budget) and in headless Chromium (Debian's
``chromium`` + ``chromium-driver``; ``.ci/run`` installs them): the WebGL canvas draws the
scene, every object is in the table, a click on a row or on the object in 3D selects it in
both, the before/after-settle toggle moves the object that settled, and nothing is fetched.

``HISCENE_SCREENSHOT=1`` also saves the page as ``docs/view-screenshot.png`` (the README's)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hiscene_sim.cli import main
from hiscene_sim.scene import Pose, Scene, SceneObject, save_scene
from hiscene_sim.testing.physics_scenes import Placement
from hiscene_sim.view import ViewConfig, write_view
from hiscene_sim.view.commands import write_page_after_run
from hiscene_sim.view.meshes import cluster_vertices, face_allowances
from physics.config import ValidationConfig
from physics.report import validate_and_report
from tests.test_physics_validate import QUICK, make

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[1]
LIFT = 0.04

SCENE = [
    Placement("cube_1", "cube", (0.0, 0.0)),
    Placement("jenga_1", "jenga", (0.25, 0.0), (0.0, 0.0, 30.0)),
    Placement("cube_2", "cube", (0.25, 0.0), on="jenga_1"),
    Placement("duck_1", "duck", (-0.25, 0.1), (0.0, 0.0, 45.0), lift=LIFT),  # settle puts it down
    Placement("mug_1", "mug", (0.0, 0.25)),
]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """The scene exported, settled and validated in PyBullet and MuJoCo, its page written."""
    scene_dir, export_dir = make(tmp_path_factory.mktemp("view"), SCENE)
    validate_and_report(export_dir, ValidationConfig(render=False), settle=True, scene_dir=scene_dir, export_config=QUICK)
    write_view(export_dir)
    return export_dir


def page_blob(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="hiscene-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_page_is_self_contained_and_holds_the_validation(export):
    page = export / "view.html"
    text = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "the page links to the network"
    data = page_blob(page)
    validation = json.loads((export / "validation.json").read_text())
    ids = [o["id"] for o in data["objects"]]
    assert sorted(ids) == sorted([p.id for p in SCENE] + ["floor"])
    for oid in ids:
        assert f'<tr data-id="{oid}"' in text
    assert data["simulators"] == ["pybullet", "mujoco"] and validation["verdict"] in text
    duck = next(o for o in data["objects"] if o["id"] == "duck_1")
    # before settling the duck floated LIFT above where it rests after
    assert duck["poses"]["before"][2] - duck["poses"]["after"][2] == pytest.approx(LIFT, abs=0.006)
    assert any("moved" in m for m in duck["moves"])
    rest = next(o for o in validation["pybullet"]["objects"] if o["id"] == "duck_1")["rest_position"]
    assert duck["poses"]["after"][:3] == pytest.approx(rest, abs=1e-6)
    # the meshes decode to the exported visual mesh (no decimation needed at this size)
    cube = next(o for o in data["objects"] if o["id"] == "cube_1")
    positions = np.frombuffer(base64.b64decode(cube["visual"]["positions"]), dtype="<f4").reshape(-1, 3)
    exported = trimesh.load(export / "objects" / "cube_1" / "visual.obj", force="mesh")
    assert np.allclose(np.sort(positions, axis=0), np.sort(np.asarray(exported.vertices), axis=0), atol=1e-6)
    hulls = np.frombuffer(base64.b64decode(cube["hulls"]["indices"]), dtype="<u2")
    assert len(hulls) % 3 == 0 and len(hulls) > 0


def test_twenty_heavy_objects_stay_under_budget(tmp_path):
    """20 objects of 20k faces each (410k in all), with vertex colours, in a scene dir: the
    page keeps the face budget and stays far below 20 MB."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.05)
    colors = np.c_[(sphere.vertices - sphere.vertices.min(0)) / np.ptp(sphere.vertices, 0) * 255, np.full(len(sphere.vertices), 255)]
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=colors.astype(np.uint8))
    (tmp_path / "meshes").mkdir()
    sphere.export(tmp_path / "meshes" / "ball.ply")
    objects = [SceneObject(f"ball_{i}", "ball", "meshes/ball.ply", Pose((0.12 * (i % 5), 0.12 * (i // 5), 0.05)))
               for i in range(20)]
    save_scene(Scene(objects=objects, name="balls"), tmp_path)
    config = ViewConfig()
    page = write_view(tmp_path, tmp_path / "balls.html", config)
    assert page.objects == 20 and page.faces_total == 20 * len(sphere.faces)
    assert page.faces_shown <= config.max_faces * 1.05
    assert page.bytes < 20e6 and page.bytes == (tmp_path / "balls.html").stat().st_size
    data = page_blob(page.path)
    assert sorted({o["poses"]["scene"][0] for o in data["objects"]}) == pytest.approx([0.0, 0.12, 0.24, 0.36, 0.48])
    decimated = data["objects"][0]["visual"]
    n = len(base64.b64decode(decimated["positions"])) // 12
    rgb = np.frombuffer(base64.b64decode(decimated["colors"]), dtype=np.uint8).reshape(n, 3)
    assert rgb.std(axis=0).min() > 30  # the colours came along through the decimation


def test_vertex_clustering_fallback_and_face_shares():
    sphere = trimesh.creation.icosphere(subdivisions=5)
    vertices, faces = cluster_vertices(np.asarray(sphere.vertices), np.asarray(sphere.faces), 2000)
    assert 200 < len(faces) <= 2000 and faces.max() < len(vertices)
    assert np.abs(np.linalg.norm(vertices[np.unique(faces)], axis=1) - 1.0).max() < 0.1  # still the unit sphere
    shares = face_allowances([100, 50_000, 200_000, 900_000], total=150_000, per_object=60_000, minimum=500)
    assert shares[0] == 100 and sum(shares) <= 150_000 and max(shares) <= 60_000


def test_view_command_and_batch_index(export, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["view", str(export), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out and out.is_file()
    assert main(["view", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    said = []  # what `hiscene demo` / `hiscene generate` end with
    assert write_page_after_run(export, said.append) == export / "view.html" and str(export / "view.html") in said[0]
    assert write_page_after_run(None, said.append) is None and len(said) == 1

    batch = tmp_path / "batch"
    shutil.copytree(export, batch / "desk" / "export")
    rows = [{"name": "desk", "status": "ok", "export": "desk/export", "objects": 5, "labels": ["cube", "duck"]},
            {"name": "broken", "status": "failed", "error": "bad input: broken.glb holds no mesh"}]
    (batch / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["batch", "--summary", str(batch), "--html"])
    index = (batch / "index.html").read_text()
    assert index.count('class="card"') == 2 and 'href="desk/export/view.html"' in index and "holds no mesh" in index
    assert 'href="../../index.html"' in (batch / "desk" / "export" / "view.html").read_text()


# -- in a browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); "
                    ".ci/run installs them: apt-get install chromium chromium-driver")
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # with the driver's path given, selenium-manager downloads nothing
    profile = tempfile.mkdtemp(prefix="hiscene-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--window-size=1400,900", "--force-device-scale-factor=1", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def canvas_pixels(driver) -> np.ndarray:
    driver.execute_script("hisceneViewer.renderNow()")
    png = driver.find_element("id", "view").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_page_in_headless_chromium(export, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    driver = browser
    driver.get_log("performance")  # what the browser did before the page (its start page) is not the page's
    url = (export / "view.html").as_uri()
    driver.get(url)
    state = driver.execute_script("return {ready: hisceneViewer.ready, error: hisceneViewer.error}")
    assert state == {"ready": True, "error": None}

    # the canvas shows the scene: many colours, most pixels not the background
    pixels = canvas_pixels(driver)
    background = np.array([0xee, 0xf1, 0xf5])
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert (np.abs(pixels - background).sum(axis=2) > 30).mean() > 0.2

    # every object in the table
    rows = driver.find_elements("css selector", "tr[data-id]")
    assert sorted(r.get_attribute("data-id") for r in rows) == sorted([p.id for p in SCENE] + ["floor"])

    # a click on a row selects the object: row class, viewer state, the mesh's colour, the picture
    before = driver.execute_script("return hisceneViewer.meshColor('mug_1')")
    driver.find_element("css selector", 'tr[data-id="mug_1"]').click()
    assert driver.execute_script("return hisceneViewer.selected") == "mug_1"
    assert "selected" in driver.find_element("css selector", 'tr[data-id="mug_1"]').get_attribute("class")
    after = driver.execute_script("return hisceneViewer.meshColor('mug_1')")
    assert after["color"] != before["color"] and after["emissive"] != "000000"
    assert "mug_1" in driver.find_element("id", "details").text
    assert (np.abs(canvas_pixels(driver) - pixels).sum(axis=2) > 30).sum() > 100

    # a click on the object in 3D (a ray cast) selects it in the table
    x, y = driver.execute_script("return hisceneViewer.screenPoint('cube_1')")
    canvas = driver.find_element("id", "view")
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]", canvas)
    ActionChains(driver).move_to_element_with_offset(canvas, round(x - rect[0] - rect[2] / 2),
                                                     round(y - rect[1] - rect[3] / 2)).click().perform()
    assert driver.execute_script("return hisceneViewer.selected") == "cube_1"
    assert "selected" in driver.find_element("css selector", 'tr[data-id="cube_1"]').get_attribute("class")
    assert "selected" not in driver.find_element("css selector", 'tr[data-id="mug_1"]').get_attribute("class")

    # before / after settling: the lifted duck is LIFT higher before
    driver.find_element("css selector", '[data-pose="before"]').click()
    z_before = driver.execute_script("return hisceneViewer.position('duck_1')")[2]
    driver.find_element("css selector", '[data-pose="after"]').click()
    z_after = driver.execute_script("return hisceneViewer.position('duck_1')")[2]
    assert z_before - z_after == pytest.approx(LIFT, abs=0.006)

    # the hulls toggle shows the collision hulls
    driver.find_element("id", "show-hulls").click()
    assert driver.execute_script("return hisceneViewer.showHulls") is True
    driver.find_element("id", "show-hulls").click()

    # nothing fetched: no resource entries, no request but the page itself, no errors
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    sent = [m["params"] for m in (json.loads(e["message"])["message"] for e in driver.get_log("performance"))
            if m["method"] == "Network.requestWillBeSent"]
    assert {p["request"]["url"] for p in sent if p.get("documentURL") == url} == {url}  # the page's own requests
    assert not [p["request"]["url"] for p in sent if re.match(r"(https?|wss?|ftp):", p["request"]["url"])]
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    if os.environ.get("HISCENE_SCREENSHOT") == "1":
        driver.execute_script("hisceneViewer.select('duck_1'); window.scrollTo(0, 0)")
        canvas_pixels(driver)
        (REPO / "docs").mkdir(exist_ok=True)
        driver.save_screenshot(str(REPO / "docs" / "view-screenshot.png"))
