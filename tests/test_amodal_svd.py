"""The SVD amodal completion model (paper 3.3, B) on tiny randomly initialised upstream modules:
Algorithm 2 data, conv_in widening (training only), the EDM training objective, seeded inference,
loading from a directory laid out like the SVD repo, the refusal of a stock 8-channel UNet, the
missing-weights error, and ``hiscene complete --backend svd`` end to end (progress, interruption,
no temp dirs left)."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.complete.algorithm2_transitions import (  # noqa: E402
    AmodalPair,
    load_pair,
    make_sample,
    paste_occluder,
    save_pair,
    transition_video,
)
from hiscene_sim.complete.base import COMPLETERS, CompletionRequest  # noqa: E402
from hiscene_sim.complete.svd import (  # noqa: E402
    CONFIG_KEY,
    SvdCompleter,
    SvdModules,
    load_svd_modules,
    svd_scheduler,
    transformers_dtype_kwargs,
    widen_conv_in,
)
from hiscene_sim.complete.train_svd import TrainConfig, edm_loss, parse_args, save_checkpoint, train  # noqa: E402
from hiscene_sim.render.cameras import Camera  # noqa: E402

torch.set_num_threads(1)  # the CI box has 2 shared cores; tiny ops do not gain from more

RES = 32  # tiny: VAE factor 4 -> 8x8 latents, UNet downsamples once
FRAMES = 3


def tiny_unet(in_channels: int = 8):
    from diffusers import UNetSpatioTemporalConditionModel

    return UNetSpatioTemporalConditionModel(
        sample_size=RES // 4,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        num_frames=FRAMES,
    )


def tiny_modules(widen: bool = True, seed: int = 0) -> SvdModules:
    """Real upstream classes with tiny configs (random weights)."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = tiny_unet()
    if widen:
        widen_conv_in(unet)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3, layers_per_block=1, latent_channels=4
    )
    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
        )
    )
    for m in (unet, vae, clip):
        m.eval().requires_grad_(False)
    return SvdModules(unet, vae, clip, CLIPImageProcessor(), svd_scheduler())


