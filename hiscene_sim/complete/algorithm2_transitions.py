"""Occlusion-to-visibility transition videos (paper 3.3, B.1, Algorithm 2): the training data of the
video-diffusion amodal completion model.

A training pair is an *occluded observation* of an object (the object with something in front of
it, possibly casting a shadow on it) and the *whole object* alone on a white background. Algorithm 2
turns the pair into a short video that starts at the observation and ends at the whole object,
the occluded part fading in linearly; the SVD model (``svd.py``) learns to generate that video from
its first frame plus the visible mask, and at inference its last frame is the completion.

:func:`paste_occluder` makes a pair from a render of the whole object and an occluder pasted on it,
so a dataset can be built from renders (:func:`save_pair` / :func:`load_pair` store pairs as
``.npz``). torch is imported inside the functions that build tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

WHITE = 255


@dataclass(eq=False)
class AmodalPair:
    """One raw training pair, full resolution (what a dataset directory stores).

    Attributes:
        occluded: (H, W, 3) uint8, the observation: the target with the occluder (and its shadow)
            over it, on whatever background the render has.
        whole: (H, W, 3) uint8, the target alone and whole; only pixels inside ``whole_mask`` are
            used (outside it the transition video shows white).
        visible_mask: (H, W) bool, target pixels seen in ``occluded``.
        whole_mask: (H, W) bool, the target's whole (amodal) silhouette; a superset of
            ``visible_mask``.
    """

    occluded: np.ndarray
    whole: np.ndarray
    visible_mask: np.ndarray
    whole_mask: np.ndarray

    def __post_init__(self) -> None:
        h, w = self.whole_mask.shape
        for name in ("occluded", "whole"):
            if getattr(self, name).shape != (h, w, 3) or getattr(self, name).dtype != np.uint8:
                raise ValueError(f"{name} must be ({h}, {w}, 3) uint8, got {getattr(self, name).shape} {getattr(self, name).dtype}")
        if self.visible_mask.shape != (h, w):
            raise ValueError(f"visible_mask must be ({h}, {w}), got {self.visible_mask.shape}")
        self.visible_mask = self.visible_mask.astype(bool)
        self.whole_mask = self.whole_mask.astype(bool)


@dataclass(eq=False)
class AmodalSample:
    """One training sample for the SVD completion model, at model resolution.

    Attributes:
        video: (F, 3, h, w) float32 in [-1, 1], the transition video, F = N + 1; ``video[0]`` is the
            occluded observation (the model's conditioning image), ``video[-1]`` the whole object
            on white.
        visible_mask: (1, h, w) float32 in [0, 1] (bilinear-resampled), the visible mask, the 9th
            conditioning channel after downsampling to latent resolution.
        whole_mask: (1, h, w) float32 in [0, 1], the whole mask (metrics / debugging only).
    """

    video: torch.Tensor
    visible_mask: torch.Tensor
    whole_mask: torch.Tensor


def resize_hwc(image: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """(H, W, C) array (any dtype; bool masks become 0/1) -> (C, h, w) float32 tensor with the same
    value range, resized to ``size`` = (h, w) with antialiased bilinear filtering (None: no resize)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    if size is not None and tuple(t.shape[1:]) != tuple(size):
        t = F.interpolate(t[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]
    return t


def transition_video(
    occluded: np.ndarray,
    whole: np.ndarray,
    visible_mask: np.ndarray,
    whole_mask: np.ndarray,
    n: int,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Algorithm 2: the (N+1)-frame occlusion-to-visibility video.

    Args:
        occluded: (H, W, 3) uint8, the occluded observation (frame 0).
        whole: (H, W, 3) uint8, the whole target (read inside ``whole_mask`` only).
        visible_mask, whole_mask: (H, W) bool, M_v and M_w.
        n: N, the number of interpolated frames (>= 1); the video has N + 1 frames.
        size: (h, w) of the output, or None to keep (H, W).

    Returns:
        (N + 1, 3, h, w) float32 in [-1, 1].

    Reading of the printed algorithm (it has one image input I_o, but a video from an occluded
    observation to the whole object needs two):

    * line 2 ``I_v <- I_o ⊙ M_w`` ("Visible RGB"): I_o here must be the *un-occluded* target image
      (the "target RGB image" of the Require line, Fig. 4 (a)), otherwise the occluded part could
      never appear. We read I_v as the whole target cut out by the whole mask, composited on white
      (``whole * M_w + 255 * (1 - M_w)``), which is what the completion must output.
    * line 4 ``X_0 <- normalize(resize(I_o))`` ("First frame") and line 8's I_o are the *occluded*
      observation (Fig. 4 (b)): SVD generates from its first frame, and that frame is the input
      at inference.
    * line 8 ``blend(I_v, I_o, M_i)`` = ``I_v * (1 - M_i) + I_o * M_i``: M_i weights the second
      argument. With line 6, alpha_0 = 1 so frame 1 still shows the occluder in the difference
      region M_d = |M_v - M_w| (the occluded part of the object) and alpha_{N-1} = 0 so the last
      frame is I_v. Outside M_d every blended frame (1..N) is I_v: the occluder / background
      outside the whole mask, and shadows on visible pixels, disappear at frame 1, as the
      algorithm prescribes.
    * line 6 divides by N - 1; for N = 1 we take alpha_0 = 0 (the one blended frame is I_v).
    * lines 4, 9 resize each frame; we resize the three inputs once and blend at output size
      (identical for the images; the masks are resampled bilinearly, so M_d is soft at its border).
    """
    import torch

    if n < 1:
        raise ValueError(f"need N >= 1 interpolation frames, got {n}")
    pair = AmodalPair(occluded, whole, visible_mask, whole_mask)  # validates shapes
    i_o = resize_hwc(pair.occluded, size)  # (3, h, w) in [0, 255]
    i_w = resize_hwc(pair.whole, size)
    m_v = resize_hwc(pair.visible_mask[..., None], size)  # (1, h, w) in [0, 1]
    m_w = resize_hwc(pair.whole_mask[..., None], size)
    m_d = (m_v - m_w).abs()  # line 1
    i_v = i_w * m_w + WHITE * (1.0 - m_w)  # line 2, as read above
    frames = [i_o]  # line 4
    for i in range(n):  # lines 5-10
        alpha = 1.0 - i / (n - 1) if n > 1 else 0.0
        m_i = m_d * alpha
        frames.append(i_v * (1.0 - m_i) + i_o * m_i)
    video = torch.stack(frames)
    return video / 127.5 - 1.0  # normalize: [0, 255] -> [-1, 1]


def make_sample(pair: AmodalPair, num_frames: int = 8, size: tuple[int, int] | None = (512, 512)) -> AmodalSample:
    """A training sample of ``num_frames`` = N + 1 frames at ``size`` (h, w) from a raw pair."""
    video = transition_video(pair.occluded, pair.whole, pair.visible_mask, pair.whole_mask, num_frames - 1, size)
    return AmodalSample(
        video=video,
        visible_mask=resize_hwc(pair.visible_mask[..., None], size),
        whole_mask=resize_hwc(pair.whole_mask[..., None], size),
    )


def paste_occluder(
    whole: np.ndarray,
    whole_mask: np.ndarray,
    occluder: np.ndarray,
    occluder_mask: np.ndarray,
    background: np.ndarray | None = None,
    shadow: float = 0.0,
    shadow_offset: tuple[int, int] = (0, 0),
) -> AmodalPair:
    """Make a training pair by pasting an occluder over a render of the whole object (B.1).

    Args:
        whole: (H, W, 3) uint8 render of the target alone.
        whole_mask: (H, W) bool, the target's silhouette in ``whole``.
        occluder: (H, W, 3) uint8, the occluder already placed in image coordinates.
        occluder_mask: (H, W) bool, the occluder's pixels (in front of the target).
        background: (H, W, 3) uint8 behind the target in the observation; None -> white.
        shadow: 0..1, how much a fake cast shadow darkens what it falls on (0 = no shadow). The
            paper renders true shadows in Blender; this is a cheap stand-in: the occluder mask
            shifted by ``shadow_offset`` (dy, dx) pixels darkens the target and background there.
        shadow_offset: (dy, dx) of the shadow relative to the occluder.

    Returns:
        The pair; its visible mask is ``whole_mask & ~occluder_mask``.
    """
    whole_mask = whole_mask.astype(bool)
    occluder_mask = occluder_mask.astype(bool)
    h, w = whole_mask.shape
    bg = np.full((h, w, 3), WHITE, np.uint8) if background is None else background
    obs = np.where(whole_mask[..., None], whole, bg).astype(np.float32)
    if shadow > 0.0:
        dy, dx = shadow_offset
        cast = np.zeros_like(occluder_mask)
        ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
        ys0, xs0 = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        cast[ys, xs] = occluder_mask[ys0, xs0]
        obs *= 1.0 - shadow * (cast & ~occluder_mask)[..., None]
    obs = np.where(occluder_mask[..., None], occluder.astype(np.float32), obs)
    occluded = np.clip(np.rint(obs), 0, 255).astype(np.uint8)
    return AmodalPair(occluded=occluded, whole=whole.astype(np.uint8), visible_mask=whole_mask & ~occluder_mask, whole_mask=whole_mask)


def save_pair(path: str | Path, pair: AmodalPair) -> Path:
    """Write a pair as a compressed ``.npz`` (keys: occluded, whole, visible_mask, whole_mask)."""
    path = Path(path)
    np.savez_compressed(path, occluded=pair.occluded, whole=pair.whole, visible_mask=pair.visible_mask, whole_mask=pair.whole_mask)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_pair(path: str | Path) -> AmodalPair:
    """Read a pair written by :func:`save_pair`."""
    with np.load(path) as z:
        return AmodalPair(z["occluded"], z["whole"], z["visible_mask"], z["whole_mask"])
