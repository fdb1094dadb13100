"""The batch settings, the inputs -> scene jobs, and the resume key of a scene.

An input is

- a fused scene file (``.glb`` / ``.gltf`` / ``.ply`` / ``.obj``): parsed into objects
  (``hiscene parse``); with ``glb_mode="auto"`` a file with several mesh nodes is imported
  instead, one object per node (``hiscene import``);
- a scene dir (a folder with ``scene.json``): copied, then exported and validated;
- a text file of prompts (``.txt``, one prompt a line; blank lines and ``#`` comments are
  skipped): each prompt is generated (``hiscene_sim.generate.pipeline.generate_scene``);
- a folder without ``scene.json``: every scene file and scene dir directly inside it.

A scene's *key* is a hash of its input (the file's bytes; a scene dir's ``scene.json`` and
the files it names; a prompt's text and seed) and of every parameter that changes its output.
A scene whose stored key matches is not run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exporters.config import ExportConfig
from hiscene_sim.input_frame import InputFrame
from hiscene_sim.label.stage import LabelConfig
from hiscene_sim.naming import safe_identifier
from hiscene_sim.parse import ParseConfig
from physics.config import ValidationConfig

#: Bump when a change to the stages makes earlier outputs stale: every scene is redone.
BATCH_VERSION = 2  # 2: one orchestrator; parsed and imported scenes also go through complete

SCENE_SUFFIXES = (".glb", ".gltf", ".ply", ".obj")
PROMPT_SUFFIXES = (".txt", ".prompts")
STAGES = ("generate", "parse", "export", "validate", "variants")
GLB_MODES = ("auto", "parse", "import")


@dataclass(frozen=True)
class StageResources:
    """What one Ray task of a stage asks for. ``gpus=None``: one GPU when the cluster has
    any, else none (the default of the neural stage, ``generate``)."""

    cpus: float = 1.0
    gpus: float | None = 0.0

    def __post_init__(self) -> None:
        if not self.cpus >= 0 or (self.gpus is not None and not self.gpus >= 0):
            raise ValueError(f"stage resources must not be negative, got cpus={self.cpus}, gpus={self.gpus}")

    def resolved(self, cluster_gpus: float) -> "StageResources":
        return self if self.gpus is not None else StageResources(self.cpus, 1.0 if cluster_gpus >= 1 else 0.0)

    def describe(self) -> str:
        return f"cpus:{self.cpus:g},gpus:{'auto' if self.gpus is None else f'{self.gpus:g}'}"


def parse_resources(text: str) -> tuple[str, StageResources]:
    """``STAGE=cpus:N[,gpus:M]`` (``gpus:auto`` allowed) -> (stage, resources)."""
    stage, sep, spec = text.partition("=")
    stage = stage.strip().lower()
    if not sep or stage not in (*STAGES, "scene"):
        raise ValueError(f"expected STAGE=cpus:N[,gpus:M] with STAGE one of scene, {', '.join(STAGES)}; got {text!r}")
    values: dict[str, float | None] = {"cpus": 1.0, "gpus": 0.0}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, colon, value = part.partition(":")
        key = key.strip().lower().rstrip("s") + "s"  # cpu / cpus, gpu / gpus
        if not colon or key not in values:
            raise ValueError(f"{text!r}: expected cpus:N or gpus:M, got {part!r}")
        try:
            values[key] = None if key == "gpus" and value.strip() == "auto" else float(value)
        except ValueError:
            raise ValueError(f"{text!r}: {part!r} is not a number") from None
    return stage, StageResources(values["cpus"], values["gpus"])


@dataclass(frozen=True)
class VariantConfig:
    """``--variants K``: K seeded jitters of each scene's foreground objects (x/y position,
    yaw about the vertical, uniform scale about the bottom centre of the object's bounds),
    each settled and validated; only variants that pass are kept (a rejected draw is redrawn
    up to ``attempts`` draws in all)."""

    count: int = 0
    position_m: float = 0.03  # x and y each uniform in [-position_m, +position_m]
    yaw_deg: float = 20.0  # uniform in [-yaw_deg, +yaw_deg]
    scale: float = 0.05  # factor uniform in [1 - scale, 1 + scale]
    seed: int = 0
    attempts: int = 1  # draws per variant at most: a rejected draw is redrawn this many times - 1

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"--variants must be >= 0, got {self.count}")
        if self.attempts < 1:
            raise ValueError(f"--variant-attempts must be >= 1, got {self.attempts}")
        if self.position_m < 0 or self.yaw_deg < 0 or not 0 <= self.scale < 1:
            raise ValueError("variant bounds: position and yaw must be >= 0 and scale within [0, 1)")


def _default_resources() -> dict[str, StageResources]:
    # generate: one GPU when the cluster has one; the others run inside the scene task
    return {"scene": StageResources(1.0, 0.0), "generate": StageResources(1.0, None)}


@dataclass(frozen=True)
class BatchConfig:
    parse: ParseConfig = field(default_factory=ParseConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    export: ExportConfig = field(default_factory=lambda: ExportConfig(workers=1))
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    variants: VariantConfig = field(default_factory=VariantConfig)
    glb_mode: str = "auto"  # "auto": one mesh node = fused (parse), several = one object per node (import)
    frame: InputFrame = field(default_factory=InputFrame)  # how scene files' coordinates are read (--up, --units, --scale)
    seed: int = 0  # generation seed of the first prompt (each prompt line adds its index)
    generate_config: str | None = None  # `hiscene generate --config` JSON (weights); else $HISCENE_*_WEIGHTS
    # not part of the key: they change where and how fast, not what
    resources: dict[str, StageResources] = field(default_factory=_default_resources)
    max_retries: int = 2  # re-runs of a scene whose worker died

    def __post_init__(self) -> None:
        if self.glb_mode not in GLB_MODES:
            raise ValueError(f"glb mode must be one of {', '.join(GLB_MODES)}, got {self.glb_mode!r}")
        if self.max_retries < 0:
            raise ValueError(f"--max-retries must be >= 0, got {self.max_retries}")

    def stage_resources(self, stage: str) -> StageResources | None:
        """The stage's own Ray task resources; None: it runs inside the scene task."""
        return self.resources.get(stage)

    def key_parameters(self, kind: str = "file") -> dict:
        """Everything that changes a scene's output (and nothing that only changes speed);
        for prompts also the generation settings (config file content, weight paths)."""
        export = {k: v for k, v in asdict(self.export).items() if k not in ("workers", "cache_dir")}
        params = {
            "batch_version": BATCH_VERSION,
            "parse": asdict(self.parse),
            "label": self.label.public(),
            "export": export,
            "validation": asdict(self.validation),
            "variants": asdict(self.variants),
            "glb_mode": self.glb_mode,
            "frame": asdict(self.frame),
        }
        if kind == "prompt":
            params["generate"] = self._generate_key()
        return params

    def _generate_key(self) -> dict:
        out: dict = {}
        if self.generate_config:
            path = Path(self.generate_config)
            out["config"] = file_digest(path) if path.is_file() else f"missing:{path}"
        try:
            from hiscene_sim.generate.config import GenerateConfig

            weights = GenerateConfig.load(Path(self.generate_config) if self.generate_config else None).weights
            out["weights"] = {k: str(v) for k, v in sorted(weights.items())}
        except Exception:  # noqa: BLE001 - no generation stage here: the scene fails, whatever the key
            pass
        return out

    def with_resources(self, **stages: StageResources) -> "BatchConfig":
        return dataclasses.replace(self, resources={**self.resources, **stages})


