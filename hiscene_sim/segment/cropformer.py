"""CropFormer (EntitySeg v2, github.com/qqlu/Entity, ``Entityv2/CropFormer``) set up and called as
upstream's own demo does it, in pieces that take their upstream collaborators as arguments (so each
piece is tested without detectron2, which does not install from PyPI):

* :func:`import_cropformer`: the detectron2 and CropFormer callables, or a :class:`BackendError`
  that names what is missing and ``docs/install-gpu.md``;
* :func:`build_config`: ``get_cfg()``, then detectron2's ``add_deeplab_config`` and CropFormer's
  ``add_maskformer2_config`` (which also adds the ``ENTITY`` keys), *then* ``merge_from_file``, as in
  ``demo_cropformer/demo_from_dirs.py::setup_cfg`` and ``train_net.py::setup``. CropFormer's base
  YAML sets ``MODEL.RESNETS.STEM_TYPE`` / ``RES5_MULTI_GRID``, keys only ``add_deeplab_config``
  creates, so merging without it fails;
* :func:`cropformer_inputs`: the input dict of ``demo_cropformer/predictor.py::CropFormerPredictor``:
  the whole image resized by ``ResizeShortestEdge``, plus the entity crops (``EntityCrop`` then
  ``BatchResizeShortestEdge``) as ``image_crop`` with their boxes ``crop_region`` (original-image
  pixels) and ``crop_indexes``; ``CropFormer.forward`` (``mask2former/cropformer_model.py``) reads
  ``crop_region`` and ``image_crop`` and fuses the crops' masks back into the whole image;
* :func:`predict`: ``model([inputs])[0]["instances"]`` under ``torch.no_grad()`` -> boolean masks
  and scores on the CPU.

The model itself is built and its checkpoint loaded by detectron2's ``DefaultPredictor`` (upstream's
``CropFormerPredictor`` is a ``DefaultPredictor`` whose ``__call__`` builds the dict above).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hiscene_sim.backends import BackendError

INSTALL_DOC = "docs/install-gpu.md"
CONFIG_KEY = "segment.entityseg"


@dataclass(frozen=True)
class CropFormerApi:
    """The upstream callables the adapter uses (what :func:`import_cropformer` imports).

    Attributes:
        get_cfg: ``detectron2.config.get_cfg``.
        add_deeplab_config: ``detectron2.projects.deeplab.add_deeplab_config``.
        add_maskformer2_config: CropFormer's ``mask2former.add_maskformer2_config``.
        default_predictor: ``detectron2.engine.DefaultPredictor`` (builds the model, loads the weights).
        transforms: ``detectron2.data.transforms`` (``AugInput``, ``AugmentationList``, ``ResizeShortestEdge``).
        entity_crop, batch_resize, crop_transform: CropFormer's ``EntityCrop``,
            ``BatchResizeShortestEdge`` and ``EntityCropTransform``
            (``mask2former/data/dataset_mappers/crop_augmentations.py``).
    """

    get_cfg: Callable[[], Any]
    add_deeplab_config: Callable[[Any], None]
    add_maskformer2_config: Callable[[Any], None]
    default_predictor: Callable[[Any], Any]
    transforms: Any
    entity_crop: type
    batch_resize: type
    crop_transform: type


def import_cropformer() -> CropFormerApi:
    """Import detectron2 and CropFormer's ``mask2former``; any failure is a :class:`BackendError`
    naming the package, the import error and :data:`INSTALL_DOC` (never silently skipped: without
    ``add_maskformer2_config`` the config cannot even be read)."""
    try:
        import detectron2.data.transforms as transforms
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor
        from detectron2.projects.deeplab import add_deeplab_config
    except Exception as exc:  # ImportError, or a broken build (undefined symbols, CUDA mismatch)
        raise BackendError(
            f"entityseg: detectron2 could not be imported ({type(exc).__name__}: {exc}). It is not on PyPI: install it from "
            f"github.com/facebookresearch/detectron2 for your torch and CUDA, as {INSTALL_DOC} describes"
        ) from exc
    try:
        import mask2former
        from mask2former import add_maskformer2_config
        from mask2former.data.dataset_mappers.crop_augmentations import BatchResizeShortestEdge, EntityCrop, EntityCropTransform
    except Exception as exc:  # also a missing compiled MSDeformAttn op (mask2former/modeling/pixel_decoder/ops)
        raise BackendError(
            f"entityseg: CropFormer's mask2former package could not be imported ({type(exc).__name__}: {exc}). Put "
            "Entityv2/CropFormer of github.com/qqlu/Entity on PYTHONPATH and build its MSDeformAttn op, as "
            f"{INSTALL_DOC} describes"
        ) from exc
    if not hasattr(mask2former, "CropFormer"):
        raise BackendError(
            f"entityseg: the mask2former package at {getattr(mask2former, '__file__', '?')} is not CropFormer's (it has no "
            f"CropFormer model; facebookresearch/Mask2Former's has the same name): put Entityv2/CropFormer of "
            f"github.com/qqlu/Entity first on PYTHONPATH ({INSTALL_DOC})"
        )
    return CropFormerApi(get_cfg, add_deeplab_config, add_maskformer2_config, DefaultPredictor, transforms,
                         EntityCrop, BatchResizeShortestEdge, EntityCropTransform)


def resolve_device(device: str | None) -> str:
    """The configured device, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_config(api: CropFormerApi, config_file: str | Path, weights: str | Path, device: str):
    """The frozen detectron2 config, assembled in upstream's order (module docstring). Errors name
    the file and the key: an unknown key while merging, a config that is not CropFormer's."""
    cfg = api.get_cfg()
    api.add_deeplab_config(cfg)
    api.add_maskformer2_config(cfg)
    try:
        cfg.merge_from_file(str(config_file))
    except KeyError as exc:  # yacs: "Non-existent config key: MODEL.X"
        why = exc.args[0] if exc.args else exc
        raise BackendError(f"entityseg: {config_file} ({CONFIG_KEY}.config_file) could not be merged: {why}") from exc
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch != "CropFormer":
        raise BackendError(f"entityseg: {config_file}: MODEL.META_ARCHITECTURE is {arch!r}; the entityseg backend runs "
                           "CropFormer (Entityv2/CropFormer/configs/entityv2/entity_segmentation/cropformer_*.yaml)")
    if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
        raise BackendError(f"entityseg: {config_file}: INPUT.FORMAT is {cfg.INPUT.FORMAT!r}; expected RGB or BGR")
    if cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING != "choice":  # a one-size ResizeShortestEdge with "range" asserts
        raise BackendError(f"entityseg: {config_file}: INPUT.MIN_SIZE_TRAIN_SAMPLING is {cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING!r}; "
                           "CropFormer's test-time resizing needs 'choice'")
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.DEVICE = device
    cfg.freeze()
    return cfg


