"""Every local file a ``hiscene generate`` run will read, checked before any work.

``hiscene generate ... --check`` prints :func:`report` (each file: its config key, flag and environment
variable, what it is for, and whether it is there) and exits 1 when something is missing, 0 when all is
present; a run calls :func:`raise_if_missing` first, so it fails listing every missing file at once, not
the first one after minutes of work. Only directory listings and small JSON / YAML configs are read
(:mod:`hiscene_sim.generate.checkpoints`), so a mismatched checkpoint is reported here too.

Which files a run needs follows from its stages and backends: a prompt needs FLUX (text -> image) and,
like ``--from-image``, TRELLIS with its local DINOv2 and rembg's model (TRELLIS removes the image's
background; an ``--from-image`` RGBA picture with a mask needs no rembg); ``--completion svd`` the SVD
checkpoint; ``--regenerate trellis`` InstantMesh (checkpoint, clone, YAML, DINO encoder) and TRELLIS with
its sparse-structure encoder; ``--labeller clip`` CLIP; a prompt's background FLUX and TRELLIS again.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hiscene_sim.backends import BackendError
from hiscene_sim.generate.checkpoints import (
    check_clip_snapshot,
    check_dino_snapshot,
    check_flux_snapshot,
    check_instantmesh_config,
    check_trellis_encoder,
    check_trellis_snapshot,
)
from hiscene_sim.generate.config import ALL_KEYS, GenerateConfig

__all__ = ["Requirement", "raise_if_missing", "report", "requirements"]

TRELLIS_FORMATS = ("mesh", "gaussian")  # what the adapter's default settings decode


@dataclass
class Requirement:
    """One file or folder a run needs. ``problem`` None: present and as expected."""

    key: str
    path: Path | None
    stages: list[str] = field(default_factory=list)
    problem: str | None = None
    note: str = ""  # e.g. "derived from generate.instantmesh.repo"

    @property
    def what(self) -> str:
        return ALL_KEYS[self.key].what

    def where(self) -> str:
        s = ALL_KEYS[self.key]
        return f"{s.flag}, ${s.env}" if s.env else s.flag

    def line(self) -> str:
        status = "MISSING" if self.problem else "ok     "
        path = str(self.path) if self.path is not None else "(not set)"
        head = f"  {status} {self.key} ({self.where()}): {path}" + (f" [{self.note}]" if self.note else "")
        tail = f"\n            {self.problem}" if self.problem else ""
        return f"{head}{tail}\n            for {', '.join(self.stages)}: {self.what}"


def _exists(path: Path | None, kind: str) -> str | None:
    if path is None:
        return "not configured"
    if kind == "file" and not path.is_file():
        return "no such file"
    if kind == "dir" and not path.is_dir():
        return "no such directory"
    if not path.exists():
        return "no such file or directory"
    return None


def _checked(check, *args, **kwargs) -> str | None:
    try:
        check(*args, **kwargs)
    except BackendError as exc:
        return str(exc)
    return None


def _has_mask(image: Path | None) -> bool:
    """An RGBA image whose alpha is not all 255 (TRELLIS uses it as the mask and runs no rembg)."""
    if image is None or not Path(image).is_file():
        return False
    import numpy as np
    from PIL import Image

    try:
        with Image.open(image) as im:
            return im.mode == "RGBA" and not bool(np.all(np.asarray(im)[:, :, 3] == 255))
    except OSError:
        return False


class _Needs:
    def __init__(self, config: GenerateConfig) -> None:
        self.config = config
        self.items: dict[str, Requirement] = {}

    def add(self, key: str, stage: str, path: Path | None = None, problem: str | None = None, note: str = "") -> Requirement:
        if key in self.items:
            req = self.items[key]
            if stage not in req.stages:
                req.stages.append(stage)
            return req
        path = self.config.path(key) if path is None else path
        req = self.items[key] = Requirement(key, path, [stage], problem, note)
        return req

    # ------------------------------------------------------------------ per model
    def flux(self, stage: str) -> None:
        req = self.add("generate.flux.weights", stage)
        req.problem = req.problem or _exists(req.path, "dir") or _checked(check_flux_snapshot, req.path)

    def clip(self, stage: str, required: bool) -> None:
        path = self.config.path("generate.clip.weights")
        if path is None and not required:
            return
        req = self.add("generate.clip.weights", stage)
        req.problem = req.problem or _exists(req.path, "dir") or _checked(check_clip_snapshot, req.path)

    def trellis(self, stage: str, rembg: bool, algorithm3: bool = False) -> None:
        req = self.add("generate.trellis.weights", stage)
        if req.problem is None:
            req.problem = _exists(req.path, "dir") or _checked(check_trellis_snapshot, req.path, TRELLIS_FORMATS,
                                                                algorithm3=algorithm3)
            if req.problem is None and algorithm3:
                from hiscene_sim.generate.trellis import SS_ENCODER_CKPT

                req.problem = _checked(check_trellis_encoder, req.path, SS_ENCODER_CKPT)
        repo = self.add("generate.trellis.dinov2_repo", stage)
        repo.problem = repo.problem or _exists(repo.path, "dir") or (
            None if (repo.path / "hubconf.py").is_file() else f"{repo.path / 'hubconf.py'}: no such file")
        weights = self.add("generate.trellis.dinov2_weights", stage)
        weights.problem = weights.problem or _exists(weights.path, "file")
        if rembg:
            model = self.add("generate.trellis.rembg_model", stage)
            model.problem = model.problem or _exists(model.path, "file")

    def instantmesh(self, stage: str) -> None:
        from hiscene_sim.generate.instantmesh import _importable_clone

        ckpt_req = self.add("generate.instantmesh.weights", stage)
        ckpt = ckpt_req.path
        if ckpt is not None and ckpt.is_dir():
            ckpt = ckpt / "instant_mesh_large.ckpt"
        ckpt_req.problem = ckpt_req.problem or _exists(ckpt, "file")
        repo_req = self.add("generate.instantmesh.repo", stage)
        repo = repo_req.path
        if repo is None:
            repo = _importable_clone() if importlib.util.find_spec("src") is not None else None
            if repo is not None:
                repo_req.path, repo_req.note = repo, "found on PYTHONPATH"
            else:
                repo_req.problem = repo_req.problem or "not configured, and InstantMesh's package src is not on PYTHONPATH"
        elif not (repo / "src" / "models" / "lrm_mesh.py").is_file():
            repo_req.problem = repo_req.problem or f"{repo / 'src' / 'models' / 'lrm_mesh.py'}: no such file (not a clone)"
        cfg_req = self.add("generate.instantmesh.config", stage)
        if cfg_req.path is None and repo is not None and ckpt is not None:
            variant = repo / "configs" / (ckpt.stem.replace("_", "-") + ".yaml")
            cfg_req.path = variant if variant.is_file() else repo / "configs" / "instant-mesh-large.yaml"
            cfg_req.note = "derived from generate.instantmesh.repo"
        params = None
        cfg_req.problem = cfg_req.problem or _exists(cfg_req.path, "file")
        if cfg_req.problem is None:
            try:
                params = check_instantmesh_config(cfg_req.path, ckpt)
            except BackendError as exc:
                cfg_req.problem = str(exc)
        dino = self.add("generate.instantmesh.dino", stage)
        dino.problem = dino.problem or _exists(dino.path, "dir") or _checked(
            check_dino_snapshot, dino.path, (params or {}).get("encoder_feat_dim"))


def requirements(stages: Sequence[str], config: GenerateConfig, *, prompt: bool = False, image: Path | None = None,
                 scene_file: bool = False, label_backend: str | None = None, label_weights: bool = False,
                 given: Iterable[str] = ()) -> list[Requirement]:
    """What a run of ``stages`` under ``config`` reads from disk, each checked.

    prompt: the run starts from a prompt; image: the ``--from-image`` picture (its alpha decides whether
    TRELLIS needs rembg); scene_file: starts from a fused scene (no scene3d model). label_backend /
    label_weights: the labeller and whether it was given its own weights. given: models passed in already
    built (``flux``, ``clip``, ``trellis``, ``instantmesh``): their files are not needed."""
    given = set(given)
    needs = _Needs(config)
    wanted = set(stages)
    if "image" in wanted and prompt:
        if "flux" not in given:
            needs.flux("image")
        if "clip" not in given:
            needs.clip("image", required=False)
    if "scene3d" in wanted and not scene_file and "trellis" not in given:
        needs.trellis("scene3d", rembg=prompt or not _has_mask(image))
    if "complete" in wanted and config.completion_backend == "svd":
        req = needs.add("completion.svd.weights", "complete")
        req.problem = _exists(req.path, "any")
    if "label" in wanted and label_backend == "clip" and not label_weights:
        needs.clip("label", required=True)
    if "regenerate" in wanted and config.regeneration_backend == "trellis":
        if "instantmesh" not in given:
            needs.instantmesh("regenerate")
        if "trellis" not in given:
            needs.trellis("regenerate", rembg=False, algorithm3=True)
    if "background" in wanted and prompt:
        if "flux" not in given:
            needs.flux("background")
        if "trellis" not in given:
            needs.trellis("background", rembg=True)
    return list(needs.items.values())


def report(reqs: Sequence[Requirement]) -> str:
    """Every requirement, missing ones first, one block each; an empty list says no file is needed."""
    if not reqs:
        return "hiscene generate --check: this run needs no model files (every stage runs on CPU)"
    missing = [r for r in reqs if r.problem]
    head = (f"hiscene generate --check: {len(missing)} of {len(reqs)} needed files missing" if missing else
            f"hiscene generate --check: all {len(reqs)} needed files present")
    return "\n".join([head] + [r.line() for r in missing] + [r.line() for r in reqs if not r.problem])


def raise_if_missing(reqs: Sequence[Requirement]) -> None:
    """BackendError listing every missing requirement (key, flag, path, problem), or nothing."""
    missing = [r for r in reqs if r.problem]
    if missing:
        raise BackendError(f"{len(missing)} needed file(s) missing or not as expected, before any work "
                           "(hiscene generate --check lists them):\n" + "\n".join(r.line() for r in missing))
