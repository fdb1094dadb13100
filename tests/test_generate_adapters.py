"""The neural adapters of the generation stages (paper 3.2 scene initialisation, 3.4 shape prior):
FLUX + CLIP on tiny randomly initialised upstream classes saved and reloaded like a real checkpoint;
TRELLIS's output conversion and Algorithm 3 wrappers on TRELLIS-shaped fakes (TRELLIS is not
installable here); InstantMesh's camera encoding against its published Zero123++ cameras; and the
BackendError messages for missing weights / packages."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.generate import instantmesh as im  # noqa: E402
from hiscene_sim.generate import trellis as tr  # noqa: E402
from hiscene_sim.generate.flux import (  # noqa: E402
    ClipImageScorer,
    FluxTextToImage,
    choose_candidate,
    isometric_prompt,
)
from hiscene_sim.generate.interfaces import ImageCandidate  # noqa: E402
from hiscene_sim.render._ply import write_ply_vertices  # noqa: E402
from hiscene_sim.render.cameras import Camera, look_at, viewpoints  # noqa: E402
from hiscene_sim.render.gaussians import SH_C0  # noqa: E402

torch.set_num_threads(1)

RES = 32
ALPHABET = "abcdefghijklmnopqrstuvwxyz.,"


# =========================================================================== tiny FLUX / CLIP
def _clip_tokenizer_dir(root: Path) -> Path:
    """A character-level CLIP BPE tokenizer (vocab.json + merges.txt), as a hub tokenizer is laid out."""
    vocab: dict[str, int] = {}
    for c in ALPHABET:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    return root


def _clip_tokenizer(root: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(_clip_tokenizer_dir(root)), model_max_length=77)


def _t5_tokenizer():
    """A character-level Unigram tokenizer (tokenizers library) wrapped as T5's fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "\u2581", *ALPHABET, *ALPHABET.upper()[:26]]
    tk = Tokenizer(models.Unigram([(p, 0.0 if i < 3 else -1.0) for i, p in enumerate(pieces)], unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0)


def _tiny_flux_components(tmp: Path) -> dict:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = _clip_tokenizer(tmp / "clip_tok")
    tokenizer_2 = _t5_tokenizer()
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            eos_token_id=eot, pad_token_id=eot,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=2,
                 relative_attention_num_buckets=8, decoder_start_token_id=0)
    )
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32,  # = T5 d_model
        pooled_projection_dim=32,  # = CLIP text hidden size (FLUX pools CLIPTextModel's pooler_output)
        axes_dims_rope=[4, 4, 8],  # sums to attention_head_dim
    )
    vae = AutoencoderKL(  # latent_channels 1, packed 2x2 -> the transformer's 4 input channels
        sample_size=RES, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1, latent_channels=1,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
    )
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )


SETTINGS = dict(height=RES, width=RES, num_inference_steps=2, max_sequence_length=16)


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import FluxPipeline

    tmp = tmp_path_factory.mktemp("flux")
    components = _tiny_flux_components(tmp)
    FluxPipeline(**components).save_pretrained(str(tmp / "flux"))
    return tmp / "flux", components


def test_flux_generate_from_saved_checkpoint(flux_dir):
    path, components = flux_dir
    t2i = FluxTextToImage(weights=path, device="cpu", **SETTINGS)  # the path a real checkpoint takes
    assert t2i.name == "flux"
    prompt = isometric_prompt("a desk with a lamp")
    cands = t2i.generate(prompt, [0, 1, 0])
    assert [c.seed for c in cands] == [0, 1, 0]
    for c in cands:
        assert isinstance(c, ImageCandidate) and c.score is None
        assert c.image.shape == (RES, RES, 3) and c.image.dtype == np.uint8
    np.testing.assert_array_equal(cands[0].image, cands[2].image)  # same seed -> same image
    assert np.abs(cands[0].image.astype(int) - cands[1].image.astype(int)).max() > 0  # other seed -> other image
    # the same weights built from components give the same image for the same seed
    direct = FluxTextToImage(components=components, device="cpu", **SETTINGS).generate(prompt, [1])[0]
    np.testing.assert_array_equal(direct.image, cands[1].image)
    assert t2i.generate(prompt, []) == []


def test_flux_settings_validation(flux_dir):
    path, _ = flux_dir
    with pytest.raises(TypeError, match="unknown FLUX setting"):
        FluxTextToImage(weights=path, device="cpu", steps=3)
    with pytest.raises(ValueError):
        FluxTextToImage(weights=path, device="cpu", num_inference_steps=0)


