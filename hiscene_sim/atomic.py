"""Atomic writes: a file or a whole output directory appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Build a directory in a temp sibling and move it to ``final`` only if the block succeeds.

    If ``final`` exists it is replaced as a whole (old one moved aside, new one renamed in,
    old one deleted), so readers never see a mix of old and new files. On any exception,
    including KeyboardInterrupt, the temp dir is removed and ``final`` is untouched.
    """
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"{final}: exists and is not a directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.rmdir(old)
        os.replace(final, old)
    os.replace(tmp, final)
    os.chmod(final, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out_dir: str | Path, marker: str, protect: str | Path | None = None) -> None:
    """Refuse to replace ``out_dir`` unless it is absent, empty, or one of our outputs (it
    holds ``marker``); never the directory ``protect`` or one containing it."""
    out_dir = Path(out_dir).resolve()
    if protect is not None:
        protect = Path(protect).resolve()
        if out_dir == protect or out_dir in protect.parents:
            raise FileExistsError(f"{out_dir}: the output dir must not be the input dir {protect} or contain it")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / marker).is_file():
            raise FileExistsError(
                f"{out_dir}: exists, is not empty and holds no {marker} (not an output of ours); "
                "refusing to replace it: choose another --out"
            )
