"""Spatially aligned regeneration (paper 3.4, Algorithm 3): TRELLIS's rectified flow and Euler sampler
started part-way, the shape-prior injection, and the TRELLIS-style voxel grid frame.

The answers are known in closed form: AnalyticVelocity / MixtureVelocity are the exact velocity fields
of point-mass and Gaussian-mixture data, whose exact flow maps are written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from hiscene_sim.generate.algorithm3_shape_prior import (
    GridFrame,
    ShapePriorConfig,
    inject_shape_prior,
    regenerate_structure,
    voxelize_prior,
    voxels_to_world,
)
from hiscene_sim.generate.flow import (
    SIGMA_MIN,
    FlowSampler,
    full_grid,
    noise_scale,
    noise_to,
    rescale,
    time_grid,
    unrescale,
    velocity_target,
)
from hiscene_sim.testing.flow_doubles import AnalyticVelocity, IdentityCodec, MixtureVelocity

torch.set_num_threads(1)


def line10_steps(n: int, t: float) -> list[int]:
    """Algorithm 3 line 10, literally: i = INT(N t - 1) down to 0 (a 1e-9 guard against N t = 6.999..)."""
    return list(range(math.floor(n * t - 1 + 1e-9), -1, -1))


class PassThroughCodec:
    """Latent = the 'occupancy' tensor itself (B, 1, r, r, r): lets the analytic fields run through
    inject_shape_prior unchanged."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def encode(self, occupancy: torch.Tensor) -> torch.Tensor:
        return occupancy.double().clone()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return latent