def toy_pair(h: int = RES, w: int = RES, seed: int = 0) -> AmodalPair:
    """A textured disc (the target) with a grey bar in front of its right half, casting a shadow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    whole_mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.35 * min(h, w)) ** 2
    whole = np.full((h, w, 3), 255, np.uint8)
    whole[whole_mask] = rng.integers(40, 200, size=(int(whole_mask.sum()), 3), dtype=np.uint8)
    occ_mask = (xx > w * 0.55) & (xx < w * 0.8) & (yy > h * 0.2)
    occluder = np.zeros((h, w, 3), np.uint8)
    occluder[occ_mask] = (90, 90, 90)
    background = np.full((h, w, 3), 180, np.uint8)
    return paste_occluder(whole, whole_mask, occluder, occ_mask, background=background, shadow=0.4, shadow_offset=(0, -3))


def request_from(pair: AmodalPair) -> CompletionRequest:
    h, w = pair.whole_mask.shape
    cam = Camera(width=w, height=h, world_to_camera=np.eye(4))
    return CompletionRequest(pair.occluded, pair.visible_mask, pair.whole_mask, "disc", "obj_0", cam)


# ---------------------------------------------------------------------------------------------
# 5. Algorithm 2


def test_transition_video_goes_from_occluded_to_whole():
    pair = toy_pair(24, 28)
    n = 5
    video = transition_video(pair.occluded, pair.whole, pair.visible_mask, pair.whole_mask, n)
    assert video.shape == (n + 1, 3, 24, 28) and video.dtype == torch.float32
    assert video.min() >= -1.0 and video.max() <= 1.0
    frames = ((video + 1.0) * 127.5).permute(0, 2, 3, 1).numpy()  # (N+1, H, W, 3) in [0, 255]
    np.testing.assert_allclose(frames[0], pair.occluded, atol=1e-3)  # first frame: the observation
    inside = pair.whole_mask
    np.testing.assert_allclose(frames[-1][inside], pair.whole[inside], atol=1e-3)  # last: the whole object
    np.testing.assert_allclose(frames[-1][~inside], 255.0, atol=1e-3)  # ... on white
    # the difference region (occluded part) fades monotonically from observation to whole object
    diff = pair.whole_mask & ~pair.visible_mask
    changing = diff & (np.abs(pair.occluded.astype(float) - pair.whole).max(-1) > 10)
    assert changing.sum() > 20
    a, b = pair.occluded[changing].astype(float), pair.whole[changing].astype(float)
    weight = [((f[changing] - b) * (a - b)).sum() / ((a - b) ** 2).sum() for f in frames]  # share of the observation
    assert weight[0] == pytest.approx(1.0) and weight[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(x >= y - 1e-6 for x, y in zip(weight, weight[1:])), weight
    assert len({round(w, 4) for w in weight}) >= n - 1  # really blends, not a cut
    # resizing and the sample wrapper
    sample = make_sample(pair, num_frames=4, size=(16, 16))
    assert sample.video.shape == (4, 3, 16, 16) and sample.visible_mask.shape == (1, 16, 16)
    with pytest.raises(ValueError):
        transition_video(pair.occluded, pair.whole, pair.visible_mask, pair.whole_mask, 0)


def test_paste_occluder_and_pair_io(tmp_path):
    pair = toy_pair()
    occ = pair.whole_mask & ~pair.visible_mask
    assert occ.any() and pair.visible_mask.any()
    assert (pair.occluded[occ] == 90).all()  # the occluder sits in front
    assert not (pair.visible_mask & ~pair.whole_mask).any()
    path = save_pair(tmp_path / "p0", pair)
    back = load_pair(path)
    for k in ("occluded", "whole", "visible_mask", "whole_mask"):
        np.testing.assert_array_equal(getattr(back, k), getattr(pair, k))


# ---------------------------------------------------------------------------------------------
# 1. widening conv_in


def _unet_out(unet, x, seed=1):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(x.shape[0], 1, 32, generator=g)
    ids = torch.tensor([[6.0, 127.0, 0.02]] * x.shape[0])
    with torch.no_grad():
        return unet(x, torch.tensor(0.3), encoder_hidden_states=ctx, added_time_ids=ids).sample


def test_widen_conv_in_preserves_output_and_wires_the_mask(tmp_path):
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    unet8 = tiny_unet().eval()
    unet9 = widen_conv_in(copy.deepcopy(unet8))
    assert unet9.conv_in.in_channels == 9 and unet9.config.in_channels == 9
    assert torch.equal(unet9.conv_in.weight[:, :8], unet8.conv_in.weight)
    assert torch.count_nonzero(unet9.conv_in.weight[:, 8]) == 0

    x8 = torch.randn(1, FRAMES, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(1, FRAMES, 1, 8, 8)
    ones = torch.ones(1, FRAMES, 1, 8, 8)
    ref = _unet_out(unet8, x8)
    torch.testing.assert_close(_unet_out(unet9, torch.cat([x8, zero], 2)), ref, atol=1e-5, rtol=0)
    # the mask channel is wired: once its kernels move, a nonzero mask changes the output
    with torch.no_grad():
        unet9.conv_in.weight[:, 8].normal_(std=0.1)
    torch.testing.assert_close(_unet_out(unet9, torch.cat([x8, zero], 2)), ref, atol=1e-5, rtol=0)
    assert (_unet_out(unet9, torch.cat([x8, ones], 2)) - ref).abs().max() > 1e-3

    # the widened config round-trips through save_pretrained / from_pretrained
    unet9.save_pretrained(tmp_path / "unet")
    back = UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "unet")
    assert back.config.in_channels == 9 and back.conv_in.weight.shape[1] == 9
    torch.testing.assert_close(back.conv_in.weight, unet9.conv_in.weight)


# ---------------------------------------------------------------------------------------------
# 2. training lowers the loss on a fixed batch


def test_training_steps_lower_the_loss():
    modules = tiny_modules()
    samples = [make_sample(toy_pair(seed=s), num_frames=FRAMES, size=(RES, RES)) for s in range(2)]
    batch = {"video": torch.stack([s.video for s in samples]), "visible_mask": torch.stack([s.visible_mask for s in samples])}

    def fixed_loss() -> float:
        modules.unet.eval()
        with torch.no_grad():  # same sigmas / noise every time: 4 fixed draws
            return float(np.mean([edm_loss(modules, batch, torch.Generator().manual_seed(100 + k)).item() for k in range(4)]))

    before = fixed_loss()
    config = TrainConfig(
        resolution=RES, num_frames=FRAMES, batch_size=2, lr=1e-3, warmup_steps=1, max_steps=12,
        cond_dropout=0.0, checkpoint_every=0, log_every=0, num_workers=0, mixed_precision="no", device="cpu",
    )  # fmt: skip
    result = train(config, modules=modules, samples=samples)
    after = fixed_loss()
    assert result.steps == 12 and len(result.losses) == 12 and all(np.isfinite(result.losses))
    assert after < 0.8 * before, (before, after)
    # only the UNet trained: the frozen VAE / image encoder have no grads
    assert all(not p.requires_grad for p in modules.vae.parameters())
    assert all(not p.requires_grad for p in modules.image_encoder.parameters())


# ---------------------------------------------------------------------------------------------
# 3. inference: shapes, dtypes, determinism


def test_inference_shapes_and_seed_determinism():
    modules = tiny_modules()
    pair = toy_pair(30, 36)  # not the model resolution: resized in and back out
    req = request_from(pair)
    kw = dict(num_inference_steps=2, num_frames=FRAMES, resolution=RES, max_guidance_scale=2.5)
    steps = []
    completer = SvdCompleter.from_modules(modules, seed=7, step_callback=lambda i, n: steps.append((i, n)), **kw)
    a = completer.complete_video(req)
    assert steps == [(1, 2), (2, 2)]  # progress after every denoising step
    assert a.image.shape == (30, 36, 3) and a.image.dtype == np.uint8
    assert a.amodal_mask.shape == (30, 36) and a.amodal_mask.dtype == bool
    assert a.frames.shape == (FRAMES, 30, 36, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames[-1], a.image)
    assert (a.amodal_mask | ~pair.visible_mask).all()  # visible pixels are part of the amodal mask
    res = completer.complete(req)
    assert res.backend == "svd"
    np.testing.assert_array_equal(res.image, a.image)  # same seed -> same output
    np.testing.assert_array_equal(res.amodal_mask, a.amodal_mask)
    other = SvdCompleter.from_modules(modules, seed=8, **kw).complete(req)
    assert not np.array_equal(other.image, a.image)


# ---------------------------------------------------------------------------------------------
# 4. a directory laid out like the SVD repo: a stock UNet is refused, training widens it, the
#    fine-tuned checkpoint is loaded through the real-checkpoint path


def _train_config(tmp_path, weights, **kw) -> TrainConfig:
    return TrainConfig(
        weights=weights, output=tmp_path / "out", resolution=RES, num_frames=FRAMES, batch_size=1, lr=1e-4, warmup_steps=1,
        max_steps=1, checkpoint_every=1, log_every=0, num_workers=0, mixed_precision="no", device="cpu", **kw,
    )  # fmt: skip


def _assert_refuses_stock(exc_info, root) -> None:
    msg = str(exc_info.value)
    assert str(root / "unet") in msg and CONFIG_KEY in msg  # the checkpoint ...
    assert "in_channels = 8" in msg and "needs 9" in msg  # ... and the channel counts
    assert "python -m hiscene_sim.complete.train_svd" in msg  # ... and the way out


def test_stock_unet_is_refused_and_only_training_widens_it(tmp_path, capsys):
    modules = tiny_modules(widen=False)  # a stock 8-channel SVD checkpoint
    root = modules.save_pretrained(tmp_path / "svd")
    assert sorted(os.listdir(root)) == ["feature_extractor", "image_encoder", "scheduler", "unet", "vae"]
    with pytest.raises(BackendError) as err:
        COMPLETERS.create("svd", weights=root, device="cpu")
    _assert_refuses_stock(err, root)
    with pytest.raises(BackendError) as err:
        load_svd_modules(root)
    _assert_refuses_stock(err, root)

    # the training entry point starts from it: widened there, explicitly, with the new channel zero
    sample = make_sample(toy_pair(), num_frames=FRAMES, size=(RES, RES))
    result = train(_train_config(tmp_path, root), samples=[sample])
    assert "widened the stock UNet" in capsys.readouterr().out
    (ckpt,) = result.checkpoints
    assert json.loads((ckpt / "unet" / "config.json").read_text())["in_channels"] == 9
    loaded = load_svd_modules(ckpt)
    assert loaded.unet.config.in_channels == 9 and loaded.scheduler.config.prediction_type == "v_prediction"

    # a fine-tuned (9-channel) checkpoint, saved atomically, is loaded as is by the registered backend
    with torch.no_grad():
        loaded.unet.conv_in.weight[:, 8].fill_(0.01)
    save_checkpoint(loaded, ckpt, {"step": 1})  # replacing an existing checkpoint works too
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-000001"]  # no temp dirs left
    completer = COMPLETERS.create("svd", weights=ckpt, device="cpu", num_inference_steps=2)
    assert isinstance(completer, SvdCompleter)
    assert (completer.resolution, completer.settings.num_frames) == (RES, FRAMES)  # the tiny model's own sizes, not 512 / 8
    torch.testing.assert_close(completer.modules.unet.conv_in.weight, loaded.unet.conv_in.weight)
    out = completer.complete(request_from(toy_pair()))
    assert out.image.shape == (RES, RES, 3) and out.image.dtype == np.uint8
    assert out.amodal_mask.shape == (RES, RES) and out.amodal_mask.dtype == bool


def test_stock_unet_is_refused_from_its_config_alone(tmp_path):
    """Refused before any weights are read: the checkpoint below has configs and no weights at all."""
    root = tmp_path / "svd-img2vid"
    for name in ("unet", "vae", "image_encoder", "feature_extractor"):
        (root / name).mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNetSpatioTemporalConditionModel", "in_channels": 8}))
    with pytest.raises(BackendError) as err:
        SvdCompleter(weights=root)
    _assert_refuses_stock(err, root)
    (root / "unet" / "config.json").write_text(json.dumps({"in_channels": 4}))
    with pytest.raises(BackendError, match="in_channels = 4"):
        SvdCompleter(weights=root)
    (root / "unet" / "config.json").unlink()
    with pytest.raises(BackendError, match="config.json not found"):
        SvdCompleter(weights=root)
    # modules built in memory are checked too
    with pytest.raises(BackendError, match="has 8"):
        SvdCompleter.from_modules(tiny_modules(widen=False))


def test_clip_dtype_keyword_works_on_every_allowed_transformers(tmp_path, caplog):
    """transformers >= 4.40 is allowed: ``dtype=`` exists from 4.56 on; before, it reaches the
    model's __init__ and raises, and ``torch_dtype=`` is the keyword."""
    half = torch.float16
    assert transformers_dtype_kwargs(half, "4.40.0") == {"torch_dtype": half}
    assert transformers_dtype_kwargs(half, "4.55.4") == {"torch_dtype": half}
    assert transformers_dtype_kwargs(half, "4.56.0") == {"dtype": half}
    assert transformers_dtype_kwargs(half, "5.0.0") == {"dtype": half}
    # the installed transformers loads the encoder in that dtype, with no deprecation notice
    modules = tiny_modules()
    root = modules.save_pretrained(tmp_path / "svd")
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_svd_modules(root, dtype=torch.bfloat16)
    assert loaded.image_encoder.dtype == torch.bfloat16 and loaded.unet.dtype == torch.bfloat16
    notices = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [n for n in notices if "torch_dtype" in n], notices


