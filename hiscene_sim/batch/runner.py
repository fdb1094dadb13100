"""Many scenes at once: each scene one Ray task (``run_scene``), on a local Ray or a cluster.

- A scene that fails is a ``failed`` record (its error, no exception): the others go on.
- A worker that dies (killed, out of memory, a crash in native code) is retried by Ray
  (``max_retries``); a scene whose worker died every time is ``failed`` and retried by the
  next run.
- Resume: a scene whose ``DIR/<name>/batch.json`` holds the same key (same input bytes, same
  parameters) is not run again, failed ones included unless their failure may pass next time
  (a missing backend, a crash) or ``retry_failed`` is set.
- Ctrl-C: running scenes are cancelled (their temp dirs removed, forcefully after a grace
  period), the manifest of what finished is written, Ray is shut down if we started it, and
  KeyboardInterrupt is re-raised. No half-written ``DIR/<name>`` is left.

Without Ray (``use_ray=False``) the same scenes run one after another in this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hiscene_sim.batch.jobs import BatchConfig, SceneJob
from hiscene_sim.batch.manifest import write_outputs
from hiscene_sim.batch.progress import BatchProgress
from hiscene_sim.batch.records import failure_record, read_record, remove_stale_temp, write_failure
from hiscene_sim.batch.stages import run_scene

log = logging.getLogger(__name__)

LOCK_FILE = ".batch.lock"
OBJECT_STORE_MB = 200
CANCEL_GRACE_S = 15.0


@dataclass
class BatchResult:
    out_dir: Path
    records: list[dict]  # one per job, in input order (variants inside their scene's record)
    ran: int = 0
    reused: int = 0
    interrupted: bool = False
    outputs: dict[str, Path] = field(default_factory=dict)  # "jsonl" / "parquet" / "contact_sheet" -> file
    seconds: dict[str, float] = field(default_factory=dict)  # "start" (Ray), "scenes", "finish" (outputs, Ray shutdown)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "unstable": 0, "failed": 0}
        for r in self.records:
            out[r.get("status", "failed")] = out.get(r.get("status", "failed"), 0) + 1
        return out

    @property
    def all_ok(self) -> bool:
        return bool(self.records) and all(r.get("status") == "ok" for r in self.records) and not self.interrupted


# ----------------------------------------------------------------------------------------
# Ray


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = OBJECT_STORE_MB,
             log_to_driver: bool = False, runtime_env: dict | None = None) -> bool:
    """Start a local Ray (no ``address``) or connect to a cluster (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``). Returns whether this call initialised Ray (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict = {"log_to_driver": log_to_driver, "logging_level": logging.WARNING}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, **kwargs)
    return True


def code_runtime_env() -> dict:
    """Ship this checkout's packages to a cluster's workers (they still need the dependencies)."""
    import exporters
    import hiscene_sim
    import physics

    return {"py_modules": [str(Path(m.__file__).parent) for m in (hiscene_sim, exporters, physics)]}


def _crash_text(exc: BaseException, retries: int) -> str:
    name = type(exc).__name__
    first = (str(exc).strip().splitlines() or [name])[0]
    if name in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError", "RaySystemError", "LocalRayletDiedError"):
        return f"worker died {retries + 1} time(s) running this scene ({name}: {first})"
    if name == "TaskCancelledError":
        return "cancelled"
    return f"{name}: {first}"


# ----------------------------------------------------------------------------------------
# the batch


