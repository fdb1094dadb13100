"""The ``trellis`` regeneration backend (paper 3.4, Algorithm 3) end to end through the code path real
weights take: TrellisImageTo3D over a TRELLIS-shaped fake pipeline (conv3d flow model wrapping an exact
rectified-flow field, IdentityCodec as its sparse-structure VAE, a structured-latent stage that meshes
the active voxels in TRELLIS's [-0.5, 0.5]^3 frame), a fake LRM returning the pybullet_data duck placed
in the world, the completion stage's files read by ``make_trellis_regenerator``'s callable."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import trimesh

torch = pytest.importorskip("torch")

from scipy.spatial.transform import Rotation  # noqa: E402

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.generate.algorithm3_shape_prior import GridFrame, voxelize_prior  # noqa: E402
from hiscene_sim.generate.config import GenerateConfig  # noqa: E402
from hiscene_sim.generate.regenerate_trellis import (  # noqa: E402
    INSTANTMESH_KEY,
    TRELLIS_KEY,
    MultiViewVelocity,
    TrellisRegenerationConfig,
    make_trellis_regenerator,
    regenerate_object,
    sample_and_decode_slat,
)
from hiscene_sim.generate.trellis import TrellisImageTo3D  # noqa: E402
from hiscene_sim.pybullet_assets import asset_mesh  # noqa: E402
from hiscene_sim.render.cameras import Camera, look_at  # noqa: E402
from hiscene_sim.scene import Pose, SceneObject  # noqa: E402
from hiscene_sim.testing.flow_doubles import IdentityCodec, MixtureVelocity  # noqa: E402

torch.set_num_threads(1)

RES = 64  # TRELLIS's sparse-structure grid
ROT = Rotation.from_euler("zyx", [35.0, 12.0, -8.0], degrees=True)
_x, _y, _z, _w = ROT.as_quat()
POSE = Pose(position=(1.2, -0.4, 0.75), orientation=(_w, _x, _y, _z), scale=(1.0, 1.0, 1.0))
OTHER_BOX = (slice(4, 28), slice(36, 60), slice(8, 56))  # the field's favourite shape, grid cells


# ----------------------------------------------------------------------------- geometry
def duck_local() -> trimesh.Trimesh:
    """The parsed object in its local frame (metres), off the local origin."""
    mesh, scale = asset_mesh("duck")
    mesh = trimesh.Trimesh(mesh.vertices * scale[0], mesh.faces, process=False)
    mesh.apply_translation((0.02, -0.01, 0.03))
    return mesh


def lrm_prior_world(local: trimesh.Trimesh) -> trimesh.Trimesh:
    """What the fake LRM 'reconstructs': the object 3% too large about its centre (an imperfect prior),
    in the scene's world frame."""
    prior = local.copy()
    c = local.bounds.mean(axis=0)
    prior.apply_translation(-c)
    prior.apply_scale(1.03)
    prior.apply_translation(c)
    prior.apply_transform(POSE.matrix())
    return prior


def box_grid() -> torch.Tensor:
    occ = torch.zeros(1, 1, RES, RES, RES)
    occ[(0, 0, *OTHER_BOX)] = 1.0
    return occ


def occupancy_of(mesh: trimesh.Trimesh, frame: GridFrame) -> np.ndarray:
    return voxelize_prior(mesh, frame=frame)[0][0, 0].numpy() > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def voxels_to_trellis_mesh(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the active voxels, vertices in TRELLIS's frame (cell ijk centred at (ijk + 0.5) / R - 0.5)."""
    from skimage.measure import marching_cubes

    grid = np.zeros((RES + 2,) * 3, dtype=np.float32)
    grid[tuple((coords + 1).T)] = 1.0
    verts, faces, _, _ = marching_cubes(grid, 0.5)
    return (verts - 1 + 0.5) / RES - 0.5, np.ascontiguousarray(faces)


# ----------------------------------------------------------------------------- TRELLIS-shaped fakes
class CodecEncoder(torch.nn.Module):
    """SparseStructureEncoder's signature over IdentityCodec."""

    def __init__(self, codec: IdentityCodec):
        super().__init__()
        self.codec, self.anchor = codec, torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, sample_posterior=False):
        self.seen.append(x.clone())
        return self.codec.encode(x)


class CodecDecoder(torch.nn.Module):
    def __init__(self, codec: IdentityCodec):
        super().__init__()
        self.codec, self.anchor = codec, torch.nn.Parameter(torch.zeros(1))

    def forward(self, z):
        return self.codec.decode(z)


