"""A batch scene's record (``batch.json``, the manifest's row): the record of a scene that ran,
of one that failed (with its error and whether the next run retries it), the validation
columns, and the folder hygiene around them (stale temp dirs, paths relocated after the
rename of a finished scene's temp dir)."""

from __future__ import annotations

import json
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

from hiscene_sim.atomic import atomic_directory, atomic_write_text, check_replaceable
from hiscene_sim.batch.jobs import SceneJob
from hiscene_sim.batch.ray_calls import unwrap_ray_error
from hiscene_sim.scene import SceneError

RECORD_FILE = "batch.json"
LOG_FILE = "batch.log"
RECORD_FORMAT = "hiscene-batch-scene"
STATUSES = ("ok", "unstable", "failed")
RENDER = "render_after.png"  # written by the validation report


class GenerationUnavailable(RuntimeError):
    """The prompt -> scene stage is not installed or cannot be imported here."""


class InputError(SceneError):
    """The input is not there or is not something a batch can take."""


def validation_metrics(report) -> dict:
    """The manifest's validation columns from a ValidationReport."""
    pb, mj = report.pybullet, report.mujoco
    sims = [s for s in (pb, mj) if s is not None]
    objs = [o for s in sims for o in s.objects]
    settle = report.settle
    return {
        "passed": bool(report.passed),
        "pybullet_stable": pb.n_stable,
        "pybullet_objects": pb.n_objects,
        "mujoco_stable": mj.n_stable if mj else None,
        "mujoco_objects": mj.n_objects if mj else None,
        "stable_share": round(min(s.stable_share for s in sims), 4),
        "max_drift_cm": round(max((o.drift_m for o in objs), default=0.0) * 100, 3),
        "max_rotation_deg": round(max((o.rotation_deg for o in objs), default=0.0), 3),
        "max_penetration_mm": round(max((o.penetration_start_m for o in objs), default=0.0) * 1000, 3),
        "collision_pairs": len(pb.penetrating_pairs_start),
        "agreement": round(report.agreement.share_agreeing, 4) if report.agreement else None,
        "settle_rounds": len(settle.iterations) if settle else 0,
        "settled_objects": len({m.id for it in settle.iterations for m in it.moves}) if settle else 0,
        "unresolved": [u.id for u in settle.unresolved] if settle else [],
        "failures": list(report.failures),
    }


def base_record(job: SceneJob) -> dict:
    record = {
        "format": RECORD_FORMAT,
        "input": job.label,
        "kind": job.kind,
        "name": job.name,
        "status": "failed",
        "error": None,
        "key": job.key,
        "variant_of": None,
    }
    if job.kind == "prompt":
        record.update(prompt=job.input, seed=job.seed)
    return record


def relocate_paths(root: Path, old: str, new: str) -> None:
    """Stages record absolute paths (export.json's source, validation.json's dirs); after a
    rename they must name the final place, not the temp dir."""
    if old == new:
        return
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md"):
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if old in text:
                atomic_write_text(path, text.replace(old, new))


def remove_stale_temp(out_root: Path, name: str) -> None:
    """Temp dirs of ``name`` left by a killed attempt (SIGKILL skips the usual clean-up)."""
    for p in out_root.glob(f".{name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out_root.glob(f".{name}.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def read_record(scene_out: Path) -> dict | None:
    try:
        data = json.loads((scene_out / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else None


def is_retryable(exc: BaseException) -> bool:
    """Failures the same input would give again (bad files, bad scenes) are final; anything
    else (a missing backend, a crash, the disk) is retried by the next run."""
    from exporters.watertight import MeshError

    return not isinstance(exc, (SceneError, MeshError, ValueError)) or isinstance(exc, GenerationUnavailable)


def error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (SceneError, GenerationUnavailable)) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def failure_record(job: SceneJob, exc: BaseException, seconds: dict | None = None) -> dict:
    exc = unwrap_ray_error(exc)
    return {**base_record(job), "status": "failed", "error": error_text(exc), "error_type": type(exc).__name__,
            "retryable": is_retryable(exc), "seconds": seconds or {}, "host": socket.gethostname(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_failure(out_root: Path, job: SceneJob, record: dict, log_text: str = "") -> None:
    """DIR/<name> with only the failure record (replacing an earlier output of the scene)."""
    final = out_root / job.name
    try:
        check_replaceable(final, RECORD_FILE)
    except FileExistsError:
        return  # not ours: the error (in the record) says so; leave the folder alone
    remove_stale_temp(out_root, job.name)
    with atomic_directory(final) as tmp:
        atomic_write_text(tmp / RECORD_FILE, json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
        atomic_write_text(tmp / LOG_FILE, log_text)
