"""Local model folders laid out as the real ones are, small enough to write in a test, and stand-ins for
the upstream packages that do not install here (TRELLIS, rembg, an InstantMesh clone), each with the
upstream call signatures the adapters use (read from upstream's source, cited where written).

Layouts: diffusers ``FluxPipeline.save_pretrained`` (model_index.json + one folder per component); a
transformers CLIP / ViT snapshot; microsoft/TRELLIS-image-large (``pipeline.json`` + ``ckpts/<name>.json``
and ``.safetensors``, as ``trellis/pipelines/base.py`` and ``trellis/models/__init__.py`` read them at commit
6b0d647); a facebookresearch/dinov2 clone (``hubconf.py``) and its state dict; a TencentARC/InstantMesh
clone (``src/``, ``configs/instant-mesh-large.yaml`` as at commit 08822c5) and its checkpoint.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

#: TRELLIS-image-large's pipeline.json (microsoft/TRELLIS-image-large model repository)
TRELLIS_PIPELINE = {
    "name": "TrellisImageTo3DPipeline",
    "args": {
        "models": {
            "sparse_structure_decoder": "ckpts/ss_dec_conv3d_16l8_fp16",
            "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_L_16l8_fp16",
            "slat_decoder_gs": "ckpts/slat_dec_gs_swin8_B_64l8gs32_fp16",
            "slat_decoder_rf": "ckpts/slat_dec_rf_swin8_B_64l8r16_fp16",
            "slat_decoder_mesh": "ckpts/slat_dec_mesh_swin8_B_64l8m256c_fp16",
            "slat_flow_model": "ckpts/slat_flow_img_dit_L_64l8p2_fp16",
        },
        "sparse_structure_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                                     "params": {"steps": 25, "cfg_strength": 7.5, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0}},
        "slat_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                         "params": {"steps": 25, "cfg_strength": 3.0, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0}},
        "slat_normalization": {"mean": [0.0] * 8, "std": [1.0] * 8},
        "image_cond_model": "dinov2_vitl14_reg",
    },
}
#: each checkpoint's .json (configs/generation/*.json and configs/vae/*.json of the TRELLIS repository)
TRELLIS_CKPTS = {
    "ckpts/ss_dec_conv3d_16l8_fp16": {"name": "SparseStructureDecoder", "args": {
        "out_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2, "channels": [512, 128, 32],
        "use_fp16": True}},
    "ckpts/ss_enc_conv3d_16l8_fp16": {"name": "SparseStructureEncoder", "args": {
        "in_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2, "channels": [32, 128, 512],
        "use_fp16": True}},
    "ckpts/ss_flow_img_dit_L_16l8_fp16": {"name": "SparseStructureFlowModel", "args": {
        "resolution": 16, "in_channels": 8, "out_channels": 8, "model_channels": 1024, "cond_channels": 1024, "num_blocks": 24,
        "num_heads": 16, "mlp_ratio": 4, "patch_size": 1, "pe_mode": "ape", "qk_rms_norm": True, "use_fp16": True}},
    "ckpts/slat_dec_gs_swin8_B_64l8gs32_fp16": {"name": "SLatGaussianDecoder", "args": {"resolution": 64, "latent_channels": 8}},
    "ckpts/slat_dec_rf_swin8_B_64l8r16_fp16": {"name": "SLatRadianceFieldDecoder", "args": {"resolution": 64, "latent_channels": 8}},
    "ckpts/slat_dec_mesh_swin8_B_64l8m256c_fp16": {"name": "SLatMeshDecoder", "args": {"resolution": 64, "latent_channels": 8}},
    "ckpts/slat_flow_img_dit_L_64l8p2_fp16": {"name": "SLatFlowModel", "args": {"resolution": 64, "in_channels": 8}},
}
#: configs/instant-mesh-large.yaml of TencentARC/InstantMesh
INSTANTMESH_LARGE_YAML = """\
model_config:
  target: src.models.lrm_mesh.InstantMesh
  params:
    encoder_feat_dim: 768
    encoder_freeze: false
    encoder_model_name: facebook/dino-vitb16
    transformer_dim: 1024
    transformer_layers: 16
    transformer_heads: 16
    triplane_low_res: 32
    triplane_high_res: 64
    triplane_dim: 80
    rendering_samples_per_ray: 128
    grid_res: 128
    grid_scale: 2.1

