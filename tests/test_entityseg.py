"""The ``entityseg`` (CropFormer) adapter without detectron2, which does not install from PyPI.

Real pieces: fvcore's ``CfgNode`` (the class detectron2's config subclasses; its
``merge_from_file`` resolves ``_BASE_``) and ``TransformList`` / ``ScaleTransform``, torch, the
adapter's own code. Stand-ins, each with upstream's call signature and read from upstream's source:

* ``get_cfg``: a subset of detectron2's defaults (``detectron2/config/defaults.py``);
* ``add_deeplab_config``: the keys of ``detectron2/projects/deeplab/config.py``;
* ``add_maskformer2_config``: a subset of ``Entityv2/CropFormer/mask2former/config.py`` (its
  ``ENTITY`` keys with their defaults);
* ``AugInput`` / ``AugmentationList`` / ``ResizeShortestEdge``: ``detectron2/data/transforms/
  augmentation.py`` and ``augmentation_impl.py`` (shortest side to ``short_edge_length``, longest
  capped at ``max_size``, rounded with ``int(x + 0.5)``);
* ``EntityCrop`` / ``EntityCropTransform`` / ``BatchResizeShortestEdge``: ``Entityv2/CropFormer/
  mask2former/data/dataset_mappers/crop_augmentations.py`` (the crop grid of ``get_crop_axises``);
* the model: reads its input as ``CropFormer.forward`` (``mask2former/cropformer_model.py``) does
  (``crop_region[0]`` for the crops' size, ``image_crop`` one crop per region) and answers with
  ``Instances``-like ``pred_masks`` / ``scores`` at (height, width); it segments by colour, and
  checks that every crop shows the original image inside its ``crop_region``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:  # fvcore is on PyPI (detectron2 builds on it); without it only the config / transform tests skip
    from fvcore.common.config import CfgNode as CN
    from fvcore.transforms.transform import ScaleTransform, Transform, TransformList
except ImportError:  # pragma: no cover
    CN = ScaleTransform = TransformList = None
    Transform = object
needs_fvcore = pytest.mark.skipif(CN is None, reason="fvcore (detectron2's CfgNode and Transform) is not installed")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.render.cameras import Camera  # noqa: E402
from hiscene_sim.render.result import RenderResult  # noqa: E402
from hiscene_sim.segment import SEGMENTERS  # noqa: E402
from hiscene_sim.segment.cropformer import (  # noqa: E402
    INSTALL_DOC,
    CropFormerApi,
    build_config,
    cropformer_inputs,
    import_cropformer,
    predict,
    resolve_device,
)
from hiscene_sim.segment.entityseg import EntitySegSegmenter, labels_from_masks  # noqa: E402

# ----------------------------------------------------------------------------- config stand-ins


def get_cfg():
    """A subset of detectron2's defaults (detectron2/config/defaults.py), small test sizes."""
    cfg = CN()
    cfg.VERSION = 2
    cfg.MODEL = CN()
    cfg.MODEL.DEVICE = "cuda"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    cfg.MODEL.RESNETS = CN()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.SEM_SEG_HEAD = CN()
    cfg.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
    cfg.INPUT = CN()
    cfg.INPUT.FORMAT = "BGR"
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    cfg.INPUT.MIN_SIZE_TEST = 800
    cfg.INPUT.MAX_SIZE_TEST = 1333
    cfg.INPUT.CROP = CN({"ENABLED": False})
    cfg.SOLVER = CN({"BASE_LR": 0.001})
    cfg.DATASETS = CN({"TRAIN": (), "TEST": ()})
    return cfg


def add_deeplab_config(cfg):
    """The keys detectron2/projects/deeplab/config.py adds."""
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
    cfg.MODEL.RESNETS.RES4_DILATION = 1
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
    cfg.MODEL.RESNETS.STEM_TYPE = "deeplab"


def add_maskformer2_config(cfg):
    """A subset of CropFormer's mask2former/config.py: the MASK_FORMER test switches and ENTITY."""
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
    cfg.MODEL.MASK_FORMER = CN()
    cfg.MODEL.MASK_FORMER.TEST = CN({"SEMANTIC_ON": True, "INSTANCE_ON": False})
    cfg.ENTITY = CN()
    cfg.ENTITY.ENABLE = False
    cfg.ENTITY.CROP_AREA_RATIO = 0.7
    cfg.ENTITY.CROP_STRIDE_RATIO = 0.6
    cfg.ENTITY.CROP_SAMPLE_NUM_TRAIN = 1
    cfg.ENTITY.CROP_SAMPLE_NUM_TEST = 4