class FlowModel(torch.nn.Module):
    """SparseStructureFlowModel's signature (x (B, C, r, r, r), t (B,) in [0, 1000], cond (B, L, D)): an exact
    rectified-flow field plus a zero-initialised conv3d; records the times and which view conditioned each call."""

    def __init__(self, field, channels: int):
        super().__init__()
        self.field = field
        self.conv = torch.nn.Conv3d(channels, channels, 3, padding=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)
        self.calls: list[tuple[float, float]] = []

    def forward(self, x, t, cond):
        assert t.shape == (x.shape[0],) and cond.shape[0] == x.shape[0]
        tt = float(t[0]) / 1000.0
        self.calls.append((tt, float(cond.mean())))
        return self.field(x, tt) + self.conv(x)


class FakeMeshExtractResult:
    def __init__(self, vertices, faces):
        self.vertices, self.faces = torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.int64)
        self.vertex_attrs = torch.full((len(vertices), 6), 0.5)


class FakeSparseTensor:
    def __init__(self, coords, feats):
        self.coords, self.feats = coords, feats


class FakeTrellisPipeline:
    """The parts of TrellisImageTo3DPipeline that Algorithm 3 uses."""

    def __init__(self, flow: FlowModel, codec: IdentityCodec):
        self.models = {"sparse_structure_flow_model": flow, "sparse_structure_decoder": CodecDecoder(codec)}
        self.sparse_structure_sampler_params = {"steps": 20, "cfg_strength": 7.5, "cfg_interval": [0.5, 1.0], "rescale_t": 1.0}
        self.slat_sampler_params = {"steps": 12, "cfg_strength": 3.0}
        self.device = torch.device("cpu")
        self.preprocessed: list[str] = []
        self.slat_calls: list[dict] = []
        self.multi: list[tuple] = []

    def preprocess_image(self, image):
        self.preprocessed.append(image.mode)
        return image

    def get_cond(self, images):
        cond = torch.stack([torch.full((2, 4), float(i + 1)) for i in range(len(images))])  # view i -> value i + 1
        return {"cond": cond, "neg_cond": torch.zeros_like(cond)}

    @contextmanager
    def inject_sampler_multi_image(self, sampler_name, num_images, num_steps, mode="stochastic"):
        self.multi.append((sampler_name, num_images, num_steps, mode))
        yield

    def sample_slat(self, cond, coords, sampler_params={}):
        feats = torch.randn(coords.shape[0], 8)  # TRELLIS draws the noise from the global RNG
        self.slat_calls.append({"coords": coords.clone(), "cond": tuple(cond["cond"].shape),
                                "neg_cond": tuple(cond["neg_cond"].shape), "params": dict(sampler_params), "feats": feats})
        return FakeSparseTensor(coords, feats)

    def decode_slat(self, slat, formats):
        assert formats == ["mesh"]
        verts, faces = voxels_to_trellis_mesh(slat.coords[:, 1:].numpy())
        return {"mesh": [FakeMeshExtractResult(verts, faces)]}


def make_models(local: trimesh.Trimesh):
    """TrellisImageTo3D over the fake pipeline. Its flow's data are two shapes on the parsed object's grid:
    the object (weight 0.001) and a box in a corner of the grid (0.999)."""
    codec = IdentityCodec(RES, 16)
    frame = GridFrame.fit(local, RES)
    duck_latent = codec.encode(voxelize_prior(local, frame=frame)[0])[0]
    box_latent = codec.encode(box_grid())[0]
    field = MixtureVelocity(torch.stack([box_latent, duck_latent]), weights=torch.tensor([0.999, 0.001]))
    flow = FlowModel(field, codec.channels)
    pipeline = FakeTrellisPipeline(flow, codec)
    trellis = TrellisImageTo3D(pipeline=pipeline)  # the adapter real weights go through
    trellis.structure_codec(encoder=CodecEncoder(codec))  # the encoder TRELLIS ships outside pipeline.json
    return trellis, pipeline, flow, frame


def encoded_grid(trellis) -> np.ndarray:
    """What Algorithm 3 line 4 encoded: V, the voxelised prior (the spy on the fake encoder)."""
    (seen,) = trellis.structure_codec().encoder.seen
    return seen[0, 0].numpy() > 0


