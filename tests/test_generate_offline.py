"""Issue 17: nothing fetched at run time, every needed file checked before any work, checkpoints' configs
checked against what each adapter expects, models loaded once and released.

* the config loader reads every key docs/install-gpu.md names, and the docs name every key;
* ``hiscene generate --check`` lists each missing file with its key, flag and path (exit 1), passes on
  tiny folders laid out like the real snapshots (exit 0), and reports a mismatched config by file and key;
  a run without ``--check`` fails listing all of them, before any work;
* TRELLIS loads through upstream's loading path (a stand-in ``trellis`` package with its exact
  ``from_pretrained`` / ``torch.hub.load`` / rembg calls, tests/generate_fixtures.py) with the Hub offline,
  DINOv2 from a local clone and state dict, and rembg only from a local model (refused otherwise);
* the run's models are loaded once (TRELLIS shared by the scene, regeneration and background stages) and
  released after their last use.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.cli import main  # noqa: E402
from hiscene_sim.generate import trellis as tr  # noqa: E402
from hiscene_sim.generate.checkpoints import (  # noqa: E402
    CheckpointMismatch,
    check_flux_snapshot,
    check_trellis_encoder,
    check_trellis_snapshot,
)
from hiscene_sim.generate.config import ALL_KEYS, PATH_KEYS, SWITCH_KEYS, GenerateConfig  # noqa: E402
from hiscene_sim.generate.loading import release_after  # noqa: E402
from tests.generate_fixtures import (  # noqa: E402
    dino_snapshot,
    dinov2_repo,
    fake_rembg_module,
    flux_snapshot,
    install_fake_trellis,
    instantmesh_clone,
    trellis_snapshot,
    write_json,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "install-gpu.md"
KEY_RE = re.compile(r"\b(?:generate|completion)\.[a-z0-9_]+\.[a-z0-9_]+\b")


@pytest.fixture(autouse=True)
def no_env_settings(monkeypatch):
    for setting in ALL_KEYS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setitem(sys.modules, "src", None)  # no InstantMesh clone importable unless a test puts one


def _tree(values: dict[str, object]) -> dict:
    tree: dict = {}
    for key, value in values.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# ------------------------------------------------------------------------------------ the config keys
def test_config_reads_every_key_the_docs_name(tmp_path):
    documented = set(KEY_RE.findall(DOC.read_text(encoding="utf-8")))
    assert set(ALL_KEYS) <= documented, f"undocumented keys: {set(ALL_KEYS) - documented}"
    values = {k: (True if k in SWITCH_KEYS else str(tmp_path / k.replace(".", "_"))) for k in documented}
    config = GenerateConfig.load(write_json(tmp_path / "all.json", _tree(values)), environ={})
    for key in documented:  # a documented key the loader does not know raises KeyError here
        assert config.value(key) == (True if key in SWITCH_KEYS else Path(values[key])), key
    # precedence: command line over environment over file; switches from the environment
    env = {PATH_KEYS["generate.instantmesh.repo"].env: "/env/InstantMesh", SWITCH_KEYS["generate.flux.offload"].env: "0"}
    config = GenerateConfig.load(tmp_path / "all.json", {"generate.instantmesh.config": "/cli/x.yaml"}, environ=env)
    assert config.path("generate.instantmesh.repo") == Path("/env/InstantMesh")
    assert config.path("generate.instantmesh.config") == Path("/cli/x.yaml")
    assert config.flux_offload is False and config.trust_instantmesh_checkpoint is True
    # a typo is an error naming the key, not a silently ignored setting
    with pytest.raises(BackendError, match=r"generate\.instantmesh\.confg"):
        GenerateConfig.load(write_json(tmp_path / "typo.json", _tree({"generate.instantmesh.confg": "x"})), environ={})
    with pytest.raises(BackendError, match="generate.flux.offload must be true or false"):
        GenerateConfig.load(write_json(tmp_path / "bad.json", _tree({"generate.flux.offload": "maybe"})), environ={})


# ------------------------------------------------------------------------------------ --check
def _weights(root: Path) -> dict[str, Path]:
    return {
        "generate.flux.weights": root / "FLUX.1-dev",
        "generate.trellis.weights": root / "TRELLIS-image-large",
        "generate.trellis.rembg_model": root / "u2net" / "u2net.onnx",
        "generate.trellis.dinov2_repo": root / "dinov2",
        "generate.trellis.dinov2_weights": root / "dinov2_vitl14_reg4_pretrain.pth",
        "generate.instantmesh.weights": root / "instant_mesh_large.ckpt",
        "generate.instantmesh.repo": root / "InstantMesh",
        "generate.instantmesh.dino": root / "dino-vitb16",
    }


def _lay_out(paths: dict[str, Path]) -> None:
    flux_snapshot(paths["generate.flux.weights"])
    trellis_snapshot(paths["generate.trellis.weights"])
    paths["generate.trellis.rembg_model"].parent.mkdir(parents=True)
    paths["generate.trellis.rembg_model"].write_bytes(b"onnx")
    dinov2_repo(paths["generate.trellis.dinov2_repo"])
    paths["generate.instantmesh.weights"].write_bytes(b"ckpt")
    instantmesh_clone(paths["generate.instantmesh.repo"])
    dino_snapshot(paths["generate.instantmesh.dino"])


def test_check_lists_every_missing_file_with_its_key_then_passes(tmp_path, capsys):
    paths = _weights(tmp_path / "models")
    config = write_json(tmp_path / "weights.json", _tree({k: str(v) for k, v in paths.items()}))
    out = tmp_path / "out"
    argv = ["generate", "a desk with a mug", "--out", str(out), "--config", str(config), "--regenerate", "trellis"]

    assert main(argv + ["--check"]) == 1
    text = capsys.readouterr().out
    derived_yaml = paths["generate.instantmesh.repo"] / "configs" / "instant-mesh-large.yaml"
    for key, path in [*paths.items(), ("generate.instantmesh.config", derived_yaml)]:
        block = next(b for b in text.split("\n  MISSING ")[1:] if b.startswith(key + " "))
        assert str(path) in block and ALL_KEYS[key].flag in block and ALL_KEYS[key].what in block, (key, block)
    assert "9 of 9 needed files missing" in text and "generate.clip.weights" not in text  # CLIP is optional
    assert not out.exists()
    # the run itself refuses the same way, every file at once, before any work
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert all(key in err for key in paths) and not out.exists()

    _lay_out(paths)  # folders laid out like the real snapshots (configs only)
    assert main(argv + ["--check"]) == 0
    assert "all 9 needed files present" in capsys.readouterr().out
    assert not out.exists()

    # a snapshot whose components do not fit: named by file and key
    transformer = paths["generate.flux.weights"] / "transformer" / "config.json"
    cfg = json.loads(transformer.read_text())
    write_json(transformer, {**cfg, "joint_attention_dim": 2048})
    assert main(argv + ["--check"]) == 1
    text = capsys.readouterr().out
    assert f"{transformer}: joint_attention_dim: is 2048, expected 4096" in text
    write_json(transformer, cfg)
    # an InstantMesh base checkpoint with the large model's YAML (the default when no base YAML is there)
    base = paths["generate.instantmesh.weights"].rename(tmp_path / "models" / "instant_mesh_base.ckpt")
    assert main(argv + ["--check", "--instantmesh-weights", str(base)]) == 1
    text = capsys.readouterr().out
    assert f"{derived_yaml}: model_config.params.transformer_layers: is 16, expected 12" in text


def test_check_needs_rembg_only_for_an_image_without_a_mask(tmp_path, capsys):
    from PIL import Image

    paths = _weights(tmp_path / "models")
    _lay_out(paths)
    paths["generate.trellis.rembg_model"].unlink()
    config = write_json(tmp_path / "weights.json", _tree({k: str(v) for k, v in paths.items()}))
    rgb, rgba = tmp_path / "iso.png", tmp_path / "iso_masked.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(rgb)
    masked = np.full((8, 8, 4), 90, np.uint8)
    masked[:2, :, 3] = 0
    Image.fromarray(masked).save(rgba)
    base = ["generate", "--out", str(tmp_path / "o"), "--config", str(config), "--check"]
    assert main(base + ["--from-image", str(rgba)]) == 0
    assert "generate.trellis.rembg_model" not in capsys.readouterr().out
    assert main(base + ["--from-image", str(rgb)]) == 1
    assert "MISSING generate.trellis.rembg_model" in capsys.readouterr().out
    # --from-scene needs no model file at all
    assert main(["generate", "--from-scene", str(tmp_path / "scene.glb"), "--out", str(tmp_path / "o"), "--check"]) == 0
    assert "needs no model files" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ refuse instead of guessing
def test_trellis_configs_are_checked_by_file_and_key(tmp_path):
    weights = trellis_snapshot(tmp_path / "TRELLIS-image-large")
    args = check_trellis_snapshot(weights, ("mesh", "gaussian"), algorithm3=True)
    assert args["image_cond_model"] == "dinov2_vitl14_reg"
    check_trellis_encoder(weights, tr.SS_ENCODER_CKPT)

    def refused(edit, file: str, key: str, **kwargs):
        path = weights / file
        original = path.read_bytes() if path.exists() else None
        edit(path)
        with pytest.raises(CheckpointMismatch) as info:
            check_trellis_snapshot(weights, ("mesh", "gaussian"), **kwargs)
            check_trellis_encoder(weights, tr.SS_ENCODER_CKPT)
        assert info.value.file == path and info.value.key == key and "generate.trellis.weights" in str(info.value)
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(original)

    def set_json(dotted, value):
        def edit(path):
            data = json.loads(path.read_text())
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
            path.write_text(json.dumps(data))
        return edit

    refused(set_json("name", "TrellisTextTo3DPipeline"), "pipeline.json", "name")
    refused(set_json("args.models.slat_decoder_gs", None), "pipeline.json", "args.models.slat_decoder_gs")
    refused(set_json("name", "SLatFlowModel"), "ckpts/ss_flow_img_dit_L_16l8_fp16.json", "name")
    refused(set_json("args.in_channels", 16), "ckpts/ss_flow_img_dit_L_16l8_fp16.json", "args.in_channels")
    refused(set_json("args.sparse_structure_sampler.name", "HeunSampler"), "pipeline.json",
            "args.sparse_structure_sampler.name", algorithm3=True)
    refused(lambda p: p.unlink(), "ckpts/slat_dec_mesh_swin8_B_64l8m256c_fp16.safetensors", "(file)")
    refused(set_json("args.latent_channels", 4), "ckpts/ss_enc_conv3d_16l8_fp16.json", "args.latent_channels")


def test_flux_snapshot_layout_and_mismatch(tmp_path):
    path = flux_snapshot(tmp_path / "flux")
    check_flux_snapshot(path)
    vae = path / "vae" / "config.json"
    write_json(vae, {"latent_channels": 4})
    with pytest.raises(CheckpointMismatch) as info:
        check_flux_snapshot(path)
    assert info.value.file == path / "transformer" / "config.json" and info.value.key == "in_channels"
    assert "latent_channels" in str(info.value) and "generate.flux.weights" in str(info.value)


# ------------------------------------------------------------------------------------ TRELLIS, offline
@pytest.fixture
def fake_trellis(tmp_path, monkeypatch):
    return install_fake_trellis(tmp_path / "site", monkeypatch)


class Behaviour:
    """What the loaded stand-in pipeline returns: a box mesh in TRELLIS's frame."""

    def __init__(self):
        self.calls = 0

    def run(self, image, seed):
        from tests.test_generate_adapters import _box_outputs

        self.calls += 1
        return _box_outputs()[0]