infer_config:
  unet_path: ckpts/diffusion_pytorch_model.bin
  model_path: ckpts/instant_mesh_large.ckpt
  texture_resolution: 1024
  render_resolution: 512
"""


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def flux_snapshot(root: Path) -> Path:
    """FLUX.1-dev's configs (the parts the checks read), no weights."""
    write_json(root / "model_index.json", {
        "_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]})
    write_json(root / "transformer" / "config.json", {
        "_class_name": "FluxTransformer2DModel", "in_channels": 64, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
        "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56], "num_layers": 19, "num_single_layers": 38})
    write_json(root / "text_encoder" / "config.json", {"model_type": "clip_text_model", "hidden_size": 768})
    write_json(root / "text_encoder_2" / "config.json", {"model_type": "t5", "d_model": 4096})
    write_json(root / "vae" / "config.json", {"_class_name": "AutoencoderKL", "latent_channels": 16})
    return root


def clip_snapshot(root: Path) -> Path:
    write_json(root / "config.json", {"model_type": "clip", "architectures": ["CLIPModel"]})
    write_json(root / "preprocessor_config.json", {"crop_size": 224})
    return root


def trellis_snapshot(root: Path) -> Path:
    """TRELLIS-image-large: pipeline.json and every checkpoint's .json, the .safetensors empty."""
    write_json(root / "pipeline.json", TRELLIS_PIPELINE)
    for rel, cfg in TRELLIS_CKPTS.items():
        write_json(root / f"{rel}.json", cfg)
        (root / f"{rel}.safetensors").write_bytes(b"")
    return root


def dinov2_repo(root: Path) -> tuple[Path, Path]:
    """A facebookresearch/dinov2-shaped clone whose hubconf entry point builds a tiny module (and refuses
    ``pretrained=True``, which would download), and that module's state dict. Returns (repo, weights)."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    (root / "hubconf.py").write_text(textwrap.dedent('''\
        dependencies = ["torch"]
        import torch


        def dinov2_vitl14_reg(*, pretrained: bool = True, **kwargs):
            if pretrained:
                raise RuntimeError("would download the DINOv2 weights")
            return torch.nn.Linear(4, 3)
        '''))
    torch.manual_seed(7)
    weights = root.parent / "dinov2_vitl14_reg4_pretrain.pth"
    torch.save(torch.nn.Linear(4, 3).state_dict(), weights)
    return root, weights


def dino_snapshot(root: Path, hidden_size: int = 768) -> Path:
    """facebook/dino-vitb16's config files (no weights)."""
    write_json(root / "config.json", {"model_type": "vit", "hidden_size": hidden_size, "patch_size": 16})
    write_json(root / "preprocessor_config.json", {"image_processor_type": "ViTImageProcessor"})
    return root


def instantmesh_clone(root: Path, yaml_text: str = INSTANTMESH_LARGE_YAML) -> Path:
    """An InstantMesh clone: the files the adapter reads (src/models/lrm_mesh.py, configs/*.yaml), with
    the stand-in modules of :data:`INSTANTMESH_SRC` when a test imports it."""
    for rel, text in INSTANTMESH_SRC.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "instant-mesh-large.yaml").write_text(yaml_text)
    return root


#: InstantMesh's package ``src`` as stand-ins with upstream's import lines and call signatures:
#: src/utils/train_util.py instantiate_from_config (verbatim behaviour: target + params);
#: src/models/encoder/dino.py's transformers import line (line 31) and ViTPreTrainedModel / get_head_mask
#: call; src/models/encoder/dino_wrapper.py's ``ViTModel.from_pretrained(model_name, add_pooling_layer=False)``
#: and ``ViTImageProcessor.from_pretrained(model_name)``; lrm_mesh.InstantMesh's constructor arguments,
#: ``forward_planes(images, cameras)``, ``extract_mesh(planes, use_texture_map=False)`` and
#: ``init_flexicubes_geometry(device, fovy)``.
INSTANTMESH_SRC = {
    "src/__init__.py": "",
    "src/utils/__init__.py": "",
    "src/utils/train_util.py": '''\
        import importlib


        def instantiate_from_config(config):
            if "target" not in config:
                raise KeyError("Expected key `target` to instantiate.")
            module, cls = config["target"].rsplit(".", 1)
            return getattr(importlib.import_module(module), cls)(**config.get("params", dict()))
        ''',
    "src/models/__init__.py": "",
    "src/models/encoder/__init__.py": "",
    "src/models/encoder/dino.py": '''\
        import torch
        from transformers import PreTrainedModel, ViTConfig
        from transformers.pytorch_utils import find_pruneable_heads_and_indices, prune_linear_layer


        class ViTPreTrainedModel(PreTrainedModel):
            config_class = ViTConfig
            base_model_prefix = "vit"
        ''',
    "src/models/lrm_mesh.py": '''\
        import os

        import numpy as np
        import torch
        import torch.nn as nn
        from transformers import ViTImageProcessor, ViTModel

        from .encoder import dino


        class InstantMesh(nn.Module):
            def __init__(self, encoder_freeze=False, encoder_model_name="facebook/dino-vitb16", encoder_feat_dim=768,
                         transformer_dim=1024, transformer_layers=16, transformer_heads=16, triplane_low_res=32,
                         triplane_high_res=64, triplane_dim=80, rendering_samples_per_ray=128, grid_res=128, grid_scale=2.1):
                super().__init__()
                self.encoder = ViTModel.from_pretrained(encoder_model_name, add_pooling_layer=False)
                self.processor = ViTImageProcessor.from_pretrained(encoder_model_name)
                self.camera_embedder = nn.Linear(16, encoder_feat_dim)
                self.head_mask = dino.ViTPreTrainedModel.get_head_mask(self.encoder, None, transformer_layers)
                self.flexicubes_device = None
                self.hub_offline_at_init = os.environ.get("HF_HUB_OFFLINE")

            def init_flexicubes_geometry(self, device, fovy=50.0):
                self.flexicubes_device, self.fovy = device, fovy

            def forward_planes(self, images, cameras):
                return self.camera_embedder(cameras)

            def extract_mesh(self, planes, use_texture_map=False, **kwargs):
                v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) - 0.25
                f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
                return v, f, np.full((4, 3), 200, np.uint8)
        ''',
}


def write_fake_trellis(root: Path) -> Path:
    """A ``trellis`` package standing in for microsoft/TRELLIS's loading path (commit 6b0d647):
    ``TrellisImageTo3DPipeline.from_pretrained(path)`` reads ``pipeline.json``, takes each model from
    ``{path}/{v}.json`` + ``.safetensors`` when both are on disk and otherwise goes to the Hub
    (``pipelines/base.py``: here it raises instead), then builds its image encoder with
    ``torch.hub.load("facebookresearch/dinov2", name, pretrained=True)`` (``trellis_image_to_3d.py``
    ``_init_image_cond_model``); ``preprocess_image`` makes ``rembg.new_session("u2net")`` when
    ``rembg_session`` is None (which downloads: here it raises). ``trellis.models.from_pretrained(path)``
    likewise. What the loaded object does afterwards is the test's: ``BUILD(path, args)`` returns it."""
    pkg = root / "trellis"
    (pkg / "pipelines").mkdir(parents=True, exist_ok=True)
    (pkg / "models").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "pipelines" / "__init__.py").write_text(textwrap.dedent('''\
        import json
        import os

        import numpy as np
        import torch

        LOADS = []
        BUILD = None  # set by the test: (path, args) -> the pipeline's behaviour


        class TrellisImageTo3DPipeline:
            @staticmethod
            def from_pretrained(path):
                if not os.path.exists(f"{path}/pipeline.json"):
                    raise RuntimeError("would hf_hub_download pipeline.json")
                with open(f"{path}/pipeline.json") as f:
                    args = json.load(f)["args"]
                for k, v in args["models"].items():
                    if not (os.path.exists(f"{path}/{v}.json") and os.path.exists(f"{path}/{v}.safetensors")):
                        raise RuntimeError(f"would hf_hub_download {v}")
                self = TrellisImageTo3DPipeline()
                self.image_cond_model = torch.hub.load("facebookresearch/dinov2", args["image_cond_model"], pretrained=True)
                self.env_at_load = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
                self.sparse_structure_sampler_params = args["sparse_structure_sampler"]["params"]
                self.slat_sampler_params = args["slat_sampler"]["params"]
                self.behaviour = BUILD(path, args)
                self.devices = []
                LOADS.append(str(path))
                return self

            def to(self, device):
                self.devices.append(str(device))

            def preprocess_image(self, image):
                has_alpha = image.mode == "RGBA" and not np.all(np.array(image)[:, :, 3] == 255)
                if not has_alpha:
                    if getattr(self, "rembg_session", None) is None:
                        raise RuntimeError("rembg.new_session('u2net') would download u2net.onnx")
                    self.rembg_session.used += 1
                return image

            def run(self, image, seed=42, sparse_structure_sampler_params={}, slat_sampler_params={}, formats=None,
                    preprocess_image=True):
                if preprocess_image:
                    image = self.preprocess_image(image)
                return self.behaviour.run(image, seed=seed)
        '''))
    (pkg / "models" / "__init__.py").write_text(textwrap.dedent('''\
        import os

        BUILD = None  # set by the test: path -> module


        def from_pretrained(path, **kwargs):
            if not (os.path.exists(f"{path}.json") and os.path.exists(f"{path}.safetensors")):
                raise RuntimeError(f"would hf_hub_download {path}")
            return BUILD(path)
        '''))
    return root


def fake_rembg_module():
    """A ``rembg`` module with upstream's ``new_session(model_name="u2net", *args, sess_opts=None, **kwargs)``
    (``rembg/session_factory.py``) whose ``u2net_custom`` session takes ``model_path`` and, as
    ``rembg/sessions/u2net_custom.py`` (rembg 2.0.7x) does, refuses a path outside ``$U2NET_HOME``; any
    other model name would download (``sessions/u2net.py``: ``pooch.retrieve``), so it raises."""
    import os
    import types

    class Session:
        def __init__(self, model_path: str, home: str) -> None:
            self.model_path, self.home, self.used = model_path, home, 0

    def new_session(model_name: str = "u2net", *args, sess_opts=None, **kwargs):
        if model_name != "u2net_custom":
            raise RuntimeError(f"rembg session {model_name!r} would download its model")
        model_path = kwargs.get("model_path")
        if model_path is None:
            raise ValueError("model_path is required")
        home = os.path.abspath(os.path.expanduser(os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))))
        path = os.path.abspath(os.path.expanduser(model_path))
        if not path.startswith(home + os.sep):
            raise ValueError(f"model_path must be within the models directory: {home}")
        return Session(path, home)

    module = types.ModuleType("rembg")
    module.new_session = new_session
    return module


def install_fake_trellis(root: Path, monkeypatch):
    """:func:`write_fake_trellis` under ``root``, imported as ``trellis`` for one test (monkeypatch undoes it)."""
    import sys

    monkeypatch.syspath_prepend(str(write_fake_trellis(root)))
    for name in [n for n in sys.modules if n == "trellis" or n.startswith("trellis.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("trellis", "trellis.pipelines", "trellis.models"):  # recorded as absent: removed again after the test
        monkeypatch.setitem(sys.modules, name, None)
        del sys.modules[name]
    import trellis.models  # noqa: F401
    import trellis.pipelines  # noqa: F401

    return sys.modules["trellis"]