def test_flux_refuses_a_mismatched_snapshot_before_loading(flux_dir, tmp_path):
    import shutil

    path, _ = flux_dir
    bad = Path(shutil.copytree(path, tmp_path / "flux"))
    config = bad / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "pooled_projection_dim": 64}))
    (bad / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"")  # a load would fail otherwise
    with pytest.raises(BackendError) as info:
        FluxTextToImage(weights=bad, device="cpu", **SETTINGS)
    msg = str(info.value)
    assert str(config) in msg and "pooled_projection_dim: is 64, expected 32" in msg and "generate.flux.weights" in msg


def test_flux_cpu_offload_gives_the_same_images(flux_dir):
    """--offload: diffusers' enable_model_cpu_offload over the same checkpoint (accelerate's hooks move each
    component to the run device while it runs); the images are the same as without it."""
    pytest.importorskip("accelerate")
    from hiscene_sim.generate.config import GenerateConfig
    from hiscene_sim.generate.loading import build_model

    path, _ = flux_dir
    prompt = isometric_prompt("a desk with a lamp")
    plain = FluxTextToImage(weights=path, device="cpu", **SETTINGS).generate(prompt, [3])[0].image
    offloaded = FluxTextToImage(weights=path, device="cpu", cpu_offload=True, **SETTINGS)
    assert offloaded.cpu_offload and offloaded.pipeline._all_hooks  # the offload hooks are installed
    np.testing.assert_array_equal(offloaded.generate(prompt, [3])[0].image, plain)
    # the config switch (--offload / generate.flux.offload) reaches the loader: without an accelerator
    # diffusers refuses to offload to one, which shows the call was made
    config = GenerateConfig(weights={"generate.flux.weights": path}, switches={"generate.flux.offload": True})
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        assert build_model("flux", config).pipeline._all_hooks
    else:
        with pytest.raises(RuntimeError, match="accelerator"):
            build_model("flux", config)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tmp = tmp_path_factory.mktemp("clip")
    tokenizer = _clip_tokenizer(tmp / "tok")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(1)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=eot, pad_token_id=eot,
                         bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>")),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=8),
        projection_dim=16,
    )
    out = tmp / "clip"
    CLIPModel(config).save_pretrained(str(out))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(out))
    return out