class Recorder:
    """Wraps a velocity model, recording (t, cond) of every call."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[tuple[float, object]] = []

    def __call__(self, x_t, t, cond):
        self.calls.append((t, cond))
        return self.model(x_t, t, cond)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@pytest.fixture(scope="module")
def duck() -> trimesh.Trimesh:
    from hiscene_sim.pybullet_assets import asset_mesh

    mesh, scale = asset_mesh("duck")  # native units, Z-up; scale gives real size (metres)
    mesh = mesh.copy()
    mesh.merge_vertices(merge_tex=True, merge_norm=True)  # the OBJ's seams split vertices: weld to close it
    mesh.apply_scale(scale)
    assert mesh.is_watertight
    return mesh


# ------------------------------------------------------------------- 3. the flow and its schedule
def test_noise_to_and_velocity_follow_trellis_formula():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, 4, generator=g, dtype=torch.float64).unbind(0)
    for t in (0.0, 0.37, 1.0):
        expected = (1 - t) * x0 + (SIGMA_MIN + (1 - SIGMA_MIN) * t) * eps
        assert torch.allclose(noise_to(x0, t, eps), expected, atol=1e-15)
    assert torch.allclose(noise_to(x0, 1.0, eps), eps, atol=1e-12)  # t = 1: pure noise, x0 gone
    assert torch.allclose(noise_to(x0, 0.0, eps), x0 + SIGMA_MIN * eps, atol=1e-15)
    # v = (1 - sigma_min) eps - x0 is d x_t / dt along the path (central difference, x_t is linear in t)
    h = 1e-4
    fd = (noise_to(x0, 0.5 + h, eps) - noise_to(x0, 0.5 - h, eps)) / (2 * h)
    assert torch.allclose(fd, velocity_target(x0, eps), atol=1e-8)
    with pytest.raises(ValueError):
        noise_to(x0, 1.5, eps)
    with pytest.raises(ValueError):
        noise_to(x0, 0.5, eps[:, :2])


def test_time_grid_endpoints_and_rescale():
    for steps in (1, 12, 25):
        for r in (1.0, 3.0):
            grid = time_grid(steps, rescale_t=r)
            assert len(grid) == steps + 1 and grid[0] == 1.0 and grid[-1] == 0.0
            assert all(a > b for a, b in zip(grid[:-1], grid[1:]))
    assert time_grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]  # linspace(1, 0, 5)
    # TRELLIS rescale t' = r t / (1 + (r - 1) t): with r = 3, u = 0.5 -> 1.5 / 2 = 0.75
    assert time_grid(4, rescale_t=3.0)[2] == pytest.approx(0.75)
    assert rescale(unrescale(0.3, 3.0), 3.0) == pytest.approx(0.3)
    # a run from t_start uses the tail of the full grid: the points <= t_start, same values
    full = full_grid(20, 3.0)
    tail = time_grid(20, 0.3, 3.0)
    assert tail == full[len(full) - len(tail):] and tail[0] <= 0.3 and full[len(full) - len(tail) - 1] > 0.3
    with pytest.raises(ValueError):
        time_grid(0)


@pytest.mark.parametrize("steps", [12, 20, 25, 50])
@pytest.mark.parametrize("rescale_t", [1.0, 3.0])
def test_steps_run_from_t_match_algorithm3_line10(steps, rescale_t):
    sampler = FlowSampler(steps=steps, rescale_t=rescale_t)
    model = Recorder(lambda x, t, c: torch.zeros_like(x))
    for t in (0.2, 0.25, 0.3, 0.33, 0.35, 0.37, 0.4, 1.0):
        u = unrescale(t, rescale_t)  # line 10 counts in the unrescaled linspace
        indices = line10_steps(steps, u)
        assert sampler.step_indices(t) == indices
        assert sampler.num_steps(t) == len(indices)
        model.calls.clear()
        sampler.sample(model, torch.zeros(1, 1, 2, 2, 2), t, cond=None)
        # step i integrates from (i + 1) / N to i / N: the model sees t_i = rescale((i + 1) / N)
        seen = [c[0] for c in model.calls]
        assert seen == pytest.approx([rescale((i + 1) / steps, rescale_t) for i in indices], abs=1e-12)
        assert sampler.start_time(t) <= t + 1e-9
    # concrete: N = 12, t = 0.3 -> INT(2.6) = 2 -> i = 2, 1, 0: evaluations at 0.25, 1/6, 1/12
    assert FlowSampler(steps=12).step_indices(0.3) == [2, 1, 0]
    assert FlowSampler(steps=12).grid(0.3) == pytest.approx([0.25, 1 / 6, 1 / 12, 0.0])


def test_partial_run_is_the_tail_of_a_full_run():
    """Stopping a full run at grid time t_k and restarting the sampler there gives the same x0."""
    g = torch.Generator().manual_seed(3)
    means = torch.randn(2, 1, 3, 3, 3, generator=g, dtype=torch.float64)
    model = MixtureVelocity(means, stds=0.3)
    sampler = FlowSampler(steps=20, rescale_t=2.0)
    x = torch.randn(1, 1, 3, 3, 3, generator=g, dtype=torch.float64)
    full = sampler.grid(1.0)
    t_k = sampler.start_time(0.3)
    for t, t_prev in zip(full[:-1], full[1:]):
        if t <= t_k + 1e-12:
            break
        x = x - (t - t_prev) * model(x, t, None)
    x_mid = x.clone()
    for t, t_prev in zip(full[:-1], full[1:]):
        if t <= t_k + 1e-12:
            x = x - (t - t_prev) * model(x, t, None)
    assert torch.allclose(sampler.sample(model, x_mid, 0.3, None), x, atol=1e-12)


# ------------------------------------------------------------------- 1. known answers
def test_point_data_from_t1_returns_x_star_whatever_the_prior():
    g = torch.Generator().manual_seed(1)
    x_star = torch.randn(1, 1, 4, 4, 4, generator=g, dtype=torch.float64)
    codec = PassThroughCodec(4)
    model = AnalyticVelocity(x_star)
    priors = [torch.randn(1, 1, 4, 4, 4, generator=g, dtype=torch.float64) * s for s in (1.0, 5.0)]
    outs = [inject_shape_prior(codec, model, p, 1.0, FlowSampler(steps=7), None, seed=11) for p in priors]
    assert torch.equal(outs[0], outs[1])  # x_1 = eps exactly: the prior never enters
    assert torch.allclose(outs[0], x_star, atol=1e-4)  # x* + sigma_min eps (straight paths: Euler is exact)
    # Euler is exact on straight paths, from any t and with any step count
    for steps in (4, 10):  # INT(4 * 0.3) = 1 step, INT(10 * 0.3) = 3 steps
        out = inject_shape_prior(codec, model, priors[1], 0.3, FlowSampler(steps=steps), None, seed=11)
        assert torch.allclose(out, x_star, atol=1e-3)
    # with too few steps for t (INT(3 * 0.3) = 0) nothing runs: the noised prior comes back
    out = inject_shape_prior(codec, model, priors[1], 0.3, FlowSampler(steps=3), None, seed=11)
    assert torch.allclose(out, priors[1], atol=1e-4)


def test_mixture_velocity_reduces_to_the_point_field():
    g = torch.Generator().manual_seed(2)
    x_star = torch.randn(1, 2, 3, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 2, 3, 3, 3, generator=g, dtype=torch.float64)
    for t in (0.05, 0.5, 1.0):
        assert torch.allclose(MixtureVelocity(x_star)(x, t), AnalyticVelocity(x_star)(x, t), atol=1e-10)


def test_mixture_flow_transports_noise_onto_its_modes_with_their_weights():
    """1-D two-point data {-1 (weight 0.3), +2 (weight 0.7)}: the exact field moves N(0, 1) onto the
    points in those proportions (a wrong posterior weight would shift the split)."""
    model = MixtureVelocity(torch.tensor([[-1.0], [2.0]]), weights=torch.tensor([0.3, 0.7]))
    x0 = FlowSampler(steps=60).sample(model, (4000, 1), 1.0, None, generator=torch.Generator().manual_seed(0))
    near = torch.minimum((x0 + 1).abs(), (x0 - 2).abs())
    assert float(near.max()) < 0.05
    assert float((x0 < 0.5).double().mean()) == pytest.approx(0.3, abs=0.03)


def test_small_t_returns_close_to_the_prior_and_t1_ignores_it():
    """Two Gaussian modes (tau = 0.3) in 64-D; a prior drawn from mode b. Small t: the output stays near
    the prior and in its mode for every seed. t = 1: the same eps gives the same output for any prior,
    and across seeds it lands in either mode."""
    g = torch.Generator().manual_seed(4)
    shape = (1, 1, 4, 4, 4)
    mode_a = torch.randn(shape, generator=g, dtype=torch.float64)
    mode_b = -mode_a
    tau = 0.3
    model = MixtureVelocity(torch.cat([mode_a, mode_b]), stds=tau)
    codec = PassThroughCodec(4)
    sampler = FlowSampler(steps=100)
    prior_b = mode_b + tau * torch.randn(shape, generator=g, dtype=torch.float64)
    prior_a = mode_a + tau * torch.randn(shape, generator=g, dtype=torch.float64)
    scale = float((prior_b - mode_b).norm())  # the prior's own spread around its mode
    modes_at_t1 = set()
    for seed in range(12):
        near = inject_shape_prior(codec, model, prior_b, 0.05, sampler, None, seed=seed)
        assert float((near - prior_b).norm()) < 0.25 * scale  # close to the prior ...
        assert float((near - mode_b).norm()) < float((near - mode_a).norm())  # ... in its mode
        far = [inject_shape_prior(codec, model, p, 1.0, sampler, None, seed=seed) for p in (prior_a, prior_b)]
        assert torch.equal(far[0], far[1])  # t = 1 ignores the prior
        assert float((far[1] - prior_b).norm()) > 0.8 * scale
        modes_at_t1.add(float((far[1] - mode_a).norm()) < float((far[1] - mode_b).norm()))
    assert modes_at_t1 == {True, False}


# ------------------------------------------------------------------- 2. Euler converges, first order
def test_euler_error_is_first_order_against_the_exact_gaussian_flow():
    """Data N(mu, tau^2 I): x_t ~ N((1 - t) mu, sigma_t^2 I), sigma_t^2 = (1 - t)^2 tau^2 + s(t)^2, and the
    exact flow keeps z = (x_t - (1 - t) mu) / sigma_t fixed, so x0 = mu + sigma_0 z."""
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(1, 1, 3, 3, 3, generator=g, dtype=torch.float64)
    tau = 0.2
    model = MixtureVelocity(mu, stds=tau)

    def sigma(t: float) -> float:
        return math.sqrt((1 - t) ** 2 * tau**2 + noise_scale(t) ** 2)

    for t_start in (1.0, 0.4):
        x_t = (1 - t_start) * mu + sigma(t_start) * torch.randn(mu.shape, generator=g, dtype=torch.float64)
        exact = mu + sigma(0.0) * (x_t - (1 - t_start) * mu) / sigma(t_start)
        errors = []
        for steps in (10, 20, 40, 80):
            sampler = FlowSampler(steps=steps)
            errors.append(float((sampler.sample(model, x_t, t_start, None) - exact).abs().max()))
        orders = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
        assert all(0.8 < p < 1.25 for p in orders), (t_start, errors, orders)


# ------------------------------------------------------------------- 4. a tiny neural model end to end
class TinyVelocity(torch.nn.Module):
    """A randomly initialised 3-D conv net v(x, t | cond) (seeded): the untrained stand-in for G_S."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv3d(channels + 1, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv3d(8, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, t: float, cond: torch.Tensor) -> torch.Tensor:
        time = torch.full_like(x[:, :1], t)
        return self.net(torch.cat([x, time], dim=1)) + 0.1 * cond.view(1, -1, 1, 1, 1)