@dataclass(frozen=True)
class SceneJob:
    name: str  # output folder DIR/<name>, unique in the batch
    kind: str  # "file" (fused / multi-node scene file), "scene" (scene dir), "prompt", "missing"
    input: str  # the path, or the prompt's text
    digest: str  # hash of the input's content
    key: str  # digest + parameters: the resume key
    seed: int = 0  # prompts: generation seed
    source: str | None = None  # prompts: "prompts.txt:3"

    @property
    def label(self) -> str:
        return self.source or self.input


# ----------------------------------------------------------------------------------------
# hashing


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def file_digest(path: Path) -> str:
    h = hashlib.sha256(b"file\0")
    _hash_file(h, path)
    return h.hexdigest()


def scene_dir_digest(scene_dir: Path) -> str:
    """scene.json and every file it names (meshes, Gaussians); just scene.json's bytes when
    it cannot be read (the scene then fails with the reason)."""
    h = hashlib.sha256(b"scene\0")
    scene_json = scene_dir / "scene.json"
    data = scene_json.read_bytes()
    h.update(data)
    try:
        parsed = json.loads(data)
        names = sorted({
            str(o[k]) for group in ("objects", "background") for o in parsed.get(group, []) if isinstance(o, dict)
            for k in ("mesh", "gaussians") if isinstance(o.get(k), str)
        })
    except (ValueError, AttributeError, TypeError):
        names = []
    for name in names:
        path = scene_dir / name
        h.update(b"\0" + name.encode())
        if path.is_file() and scene_dir.resolve() in path.resolve().parents:
            _hash_file(h, path)
        else:
            h.update(b"<missing>")
    return h.hexdigest()