def _images(n: int, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def test_clip_scorer_and_choice(clip_dir):
    scorer = ClipImageScorer(weights=clip_dir, device="cpu", batch_size=2)
    assert scorer.name == "clip"
    images = _images(3)
    prompt = "a desk with a lamp"
    scores = scorer.score(prompt, images)
    assert len(scores) == 3 and all(math.isfinite(s) and -1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)
    assert scorer.score(prompt, images[:1])[0] == pytest.approx(scores[0], abs=1e-5)  # batching does not matter
    # the same numbers as CLIPModel's own forward: logits_per_image / logit_scale = cosine similarity
    from PIL import Image

    inputs = scorer.processor(text=[prompt], images=[Image.fromarray(i) for i in images], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = scorer.model(**inputs)
    np.testing.assert_allclose(scores, (out.logits_per_image[:, 0] / scorer.model.logit_scale.exp()).detach().numpy(), atol=1e-5)
    cands = [ImageCandidate(image=im, seed=s) for im, s in zip(images, (5, 6, 7))]
    index, record = choose_candidate(cands, scorer, prompt)
    assert index == int(np.argmax(scores))
    assert record["method"] == "clip-score" and record["scorer"] == "clip" and record["index"] == index
    assert record["seed"] == (5, 6, 7)[index] and record["seeds"] == [5, 6, 7]
    assert [c.score for c in cands] == pytest.approx(scores)
    json.dumps(record)  # storable


class _FixedScorer:
    name = "fixed"

    def __init__(self, scores):
        self.scores = scores

    def score(self, prompt, images):
        return list(self.scores)


def test_choose_candidate_rules():
    cands = [ImageCandidate(image=np.zeros((2, 2, 3), np.uint8), seed=s) for s in (10, 11, 12)]
    index, record = choose_candidate(cands)
    assert index == 0 and record["method"] == "first" and record["scorer"] is None and "no image scorer" in record["reason"]
    index, record = choose_candidate(cands, _FixedScorer([0.1, 0.9, 0.9]), "p")
    assert index == 1 and record["seed"] == 11 and "0.9000" in record["reason"]  # first of a tie
    index, record = choose_candidate(cands, _FixedScorer([float("nan"), 0.2, float("inf")]), "p")
    assert index == 1 and record["scores"] == [None, 0.2, None]  # non-finite never wins
    index, record = choose_candidate(cands, _FixedScorer([float("nan")] * 3), "p")
    assert index == 0 and record["method"] == "first" and "non-finite" in record["reason"]
    with pytest.raises(ValueError):
        choose_candidate([])
    with pytest.raises(ValueError):
        choose_candidate(cands, _FixedScorer([1, 2, 3]))  # a scorer needs the prompt
    with pytest.raises(ValueError):
        choose_candidate(cands, _FixedScorer([1, 2]), "p")


def test_isometric_prompt():
    assert isometric_prompt("a cosy reading corner") == "Isometric view of a cosy reading corner"
    assert isometric_prompt("  a  desk ") == "Isometric view of a desk"
    once = isometric_prompt("a desk")
    assert isometric_prompt(once) == once
    assert isometric_prompt("isometric view of a desk") == "isometric view of a desk"
    with pytest.raises(ValueError):
        isometric_prompt("   ")


# ====================================================================== TRELLIS-shaped fakes
def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    from hiscene_sim.rotations import quaternions_to_matrices

    return quaternions_to_matrices(q)


def _matrix_to_quat(r: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(r).as_quat()
    return np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)


class FakeTrellisGaussian:
    """Attribute-for-attribute TRELLIS's ``representations.gaussian.Gaussian`` (sh_degree 0, aabb
    [-0.5, -0.5, -0.5, 1, 1, 1], exp scaling + bias, sigmoid opacity + bias, rots_bias (1, 0, 0, 0)),
    including ``save_ply`` with its default transform."""

    def __init__(self, xyz, scales, rots, opacities, f_dc, scaling_bias=0.01, opacity_bias=0.1):
        self.aabb = torch.tensor([-0.5, -0.5, -0.5, 1.0, 1.0, 1.0])
        self.scale_bias = torch.log(torch.tensor(scaling_bias))
        self.opacity_bias = torch.logit(torch.tensor(opacity_bias))
        self.rots_bias = torch.tensor([1.0, 0.0, 0.0, 0.0])
        self._xyz = (torch.as_tensor(xyz, dtype=torch.float32) - self.aabb[None, :3]) / self.aabb[None, 3:]
        self._scaling = torch.log(torch.as_tensor(scales, dtype=torch.float32)) - self.scale_bias
        self._rotation = torch.as_tensor(rots, dtype=torch.float32) - self.rots_bias[None]
        self._opacity = torch.logit(torch.as_tensor(opacities, dtype=torch.float32)).reshape(-1, 1) - self.opacity_bias
        self._features_dc = torch.as_tensor(f_dc, dtype=torch.float32).reshape(-1, 1, 3)
        self._features_rest = None

    @property
    def get_scaling(self):
        return torch.exp(self._scaling + self.scale_bias)

    @property
    def get_rotation(self):
        return torch.nn.functional.normalize(self._rotation + self.rots_bias[None, :])

    @property
    def get_xyz(self):
        return self._xyz * self.aabb[None, 3:] + self.aabb[None, :3]

    @property
    def get_features(self):
        return self._features_dc

    @property
    def get_opacity(self):
        return torch.sigmoid(self._opacity + self.opacity_bias)

    def save_ply(self, path, transform=((1, 0, 0), (0, 0, -1), (0, 1, 0))):
        xyz = self.get_xyz.numpy().astype(np.float64)
        rotation = (self._rotation + self.rots_bias[None, :]).numpy().astype(np.float64)
        if transform is not None:
            t = np.array(transform, dtype=np.float64)
            xyz = xyz @ t.T
            rotation = _matrix_to_quat(t @ _quat_to_matrix(rotation))
        n = len(xyz)
        f_dc = self._features_dc.transpose(1, 2).flatten(start_dim=1).numpy()
        fields = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n)}
        fields.update({f"f_dc_{k}": f_dc[:, k] for k in range(3)})
        fields["opacity"] = torch.logit(self.get_opacity).numpy()[:, 0]
        scale = torch.log(self.get_scaling).numpy()
        fields.update({f"scale_{k}": scale[:, k] for k in range(3)})
        fields.update({f"rot_{k}": rotation[:, k] for k in range(4)})
        write_ply_vertices(path, {k: np.asarray(v, np.float32) for k, v in fields.items()})


class PlyOnlyGaussian:
    """A Gaussian seen only through ``save_ply`` (the file route)."""

    def __init__(self, g):
        self._g = g

    def save_ply(self, path):
        self._g.save_ply(path)


class FakeMeshExtractResult:
    """TRELLIS's ``MeshExtractResult``: vertices (V, 3) float, faces (F, 3) long, vertex_attrs (V, 6)."""

    def __init__(self, vertices, faces, vertex_attrs=None):
        self.vertices = torch.as_tensor(vertices, dtype=torch.float32)
        self.faces = torch.as_tensor(faces).long()
        self.vertex_attrs = None if vertex_attrs is None else torch.as_tensor(vertex_attrs, dtype=torch.float32)
        self.success = self.vertices.shape[0] != 0 and self.faces.shape[0] != 0


# a box in TRELLIS's frame (Z up): 0.2 wide in x, 0.4 deep in y, 0.8 tall in z, centred at (0.1, 0, 0)
BOX_EXTENTS = np.array([0.2, 0.4, 0.8])
BOX_CENTER = np.array([0.1, 0.0, 0.0])