def test_tiny_model_end_to_end_keeps_the_prior_at_small_t(duck):
    occupancy, frame = voxelize_prior(duck, 32)
    assert occupancy.shape == (1, 1, 32, 32, 32) and occupancy.dtype == torch.float32
    codec = IdentityCodec(32, 16, channels=2)
    model = TinyVelocity(2).eval()
    cond = torch.tensor([0.5, -0.5])
    sampler = FlowSampler(steps=20, guidance=3.0)
    prior = occupancy[0, 0] > 0
    latent = inject_shape_prior(codec, model, occupancy, 0.1, sampler, cond, seed=7)
    assert latent.shape == (1, 2, 16, 16, 16)
    assert torch.equal(latent, inject_shape_prior(codec, model, occupancy, 0.1, sampler, cond, seed=7))
    near = codec.decode(latent)
    assert near.shape == (1, 1, 32, 32, 32)
    assert iou(near[0, 0] > 0, prior) > 0.8
    noise_only = [codec.decode(inject_shape_prior(codec, model, occupancy, 1.0, sampler, cond, seed=s))[0, 0] > 0 for s in (7, 8)]
    assert not torch.equal(noise_only[0], noise_only[1])  # the seed matters
    assert all(iou(g, prior) < 0.5 for g in noise_only)  # an untrained model from pure noise wrecks it

    result = regenerate_structure(codec, model, occupancy, cond, ShapePriorConfig(t=0.3, steps=20, seed=7))
    assert result.t == pytest.approx(0.3) and result.steps == 6
    assert result.occupancy.dtype == torch.bool and result.occupancy.shape == (32, 32, 32)
    assert result.coords.shape == (int(result.occupancy.sum()), 3)
    assert bool(result.occupancy[tuple(result.coords.T)].all())
    assert iou(result.occupancy, prior) > 0.8
    # back in the scene: the regenerated voxels sit on the prior, at its pose and scale
    world = voxels_to_world(result.coords, frame)
    lo, hi = duck.bounds
    inside = np.all((world >= lo - 2 * frame.pitch) & (world <= hi + 2 * frame.pitch), axis=1)
    assert inside.mean() > 0.97