# CropFormer's entity_segmentation/Base-Mask2Former.yaml sets the deeplab keys ("not used"), then
# cropformer_*.yaml names the architecture; test sizes instead of 800 / 1333.
BASE_YAML = """\
ENTITY:
  ENABLE: True
MODEL:
  RESNETS:
    STEM_TYPE: "basic"  # not used
    RES5_MULTI_GRID: [1, 1, 1]  # not used
INPUT:
  FORMAT: "RGB"
  DATASET_MAPPER_NAME: "entity_crop"
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 256
"""
CROPFORMER_YAML = """\
_BASE_: Base-Mask2Former.yaml
MODEL:
  META_ARCHITECTURE: "CropFormer"
  MASK_FORMER:
    TEST:
      SEMANTIC_ON: False
      INSTANCE_ON: True
"""


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "Base-Mask2Former.yaml").write_text(BASE_YAML)
    (tmp_path / "cropformer.yaml").write_text(CROPFORMER_YAML)
    (tmp_path / "model.pth").write_bytes(b"\0")  # never read: the predictor stand-in loads nothing
    return tmp_path / "cropformer.yaml", tmp_path / "model.pth"


# ----------------------------------------------------------------------------- transform stand-ins


class AugInput:
    """detectron2.data.transforms.AugInput(image): ``transform(tfm)`` applies a transform in place."""

    def __init__(self, image):
        self.image = image

    def transform(self, tfm):
        self.image = tfm.apply_image(self.image)


class AugmentationList:
    """detectron2.data.transforms.AugmentationList(augs)(aug_input) -> TransformList."""

    def __init__(self, augs):
        self.augs = augs

    def __call__(self, aug_input):
        tfms = []
        for aug in self.augs:
            tfm = aug.get_transform(aug_input.image)
            aug_input.transform(tfm)
            tfms.append(tfm)
        return TransformList(tfms)


def _shortest_edge(h, w, short, max_size):
    """ResizeShortestEdge.get_output_shape (detectron2/data/transforms/augmentation_impl.py)."""
    scale = short / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > max_size:
        s = max_size / max(newh, neww)
        newh, neww = newh * s, neww * s
    return int(newh + 0.5), int(neww + 0.5)


class ResizeShortestEdge:
    """T.ResizeShortestEdge(short_edge_length, max_size, sample_style); nearest resampling here so
    the colour-segmenting model below sees exact colours."""

    def __init__(self, short_edge_length, max_size, sample_style="range"):
        assert sample_style in ("range", "choice") and not (sample_style == "range" and len(short_edge_length) != 2)
        self.short, self.max_size = int(short_edge_length[0]), max_size

    def get_transform(self, image):
        h, w = image.shape[-3:-1]
        return ScaleTransform(h, w, *_shortest_edge(h, w, self.short, self.max_size), interp="nearest")


class BatchResizeShortestEdge(ResizeShortestEdge):
    """CropFormer's BatchResizeShortestEdge: the same on an (N, H, W, C) stack."""

    def get_transform(self, image):
        assert image.ndim == 4, "the tensor should be in [B, H, W, C]"
        return super().get_transform(image)


class EntityCropTransform(Transform):
    """CropFormer's EntityCropTransform(crop_axises, crop_indexes): stacks the crops."""

    def __init__(self, crop_axises, crop_indexes):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        return np.stack([img[y0:y1, x0:x1] for x0, y0, x1, y1 in self.crop_axises])

    def apply_coords(self, coords):
        raise NotImplementedError


class EntityCrop:
    """CropFormer's EntityCrop(crop_ratio, stride_ratio, sample_num, is_train); the grid of its get_crop_axises."""

    def __init__(self, crop_ratio, stride_ratio, sample_num, is_train):
        self.crop_ratio, self.stride_ratio, self.sample_num, self.is_train = crop_ratio, stride_ratio, sample_num, is_train

    def get_transform(self, image):
        h, w = image.shape[:2]
        crop_w, crop_h = int(self.crop_ratio * w), int(self.crop_ratio * h)
        stride_w, stride_h = int(self.stride_ratio * w), int(self.stride_ratio * h)
        axes = []
        for starth in range(0, h, stride_h):
            for startw in range(0, w, stride_w):
                endh, endw = min(starth + crop_h, h), min(startw + crop_w, w)
                axes.append([endw - crop_w, endh - crop_h, endw, endh])
        assert not self.is_train
        return EntityCropTransform(axes, list(range(self.sample_num)))


# ----------------------------------------------------------------------------- model stand-in