def cropformer_inputs(image_rgb: np.ndarray, cfg, api: CropFormerApi) -> dict[str, Any]:
    """CropFormer's input dict for one (H, W, 3) uint8 RGB image (see the module docstring).

    ``image`` (3, H', W') and ``image_crop`` (N, 3, h, w) are float32 tensors in the channel order
    of ``cfg.INPUT.FORMAT``, resized so their shortest side is ``INPUT.MIN_SIZE_TEST`` (at most
    ``INPUT.MAX_SIZE_TEST`` long); ``height`` / ``width`` are the original size the masks come
    back at; ``crop_region`` holds each crop's [x0, y0, x1, y1] in original pixels.
    """
    import torch

    T = api.transforms
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"entityseg: expected an (H, W, 3) uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    image = np.ascontiguousarray(image_rgb if cfg.INPUT.FORMAT == "RGB" else image_rgb[:, :, ::-1])
    height, width = image.shape[:2]
    short, max_size, style = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST), cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING

    whole = T.AugInput(image.copy())
    T.AugmentationList([T.ResizeShortestEdge((short,), max_size, style)])(whole)
    crops = T.AugInput(image.copy())
    crop_transforms = T.AugmentationList([
        api.entity_crop(cfg.ENTITY.CROP_AREA_RATIO, cfg.ENTITY.CROP_STRIDE_RATIO, cfg.ENTITY.CROP_SAMPLE_NUM_TEST, False),
        api.batch_resize((short,), max_size, style),
    ])(crops)
    crop = [t for t in getattr(crop_transforms, "transforms", crop_transforms) if isinstance(t, api.crop_transform)]
    if len(crop) != 1:
        raise BackendError(f"entityseg: expected one EntityCropTransform among the crop transforms, got {len(crop)}")
    crop_region, crop_indexes = crop[0].crop_axises, crop[0].crop_indexes
    if crops.image.ndim != 4 or len(crops.image) != len(crop_region):
        raise BackendError(f"entityseg: {len(crop_region)} crop boxes but crop images of shape {crops.image.shape}")
    if len(crop_region) < int(cfg.ENTITY.CROP_SAMPLE_NUM_TEST):
        # CropFormer.forward fuses crop_region[:CROP_SAMPLE_NUM_TEST] with that many views of its decoder
        raise BackendError(f"entityseg: ENTITY.CROP_AREA_RATIO / CROP_STRIDE_RATIO give {len(crop_region)} crops, fewer than "
                           f"ENTITY.CROP_SAMPLE_NUM_TEST = {cfg.ENTITY.CROP_SAMPLE_NUM_TEST}")
    return {
        "image": torch.as_tensor(np.ascontiguousarray(whole.image.astype("float32").transpose(2, 0, 1))),
        "height": height,
        "width": width,
        "image_crop": torch.as_tensor(np.ascontiguousarray(crops.image.astype("float32").transpose(0, 3, 1, 2))),
        "crop_region": crop_region,
        "crop_indexes": crop_indexes,
    }


def predict(model, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Run CropFormer on one input dict -> masks (N, H, W) bool and scores (N,) float32 on the CPU.

    ``CropFormer.forward`` returns ``[{"instances": Instances}]`` with ``pred_masks`` as 0/1 floats at
    (``height``, ``width``) and ``scores``."""
    import torch

    with torch.no_grad():
        instances = model([inputs])[0]["instances"].to("cpu")
    masks = instances.pred_masks.numpy() > 0.5
    scores = instances.scores.float().numpy()
    if masks.ndim != 3 or masks.shape[1:] != (inputs["height"], inputs["width"]) or len(scores) != len(masks):
        raise BackendError(f"entityseg: the model returned masks {masks.shape} and {len(scores)} scores for a "
                           f"{inputs['height']}x{inputs['width']} image")
    return masks, scores