# ---------------------------------------------------------------------------------------------
# 5. ``hiscene complete --backend svd``: refusal in seconds, progress, interruption, stale temp dirs


def _scene(tmp_path):
    """A crate with a post in front of it (as in test_occlusion), and a floor."""
    import trimesh

    from hiscene_sim.scene import Pose, Scene, SceneObject, save_scene

    def box(size, center, color):
        mesh = trimesh.creation.box(size)
        mesh.apply_translation(center)
        mesh.visual.face_colors = color
        return mesh

    scene_dir = tmp_path / "scene"
    (scene_dir / "meshes").mkdir(parents=True)
    objects = []
    for oid, mesh, pos in (("crate", box((0.3, 0.3, 0.3), (0, 0, 0.15), (200, 160, 40, 255)), (0, 0, 0)),
                           ("post", box((0.08, 0.08, 0.6), (0, 0, 0.3), (40, 40, 200, 255)), (0.35, 0.0, 0))):
        mesh.export(scene_dir / "meshes" / f"{oid}.glb")
        objects.append(SceneObject(oid, oid, f"meshes/{oid}.glb", Pose(pos)))
    box((2, 2, 0.02), (0, 0, -0.01), (120, 120, 120, 255)).export(scene_dir / "meshes" / "floor.glb")
    save_scene(Scene(objects=objects, background=[SceneObject("floor", "floor", "meshes/floor.glb")], name="t"), scene_dir)
    return scene_dir