class FakeLRM:
    """A SparseViewReconstructor returning a known world-frame mesh."""

    name = "fake-lrm"

    def __init__(self, mesh: trimesh.Trimesh):
        self.mesh, self.calls = mesh, []

    def reconstruct(self, images, cameras):
        self.calls.append(([np.asarray(i).shape for i in images], len(cameras)))
        return self.mesh.copy()


# ----------------------------------------------------------------------------- the completion stage's files
def write_completion(parsed: Path, local: trimesh.Trimesh, n_views: int = 3, size: int = 40) -> SceneObject:
    """completion/<id>/object_XX.png (+ _mask.png) and cameras.json, as ``hiscene complete`` writes them."""
    from PIL import Image

    world_centre = (POSE.matrix() @ np.append(local.bounds.mean(axis=0), 1.0))[:3]
    folder = parsed / "completion" / "obj_0"
    folder.mkdir(parents=True)
    rels, views = [], []
    yy, xx = np.mgrid[:size, :size]
    for k in range(n_views):
        index = 2 * k + 1
        az = np.radians(40.0 + 120.0 * k)
        eye = world_centre + 0.4 * np.array([np.cos(az), np.sin(az), 0.5])
        cam = Camera(size, size, look_at(eye, world_centre), "perspective", fov_y_deg=40.0, azimuth_deg=float(np.degrees(az)),
                     elevation_deg=26.6)
        mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
        image = np.full((size, size, 3), 255, np.uint8)
        image[mask] = (200, 180, 40 + 60 * k)
        Image.fromarray(image).save(folder / f"object_{index:02d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"object_{index:02d}_mask.png")
        rels.append(f"completion/obj_0/object_{index:02d}.png")
        views.append({"index": index, "azimuth": cam.azimuth_deg, "elevation": cam.elevation_deg, "width": size, "height": size,
                      "fov_y_deg": 40.0, "world_to_camera": cam.world_to_camera.tolist()})
    (folder / "cameras.json").write_text(json.dumps({"views": views}))
    return SceneObject("obj_0", "duck", "meshes/obj_0.glb", POSE, extra={"completion": {"images": rels}})


def weights_config(tmp: Path) -> GenerateConfig:
    for name in ("instantmesh", "trellis"):
        (tmp / name).mkdir()
    return GenerateConfig(regeneration_backend="trellis", weights={INSTANTMESH_KEY: tmp / "instantmesh", TRELLIS_KEY: tmp / "trellis"})


# ----------------------------------------------------------------------------- tests
def test_small_t_keeps_the_prior_in_the_objects_local_frame(tmp_path):
    """Algorithm 3 through make_trellis_regenerator: the LRM prior (world) is brought to the object's local
    frame, voxelised on the parsed object's grid, noised to t = 0.3 and denoised by a field that prefers a
    different shape; the output follows the prior and lands at the parsed object's place and scale."""
    local = duck_local()
    trellis, pipeline, flow, frame = make_models(local)
    lrm = FakeLRM(lrm_prior_world(local))
    obj = write_completion(tmp_path / "parsed", local)
    one = make_trellis_regenerator(weights_config(tmp_path), settings=TrellisRegenerationConfig(t=0.3, seed=3, fill_prior=True),
                                   reconstructor=lrm, image_to_3d=trellis)
    mesh, method = one(obj, local, tmp_path / "parsed")
    record = one.records["obj_0"]

    # the views: RGBA (amodal mask as alpha) to both models, all three views as the condition
    assert lrm.calls == [([(40, 40, 4)] * 3, 3)]
    assert pipeline.preprocessed == ["RGBA"] * 3
    # Algorithm 3 lines 6-14: the run starts at t = 0.3 (not at 1), INT(N t) = 6 steps, views cycled
    # per step as TRELLIS's "stochastic" multi-image mode; no guidance below the interval [0.5, 1]
    times = [t for t, _ in flow.calls]
    np.testing.assert_allclose(times, [0.3, 0.25, 0.2, 0.15, 0.1, 0.05], atol=1e-6)
    assert [round(v) for _, v in flow.calls] == [1, 2, 3, 1, 2, 3]
    assert record["t"] == pytest.approx(0.3) and record["steps"] == 6 and "Algorithm 3" in method
    # the record says what ran: 6 of 20 steps from t = 0.3, and no guidance (cfg_interval [0.5, 1] excludes
    # every step), not the checkpoint's 7.5
    sampler = record["sampler"]
    assert sampler["steps_run"] == 6 and sampler["steps_full_schedule"] == 20 and sampler["t_start"] == pytest.approx(0.3)
    assert sampler["guidance_configured"] == 7.5 and sampler["guidance_interval"] == [0.5, 1.0]
    assert sampler["guidance_applied"] == "none" and sampler["guided_steps"] == 0 and sampler["model_evaluations"] == 6
    assert len(flow.calls) == 6  # ... and the model was called once per step (no unconditional branch)
    assert "6 trellis sparse-structure steps, no guidance (cfg_interval [0.5, 1.0] excludes t <= 0.3)" in method
    # the structured latent: (M, 4) int32 [0, x, y, z] at the regenerated voxels, multi-view as run_multi_image
    call = pipeline.slat_calls[0]
    coords = call["coords"]
    assert coords.dtype == torch.int32 and coords.shape == (record["structure"]["voxels"], 4) and (coords[:, 0] == 0).all()
    assert call["cond"] == (3, 2, 4) and call["neg_cond"] == (1, 2, 4) and call["params"] == {}
    assert pipeline.multi == [("slat_sampler", 3, 12, "stochastic")]

    # line 3: the prior was moved to the local frame and voxelised on the parsed object's grid
    prior_local = lrm.mesh.copy()
    prior_local.apply_transform(np.linalg.inv(POSE.matrix()))
    np.testing.assert_allclose(record["prior"]["bounds_local"], prior_local.bounds, atol=1e-9)
    np.testing.assert_allclose(record["grid_frame"]["center"], frame.center)
    assert record["grid_frame"]["scale"] == pytest.approx(frame.scale)
    assert iou(encoded_grid(trellis), occupancy_of(prior_local, frame)) > 0.97
    # the result: local frame, the parsed object's place and scale (IdentityCodec works on 4-cell blocks), the prior's shape
    pitch = frame.pitch
    assert np.abs(mesh.bounds - local.bounds).max() < 3 * pitch, (mesh.bounds, local.bounds, pitch)
    out = occupancy_of(mesh, frame)
    assert iou(out, occupancy_of(prior_local, frame)) > 0.7
    assert iou(out, box_grid()[0, 0].numpy() > 0) < 0.2
    assert record["structure"]["iou_with_prior"] > 0.7
    # placed back by the scene's pose, it overlaps the world-frame prior
    world = mesh.copy()
    world.apply_transform(POSE.matrix())
    np.testing.assert_allclose(world.bounds.mean(axis=0), lrm.mesh.bounds.mean(axis=0), atol=3 * pitch)


def test_t_one_follows_the_field_not_the_prior():
    """The same models with t = 1 (the ablation: plain TRELLIS generation from noise): the prior is ignored
    and the output is the field's shape, still in the object's local frame."""
    local = duck_local()
    trellis, pipeline, flow, frame = make_models(local)
    lrm = FakeLRM(lrm_prior_world(local))
    images = [np.full((24, 24, 3), 120 + 40 * k, np.uint8) for k in range(2)]
    cams = [Camera(24, 24, look_at((3.0, 0.0, 1.0), (1.2, -0.4, 0.75)), "perspective"),
            Camera(24, 24, look_at((0.0, 3.0, 1.0), (1.2, -0.4, 0.75)), "perspective")]
    with pytest.raises(ValueError, match="allow_any_t"):
        TrellisRegenerationConfig(t=1.0)
    config = TrellisRegenerationConfig(t=1.0, seed=5, fill_prior=True, allow_any_t=True)
    mesh, record = regenerate_object(images, cams, local, POSE.matrix(), lrm, trellis, config)

    assert record["t"] == 1.0 and record["steps"] == 20
    assert max(t for t, _ in flow.calls) == pytest.approx(1.0)
    # guidance 7.5 on the 11 steps at t = 1.0, 0.95, ..., 0.5 (inside [0.5, 1]), none on the other 9
    sampler = record["sampler"]
    assert sampler["guidance_applied"] == 7.5 and sampler["guided_steps"] == 11
    np.testing.assert_allclose(sampler["guided_times"], np.linspace(1.0, 0.5, 11), atol=1e-9)
    assert sampler["model_evaluations"] == len(flow.calls) == 31
    assert "guidance 7.5 on 11 of them" in record["method"]
    assert any(v == 0.0 for _, v in flow.calls)  # classifier-free guidance (zero negative condition) in [0.5, 1]
    out = occupancy_of(mesh, frame)
    box = box_grid()[0, 0].numpy() > 0
    prior_local = lrm.mesh.copy()
    prior_local.apply_transform(np.linalg.inv(POSE.matrix()))
    assert iou(out, box) > 0.7
    assert iou(out, occupancy_of(prior_local, frame)) < 0.3
    # the box's cells, mapped through the grid frame, are where the mesh is (local frame)
    lo = frame.from_grid(frame.voxel_centres(np.array([[s.start for s in OTHER_BOX]])) - 0.5 / RES)[0]
    hi = frame.from_grid(frame.voxel_centres(np.array([[s.stop - 1 for s in OTHER_BOX]])) + 0.5 / RES)[0]
    np.testing.assert_allclose(mesh.bounds, [lo, hi], atol=3 * frame.pitch)


def test_slat_boundary_coords_seed_and_single_view():
    codec = IdentityCodec(RES, 16)
    pipeline = FakeTrellisPipeline(FlowModel(lambda x, t: torch.zeros_like(x), 1), codec)
    cond = pipeline.get_cond([None])
    coords = torch.tensor([[1, 2, 3], [1, 2, 4], [5, 6, 7]])
    state = torch.random.get_rng_state()
    a = sample_and_decode_slat(pipeline, cond, coords, seed=11)
    b = sample_and_decode_slat(pipeline, cond, coords, seed=11)
    c = sample_and_decode_slat(pipeline, cond, coords, seed=12)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    f = [call["feats"] for call in pipeline.slat_calls]
    assert torch.equal(f[0], f[1]) and not torch.equal(f[0], f[2])
    assert pipeline.slat_calls[0]["coords"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 4], [0, 5, 6, 7]]
    assert pipeline.multi == [] and pipeline.slat_calls[0]["neg_cond"] == (1, 2, 4)  # one view: no multi-image injection
    assert set(a) == {"mesh"} and len(b["mesh"]) == len(c["mesh"]) == 1
    with pytest.raises(ValueError, match="no active voxels"):
        sample_and_decode_slat(pipeline, cond, torch.zeros((0, 3), dtype=torch.int64), seed=0)


