"""Rectified flow exactly as TRELLIS defines it, and its Euler sampler, started at any t (paper 3.4,
Algorithm 3 lines 7-14).

Convention (TRELLIS ``trellis/trainers/flow_matching/flow_matching.py``, ``diffuse`` / ``get_v``):

    x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps,   t in [0, 1], t = 1 noise, t = 0 data,
    v   = (1 - sigma_min) eps - x0                              (= dx_t / dt along a path),

with ``sigma_min = 1e-5``. Sampler (TRELLIS ``trellis/pipelines/samplers/flow_euler.py`` and its
``guidance_interval_mixin.py``): ``t = linspace(1, 0, steps + 1)`` rescaled by
``t' = r t / (1 + (r - 1) t)`` (``rescale_t = r``), Euler ``x <- x - (t - t_prev) v(x, t)``, and
classifier-free guidance ``(1 + w) v(x, t | cond) - w v(x, t | neg_cond)``, applied only while
``lo <= t <= hi`` when a guidance interval is given (both ends inclusive, as upstream).

Models here follow :class:`hiscene_sim.generate.interfaces.VelocityModel`: they receive ``t`` as a
float in [0, 1]; a TRELLIS adapter multiplies it by 1000 itself.

Starting part-way (Algorithm 3, line 10 ``for i = INT(N * t - 1) down to 0``): a run started at
``t_start`` performs exactly the steps of the full ``N``-step run whose start time is ``<= t_start``
(to within 1e-9), in the same order, with the same step sizes. Numbering the full grid's unrescaled
points ``u_j = j / N`` (``j = 0 .. N``), the step with index ``i`` goes from ``u_{i+1}`` to ``u_i``, so
for ``rescale_t = 1`` the steps run are ``i = INT(N t_start - 1), ..., 1, 0``: ``INT(N t_start)``
model evaluations at ``t = INT(N t_start) / N, ..., 2 / N, 1 / N``. With ``rescale_t = r`` the same
holds with ``t_start`` replaced by its unrescaled value ``u = t / (r - (r - 1) t)``. When ``t_start``
falls between grid points, there is no partial step (Algorithm 3 has none): the state handed in is
integrated from the grid point just below, ``start_time(t_start)``; callers that want the state's noise
level and the first model time to agree noise to ``start_time(t_start)`` (``inject_shape_prior`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

SIGMA_MIN = 1e-5  # TRELLIS FlowMatchingTrainer default, and the samplers' ``sigma_min`` in pipeline.json
GRID_TOLERANCE = 1e-9  # grid points within this of t_start count as <= t_start (float noise in N * t)


def noise_scale(t: float, sigma_min: float = SIGMA_MIN) -> float:
    """s(t) = sigma_min + (1 - sigma_min) t, the noise coefficient of x_t."""
    return sigma_min + (1.0 - sigma_min) * t


def noise_to(x0: torch.Tensor, t: float, eps: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps (TRELLIS ``diffuse``; Algorithm 3 line 7).

    x0, eps: same shape (B, C, ...), any float dtype; t: float in [0, 1]. Returns x_t, same shape."""
    if x0.shape != eps.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and eps {tuple(eps.shape)} must have the same shape")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    return (1.0 - t) * x0 + noise_scale(t, sigma_min) * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """v = (1 - sigma_min) eps - x0, the training target (TRELLIS ``get_v``); d x_t / dt on a path."""
    return (1.0 - sigma_min) * eps - x0


def rescale(t: float, rescale_t: float = 1.0) -> float:
    """TRELLIS's time shift t' = r t / (1 + (r - 1) t); r > 1 spends more steps at high noise."""
    return rescale_t * t / (1.0 + (rescale_t - 1.0) * t)


def unrescale(t: float, rescale_t: float = 1.0) -> float:
    """Inverse of :func:`rescale`: u = t / (r - (r - 1) t)."""
    return t / (rescale_t - (rescale_t - 1.0) * t)


def full_grid(steps: int, rescale_t: float = 1.0) -> list[float]:
    """The N + 1 times of a full TRELLIS run: linspace(1, 0, N + 1), then :func:`rescale`; 1.0 ... 0.0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rescale_t <= 0:
        raise ValueError(f"rescale_t must be > 0, got {rescale_t}")
    # linspace(1, 0, N + 1)[j] = 1 - j / N, computed as (N - j) / N so that the ends are exact
    return [rescale((steps - j) / steps, rescale_t) for j in range(steps + 1)]