def _box_outputs():
    import trimesh

    box = trimesh.creation.box(extents=BOX_EXTENTS)
    box.apply_translation(BOX_CENTER)
    v = np.asarray(box.vertices)
    attrs = np.concatenate([np.clip(v - v.min(0), 0, 1), np.zeros_like(v)], axis=1)  # RGB then normals
    rng = np.random.default_rng(0)
    n = 5
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g = FakeTrellisGaussian(
        xyz=rng.uniform(-0.4, 0.4, (n, 3)), scales=rng.uniform(0.01, 0.05, (n, 3)), rots=q,
        opacities=rng.uniform(0.2, 0.9, n), f_dc=rng.normal(size=(n, 3)),
    )
    return {"mesh": [FakeMeshExtractResult(v, box.faces, attrs)], "gaussian": [g]}, box


class FakeTrellisPipeline:
    """TRELLIS-shaped: ``run`` / ``run_multi_image`` return ``{"mesh": [...], "gaussian": [...]}``."""

    def __init__(self):
        self.calls = []
        self.sparse_structure_sampler_params = {"steps": 12, "cfg_strength": 7.5}
        self.models = {"sparse_structure_flow_model": TinyFlow(), "sparse_structure_decoder": TinyDecoder()}

    def run(self, image, **kwargs):
        self.calls.append(("run", image, kwargs))
        return _box_outputs()[0]

    def run_multi_image(self, images, **kwargs):
        self.calls.append(("run_multi_image", images, kwargs))
        return _box_outputs()[0]


class TinyFlow(torch.nn.Module):
    """TRELLIS's SparseStructureFlowModel call signature: forward(x (B, C, r, r, r), t (B,), cond (B, L, D))."""

    def __init__(self, channels: int = 2, resolution: int = 4):
        super().__init__()
        self.resolution, self.in_channels = resolution, channels
        self.conv = torch.nn.Conv3d(channels, channels, 3, padding=1)
        self.seen_t: list[torch.Tensor] = []

    def forward(self, x, t, cond):
        assert t.shape == (x.shape[0],) and cond.shape[0] == x.shape[0]
        self.seen_t.append(t)
        return self.conv(x) + (t / 1000.0)[:, None, None, None, None] * cond.mean(dim=(1, 2))[:, None, None, None, None]


class TinyEncoder(torch.nn.Module):
    """SparseStructureEncoder's signature: forward(x, sample_posterior=False) -> posterior mean."""

    def __init__(self, latent: int = 2):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2 * latent, 4, stride=4)

    def forward(self, x, sample_posterior=False, return_raw=False):
        mean, logvar = self.conv(x).chunk(2, dim=1)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample_posterior else mean


class TinyDecoder(torch.nn.Module):
    def __init__(self, latent: int = 2):
        super().__init__()
        self.conv = torch.nn.ConvTranspose3d(latent, 1, 4, stride=4)

    def forward(self, z):
        return self.conv(z)


# ------------------------------------------------------------------------------ TRELLIS tests
def test_trellis_frames_invert_upstream_exporters():
    """The GLB (to_glb: v @ M) and PLY (save_ply: T @ p) frames map back to TRELLIS's Z-up frame."""
    m = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    p = np.random.default_rng(1).uniform(-0.5, 0.5, (10, 3))
    conv = tr.FrameConversion(scale=2.0, translation=(0.0, 0.0, 1.0))
    expected = 2.0 * p + [0.0, 0.0, 1.0]
    np.testing.assert_allclose(conv.points(p), expected)
    np.testing.assert_allclose(conv.points(p @ m, "glb"), expected, atol=1e-12)  # to_glb's rotation
    np.testing.assert_allclose(conv.points(p @ m.T, "trellis_ply"), expected, atol=1e-12)  # save_ply's transform
    up_in_glb = np.array([[0.0, 1.0, 0.0]])  # glTF +Y up
    np.testing.assert_allclose(tr.FrameConversion(1.0).points(up_in_glb, "glb"), [[0, 0, 1]], atol=1e-12)
    for r in tr.TRELLIS_TO_ZUP.values():
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    with pytest.raises(ValueError):
        conv.points(p, "obj")