def job_key(digest: str, config: BatchConfig, kind: str) -> str:
    params = json.dumps(config.key_parameters(kind), sort_keys=True, default=str)
    return hashlib.sha256(f"{kind}\0{digest}\0{params}".encode()).hexdigest()


# ----------------------------------------------------------------------------------------
# inputs -> jobs


def read_prompts(path: Path) -> list[tuple[int, str]]:
    """(line number, prompt) for every non-blank, non-comment line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if text and not text.startswith("#"):
            out.append((n, text))
    return out


def _expand(inputs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in inputs:
        if path.is_dir() and not (path / "scene.json").is_file():
            children = sorted(
                p for p in path.iterdir() if not p.name.startswith(".")
                and ((p.is_file() and p.suffix.lower() in (*SCENE_SUFFIXES, *PROMPT_SUFFIXES))
                     or (p.is_dir() and (p / "scene.json").is_file()))
            )
            out += children or [path]  # an empty folder: reported as a failed input
        else:
            out.append(path)
    return out


def discover_jobs(inputs: list[str | Path], config: BatchConfig) -> list[SceneJob]:
    """One job per scene, in input order; names unique (a clash gets a short hash suffix)."""
    raw: list[tuple[str, str, str, str, int, str | None]] = []  # base name, kind, input, digest, seed, source
    for path in _expand([Path(p) for p in inputs]):
        if path.is_dir() and (path / "scene.json").is_file():
            raw.append((path.resolve().name, "scene", str(path), scene_dir_digest(path), 0, None))
        elif path.is_file() and path.suffix.lower() in PROMPT_SUFFIXES:
            for i, (line, prompt) in enumerate(read_prompts(path)):
                seed = config.seed + i
                digest = hashlib.sha256(f"prompt\0{prompt}\0{seed}".encode()).hexdigest()
                base = f"{safe_identifier(prompt)[:40].strip('_')}_{digest[:6]}"
                raw.append((base, "prompt", prompt, digest, seed, f"{path}:{line}"))
        elif path.is_file():
            raw.append((path.stem, "file", str(path), file_digest(path), 0, None))
        else:
            digest = hashlib.sha256(f"missing\0{path}".encode()).hexdigest()
            raw.append((path.stem or path.name, "missing", str(path), digest, 0, None))
    names = [safe_identifier(base) for base, *_ in raw]
    counts: dict[str, int] = {}
    for n in names:
        counts[n.lower()] = counts.get(n.lower(), 0) + 1
    jobs: list[SceneJob] = []
    taken: set[str] = set()
    for (base, kind, inp, digest, seed, source), name in zip(raw, names):
        if counts[name.lower()] > 1:  # same stem from two folders: tell them apart by their path
            name = f"{name}_{hashlib.sha256(inp.encode()).hexdigest()[:6]}"
        while name.lower() in taken:  # the very same input twice
            name = f"{name}_{len(taken)}"
        taken.add(name.lower())
        jobs.append(SceneJob(name, kind, inp, digest, job_key(digest, config, kind), seed, source))
    return jobs
