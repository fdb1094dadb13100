"""Refuse instead of guessing: each generation checkpoint's configuration is read and checked
against what its adapter expects, before any weights are loaded, and the error names the file and
the key (:class:`CheckpointMismatch`). Only small JSON / YAML files are read here.

What is checked (upstream layouts read from their code: diffusers ``FluxPipeline`` and its
``save_pretrained`` layout; transformers ``CLIPModel`` / ``ViTModel``; TRELLIS ``pipelines/base.py``
and ``models/__init__.py`` (commit 6b0d647); InstantMesh ``configs/instant-mesh-*.yaml`` (commit
08822c5)):

* FLUX: ``model_index.json`` names ``FluxPipeline``; the transformer is a ``FluxTransformer2DModel`` whose
  ``joint_attention_dim`` is the T5 encoder's ``d_model``, ``pooled_projection_dim`` the CLIP text
  encoder's ``hidden_size``, ``in_channels`` four times the VAE's ``latent_channels`` (2x2 packing) and
  ``sum(axes_dims_rope)`` its ``attention_head_dim``.
* CLIP: ``config.json`` ``model_type`` is ``clip``; an image processor file is there.
* TRELLIS: ``pipeline.json`` names ``TrellisImageTo3DPipeline`` and every model the adapter uses; each
  model's ``ckpts/<name>.json`` and ``.safetensors`` are on disk (upstream's ``from_pretrained`` falls back
  to the Hub otherwise), the ``.json`` names the expected class, and the sparse structure agrees end to
  end: flow ``in_channels`` = decoder / encoder ``latent_channels``, encoder ``in_channels`` = decoder
  ``out_channels`` = 1; the samplers are ones Algorithm 3 reimplements.
* InstantMesh: ``model_config.target`` is ``src.models.lrm_mesh.InstantMesh`` (the mesh variant the
  adapter drives), the parameters it needs are there, and a checkpoint named for a variant (``_base`` /
  ``_large``) matches that variant's ``transformer_layers`` / ``triplane_dim``.
* DINO (InstantMesh's encoder): ``config.json`` ``model_type`` ``vit`` with ``hidden_size`` equal to the
  YAML's ``encoder_feat_dim``, and ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hiscene_sim.backends import BackendError

__all__ = [
    "CheckpointMismatch",
    "TRELLIS_MODEL_CLASSES",
    "check_clip_snapshot",
    "check_dino_snapshot",
    "check_flux_snapshot",
    "check_instantmesh_config",
    "check_trellis_encoder",
    "check_trellis_snapshot",
    "read_json",
    "read_yaml",
]

#: pipeline.json model name -> the class its checkpoint .json must name
TRELLIS_MODEL_CLASSES = {
    "sparse_structure_flow_model": "SparseStructureFlowModel",
    "sparse_structure_decoder": "SparseStructureDecoder",
    "slat_flow_model": "SLatFlowModel",
    "slat_decoder_mesh": "SLatMeshDecoder",
    "slat_decoder_gs": "SLatGaussianDecoder",
    "slat_decoder_rf": "SLatRadianceFieldDecoder",
}
#: the format TRELLIS's decode_slat makes -> the model it needs
TRELLIS_FORMAT_MODELS = {"mesh": "slat_decoder_mesh", "gaussian": "slat_decoder_gs", "radiance_field": "slat_decoder_rf"}
#: TRELLIS samplers (trellis/pipelines/samplers) whose update Algorithm 3's FlowSampler reproduces
TRELLIS_SAMPLERS = ("FlowEulerSampler", "FlowEulerCfgSampler", "FlowEulerGuidanceIntervalSampler")
INSTANTMESH_TARGET = "src.models.lrm_mesh.InstantMesh"
INSTANTMESH_PARAMS = ("encoder_model_name", "encoder_feat_dim", "transformer_dim", "transformer_layers", "triplane_dim",
                      "grid_res", "grid_scale")
#: variant -> (transformer_layers, triplane_dim), from configs/instant-mesh-{base,large}.yaml
INSTANTMESH_VARIANTS = {"base": (12, 40), "large": (16, 80)}


class CheckpointMismatch(BackendError):
    """A checkpoint file whose configuration is not what the adapter expects."""

    def __init__(self, file: Path, key: str, problem: str, config_key: str | None = None) -> None:
        self.file, self.key, self.problem, self.config_key = Path(file), key, problem, config_key
        where = f" (config key {config_key})" if config_key else ""
        super().__init__(f"{file}: {key}: {problem}{where}")


def _read_mapping(path: Path, config_key: str | None, kind: str, parse, errors: tuple) -> dict:
    """A mapping parsed from ``path`` by ``parse``; missing, unreadable (``errors``) or not a
    mapping -> CheckpointMismatch naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatch(path, "(file)", "not found", config_key)
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, *errors) as exc:
        raise CheckpointMismatch(path, "(file)", f"not readable {kind}: {exc}", config_key) from None
    if not isinstance(data, dict):
        raise CheckpointMismatch(path, "(file)", f"expected a {kind} object, got {type(data).__name__}", config_key)
    return data