class Instances:
    """The fields of detectron2.structures.Instances that the adapter reads."""

    def __init__(self, pred_masks, scores):
        self.pred_masks, self.scores = pred_masks, scores

    def to(self, device):
        return Instances(self.pred_masks.to(device), self.scores.to(device))


def _resize_nearest(chw: torch.Tensor, h: int, w: int) -> np.ndarray:
    return torch.nn.functional.interpolate(chw[None], size=(h, w), mode="nearest")[0].permute(1, 2, 0).numpy()


class ColourCropFormer(torch.nn.Module):
    """Takes ``[inputs]`` as CropFormer.forward does; one entity per colour other than the
    background grey, scored higher the larger it is; checks the crops against their regions first
    (the whole image comes back exactly at the original size: the test sizes scale it by 2)."""

    background = (128, 128, 128)

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.calls = []

    def forward(self, batched_inputs):
        (x,) = batched_inputs
        self.calls.append(x)
        crop_region, crop_images = x["crop_region"], x["image_crop"]
        crop_w, crop_h = int(crop_region[0][2] - crop_region[0][0]), int(crop_region[0][3] - crop_region[0][1])
        whole = _resize_nearest(x["image"], x["height"], x["width"])
        n_views = self.cfg.ENTITY.CROP_SAMPLE_NUM_TEST
        assert len(crop_images) >= n_views and len(crop_region) == len(crop_images)
        for (x0, y0, x1, y1), crop in zip(crop_region[:n_views], crop_images):  # each crop is its region, resized
            assert (y1 - y0, x1 - x0) == (crop_h, crop_w)
            expect = ScaleTransform(crop_h, crop_w, *crop.shape[1:], interp="nearest").apply_image(whole[y0:y1, x0:x1])
            assert np.array_equal(crop.permute(1, 2, 0).numpy(), expect), f"crop {x0, y0, x1, y1} does not show its region"
        colours = np.unique(whole.reshape(-1, 3), axis=0)
        masks = [np.all(whole == c, axis=-1) for c in colours if tuple(c) != self.background]
        scores = [0.6 + 0.3 * m.mean() for m in masks]  # above the 0.5 threshold, larger ones higher
        return [{"instances": Instances(torch.as_tensor(np.array(masks), dtype=torch.float32), torch.tensor(scores))}]


class Predictor:
    """detectron2.engine.DefaultPredictor(cfg): keeps ``cfg`` and ``model``."""

    built: list = []

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = ColourCropFormer(self.cfg).eval()
        Predictor.built.append(self)


def api(**overrides) -> CropFormerApi:
    transforms = SimpleNamespace(AugInput=AugInput, AugmentationList=AugmentationList, ResizeShortestEdge=ResizeShortestEdge)
    parts = dict(get_cfg=get_cfg, add_deeplab_config=add_deeplab_config, add_maskformer2_config=add_maskformer2_config,
                 default_predictor=Predictor, transforms=transforms, entity_crop=EntityCrop, batch_resize=BatchResizeShortestEdge,
                 crop_transform=EntityCropTransform)
    parts.update(overrides)
    return CropFormerApi(**parts)


def _view(h=32, w=80) -> tuple[RenderResult, np.ndarray]:
    """Three coloured blocks on grey; the left 8 columns have no surface (alpha 0). At the test
    config's MIN_SIZE_TEST 64 the model sees it at exactly twice the size (no resampling shifts)."""
    img = np.full((h, w, 3), 128, np.uint8)
    truth = np.full((h, w), -1)
    for k, (sl, colour) in enumerate(((np.s_[2:12, 10:40], (200, 30, 30)), (np.s_[16:30, 30:70], (30, 200, 30)),
                                      (np.s_[3:11, 50:76], (30, 30, 200)))):
        img[sl] = colour
        truth[sl] = k
    alpha = np.ones((h, w), np.float32)
    alpha[:, :8] = 0
    cam = Camera(width=w, height=h, world_to_camera=np.eye(4))
    view = RenderResult(color=img.astype(np.float32) / 255.0, depth=np.ones((h, w), np.float32),
                        normal=np.zeros((h, w, 3), np.float32), primitive=np.zeros((h, w), np.int64), weights=None,
                        alpha=alpha, camera=cam)
    return view, truth


# ----------------------------------------------------------------------------- config


@needs_fvcore
def test_config_is_assembled_in_upstream_order(files):
    config_file, weights = files
    cfg = build_config(api(), config_file, weights, "cpu")
    assert cfg.is_frozen()
    assert (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS) == ("CropFormer", "cpu", str(weights))
    assert cfg.MODEL.RESNETS.STEM_TYPE == "basic" and cfg.MODEL.RESNETS.RES5_MULTI_GRID == [1, 1, 1]  # from the base YAML
    assert cfg.ENTITY.ENABLE is True and cfg.ENTITY.CROP_SAMPLE_NUM_TEST == 4
    assert cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON is True and cfg.INPUT.MIN_SIZE_TEST == 64


