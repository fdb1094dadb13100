"""Running a function here or as a Ray task with its own resources: the one home of that
choice for ``hiscene batch`` (a scene's stages, its variants).

Inside a Ray task, a stage that has its own resources in ``BatchConfig.resources`` (a GPU for
the neural stages, more CPUs for export) runs as a nested Ray task with them; the scene task
waits, giving its CPU back meanwhile. Anywhere else (no Ray, or no resources of its own), the
function runs in this process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from hiscene_sim.batch.jobs import BatchConfig, StageResources


def in_ray_task() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    try:
        return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None
    except Exception:  # noqa: BLE001 - no runtime context: not a task
        return False


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """The user exception inside a RayTaskError (else the exception itself)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) and type(exc).__name__.startswith("RayTaskError") else exc


def own_resources(stage: str, config: BatchConfig) -> StageResources | None:
    """The resources a stage runs with as its own Ray task, or None: it runs inline."""
    res = config.stage_resources(stage)
    if res is None or res == config.stage_resources("scene") or not in_ray_task():
        return None
    return res


def _remote(fn: Callable, res: StageResources, config: BatchConfig, stage: str):
    import ray

    return ray.remote(fn).options(num_cpus=res.cpus, num_gpus=res.gpus or 0, max_retries=config.max_retries,
                                  name=f"hiscene-{stage}")


def call_stage(stage: str, config: BatchConfig, fn: Callable, *args):
    """``fn(*args)`` here, or as a nested Ray task with the stage's own resources (its error
    re-raised as itself)."""
    res = own_resources(stage, config)
    if res is None:
        return fn(*args)
    import ray

    try:
        return ray.get(_remote(fn, res, config, stage).remote(*args))
    except Exception as exc:  # noqa: BLE001 - re-raise the stage's own error
        inner = unwrap_ray_error(exc)
        if inner is exc:
            raise
        raise inner from None


def map_stage(stage: str, config: BatchConfig, fn: Callable, arg_lists: Sequence[tuple]) -> list[Any]:
    """``[fn(*args) for args in arg_lists]``, as parallel Ray tasks when the stage has its own
    resources; an item whose task failed every time is its exception, not a result."""
    res = own_resources(stage, config)
    if res is None:
        return [fn(*args) for args in arg_lists]
    import ray

    remote = _remote(fn, res, config, stage)
    refs = [remote.remote(*args) for args in arg_lists]
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - e.g. its worker died every time
            out.append(unwrap_ray_error(exc))
    return out