def test_trellis_outputs_to_generated_zup_and_scale():
    outputs, box = _box_outputs()
    gen = tr.outputs_to_generated(outputs, target_size=2.0)  # longest side (0.8, +Z) -> 2 m
    scale = 2.0 / 0.8
    np.testing.assert_allclose(gen.mesh.vertices, scale * np.asarray(box.vertices), atol=1e-6)
    np.testing.assert_allclose(gen.mesh.extents, scale * BOX_EXTENTS, atol=1e-6)
    assert np.argmax(gen.mesh.extents) == 2  # the tall axis stays up
    np.testing.assert_array_equal(gen.mesh.faces, box.faces)
    assert gen.mesh.is_winding_consistent and gen.mesh.volume > 0  # outward normals kept
    assert gen.mesh.visual.vertex_colors.shape == (len(box.vertices), 4)
    fc = gen.metadata["frame_conversion"]
    assert fc["scale_m_per_unit"] == pytest.approx(scale) and fc["source_frame"] == "trellis" and fc["scale_mode"] == "extent"
    np.testing.assert_allclose(np.asarray(fc["matrix"])[:3, :3], scale * np.eye(3))
    json.dumps(gen.metadata)
    # Gaussians: same conversion
    g = outputs["gaussian"][0]
    gs = gen.gaussians
    np.testing.assert_allclose(gs.means, scale * g.get_xyz.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gs.scales, scale * g.get_scaling.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gs.opacities, g.get_opacity.numpy()[:, 0], rtol=1e-5)
    np.testing.assert_allclose(gs.colors, 0.5 + SH_C0 * g._features_dc.numpy()[:, 0], rtol=1e-5, atol=1e-6)
    # "cube" mode: TRELLIS's unit cube edge -> target_size; ground: lowest point at z = 0, xy centred
    cube = tr.outputs_to_generated(outputs, target_size=3.0, scale_mode="cube", ground=True)
    np.testing.assert_allclose(cube.mesh.extents, 3.0 * BOX_EXTENTS, atol=1e-6)
    np.testing.assert_allclose(cube.mesh.bounds[0], [-0.3, -0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(cube.mesh.bounds[1], [0.3, 0.6, 2.4], atol=1e-6)
    with pytest.raises(ValueError, match="mesh"):
        tr.outputs_to_generated({"gaussian": outputs["gaussian"]})
    with pytest.raises(ValueError, match="empty"):
        tr.outputs_to_generated({"mesh": [FakeMeshExtractResult(np.zeros((0, 3)), np.zeros((0, 3)))]}, scale_mode="cube")


def test_trellis_gaussians_attributes_and_ply_routes_agree(tmp_path):
    outputs, _ = _box_outputs()
    g = outputs["gaussian"][0]
    conv = tr.make_frame_conversion(np.asarray(outputs["mesh"][0].vertices), target_size=1.6)
    direct = tr.gaussians_from_trellis(g, conv)
    via_file = tr.gaussians_from_trellis(PlyOnlyGaussian(g), conv)  # save_ply (-Y up file) -> load_3dgs_ply -> convert
    np.testing.assert_allclose(via_file.means, direct.means, atol=1e-5)
    np.testing.assert_allclose(via_file.scales, direct.scales, rtol=1e-4)
    np.testing.assert_allclose(via_file.opacities, direct.opacities, atol=1e-5)
    np.testing.assert_allclose(via_file.colors, direct.colors, atol=1e-5)
    np.testing.assert_allclose(via_file.covariances(), direct.covariances(), atol=1e-7)
    # world covariance = s^2 * TRELLIS covariance (the in-memory frame is already Z-up)
    r = _quat_to_matrix(g.get_rotation.numpy()) * g.get_scaling.numpy()[:, None, :]
    np.testing.assert_allclose(direct.covariances(), conv.scale**2 * r @ np.transpose(r, (0, 2, 1)), atol=1e-7)


def test_trellis_adapter_runs_pipeline_and_bakes_glb(monkeypatch):
    import io

    import trimesh

    pipe = FakeTrellisPipeline()
    adapter = tr.TrellisImageTo3D(pipeline=pipe, target_size=2.0, slat_sampler_params={"steps": 3})
    assert adapter.name == "trellis"
    img = np.full((16, 16, 3), 200, np.uint8)
    gen = adapter.generate([img], seed=7)
    kind, image, kwargs = pipe.calls[-1]
    assert kind == "run" and image.size == (16, 16) and image.mode == "RGB"
    assert kwargs["seed"] == 7 and kwargs["slat_sampler_params"] == {"steps": 3} and kwargs["formats"] == ["mesh", "gaussian"]
    assert gen.metadata["seed"] == 7 and gen.metadata["backend"] == "trellis" and gen.glb is None
    assert max(gen.mesh.extents) == pytest.approx(2.0)
    rgba = np.zeros((16, 16, 4), np.uint8)
    adapter.generate([img, rgba], seed=8)
    kind, images, kwargs = pipe.calls[-1]
    assert kind == "run_multi_image" and len(images) == 2 and images[1].mode == "RGBA" and kwargs["mode"] == "stochastic"
    with pytest.raises(ValueError):
        adapter.generate([], seed=0)

    def fake_to_glb(gaussian, mesh, simplify, texture_size):  # what postprocessing_utils.to_glb does to the frame
        v = mesh.vertices.numpy().astype(np.float64) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
        return trimesh.Trimesh(v, mesh.faces.numpy(), process=False)

    monkeypatch.setattr(tr, "bake_glb", fake_to_glb)
    gen = tr.TrellisImageTo3D(pipeline=pipe, target_size=2.0, export_glb=True).generate([img], seed=1)
    back = trimesh.load(io.BytesIO(gen.glb), file_type="glb", force="mesh", process=False)
    np.testing.assert_allclose(back.vertices, gen.mesh.vertices, atol=1e-5)  # GLB in the same Z-up metres
    with pytest.raises(TypeError):
        tr.TrellisImageTo3D(pipeline=pipe, no_such_setting=1)


def test_trellis_velocity_model_rescales_time_and_applies_cfg():
    torch.manual_seed(0)
    flow = TinyFlow()
    x = torch.randn(2, 2, 4, 4, 4)
    cond = torch.randn(1, 3, 8)  # batch 1: repeated to x's batch, as TRELLIS's sampler does
    v = tr.TrellisVelocityModel(flow)(x, 0.3, cond)
    t_seen = flow.seen_t[-1]
    assert t_seen.dtype == torch.float32 and torch.allclose(t_seen, torch.full((2,), 300.0))
    expected = flow.conv(x) + 0.3 * cond.mean()
    torch.testing.assert_close(v, expected)
    # classifier-free guidance with TRELLIS's get_cond dict, only inside the interval
    neg = torch.zeros_like(cond)
    w = 2.0
    guided = tr.TrellisVelocityModel(flow, cfg_strength=w, cfg_interval=(0.5, 1.0))
    v_in = guided(x, 0.7, {"cond": cond, "neg_cond": neg})
    v_c, v_n = flow(x, torch.full((2,), 700.0), cond.repeat(2, 1, 1)), flow(x, torch.full((2,), 700.0), neg.repeat(2, 1, 1))
    torch.testing.assert_close(v_in, (1 + w) * v_c - w * v_n)
    v_out = guided(x, 0.3, {"cond": cond, "neg_cond": neg})
    torch.testing.assert_close(v_out, expected)
    # from the adapter: the pipeline's flow model and its sampler's cfg strength
    pipe = FakeTrellisPipeline()
    vm = tr.TrellisImageTo3D(pipeline=pipe).velocity_model()
    assert vm.model is pipe.models["sparse_structure_flow_model"] and vm.cfg_strength == 7.5


def test_trellis_structure_codec():
    torch.manual_seed(0)
    enc, dec = TinyEncoder(), TinyDecoder()
    codec = tr.TrellisStructureCodec(enc, dec, resolution=16)
    occ = (torch.rand(2, 1, 16, 16, 16) > 0.7).to(torch.uint8)
    z = codec.encode(occ)
    assert z.shape == (2, 2, 4, 4, 4) and z.dtype == torch.float32
    torch.testing.assert_close(z, enc(occ.float()))  # the posterior mean, deterministic
    logits = codec.decode(z)
    assert logits.shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError):
        codec.encode(torch.zeros(1, 1, 8, 8, 8))
    pipe = FakeTrellisPipeline()
    codec2 = tr.TrellisImageTo3D(pipeline=pipe).structure_codec(encoder=enc)
    assert codec2.decoder is pipe.models["sparse_structure_decoder"] and codec2.resolution == 64


# ========================================================================== InstantMesh cameras
def _zero123plus_reference(radius: float = 4.0, fov: float = 30.0) -> np.ndarray:
    """InstantMesh's get_zero123plus_input_cameras re-built from its published parameters (camera_util.py):
    OpenGL c2w looking at the origin with world up +Z, flattened to 12 numbers, + [f, f, 0.5, 0.5]."""
    az = np.deg2rad([30, 90, 150, 210, 270, 330.0])
    el = np.deg2rad([20, -10, 20, -10, 20, -10.0])
    pos = radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    z = pos / np.linalg.norm(pos, axis=-1, keepdims=True)  # backward
    x = np.cross(np.array([0.0, 0.0, 1.0]), z)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    c2w = np.stack([x, y, z, pos], axis=-1)  # (6, 3, 4): columns x, y, z, position
    f = 0.5 / np.tan(np.deg2rad(fov) * 0.5)
    return np.concatenate([c2w.reshape(6, 12), np.tile([f, f, 0.5, 0.5], (6, 1))], axis=1)


def test_instantmesh_zero123plus_cameras_round_trip():
    ref = _zero123plus_reference()
    for enc in ref:
        cam = im.instantmesh_to_camera(enc, 320, 320)
        assert cam.projection == "perspective" and cam.fov_y_deg == pytest.approx(30.0)
        np.testing.assert_allclose(cam.position, enc[[3, 7, 11]], atol=1e-12)
        uv, depth = cam.project([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
        np.testing.assert_allclose(uv[0], [160.0, 160.0], atol=1e-9)  # looks at the origin
        assert depth[0] == pytest.approx(4.0) and uv[1, 1] < 160.0  # world +Z is up in the image
        np.testing.assert_allclose(im.camera_to_instantmesh(cam), enc, atol=1e-12)
    np.testing.assert_allclose(im.cameras_to_instantmesh(im.zero123plus_cameras()), ref, atol=1e-12)
    # our look_at camera at the same spot encodes to the same numbers
    own = Camera(320, 320, look_at(ref[0, [3, 7, 11]], (0, 0, 0)), "perspective", fov_y_deg=30.0)
    np.testing.assert_allclose(im.camera_to_instantmesh(own), ref[0], atol=1e-12)


def test_instantmesh_encoding_projects_like_opengl():
    """A point projected by our camera lands where InstantMesh's OpenGL pose + normalised K put it."""
    rng = np.random.default_rng(2)
    pts = rng.uniform(-0.8, 0.8, (20, 3))
    for cam in viewpoints("open", radius=3.0, n_azimuth=3, n_elevation=2, width=64, height=48, projection="perspective",
                          fov_y_deg=40.0, center=(0.5, -1.0, 0.2), scale=1.0):
        enc = im.camera_to_instantmesh(cam)
        c2w = np.vstack([enc[:12].reshape(3, 4), [0, 0, 0, 1]])
        p = (np.linalg.inv(c2w) @ np.c_[pts + [0.5, -1.0, 0.2], np.ones(len(pts))].T).T[:, :3]  # OpenGL camera frame
        fx, fy, cx, cy = enc[12:]
        u = (cx + fx * p[:, 0] / -p[:, 2]) * cam.width
        v = (cy - fy * p[:, 1] / -p[:, 2]) * cam.height  # +y up in OpenGL, rows grow downwards
        uv, _ = cam.project(pts + [0.5, -1.0, 0.2])
        np.testing.assert_allclose(np.c_[u, v], uv, atol=1e-9)
        back = im.instantmesh_to_camera(enc, cam.width, cam.height)  # non-square images round-trip too
        np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-12)
        assert back.fov_y_deg == pytest.approx(cam.fov_y_deg)


def test_instantmesh_frame_from_cameras_and_bounds():
    frame = im.InstantMeshFrame(center=(1.0, 2.0, 0.5), scale=1 / 0.3)
    world_cams = im.zero123plus_cameras(frame=frame)  # the Zero123++ rig shrunk to 1.2 m and moved
    np.testing.assert_allclose(im.cameras_to_instantmesh(world_cams, frame), _zero123plus_reference(), atol=1e-9)
    found = im.InstantMeshFrame.from_cameras(world_cams)
    np.testing.assert_allclose(found.center, frame.center, atol=1e-9)
    assert found.scale == pytest.approx(frame.scale)
    for cam in world_cams:
        back = im.instantmesh_to_camera(im.camera_to_instantmesh(cam, found), frame=found)
        np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-9)
    fb = im.InstantMeshFrame.from_bounds([[0, 0, 0], [2, 2, 1]])
    np.testing.assert_allclose(fb.to_model([[2, 2, 1]]), [[2 / 3, 2 / 3, 1 / 3]])
    np.testing.assert_allclose(fb.to_world(fb.to_model([[0.3, 0.1, 0.9]])), [[0.3, 0.1, 0.9]])
    with pytest.raises(ValueError, match="orthographic"):
        im.camera_to_instantmesh(viewpoints("open", n_azimuth=1, n_elevation=1)[0])
    with pytest.raises(ValueError):
        im.InstantMeshFrame.from_cameras(world_cams[:1])
    bad = _zero123plus_reference()[0].copy()
    bad[14] = 0.4  # off-centre principal point: not representable by our Camera
    with pytest.raises(ValueError, match="principal point"):
        im.instantmesh_to_camera(bad)


class FakeInstantMesh(torch.nn.Module):
    """forward_planes(images (B, V, 3, S, S), cameras (B, V, 16)) / extract_mesh(planes) -> numpy mesh,
    as InstantMesh's lrm_mesh: here a unit cube (side 1) about the model origin."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward_planes(self, images, cameras):
        self.seen = (images, cameras)
        return torch.zeros(1, 3, 4, 8, 8)

    def extract_mesh(self, planes, use_texture_map=False, **kwargs):
        import trimesh

        box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        colors = np.full((len(box.vertices), 3), 128, np.uint8)
        return np.asarray(box.vertices, np.float32), np.asarray(box.faces), colors


def test_instantmesh_reconstructor_maps_mesh_back_to_world():
    frame = im.InstantMeshFrame(center=(1.0, 2.0, 0.5), scale=2.0)
    cams = im.zero123plus_cameras(64, 64, frame=frame)
    views = [np.full((48, 48, 3), 255, np.uint8)] * 5 + [np.zeros((48, 48, 4), np.uint8)]
    model = FakeInstantMesh()
    rec = im.InstantMeshReconstructor(model=model, image_size=32)
    assert rec.name == "instantmesh"
    mesh = rec.reconstruct(views, cams)
    images, cameras = model.seen
    assert images.shape == (1, 6, 3, 32, 32) and cameras.shape == (1, 6, 16) and cameras.dtype == torch.float32
    assert float(images[0, 5].min()) == pytest.approx(1.0)  # transparent RGBA -> white background
    np.testing.assert_allclose(cameras[0].numpy(), _zero123plus_reference(), atol=1e-6)
    np.testing.assert_allclose(mesh.bounds, [[0.75, 1.75, 0.25], [1.25, 2.25, 0.75]], atol=1e-6)
    assert mesh.metadata["instantmesh_frame"]["scale_per_m"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        rec.reconstruct(views[:2], cams)


# =============================================================================== BackendError
def test_missing_weights_name_path_and_config_key(tmp_path):
    missing = tmp_path / "nope"
    cases = [
        (lambda: FluxTextToImage(weights=missing), "generate.flux.weights"),
        (lambda: ClipImageScorer(weights=missing), "generate.clip.weights"),
        (lambda: tr.TrellisImageTo3D(weights=missing), "generate.trellis.weights"),
        (lambda: im.InstantMeshReconstructor(weights=missing / "instant_mesh_large.ckpt"), "generate.instantmesh.weights"),
    ]
    for make, key in cases:
        with pytest.raises(BackendError) as info:
            make()
        assert key in str(info.value) and str(missing) in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="model_index.json"):
        FluxTextToImage(weights=tmp_path / "empty")
    with pytest.raises(BackendError, match="generate.flux.weights"):
        FluxTextToImage()
    with pytest.raises(BackendError, match="generate.trellis.weights"):
        tr.TrellisImageTo3D()
    with pytest.raises(BackendError) as info:  # a weights directory without the checkpoint file
        im.InstantMeshReconstructor(weights=tmp_path / "empty")
    assert str(tmp_path / "empty" / "instant_mesh_large.ckpt") in str(info.value)


def test_missing_packages_say_how_to_install(tmp_path, monkeypatch):
    from tests.generate_fixtures import dinov2_repo, trellis_snapshot

    weights = trellis_snapshot(tmp_path / "TRELLIS-image-large")
    repo, state = dinov2_repo(tmp_path / "dinov2")
    monkeypatch.setitem(sys.modules, "trellis", None)  # not importable, whatever is installed
    with pytest.raises(BackendError) as info:
        tr.TrellisImageTo3D(weights=weights, dinov2_repo=repo, dinov2_weights=state)
    msg = str(info.value)
    assert "git clone --recurse-submodules https://github.com/microsoft/TRELLIS.git" in msg
    assert "setup.sh --basic" in msg and "PYTHONPATH" in msg
    for ext in (".json", ".safetensors"):
        (weights / (tr.SS_ENCODER_CKPT + ext)).unlink()
    with pytest.raises(BackendError) as info:  # the encoder checkpoint is checked before importing
        tr.load_structure_encoder(weights)
    assert str(weights / tr.SS_ENCODER_CKPT) in str(info.value) and "generate.trellis.weights" in str(info.value)
    with pytest.raises(BackendError, match="TRELLIS"):
        tr.bake_glb(None, None, 0.9, 64)

    ckpt = tmp_path / "instant_mesh_large.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(BackendError, match="generate.instantmesh.repo"):
        im.InstantMeshReconstructor(weights=ckpt, repo=tmp_path / "InstantMesh")
    monkeypatch.setitem(sys.modules, "src", None)
    with pytest.raises(BackendError, match="generate.instantmesh.config"):
        im.InstantMeshReconstructor(weights=ckpt)
    from tests.generate_fixtures import INSTANTMESH_LARGE_YAML, dino_snapshot

    config = tmp_path / "instant-mesh-large.yaml"
    config.write_text(INSTANTMESH_LARGE_YAML)
    with pytest.raises(BackendError, match="generate.instantmesh.dino"):  # facebook/dino-vitb16 would be downloaded
        im.InstantMeshReconstructor(weights=ckpt, config=config)
    with pytest.raises(BackendError) as info:
        im.InstantMeshReconstructor(weights=ckpt, config=config, dino=dino_snapshot(tmp_path / "dino-vitb16"))
    assert "git clone https://github.com/TencentARC/InstantMesh.git" in str(info.value) and "PYTHONPATH" in str(info.value)
    assert "requirements.txt" in str(info.value)  # ... and not to install it