@contextlib.contextmanager
def batch_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (an advisory lock on DIR/.batch.lock)."""
    import fcntl

    fh = open(out_dir / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FileExistsError(f"{out_dir}: another `hiscene batch` is writing into this folder") from None
        yield
    finally:
        fh.close()


def clean_stale(out_dir: Path) -> list[str]:
    """Temp dirs a killed run left in DIR (``.<name>.tmp-*``, ``.<name>.old-*``)."""
    removed = []
    for p in out_dir.iterdir():
        if p.is_dir() and p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def plan(jobs: list[SceneJob], out_dir: Path, retry_failed: bool = False) -> tuple[list[SceneJob], dict[str, dict]]:
    """(jobs to run, name -> record reused from an earlier run with the same key)."""
    todo, reused = [], {}
    for job in jobs:
        prev = read_record(out_dir / job.name)
        redo_failure = prev is not None and prev.get("status") == "failed" and (retry_failed or prev.get("retryable", True))
        if prev is not None and prev.get("key") == job.key and not redo_failure:
            reused[job.name] = {**prev, "reused": True}
        else:
            todo.append(job)
    return todo, reused


def _running(out_dir: Path, names: set[str]) -> list[str]:
    """Scenes being worked on now: those with a temp dir in DIR."""
    out = []
    with contextlib.suppress(OSError):
        for p in out_dir.iterdir():
            if p.name.startswith(".") and ".tmp-" in p.name:
                name = p.name[1:].split(".tmp-")[0]
                if name in names:
                    out.append(name)
    return sorted(set(out))


def run_batch(
    jobs: list[SceneJob],
    out_dir: str | Path,
    config: BatchConfig | None = None,
    *,
    use_ray: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_mb: int = OBJECT_STORE_MB,
    log_to_driver: bool = False,
    runtime_env: dict | None = None,
    retry_failed: bool = False,
    progress: BatchProgress | None = None,
    scene_fn: Callable[[SceneJob, str, BatchConfig], dict] = run_scene,
    contact_sheet: bool = True,
) -> BatchResult:
    """Run every job into ``out_dir``; write manifest.jsonl / manifest.parquet / contact_sheet.png."""
    config = config or BatchConfig()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [j.name for j in jobs]
    if len(set(n.lower() for n in names)) != len(names):
        raise ValueError("scene names must be unique in a batch")
    records: dict[str, dict] = {}
    result = BatchResult(out_dir, [])
    with batch_lock(out_dir):
        stale = clean_stale(out_dir)
        if stale:
            log.info("removed %d temp dir(s) left by an interrupted run", len(stale))
        todo, reused = plan(jobs, out_dir, retry_failed)
        records.update(reused)
        result.reused, result.ran = len(reused), 0
        progress = progress or BatchProgress(len(jobs), enabled=False)
        progress.total, progress.reused = len(jobs), len(reused)
        progress.start()

        def finish(job: SceneJob, record: dict) -> None:
            record = {**record, "reused": False}
            records[job.name] = record
            result.ran += 1
            progress.scene_finished(record)
            write_outputs(out_dir, [records[j.name] for j in jobs if j.name in records], parquet=False, sheet=False)

        started_ray = False
        t_scenes = time.perf_counter()
        try:
            if not todo:
                pass
            elif not use_ray:
                for job in todo:
                    progress.update([job.name], len(todo) - result.ran - 1)
                    finish(job, scene_fn(job, str(out_dir), config))
            else:
                import ray

                started_ray = not ray.is_initialized()  # shut down below even if Ctrl-C hits during the start
                t0 = time.perf_counter()
                init_ray(address, num_cpus, object_store_mb, log_to_driver, runtime_env)
                result.seconds["start"] = round(time.perf_counter() - t0, 3)
                config = _resolve_resources(config, ray)
                scene_res = config.stage_resources("scene")
                task = ray.remote(scene_fn)
                opts = {"num_cpus": scene_res.cpus, "num_gpus": scene_res.gpus or 0, "max_retries": config.max_retries,
                        "retry_exceptions": False}
                refs: dict = {}
                pending: list = []
                try:
                    for job in sorted(todo, key=_expected_cost, reverse=True):  # longest first: a shorter tail
                        ref = task.options(**opts, name=f"hiscene-scene-{job.name}").remote(job, str(out_dir), config)
                        refs[ref] = job
                        pending.append(ref)
                    while pending:
                        ready, pending = ray.wait(pending, num_returns=1, timeout=progress.refresh_s)
                        for ref in ready:
                            job = refs[ref]
                            try:
                                record = ray.get(ref)
                            except ray.exceptions.RayError as exc:
                                record = failure_record(job, exc)
                                record.update(error=_crash_text(exc, config.max_retries), retryable=True)
                                with contextlib.suppress(OSError):
                                    write_failure(out_dir, job, record, f"{type(exc).__name__}: {exc}\n")
                            finish(job, record)
                        pending_names = {refs[r].name for r in pending}
                        running = _running(out_dir, pending_names)
                        progress.update(running, len(pending) - len(running))
                except KeyboardInterrupt:
                    result.interrupted = True
                    _cancel(ray, pending, [refs[r] for r in pending], out_dir)
                    raise
        except KeyboardInterrupt:
            result.interrupted = True
            raise
        finally:
            t_finish = time.perf_counter()
            result.seconds["scenes"] = round(t_finish - t_scenes - result.seconds.get("start", 0.0), 3)
            progress.stop()
            result.records = [records[j.name] for j in jobs if j.name in records]
            with contextlib.suppress(Exception):
                result.outputs = write_outputs(out_dir, result.records, parquet=True, sheet=contact_sheet)
            if started_ray:
                import ray

                if ray.is_initialized():
                    ray.shutdown()
                if result.interrupted:  # workers are gone now: what a kill left behind goes too
                    for job in todo:
                        if job.name not in records:
                            remove_stale_temp(out_dir, job.name)
            result.seconds["finish"] = round(time.perf_counter() - t_finish, 3)
    return result


def _expected_cost(job: SceneJob) -> float:
    """A scene's work, roughly: prompts (generation) first, then by input size."""
    if job.kind == "prompt":
        return float("inf")
    path = Path(job.input)
    try:
        if path.is_dir():
            return float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
        return float(path.stat().st_size)
    except OSError:
        return 0.0


def _resolve_resources(config: BatchConfig, ray) -> BatchConfig:
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    resolved = {k: v.resolved(gpus) for k, v in config.resources.items()}
    return config.with_resources(**resolved)


def _cancel(ray, refs: list, jobs: list[SceneJob], out_dir: Path) -> None:
    """Ctrl-C: ask the running scenes to stop (KeyboardInterrupt in the task: its temp dir
    goes), kill what is still running after a grace period, remove what a kill left."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    deadline = time.monotonic() + CANCEL_GRACE_S
    left = list(refs)
    with contextlib.suppress(BaseException):
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=0.5)
    for ref in left:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    if left:
        with contextlib.suppress(BaseException):
            ray.wait(left, num_returns=len(left), timeout=5.0)
    for job in jobs:
        remove_stale_temp(out_dir, job.name)