def _rgb() -> np.ndarray:
    return np.full((16, 16, 3), 200, np.uint8)


def _rgba_with_mask() -> np.ndarray:
    im = np.full((16, 16, 4), 200, np.uint8)
    im[:4, :, 3] = 0
    return im


def test_trellis_loads_offline_with_local_dinov2_and_local_rembg(tmp_path, fake_trellis, monkeypatch):
    weights = trellis_snapshot(tmp_path / "TRELLIS-image-large")
    repo, state = dinov2_repo(tmp_path / "dinov2")
    fake_trellis.pipelines.BUILD = lambda path, args: Behaviour()
    hub_load = torch.hub.load
    env_before = os.environ.get("HF_HUB_OFFLINE")

    with pytest.raises(BackendError, match="generate.trellis.dinov2_repo"):  # refused before TRELLIS is imported
        tr.TrellisImageTo3D(weights=weights, device="cpu")
    assert fake_trellis.pipelines.LOADS == []

    adapter = tr.TrellisImageTo3D(weights=weights, dinov2_repo=repo, dinov2_weights=state, device="cpu")
    pipe = adapter.pipeline
    assert fake_trellis.pipelines.LOADS == [str(weights)] and pipe.devices == ["cpu"]
    assert pipe.env_at_load == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the Hub was offline
    assert os.environ.get("HF_HUB_OFFLINE") == env_before and torch.hub.load is hub_load  # and restored
    # DINOv2 built from the local clone (pretrained=False) with the local state dict
    assert torch.equal(pipe.image_cond_model.weight, torch.load(state, weights_only=True)["weight"])

    # an RGB image would make TRELLIS download rembg's model: refused, before TRELLIS runs
    with pytest.raises(BackendError, match="generate.trellis.rembg_model"):
        adapter.generate([_rgb()], seed=0)
    assert pipe.behaviour.calls == 0
    gen = adapter.generate([_rgba_with_mask()], seed=0)  # a mask: TRELLIS crops on the alpha, no rembg
    assert pipe.behaviour.calls == 1 and len(gen.mesh.faces) == 12

    # with a local u2net.onnx: rembg's u2net_custom session over that file (rembg accepts it from $U2NET_HOME)
    monkeypatch.setitem(sys.modules, "rembg", fake_rembg_module())
    model = tmp_path / "u2net" / "u2net.onnx"
    model.parent.mkdir()
    model.write_bytes(b"onnx")
    home_before = os.environ.get("U2NET_HOME")
    adapter = tr.TrellisImageTo3D(weights=weights, dinov2_repo=repo, dinov2_weights=state, device="cpu", rembg_model=model)
    adapter.generate([_rgb()], seed=0)
    session = adapter.pipeline.rembg_session
    assert session.model_path == str(model.resolve()) and session.home == str(model.parent.resolve()) and session.used == 1
    assert os.environ.get("U2NET_HOME") == home_before

    # a checkpoint missing on disk would send TRELLIS to the Hub: refused by file before it loads
    (weights / "ckpts" / "slat_flow_img_dit_L_64l8p2_fp16.safetensors").unlink()
    with pytest.raises(CheckpointMismatch, match="slat_flow_img_dit_L_64l8p2_fp16.safetensors"):
        tr.TrellisImageTo3D(weights=weights, dinov2_repo=repo, dinov2_weights=state, device="cpu")
    assert len(fake_trellis.pipelines.LOADS) == 2


