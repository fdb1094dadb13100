"""Simulate until everything rests: the loop both simulators' settle stages run."""

from __future__ import annotations

from collections.abc import Callable

from physics.config import ValidationConfig


def run_to_rest(step: Callable[[], None], moving: Callable[[], list[str]], dt: float,
                config: ValidationConfig) -> tuple[float, list[str]]:
    """Step (``dt`` seconds each) for the drop test's ``seconds`` at least (an object balanced on
    an edge sits still a while before it falls), then until nothing moved for
    ``settle_rest_seconds`` or ``settle_max_seconds`` passed. Returns (simulated seconds, the
    ids still moving at the end)."""
    calm_needed = max(1, round(config.settle_rest_seconds / dt))
    min_steps = max(1, round(config.seconds / dt))
    max_steps = max(1, min_steps, round(config.settle_max_seconds / dt))
    calm, still, steps = 0, [], 0
    for steps in range(1, max_steps + 1):
        step()
        still = moving()
        calm = 0 if still else calm + 1
        if calm >= calm_needed and steps >= min_steps:
            break
    return steps * dt, still