def test_shape_prior_config_validates_t():
    assert ShapePriorConfig().t == 0.3
    for t in (0.2, 0.25, 0.4):
        ShapePriorConfig(t=t)
    for t in (0.1, 0.45, 1.0):
        with pytest.raises(ValueError):
            ShapePriorConfig(t=t)
    with pytest.raises(ValueError):
        ShapePriorConfig(t=0.2, steps=4)  # INT(4 * 0.2 - 1) = -1: no step at or below t


# ------------------------------------------------------------------- 5. voxelising a real prior
def test_voxelize_duck_volume_and_frame_round_trip(duck):
    occupancy, frame = voxelize_prior(duck, 64)
    grid = occupancy[0, 0].numpy() > 0
    # TRELLIS normalisation: centred, the longest side exactly 1
    local = frame.to_grid(duck.vertices)
    assert np.allclose(local.min(axis=0), -local.max(axis=0), atol=1e-9)
    assert local.max(axis=0).max() == pytest.approx(0.5)
    assert np.allclose(frame.from_grid(local), duck.vertices, atol=1e-12)
    assert np.allclose(trimesh.transform_points(duck.vertices, frame.matrix()), local, atol=1e-12)
    # solid: voxel volume matches the mesh volume
    volume = grid.sum() * frame.pitch**3
    assert abs(volume - duck.volume) / duck.volume < 0.15, (volume, duck.volume)
    # back in the world: every occupied centre lies within the mesh bounds (plus a voxel) ...
    centres = voxels_to_world(np.argwhere(grid), frame)
    lo, hi = duck.bounds
    assert np.all((centres >= lo - frame.pitch) & (centres <= hi + frame.pitch))
    # ... and the boundary layer (fill=False) lies on the surface, within about one voxel
    shell, _ = voxelize_prior(duck, frame=frame, fill=False)
    shell = shell[0, 0].numpy() > 0
    assert shell.sum() < grid.sum() and not np.any(shell & ~grid)
    samples, _ = trimesh.sample.sample_surface(duck, 200_000, seed=0)
    distance, _ = cKDTree(samples).query(voxels_to_world(np.argwhere(shell), frame))
    assert np.quantile(distance, 0.99) < frame.pitch and distance.max() < 2 * frame.pitch