def test_trellis_is_loaded_once_per_run_and_released_after_its_last_stage(tmp_path, fake_trellis):
    from hiscene_sim.stages import Models

    weights = trellis_snapshot(tmp_path / "TRELLIS-image-large")
    repo, state = dinov2_repo(tmp_path / "dinov2")
    fake_trellis.pipelines.BUILD = lambda path, args: Behaviour()
    config = GenerateConfig(regeneration_backend="trellis", weights={
        "generate.trellis.weights": weights, "generate.trellis.dinov2_repo": repo, "generate.trellis.dinov2_weights": state})
    plan = ("image", "scene3d", "parse", "complete", "label", "regenerate", "background", "export", "validate")
    flux = object()
    models = Models(config, {"flux": flux}, plan)
    scene = models.get("trellis")  # the scene stage
    assert models.done("scene3d") == [] and models.done("parse") == []
    assert models.get("trellis") is scene  # the regeneration stage shares it (stages.regenerate passes it on)
    assert models.done("regenerate") == []  # the background stage uses it too
    assert models.get("trellis") is scene
    gone = weakref.ref(scene)
    del scene
    assert models.done("background") == ["trellis"]  # released after its last stage; a given model is the caller's
    gc.collect()
    assert gone() is None and models.built == {"flux": flux}
    assert fake_trellis.pipelines.LOADS == [str(weights)]


def test_release_policy():
    config = GenerateConfig(regeneration_backend="trellis")
    plan = ["image", "scene3d", "parse", "complete", "label", "regenerate", "background", "export"]
    # FLUX on the accelerator (34 GB) is let go after the image stage and loaded again for the background
    assert release_after("image", plan, config, ["flux", "clip"]) == ["clip", "flux"]
    assert release_after("scene3d", plan, config, ["trellis"]) == []
    assert release_after("regenerate", plan, config, ["trellis", "instantmesh"]) == ["instantmesh"]
    assert release_after("background", plan, config, ["flux", "trellis"]) == ["flux", "trellis"]
    # offloaded, FLUX holds no GPU memory between calls: kept for the background
    offload = GenerateConfig(switches={"generate.flux.offload": True})
    assert release_after("image", plan, offload, ["flux", "clip"]) == ["clip"]
    # without Algorithm 3 the regeneration stage uses no model
    assert release_after("scene3d", plan, GenerateConfig(), ["trellis"]) == []
    assert release_after("scene3d", plan[:-2], GenerateConfig(), ["trellis"]) == ["trellis"]