@pytest.fixture(scope="module")
def amodal_ckpt(tmp_path_factory):
    """A tiny 9-channel amodal-completion checkpoint in the SVD layout."""
    return tiny_modules().save_pretrained(tmp_path_factory.mktemp("ckpt") / "svd-amodal")


def test_complete_command_with_svd(tmp_path, amodal_ckpt, caplog):
    from hiscene_sim.cli import main
    from hiscene_sim.complete.stage import CompleteConfig, complete_scene
    from hiscene_sim.scene import load_scene

    scene_dir = _scene(tmp_path)
    # the checkpoint's own sizes by default; the progress bar moves with each denoising step
    (scene_dir / ".completion.tmp-killed").mkdir()  # left by a run that was SIGKILLed
    (scene_dir / ".completion.tmp-killed" / "view_00.png").write_bytes(b"partial")
    caplog.set_level(logging.INFO)
    seen = []
    config = CompleteConfig(backend="svd", backend_options={"weights": amodal_ckpt, "device": "cpu", "num_inference_steps": 3})
    results = complete_scene(scene_dir, config, progress=lambda done, total, oid: seen.append((done, total, oid)))
    assert "removed .completion.tmp-killed, left by an interrupted earlier run" in caplog.text
    assert sorted(p.name for p in scene_dir.iterdir()) == ["completion", "meshes", "scene.json"]
    n_completed = sum(r.n_completed for r in results)
    assert n_completed >= 1  # the crate and the post hide parts of each other
    fractions = [done for done, _, _ in seen if done != int(done)]
    assert len(fractions) >= 3 * n_completed - len(results)  # each step of each completion, bar a step landing on a whole number
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen) and seen[-1] == (2, 2, "post")
    timed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("svd: ") and " s/step" in r.getMessage()]
    assert len(timed) == n_completed and all("3 steps x 3 frames at 32 px" in m for m in timed)  # timing per view
    for obj in load_scene(scene_dir).objects:
        record = obj.extra["completion"]
        assert record["backend"] == "svd" and all((scene_dir / rel).is_file() for rel in record["images"])

    # a stock SVD checkpoint: a clear error before any view is rendered; nothing written
    (scene_dir / "completion" / "crate" / "contact.png").unlink()
    before = (scene_dir / "scene.json").read_text()
    stock = tiny_modules(widen=False).save_pretrained(tmp_path / "stock")
    assert main(["-q", "complete", str(scene_dir), "--backend", "svd", "--weights", str(stock)]) == 2
    assert (scene_dir / "scene.json").read_text() == before
    assert sorted(p.name for p in scene_dir.iterdir()) == ["completion", "meshes", "scene.json"]
    assert not (scene_dir / "completion" / "crate" / "contact.png").exists()  # the folder was not rewritten

    # the CLI flags reach the backend
    assert main(["-q", "complete", str(scene_dir), "--backend", "svd", "--weights", str(amodal_ckpt), "--svd-steps", "1",
                 "--svd-resolution", str(RES), "--svd-frames", "2", "--device", "cpu", "--resolution", "96"]) == 0
    assert load_scene(scene_dir).get("crate").extra["completion"]["backend"] == "svd"
    assert sorted(p.name for p in scene_dir.iterdir()) == ["completion", "meshes", "scene.json"]


