"""Test doubles for Algorithm 3 (:mod:`hiscene_sim.generate.algorithm3_shape_prior`): weight-free
stand-ins for TRELLIS's sparse-structure VAE (``StructureCodec``) and flow model (``VelocityModel``)
whose answers are known in closed form.

``IdentityCodec`` (average pooling / trilinear upsampling, not a learned VAE), ``AnalyticVelocity`` (the
exact velocity of a rectified flow whose data is one point x*) and ``MixtureVelocity`` (exact velocity
of an isotropic Gaussian mixture, point masses when std = 0).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hiscene_sim.generate.algorithm3_shape_prior import TRELLIS_RESOLUTION, check_grid
from hiscene_sim.generate.flow import SIGMA_MIN, noise_scale


class IdentityCodec:
    """A transparent stand-in for TRELLIS's sparse-structure VAE (StructureCodec), not a learned model.

    encode: (B, 1, R, R, R) occupancy in [0, 1] -> average-pool by R / r -> fill fraction p in [0, 1] ->
        2 p - 1 in [-1, 1], repeated over ``channels``: (B, C, r, r, r).
    decode: (B, C, r, r, r) -> channel mean -> trilinear upsample to R (align_corners=False): (B, 1, R, R, R)
        "logits" in [-1, 1], > 0 where the interpolated fill fraction exceeds 1/2.
    Lossy where the shape is thinner than about R / r cells."""

    def __init__(self, resolution: int = TRELLIS_RESOLUTION, latent_resolution: int = 16, channels: int = 1) -> None:
        if resolution % latent_resolution:
            raise ValueError(f"resolution {resolution} must be a multiple of latent_resolution {latent_resolution}")
        self.resolution = resolution
        self.latent_resolution = latent_resolution
        self.channels = channels

    def encode(self, occupancy: torch.Tensor) -> torch.Tensor:
        check_grid(occupancy, self.resolution)
        factor = self.resolution // self.latent_resolution
        fraction = F.avg_pool3d(occupancy.float(), kernel_size=factor, stride=factor)
        return (2.0 * fraction - 1.0).repeat(1, self.channels, 1, 1, 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        r = self.latent_resolution
        if latent.dim() != 5 or tuple(latent.shape[2:]) != (r, r, r):
            raise ValueError(f"latent must be (B, C, {r}, {r}, {r}), got {tuple(latent.shape)}")
        mean = latent.mean(dim=1, keepdim=True)
        return F.interpolate(mean, size=(self.resolution,) * 3, mode="trilinear", align_corners=False)


class AnalyticVelocity:
    """The exact velocity field of the rectified flow whose data distribution is the single point x*.

    With x_t = (1 - t) x* + s(t) eps, s(t) = sigma_min + (1 - sigma_min) t, eps is recovered from x_t:
    eps = (x_t - (1 - t) x*) / s(t), and v(x_t, t) = (1 - sigma_min) eps - x*. Paths are straight, so Euler
    is exact: from any (x_t, t) the sampler returns x* + sigma_min * eps. ``cond`` is ignored.
    target: x*, shape (C, ...) or (1, C, ...), broadcast over the batch."""

    def __init__(self, target: torch.Tensor, sigma_min: float = SIGMA_MIN) -> None:
        self.target = target
        self.sigma_min = sigma_min

    def __call__(self, x_t: torch.Tensor, t: float, cond: Any = None) -> torch.Tensor:
        x_star = self.target.to(x_t)
        eps = (x_t - (1.0 - t) * x_star) / noise_scale(t, self.sigma_min)
        return (1.0 - self.sigma_min) * eps - x_star


class MixtureVelocity:
    """The exact (posterior-mean) velocity of the rectified flow whose data is an isotropic Gaussian mixture
    sum_k w_k N(mu_k, tau_k^2 I); tau_k = 0 gives point masses (K = 1, tau = 0 is AnalyticVelocity).

    Given component k, x_t ~ N((1 - t) mu_k, var_k I) with var_k = (1 - t)^2 tau_k^2 + s^2, s = s(t), and
        E[x0 | x_t, k] = mu_k + (1 - t) tau_k^2 / var_k (x_t - (1 - t) mu_k),
        E[eps | x_t, k] = s / var_k (x_t - (1 - t) mu_k),
        p(k | x_t) ∝ w_k exp(-|x_t - (1 - t) mu_k|^2 / (2 var_k)) var_k^(-D / 2),
        v(x_t, t) = sum_k p(k | x_t) ((1 - sigma_min) E[eps | x_t, k] - E[x0 | x_t, k]).
    means: (K, *shape); stds: float or (K,); weights: (K,) (normalised here), default uniform.
    Computed in float64, returned in x_t's dtype. ``cond`` is ignored."""

    def __init__(
        self,
        means: torch.Tensor,
        stds: float | torch.Tensor = 0.0,
        weights: torch.Tensor | None = None,
        sigma_min: float = SIGMA_MIN,
    ) -> None:
        self.means = means.double()
        k = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.log_weights = torch.log(w / w.sum())
        self.sigma_min = sigma_min

    def posterior(self, x_t: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p(k | x_t) (B, K), diff (B, K, *shape) = x_t - (1 - t) mu_k, var (K,))."""
        x = x_t.double()
        batch = x.shape[0]
        s = noise_scale(t, self.sigma_min)
        var = (1.0 - t) ** 2 * self.stds**2 + s**2
        diff = x[:, None] - (1.0 - t) * self.means[None]
        dims = diff[0, 0].numel()
        sq = diff.reshape(batch, diff.shape[1], -1).pow(2).sum(-1)
        logp = self.log_weights[None] - 0.5 * sq / var[None] - 0.5 * dims * torch.log(var)[None]
        return torch.softmax(logp, dim=1), diff, var

    def __call__(self, x_t: torch.Tensor, t: float, cond: Any = None) -> torch.Tensor:
        post, diff, var = self.posterior(x_t, t)
        s = noise_scale(t, self.sigma_min)
        shape = (1, -1) + (1,) * (diff.dim() - 2)
        var_b = var.view(shape)
        e_x0 = self.means[None] + (1.0 - t) * (self.stds**2).view(shape) / var_b * diff
        e_eps = s / var_b * diff
        v = ((1.0 - self.sigma_min) * e_eps - e_x0) * post.view(post.shape + (1,) * (diff.dim() - 2))
        return v.sum(dim=1).to(x_t.dtype)
