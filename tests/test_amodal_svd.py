"""The SVD amodal completion model (paper 3.3, B) on tiny randomly initialised upstream modules:
Algorithm 2 data, conv_in widening, the EDM training objective, seeded inference, loading from a
directory laid out like the SVD repo, and the missing-weights error."""

from __future__ import annotations

import copy
import os

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
    completer = SvdCompleter.from_modules(modules, seed=7, **kw)
    a = completer.complete_video(req)
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
# 4. a directory laid out like the SVD repo, loaded through the real-checkpoint path


def test_completer_loads_svd_repo_layout(tmp_path):
    modules = tiny_modules(widen=False)  # a stock 8-channel SVD checkpoint ...
    root = modules.save_pretrained(tmp_path / "svd")
    assert sorted(os.listdir(root)) == ["feature_extractor", "image_encoder", "scheduler", "unet", "vae"]
    loaded = load_svd_modules(root)  # ... is widened on load, new channel zero
    assert loaded.unet.config.in_channels == 9 and torch.count_nonzero(loaded.unet.conv_in.weight[:, 8]) == 0
    assert loaded.scheduler.config.prediction_type == "v_prediction"

    # a fine-tuned (9-channel) checkpoint, saved atomically, is loaded as is by the registered backend
    with torch.no_grad():
        loaded.unet.conv_in.weight[:, 8].fill_(0.01)
    ckpt = save_checkpoint(loaded, tmp_path / "out" / "checkpoint-000001", {"step": 1})
    save_checkpoint(loaded, ckpt, {"step": 1})  # replacing an existing checkpoint works too
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-000001"]  # no temp dirs left
    completer = COMPLETERS.create("svd", weights=ckpt, device="cpu", num_inference_steps=2, num_frames=FRAMES, resolution=RES)
    assert isinstance(completer, SvdCompleter)
    torch.testing.assert_close(completer.modules.unet.conv_in.weight, loaded.unet.conv_in.weight)
    out = completer.complete(request_from(toy_pair()))
    assert out.image.shape == (RES, RES, 3) and out.image.dtype == np.uint8
    assert out.amodal_mask.shape == (RES, RES) and out.amodal_mask.dtype == bool


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