@needs_fvcore
def test_without_add_deeplab_config_the_cropformer_yaml_does_not_merge(files):
    """The issue's crash, reproduced with the real config class: the adapter's order is what fixes it."""
    config_file, weights = files
    with pytest.raises(BackendError) as err:
        build_config(api(add_deeplab_config=lambda cfg: None), config_file, weights, "cpu")
    assert "MODEL.RESNETS.STEM_TYPE" in str(err.value) and str(config_file) in str(err.value)
    with pytest.raises(BackendError, match="ENTITY"):  # nor without CropFormer's own keys
        build_config(api(add_maskformer2_config=lambda cfg: None), config_file, weights, "cpu")


@needs_fvcore
def test_a_config_that_is_not_cropformer_is_refused(files, tmp_path):
    config_file, weights = files
    other = tmp_path / "mask2former.yaml"
    other.write_text(CROPFORMER_YAML.replace("CropFormer", "MaskFormer"))
    with pytest.raises(BackendError, match="MODEL.META_ARCHITECTURE is 'MaskFormer'"):
        build_config(api(), other, weights, "cpu")


# ----------------------------------------------------------------------------- inputs, model call, labels


@needs_fvcore
def test_inputs_are_what_cropformer_forward_reads(files):
    cfg = build_config(api(), *files, "cpu")
    view, _ = _view()
    image = view.color_uint8()
    inputs = cropformer_inputs(image, cfg, api())
    assert set(inputs) == {"image", "height", "width", "image_crop", "crop_region", "crop_indexes"}
    assert (inputs["height"], inputs["width"]) == (32, 80)
    assert inputs["image"].dtype == torch.float32 and tuple(inputs["image"].shape) == (3, 64, 160)  # shortest side 64
    crops = inputs["image_crop"]
    assert crops.dtype == torch.float32 and crops.shape[:2] == (4, 3) and crops.shape[2] == 64  # N x C x h x w, shortest side 64
    assert len(inputs["crop_region"]) == 4 and inputs["crop_indexes"] == [0, 1, 2, 3]
    for x0, y0, x1, y1 in inputs["crop_region"]:  # original pixels, 0.7 of each side
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 32 and (x1 - x0, y1 - y0) == (56, 22)
    # channel order follows INPUT.FORMAT (RGB here): the red block is red in channel 0
    assert inputs["image"][0].max() == 200 and inputs["image"][2].max() == 200
    assert float(inputs["image"][0, 8, 30]) == 200 and float(inputs["image"][2, 8, 30]) == 30
    cfg_bgr = cfg.clone()
    cfg_bgr.defrost()
    cfg_bgr.INPUT.FORMAT = "BGR"
    assert float(cropformer_inputs(image, cfg_bgr, api())["image"][2, 8, 30]) == 200

    masks, scores = predict(ColourCropFormer(cfg), inputs)  # the stand-in checks each crop against its region
    assert masks.dtype == bool and masks.shape == (3, 32, 80) and scores.shape == (3,)


@needs_fvcore
def test_too_few_crops_for_the_model_is_an_error_naming_the_keys(files):
    cfg = build_config(api(), *files, "cpu").clone()
    cfg.defrost()
    cfg.ENTITY.CROP_STRIDE_RATIO = 1.0  # a 1 x 1 grid: one crop, fewer than the model's 4 crop views
    with pytest.raises(BackendError, match="CROP_SAMPLE_NUM_TEST"):
        cropformer_inputs(_view()[0].color_uint8(), cfg, api())


def test_labels_from_masks():
    alpha = np.ones((4, 6))
    alpha[:, 0] = 0
    masks = np.zeros((4, 4, 6), bool)
    masks[0, :2, :] = True  # score 0.9
    masks[1, :, :3] = True  # score 0.6, overlaps 0: loses there
    masks[2, 3, 3:] = True  # score 0.2: dropped by the threshold
    masks[3, :2, 4:] = True  # score 0.5, wholly under mask 0 (0.9): loses every pixel, leaves no id gap
    scores = np.array([0.9, 0.6, 0.2, 0.5])
    labels = labels_from_masks(masks, scores, alpha, 0.5)
    expect = np.array([[-1, 1, 1, 1, 1, 1],
                       [-1, 1, 1, 1, 1, 1],
                       [-1, 0, 0, -1, -1, -1],
                       [-1, 0, 0, -1, -1, -1]])
    np.testing.assert_array_equal(labels, expect)
    assert labels.dtype == np.int64
    assert (labels_from_masks(masks[:0], scores[:0], alpha, 0.5) == -1).all()


