"""Issue 17, InstantMesh: the checkpoint is read with ``weights_only=True`` and the opt-in to full unpickling is
reachable from the command line and the config; the model YAML and the DINO snapshot are checked first; the
clone's transformers-4-only imports work under transformers 5 through the adapter's shims; the encoder comes
from a local snapshot with the Hub offline.

The clone is a stand-in (tests/generate_fixtures.py ``INSTANTMESH_SRC``) with upstream's import lines and call
signatures; the encoder is a real, tiny transformers ViT saved like facebook/dino-vitb16."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.generate import instantmesh as im  # noqa: E402
from hiscene_sim.generate.checkpoints import CheckpointMismatch  # noqa: E402
from hiscene_sim.generate.instantmesh_compat import find_pruneable_heads_and_indices, get_head_mask  # noqa: E402
from tests.generate_fixtures import instantmesh_clone  # noqa: E402

TINY_YAML = """\
model_config:
  target: src.models.lrm_mesh.InstantMesh
  params:
    encoder_feat_dim: 32
    encoder_freeze: false
    encoder_model_name: facebook/dino-vitb16
    transformer_dim: 64
    transformer_layers: 2
    transformer_heads: 2
    triplane_dim: 8
    grid_res: 16
    grid_scale: 2.1
"""


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """The clone, its package ``src`` importable only through the adapter (repo=), forgotten afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
        monkeypatch.delitem(sys.modules, name)
    yield instantmesh_clone(tmp_path / "InstantMesh", TINY_YAML)
    for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
        del sys.modules[name]