def test_voxelize_follows_a_rotated_frame(duck):
    """Rotating the mesh and the frame together leaves the grid unchanged (rotation convention check)."""
    rz = trimesh.transformations.rotation_matrix(0.7, [0, 0, 1])
    turned = duck.copy()
    turned.apply_transform(rz)
    base, _ = voxelize_prior(duck, 32)
    frame = GridFrame.fit(turned, 32, rotation=rz[:3, :3].T)
    again, _ = voxelize_prior(turned, frame=frame)
    assert iou(base > 0, again > 0) > 0.98
    with pytest.raises(ValueError):
        voxelize_prior(duck, 16, frame)


# ------------------------------------------------------------------- 6. classifier-free guidance
def test_guidance_formula_interval_and_zero_guidance():
    model = Recorder(lambda x, t, c: c * x + t)
    x = torch.linspace(-1, 1, 8).view(1, 1, 2, 2, 2)
    cond, neg = torch.tensor(2.0), torch.tensor(-1.0)
    # w = 0: the conditional velocity, one call
    assert torch.equal(FlowSampler(guidance=0.0).velocity(model, x, 0.3, cond, neg), cond * x + 0.3)
    assert len(model.calls) == 1
    # (1 + w) v_cond - w v_uncond
    w = 2.5
    guided = FlowSampler(guidance=w).velocity(model, x, 0.3, cond, neg)
    assert torch.allclose(guided, (1 + w) * (cond * x + 0.3) - w * (neg * x + 0.3))
    # no neg_cond: TRELLIS's zero condition
    assert torch.allclose(FlowSampler(guidance=w).velocity(model, x, 0.3, cond), (1 + w) * (cond * x + 0.3) - w * 0.3)
    # guidance interval [lo, hi], inclusive: outside it only the conditional model is called
    interval = FlowSampler(guidance=w, guidance_interval=(0.5, 1.0))
    assert torch.equal(interval.velocity(model, x, 0.3, cond, neg), cond * x + 0.3)
    for t in (0.5, 0.8, 1.0):
        assert torch.allclose(interval.velocity(model, x, t, cond, neg), (1 + w) * (cond * x + t) - w * (neg * x + t))
    # a sampled run uses the guided velocity in every Euler step
    sampler = FlowSampler(steps=5, guidance=w)
    expected = x.clone()
    grid = sampler.grid(1.0)
    for t, t_prev in zip(grid[:-1], grid[1:]):
        expected = expected - (t - t_prev) * ((1 + w) * (cond * expected + t) - w * (neg * expected + t))
    assert torch.allclose(sampler.sample(model, x, 1.0, cond, neg), expected)
    with pytest.raises(ValueError):
        FlowSampler(guidance=1.0).velocity(model, x, 0.5, cond="not a tensor")