def test_multiview_velocity_modes():
    seen = []

    def model(x, t, cond):
        seen.append(float(cond.mean()))
        return torch.full_like(x, float(cond.mean()))

    conds = torch.stack([torch.full((2, 4), float(i + 1)) for i in range(3)])
    x = torch.zeros(1, 1, 2, 2, 2)
    v = MultiViewVelocity(model, 3, "stochastic")
    for t in (0.3, 0.3, 0.25, 0.2, 0.15):  # a repeated time (e.g. a guided call) keeps its view
        v(x, t, conds)
    assert seen == [1.0, 1.0, 2.0, 3.0, 1.0]
    assert float(v(x, 0.1, torch.zeros(1, 2, 4)).mean()) == 0.0  # the negative condition passes through
    assert float(MultiViewVelocity(model, 3, "multidiffusion")(x, 0.5, conds).mean()) == pytest.approx(2.0)


def test_missing_weights_fail_before_any_work(tmp_path):
    """BackendError naming the config key, raised by make_trellis_regenerator (so by the pipeline's
    regenerate stage) before a model is loaded or a file of the parsed scene is read."""
    from hiscene_sim.stages import Models, regenerate

    class Untouchable:
        name = "untouchable"

        def reconstruct(self, images, cameras):  # pragma: no cover - must not run
            raise AssertionError("work was done")

    with pytest.raises(BackendError, match=INSTANTMESH_KEY):
        make_trellis_regenerator(GenerateConfig(), reconstructor=Untouchable(), image_to_3d=object())
    (tmp_path / "im").mkdir()
    with pytest.raises(BackendError, match=TRELLIS_KEY):
        make_trellis_regenerator(GenerateConfig(weights={INSTANTMESH_KEY: tmp_path / "im"}))
    gone = GenerateConfig(weights={INSTANTMESH_KEY: tmp_path / "im", TRELLIS_KEY: tmp_path / "missing"})
    with pytest.raises(BackendError, match=f"{TRELLIS_KEY}.*does not exist"):
        make_trellis_regenerator(gone)
    # through the pipeline's stage: the parsed dir does not even exist, so any work would fail differently
    with pytest.raises(BackendError, match=INSTANTMESH_KEY):
        regenerate(tmp_path / "no-such-parsed", tmp_path / "out", "trellis", Models(GenerateConfig(regeneration_backend="trellis")))
    assert not (tmp_path / "out").exists()