@pytest.fixture
def dino_and_ckpts(tmp_path):
    """A tiny ViT saved as facebook/dino-vitb16 is, and two Lightning-style checkpoints of the stand-in model:
    one plain (state_dict + counters), one carrying a pickled object (as Lightning's hyper_parameters do)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32,
                             patch_size=16), add_pooling_layer=False)
    dino = tmp_path / "dino-vitb16"
    vit.save_pretrained(str(dino))
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(dino))
    torch.manual_seed(1)
    trained = ViTModel(vit.config, add_pooling_layer=False)  # the checkpoint's encoder weights differ from the snapshot's
    camera = torch.nn.Linear(16, 32)
    state = {f"encoder.{k}": v for k, v in trained.state_dict().items()}
    state.update({f"camera_embedder.{k}": v for k, v in camera.state_dict().items()})
    lightning = {"state_dict": {f"lrm_generator.{k}": v for k, v in state.items()}, "epoch": 3, "global_step": 1200}
    safe = tmp_path / "tiny.ckpt"
    torch.save(lightning, safe)
    pickled = tmp_path / "tiny_pickled.ckpt"
    torch.save({**lightning, "hyper_parameters": argparse.Namespace(lr=4e-5)}, pickled)
    return dino, safe, pickled, state


def _views():
    from hiscene_sim.render.cameras import Camera, look_at

    cams = [Camera(32, 32, look_at((2 * np.cos(a), 2 * np.sin(a), 0.5), (0, 0, 0)), "perspective", fov_y_deg=30.0)
            for a in (0.0, 2.0, 4.0)]
    return [np.full((32, 32, 3), 180, np.uint8)] * 3, cams


def test_loads_a_safe_checkpoint_offline_with_the_transformers5_shims(clone, dino_and_ckpts):
    dino, safe, _, state = dino_and_ckpts
    rec = im.InstantMeshReconstructor(weights=safe, repo=clone, dino=dino, device="cpu")
    model = rec.model
    # built from the YAML with the local encoder, with the Hub offline, then the checkpoint's weights loaded
    assert model.hub_offline_at_init == "1"
    assert torch.equal(model.encoder.embeddings.patch_embeddings.projection.weight,
                       state["encoder.embeddings.patch_embeddings.projection.weight"])
    assert model.flexicubes_device == "cpu" and model.fovy == pytest.approx(30.0)
    # the clone's dino.py imported under transformers 5 (its removed import supplied), get_head_mask given
    dino_module = sys.modules["src.models.encoder.dino"]
    assert callable(dino_module.find_pruneable_heads_and_indices)
    assert model.head_mask == [None, None]
    mesh = rec.reconstruct(*_views())
    assert len(mesh.faces) == 4 and "instantmesh_frame" in mesh.metadata


def test_a_checkpoint_that_needs_pickle_is_refused_unless_trusted_from_the_cli(clone, dino_and_ckpts, tmp_path):
    from hiscene_sim.cli import build_parser
    from hiscene_sim.generate.commands import generate_config_from_args
    from hiscene_sim.generate.loading import build_model

    dino, _, pickled, state = dino_and_ckpts
    with pytest.raises(BackendError) as info:
        im.InstantMeshReconstructor(weights=pickled, repo=clone, dino=dino, device="cpu")
    msg = str(info.value)
    assert str(pickled) in msg and "weights_only=True" in msg
    assert "--trust-checkpoint" in msg and "generate.instantmesh.trust_checkpoint" in msg
    assert "src.models.lrm_mesh" not in sys.modules  # refused before InstantMesh was imported or built

    # the opt-in, from the command line through the config to the loader
    argv = ["generate", "--from-scene", str(tmp_path / "s.glb"), "--out", str(tmp_path / "o"), "--regenerate", "trellis",
            "--instantmesh-weights", str(pickled), "--instantmesh-repo", str(clone), "--instantmesh-dino", str(dino),
            "--trust-checkpoint"]
    config = generate_config_from_args(build_parser().parse_args(argv))
    assert config.trust_instantmesh_checkpoint
    rec = build_model("instantmesh", config)
    assert torch.equal(rec.model.camera_embedder.weight, state["camera_embedder.weight"])
    untrusted = generate_config_from_args(build_parser().parse_args(argv[:-1]))
    with pytest.raises(BackendError, match="--trust-checkpoint"):
        build_model("instantmesh", untrusted)


def test_yaml_and_encoder_are_checked_before_loading(clone, dino_and_ckpts, tmp_path):
    dino, safe, _, _ = dino_and_ckpts
    nerf = tmp_path / "instant-nerf-large.yaml"
    nerf.write_text(TINY_YAML.replace("src.models.lrm_mesh.InstantMesh", "src.models.lrm.InstantNeRF"))
    with pytest.raises(CheckpointMismatch) as info:
        im.InstantMeshReconstructor(weights=safe, repo=clone, config=nerf, dino=dino, device="cpu")
    assert info.value.file == nerf and info.value.key == "model_config.target"
    wide = tmp_path / "wide.yaml"
    wide.write_text(TINY_YAML.replace("encoder_feat_dim: 32", "encoder_feat_dim: 768"))
    with pytest.raises(CheckpointMismatch) as info:
        im.InstantMeshReconstructor(weights=safe, repo=clone, config=wide, dino=dino, device="cpu")
    assert info.value.file == Path(dino) / "config.json" and info.value.key == "hidden_size"
    assert "src.models.lrm_mesh" not in sys.modules


def test_compat_shims_behave_as_transformers4():
    """find_pruneable_heads_and_indices: with heads {0} pruned before, pruning {0, 2} of the original four
    leaves (original) heads 1 and 3, which sit at positions 0 and 2 of the three-head layer; the index keeps
    their rows, and transformers' prune_linear_layer (still there) cuts a real layer with it."""
    from transformers.pytorch_utils import prune_linear_layer

    heads, index = find_pruneable_heads_and_indices({0, 2}, n_heads=3, head_size=2, already_pruned_heads={0})
    assert heads == {2} and index.tolist() == [0, 1, 4, 5]
    layer = torch.nn.Linear(4, 6)
    pruned = prune_linear_layer(layer, index)
    assert torch.equal(pruned.weight, layer.weight[[0, 1, 4, 5]])
    assert get_head_mask(torch.nn.Linear(1, 1), None, 3) == [None, None, None]
    mask = get_head_mask(torch.nn.Linear(1, 1), torch.tensor([1.0, 0.0]), 3)
    assert mask.shape == (3, 1, 2, 1, 1) and mask[:, 0, 1].abs().sum() == 0