def time_grid(steps: int, t_start: float = 1.0, rescale_t: float = 1.0) -> list[float]:
    """The times of a run started at ``t_start``: the full grid's points <= t_start, descending to 0.0.

    ``len(result) - 1`` Euler steps are run, from ``result[k]`` to ``result[k + 1]``; the model is
    evaluated at ``result[:-1]``. For ``t_start = 1`` this is the full grid. See the module docstring
    for the link to Algorithm 3's ``for i = INT(N t - 1) down to 0``."""
    if not 0.0 <= t_start <= 1.0:
        raise ValueError(f"t_start must be in [0, 1], got {t_start}")
    return [t for t in full_grid(steps, rescale_t) if t <= t_start + GRID_TOLERANCE]


GuidedModel = Callable[[torch.Tensor, float, Any], torch.Tensor]


@dataclass(frozen=True)
class FlowSampler:
    """TRELLIS's Euler sampler (``FlowEulerSampler`` / ``FlowEulerGuidanceIntervalSampler``) with a start
    time, so that the shape-prior injection of Algorithm 3 runs the tail of the usual schedule.

    steps: N, the number of steps of a full run (t = 1 -> 0).
    sigma_min: the flow's minimum noise scale (1e-5 in TRELLIS).
    guidance: classifier-free guidance strength w; 0 disables it (one model call per step).
    guidance_interval: (lo, hi): guidance only while lo <= t <= hi; None = everywhere.
    rescale_t: TRELLIS's time-shift factor r (1 = uniform grid).
    """

    steps: int = 25
    sigma_min: float = SIGMA_MIN
    guidance: float = 0.0
    guidance_interval: tuple[float, float] | None = None
    rescale_t: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {self.sigma_min}")
        if self.rescale_t <= 0:
            raise ValueError(f"rescale_t must be > 0, got {self.rescale_t}")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"guidance_interval must satisfy 0 <= lo <= hi <= 1, got {self.guidance_interval}")

    # ------------------------------------------------------------------ the schedule
    def grid(self, t_start: float = 1.0) -> list[float]:
        """:func:`time_grid` for this sampler: times from start_time(t_start) down to 0.0."""
        return time_grid(self.steps, t_start, self.rescale_t)

    def num_steps(self, t_start: float) -> int:
        """How many Euler steps (model evaluations, x2 under guidance) a run from t_start takes:
        ``INT(N u) = INT(N u - 1) + 1`` with u the unrescaled t_start (Algorithm 3 line 10)."""
        return len(self.grid(t_start)) - 1

    def start_time(self, t_start: float) -> float:
        """The grid time the run actually begins at: the largest grid point <= t_start."""
        return self.grid(t_start)[0]

    def guided_times(self, t_start: float) -> list[float]:
        """The model times of a run from t_start at which classifier-free guidance is applied: none when
        guidance is 0, else those inside ``guidance_interval`` (TRELLIS's ``cfg_interval``). With the
        TRELLIS-image-large interval [0.5, 1.0] a run from t <= 0.4 applies none."""
        if self.guidance == 0.0:
            return []
        return [t for t in self.grid(t_start)[:-1] if self._guided_at(t)]

    def record(self, t_start: float) -> dict[str, Any]:
        """What a run from ``t_start`` actually does, for the records: the start time and the number of
        Euler steps run (of ``steps`` in a full run), and the guidance applied: its strength where it is
        applied, or ``"none"`` when no step of the run falls inside the interval (or guidance is 0)."""
        guided = self.guided_times(t_start)
        return {
            "t_start": self.start_time(t_start),
            "steps_run": self.num_steps(t_start),
            "steps_full_schedule": self.steps,
            "guidance_configured": self.guidance,
            "guidance_interval": list(self.guidance_interval) if self.guidance_interval is not None else None,
            "guidance_applied": self.guidance if guided else "none",
            "guided_steps": len(guided),
            "guided_times": [round(t, 6) for t in guided],
            "rescale_t": self.rescale_t,
            "model_evaluations": self.num_steps(t_start) + len(guided),
        }

    def step_indices(self, t_start: float) -> list[int]:
        """Algorithm 3's loop indices i (line 10), in execution order: INT(N u - 1), ..., 0, where the
        step with index i integrates from unrescaled time (i + 1) / N to i / N."""
        return list(range(self.num_steps(t_start) - 1, -1, -1))

    # ------------------------------------------------------------------ one evaluation
    def velocity(self, model: GuidedModel, x_t: torch.Tensor, t: float, cond: Any, neg_cond: Any = None) -> torch.Tensor:
        """v at (x_t, t), with classifier-free guidance when enabled and t is inside the interval:
        (1 + w) v(x_t, t | cond) - w v(x_t, t | neg_cond). ``neg_cond`` None with guidance on means
        zeros_like(cond), TRELLIS's negative condition (``get_cond``); cond must then be a tensor."""
        if self.guidance == 0.0 or not self._guided_at(t):
            return model(x_t, t, cond)
        if neg_cond is None:
            if not isinstance(cond, torch.Tensor):
                raise ValueError("guidance needs neg_cond when cond is not a tensor")
            neg_cond = torch.zeros_like(cond)
        v_cond = model(x_t, t, cond)
        v_uncond = model(x_t, t, neg_cond)
        return (1.0 + self.guidance) * v_cond - self.guidance * v_uncond

    def _guided_at(self, t: float) -> bool:
        if self.guidance_interval is None:
            return True
        lo, hi = self.guidance_interval
        return lo <= t <= hi

    # ------------------------------------------------------------------ the run
    @torch.no_grad()
    def sample(
        self,
        model: GuidedModel,
        x_start: torch.Tensor | tuple[int, ...],
        t_start: float,
        cond: Any,
        neg_cond: Any = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integrate from t_start to 0 with Euler steps on this sampler's grid; returns x0.

        x_start: the state at t_start, (B, C, ...) float; or, only with t_start = 1, a shape, and then
            pure noise x_1 = eps ~ N(0, I) is drawn from ``generator`` (float32, CPU).
        t_start: in [0, 1]. Steps run: those of the full N-step grid that start at or below t_start
            (module docstring; Algorithm 3 lines 10-14). t_start below the first grid point > 0 runs none.
        Deterministic: no randomness is drawn unless x_start is a shape.
        """
        if not 0.0 <= t_start <= 1.0:
            raise ValueError(f"t_start must be in [0, 1], got {t_start}")
        if isinstance(x_start, torch.Tensor):
            x = x_start
        else:
            if abs(t_start - 1.0) > GRID_TOLERANCE:
                raise ValueError("x_start may be a shape (pure noise) only when t_start = 1")
            x = torch.randn(tuple(x_start), generator=generator)
        times = self.grid(t_start)
        # Algorithm 3 lines 10-14: i = INT(N t - 1) .. 0; t_i = times[k], h = t_i - t_{i-1}
        for t, t_prev in zip(times[:-1], times[1:]):
            v = self.velocity(model, x, t, cond, neg_cond)
            if v.shape != x.shape:
                raise ValueError(f"velocity {tuple(v.shape)} does not match the state {tuple(x.shape)}")
            x = x - (t - t_prev) * v  # TRELLIS sample_once: x_prev = x_t - (t - t_prev) * v
        return x