def read_json(path: Path, config_key: str | None = None) -> dict:
    """A JSON object from ``path``; missing or malformed -> CheckpointMismatch naming the file."""
    return _read_mapping(path, config_key, "JSON", json.loads, (json.JSONDecodeError,))


def _get(data: dict, dotted: str, file: Path, config_key: str | None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise CheckpointMismatch(file, dotted, "missing", config_key)
        node = node[part]
    return node


def _expect(file: Path, key: str, value: Any, expected: Any, config_key: str | None, why: str = "") -> None:
    if value != expected:
        raise CheckpointMismatch(file, key, f"is {value!r}, expected {expected!r}{(' ' + why) if why else ''}", config_key)


# ------------------------------------------------------------------------------------ FLUX, CLIP
def check_flux_snapshot(path: Path, config_key: str = "generate.flux.weights") -> None:
    """A diffusers FLUX directory whose components fit together (see the module docstring)."""
    path = Path(path)
    index_file = path / "model_index.json"
    index = read_json(index_file, config_key)
    _expect(index_file, "_class_name", index.get("_class_name"), "FluxPipeline", config_key)
    configs = {}
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        if not index.get(name) or index[name][0] is None:
            raise CheckpointMismatch(index_file, name, "no component listed", config_key)
        configs[name] = (path / name / "config.json", read_json(path / name / "config.json", config_key))
    t_file, t = configs["transformer"]
    _expect(t_file, "_class_name", t.get("_class_name"), "FluxTransformer2DModel", config_key)
    t5_file, t5 = configs["text_encoder_2"]
    clip_file, clip = configs["text_encoder"]
    vae_file, vae = configs["vae"]
    _expect(t_file, "joint_attention_dim", _get(t, "joint_attention_dim", t_file, config_key),
            _get(t5, "d_model", t5_file, config_key), config_key, "(text_encoder_2/config.json d_model)")
    _expect(t_file, "pooled_projection_dim", _get(t, "pooled_projection_dim", t_file, config_key),
            _get(clip, "hidden_size", clip_file, config_key), config_key, "(text_encoder/config.json hidden_size)")
    _expect(t_file, "in_channels", _get(t, "in_channels", t_file, config_key),
            4 * int(_get(vae, "latent_channels", vae_file, config_key)), config_key,
            "(4 x vae/config.json latent_channels: FLUX packs 2x2 latent patches)")
    rope = t.get("axes_dims_rope")
    if rope is not None:
        _expect(t_file, "axes_dims_rope", sum(rope), _get(t, "attention_head_dim", t_file, config_key), config_key,
                "(their sum must be attention_head_dim)")


def check_clip_snapshot(path: Path, config_key: str = "generate.clip.weights") -> None:
    """A transformers CLIPModel directory with its image processor."""
    path = Path(path)
    config_file = path / "config.json"
    config = read_json(config_file, config_key)
    _expect(config_file, "model_type", config.get("model_type"), "clip", config_key)
    if not any((path / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        raise CheckpointMismatch(path / "preprocessor_config.json", "(file)", "not found: CLIPProcessor needs it", config_key)


# ------------------------------------------------------------------------------------ TRELLIS
def _trellis_ckpt(path: Path, rel: str, expected_class: str, config_key: str) -> dict:
    base = path / rel
    weights = Path(str(base) + ".safetensors")
    if not weights.is_file():
        raise CheckpointMismatch(weights, "(file)", "not found (TRELLIS would try the Hugging Face Hub instead)", config_key)
    cfg_file = Path(str(base) + ".json")
    cfg = read_json(cfg_file, config_key)
    _expect(cfg_file, "name", cfg.get("name"), expected_class, config_key)
    _get(cfg, "args", cfg_file, config_key)
    return cfg


def check_trellis_snapshot(path: Path, formats: tuple[str, ...] = ("mesh",), config_key: str = "generate.trellis.weights",
                           algorithm3: bool = False) -> dict:
    """TRELLIS-image-large's ``pipeline.json`` and the checkpoints it names; returns its ``args``.

    formats: the outputs the adapter asks ``decode_slat`` for (their decoders must be there).
    algorithm3: also require a sparse-structure sampler that Algorithm 3's FlowSampler reproduces."""
    path = Path(path)
    pipe_file = path / "pipeline.json"
    pipe = read_json(pipe_file, config_key)
    _expect(pipe_file, "name", pipe.get("name"), "TrellisImageTo3DPipeline", config_key)
    args = _get(pipe, "args", pipe_file, config_key)
    models = _get(pipe, "args.models", pipe_file, config_key)
    _get(pipe, "args.image_cond_model", pipe_file, config_key)
    wanted = ["sparse_structure_flow_model", "sparse_structure_decoder", "slat_flow_model"]
    wanted += [TRELLIS_FORMAT_MODELS[f] for f in formats if f in TRELLIS_FORMAT_MODELS]
    cfgs = {}
    for name in wanted:
        rel = models.get(name) if isinstance(models, dict) else None
        if not rel:
            raise CheckpointMismatch(pipe_file, f"args.models.{name}", "missing", config_key)
        cfgs[name] = _trellis_ckpt(path, rel, TRELLIS_MODEL_CLASSES[name], config_key)
    flow_file = Path(str(path / models["sparse_structure_flow_model"]) + ".json")
    dec_file = Path(str(path / models["sparse_structure_decoder"]) + ".json")
    flow_in = _get(cfgs["sparse_structure_flow_model"], "args.in_channels", flow_file, config_key)
    _expect(flow_file, "args.in_channels", flow_in,
            _get(cfgs["sparse_structure_decoder"], "args.latent_channels", dec_file, config_key), config_key,
            f"(the sparse-structure decoder's latent_channels, {dec_file.name})")
    _expect(dec_file, "args.out_channels", _get(cfgs["sparse_structure_decoder"], "args.out_channels", dec_file, config_key),
            1, config_key, "(one occupancy channel)")
    if algorithm3:
        name = _get(pipe, "args.sparse_structure_sampler.name", pipe_file, config_key)
        if name not in TRELLIS_SAMPLERS:
            raise CheckpointMismatch(pipe_file, "args.sparse_structure_sampler.name",
                                     f"is {name!r}; Algorithm 3 reproduces only {', '.join(TRELLIS_SAMPLERS)}", config_key)
    return args


def check_trellis_encoder(path: Path, rel: str, config_key: str = "generate.trellis.weights") -> dict:
    """The sparse-structure encoder ``<path>/<rel>.{json,safetensors}`` (not in pipeline.json), and that its
    latent matches the pipeline's decoder."""
    path = Path(path)
    enc = _trellis_ckpt(path, rel, "SparseStructureEncoder", config_key)
    enc_file = Path(str(path / rel) + ".json")
    _expect(enc_file, "args.in_channels", _get(enc, "args.in_channels", enc_file, config_key), 1, config_key,
            "(one occupancy channel)")
    pipe_file = path / "pipeline.json"
    models = _get(read_json(pipe_file, config_key), "args.models", pipe_file, config_key)
    if isinstance(models, dict) and models.get("sparse_structure_decoder"):
        dec_file = Path(str(path / models["sparse_structure_decoder"]) + ".json")
        dec = read_json(dec_file, config_key)
        _expect(enc_file, "args.latent_channels", _get(enc, "args.latent_channels", enc_file, config_key),
                _get(dec, "args.latent_channels", dec_file, config_key), config_key, f"(the decoder's, {dec_file.name})")
    return enc


# ------------------------------------------------------------------------------------ InstantMesh
def read_yaml(path: Path, config_key: str | None = None) -> dict:
    import yaml

    return _read_mapping(path, config_key, "YAML", yaml.safe_load, (yaml.YAMLError,))


def check_instantmesh_config(config: Path, checkpoint: Path | None = None,
                             config_key: str = "generate.instantmesh.config") -> dict:
    """InstantMesh's model YAML (and its agreement with the checkpoint's variant); returns
    ``model_config.params``."""
    config = Path(config)
    data = read_yaml(config, config_key)
    target = _get(data, "model_config.target", config, config_key)
    _expect(config, "model_config.target", target, INSTANTMESH_TARGET, config_key,
            "(the adapter drives the FlexiCubes mesh variant: forward_planes + extract_mesh)")
    params = _get(data, "model_config.params", config, config_key)
    for name in INSTANTMESH_PARAMS:
        _get(data, f"model_config.params.{name}", config, config_key)
    if checkpoint is not None:
        stem = Path(checkpoint).stem.lower()
        for variant, (layers, tri) in INSTANTMESH_VARIANTS.items():
            if stem.endswith(f"_{variant}") or stem.endswith(f"-{variant}"):
                why = f"for {Path(checkpoint).name} (instant-mesh-{variant}.yaml)"
                _expect(config, "model_config.params.transformer_layers", params["transformer_layers"], layers, config_key, why)
                _expect(config, "model_config.params.triplane_dim", params["triplane_dim"], tri, config_key, why)
    return params


def check_dino_snapshot(path: Path, feat_dim: int | None = None, config_key: str = "generate.instantmesh.dino") -> None:
    """InstantMesh's DINO encoder snapshot (facebook/dino-vitb16 layout)."""
    path = Path(path)
    config_file = path / "config.json"
    config = read_json(config_file, config_key)
    _expect(config_file, "model_type", config.get("model_type"), "vit", config_key)
    if feat_dim is not None:
        _expect(config_file, "hidden_size", config.get("hidden_size"), int(feat_dim), config_key,
                "(the InstantMesh YAML's encoder_feat_dim)")
    if not (path / "preprocessor_config.json").is_file():
        raise CheckpointMismatch(path / "preprocessor_config.json", "(file)", "not found: ViTImageProcessor needs it",
                                 config_key)
