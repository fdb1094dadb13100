"""Atomic writes: a file or a whole output directory appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# the process's umask, read once at import (reading it means setting it, so not per write):
# mkstemp / mkdtemp create 0600 / 0700 entries, and outputs get the modes a plain open() /
# mkdir would give them instead, so that others (a Ray cluster's other nodes, a web server for
# the view page) can read them
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename. The
    file gets the mode it had, or for a new one what ``open()`` gives (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
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
    os.chmod(final, DIR_MODE)
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