def test_sigterm_during_completion_leaves_nothing_behind(tmp_path, amodal_ckpt):
    """A real SIGTERM during a denoising step: the stage unwinds like Ctrl-C, the temp dir goes."""
    from hiscene_sim.complete.commands import sigterm_interrupts
    from hiscene_sim.complete.stage import CompleteConfig, complete_scene

    scene_dir = _scene(tmp_path)
    before = (scene_dir / "scene.json").read_text()
    config = CompleteConfig(backend="svd", backend_options={"weights": amodal_ckpt, "device": "cpu", "num_inference_steps": 4})
    temp_dirs = []

    def progress(done, total, oid):
        if done != int(done):  # inside a denoising loop: the .completion.tmp-* dir exists now
            temp_dirs.extend(scene_dir.glob(".completion.tmp-*"))
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_interrupts():
            complete_scene(scene_dir, config, progress=progress)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back
    assert temp_dirs and not any(p.exists() for p in temp_dirs)
    assert sorted(p.name for p in scene_dir.iterdir()) == ["meshes", "scene.json"]
    assert (scene_dir / "scene.json").read_text() == before


# ---------------------------------------------------------------------------------------------
# 6. missing weights


def test_missing_weights_dir_names_path_and_key(tmp_path):
    missing = tmp_path / "no-such-svd"
    with pytest.raises(BackendError) as err:
        SvdCompleter(weights=missing)
    assert str(missing) in str(err.value) and CONFIG_KEY in str(err.value)
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(BackendError, match="vae"):
        COMPLETERS.create("svd", weights=tmp_path / "partial")


def test_train_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--weights" in text and "--lr" in text
    config = parse_args(["--weights", "w", "--data", "d", "--output", "o"])
    assert (config.lr, config.warmup_steps, config.resolution, config.num_frames) == (1e-5, 500, 512, 8)