@needs_fvcore
def test_segmenter_end_to_end_with_stand_ins(files):
    Predictor.built.clear()
    seg = SEGMENTERS.create("entityseg", config_file=str(files[0]), weights=str(files[1]), api=api(), device="cpu")
    assert isinstance(seg, EntitySegSegmenter)
    (predictor,) = Predictor.built
    assert predictor.cfg.MODEL.DEVICE == "cpu" and predictor.cfg.MODEL.WEIGHTS == str(files[1])
    view, truth = _view()
    labels = seg.segment(view)
    assert labels.shape == (32, 80) and labels.dtype == np.int64
    assert (labels[:, :8] == -1).all()  # no surface there
    on = view.alpha > 0.5
    assert (labels[on & (truth == -1)] == -1).all()  # the grey background is not an entity
    for k in range(3):  # each block is one entity, a different one each
        ids = np.unique(labels[on & (truth == k)])
        assert len(ids) == 1 and ids[0] >= 0
    assert len(np.unique(labels[labels >= 0])) == 3
    assert {"crop_region", "image_crop"} <= set(predictor.model.calls[0])


# ----------------------------------------------------------------------------- device, imports


@needs_fvcore
def test_device_follows_cuda_unless_configured(monkeypatch, files):
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == resolve_device("auto") == "cuda"
    Predictor.built.clear()
    EntitySegSegmenter(str(files[0]), str(files[1]), api=api())
    assert Predictor.built[-1].cfg.MODEL.DEVICE == "cuda"


@pytest.fixture()
def fresh_modules():
    """Whatever detectron2 / mask2former modules a test imports are forgotten afterwards."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("detectron2", "mask2former"):
            del sys.modules[name]


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


FAKE_DETECTRON2 = {  # importable names only: enough to get past the first import block
    "detectron2/__init__.py": "",
    "detectron2/config/__init__.py": "def get_cfg(): pass\n",
    "detectron2/engine/__init__.py": "class DefaultPredictor: pass\n",
    "detectron2/projects/__init__.py": "",
    "detectron2/projects/deeplab/__init__.py": "def add_deeplab_config(cfg): pass\n",
    "detectron2/data/__init__.py": "",
    "detectron2/data/transforms/__init__.py": "",
}
FAKE_MASK2FORMER = {
    "mask2former/__init__.py": "def add_maskformer2_config(cfg): pass\n",
    "mask2former/data/__init__.py": "",
    "mask2former/data/dataset_mappers/__init__.py": "",
    "mask2former/data/dataset_mappers/crop_augmentations.py": "class BatchResizeShortestEdge: pass\nclass EntityCrop: pass\n"
                                                              "class EntityCropTransform: pass\n",
}


def test_import_failures_are_loud(tmp_path, monkeypatch, fresh_modules, files):
    if importlib.util.find_spec("detectron2") is None:
        with pytest.raises(BackendError) as err:
            import_cropformer()
        assert "detectron2" in str(err.value) and INSTALL_DOC in str(err.value) and "No module named" in str(err.value)
        with pytest.raises(BackendError, match="detectron2"):  # through the registry, after the files were found
            SEGMENTERS.create("entityseg", config_file=str(files[0]), weights=str(files[1]))

    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    _package(tmp_path / "pkgs", FAKE_DETECTRON2)
    importlib.invalidate_caches()
    if importlib.util.find_spec("mask2former") is None:
        with pytest.raises(BackendError) as err:
            import_cropformer()
        msg = str(err.value)
        assert "mask2former" in msg and "Entityv2/CropFormer" in msg and INSTALL_DOC in msg and "No module named" in msg

    _package(tmp_path / "pkgs", FAKE_MASK2FORMER)  # a mask2former without CropFormer (facebookresearch's has the same name)
    importlib.invalidate_caches()
    sys.modules.pop("mask2former", None)
    with pytest.raises(BackendError, match="is not CropFormer's"):
        import_cropformer()


def test_missing_files_name_the_setting(tmp_path):
    with pytest.raises(BackendError, match=r"segment\.entityseg\.config_file = \(not set\)"):
        EntitySegSegmenter("", "")
    (tmp_path / "c.yaml").write_text("")
    with pytest.raises(BackendError, match=r"segment\.entityseg\.weights = .*w\.pth not found"):
        EntitySegSegmenter(str(tmp_path / "c.yaml"), str(tmp_path / "w.pth"))
