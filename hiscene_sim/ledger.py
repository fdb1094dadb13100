"""What each pipeline stage did, so a re-run resumes where it stopped.

``DIR/pipeline.json`` holds one record per finished stage: its key (a hash of its inputs'
keys and its parameters), the backend, parameters, outputs (paths relative to DIR) and
seconds. A stage is skipped when its record has the same key and every output still exists;
a changed input or parameter changes the key of that stage and of every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hiscene_sim.atomic import atomic_write_bytes

LEDGER_FILE = "pipeline.json"


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (a folder of meshes): names and contents."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def stage_key(name: str, upstream: str, parameters: dict) -> str:
    blob = json.dumps({"stage": name, "upstream": upstream, "parameters": parameters}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class StageRecord:
    name: str
    key: str
    backend: str
    parameters: dict
    outputs: list[str]
    seconds: float
    finished: str = ""
    notes: list[str] = field(default_factory=list)


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LEDGER_FILE
        self.records: dict[str, StageRecord] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.records = {r["name"]: StageRecord(**r) for r in data.get("stages", [])}
            except (json.JSONDecodeError, TypeError, KeyError) as exc:
                raise ValueError(f"{self.path}: not a pipeline ledger ({exc}); remove it or use --force") from None

    def done(self, name: str, key: str) -> StageRecord | None:
        record = self.records.get(name)
        if record is None or record.key != key:
            return None
        if not all((self.root / out).exists() for out in record.outputs):
            return None
        return record

    def record(self, record: StageRecord) -> None:
        record.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.records[record.name] = record
        data = {"format": "hiscene-pipeline", "version": 1, "stages": [asdict(r) for r in self.records.values()]}
        atomic_write_bytes(self.path, json.dumps(data, indent=1, default=str).encode())

    def forget(self) -> None:
        self.records = {}
        if self.path.exists():
            self.path.unlink()
