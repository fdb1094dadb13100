"""Minimal PLY reader/writer for per-vertex scalar properties (what 3DGS files hold).

Reads ``ascii``, ``binary_little_endian`` and ``binary_big_endian`` files; properties are returned
by name, so field order and extra fields do not matter. List properties are supported only in
elements other than ``vertex`` that come AFTER it (they are never read). Writes binary little endian.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_ply_vertices", "write_ply_vertices"]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
          "f4": "float", "f8": "double"}


def _parse_header(data: bytes) -> tuple[str, list[tuple[str, int, list]], int]:
    if not data.startswith(b"ply"):
        raise ValueError("not a PLY file (no 'ply' magic)")
    end = data.find(b"end_header")
    if end < 0:
        raise ValueError("PLY header has no end_header")
    nl = data.find(b"\n", end)
    body_start = nl + 1 if nl >= 0 else len(data)
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list]] = []
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise ValueError("PLY property before any element")
            if parts[1] == "list":
                elements[-1][2].append((parts[4], None))
            else:
                if parts[1] not in _TYPES:
                    raise ValueError(f"unknown PLY property type {parts[1]!r}")
                elements[-1][2].append((parts[2], _TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, body_start


def read_ply_vertices(path: str | Path) -> dict[str, np.ndarray]:
    """All scalar properties of the ``vertex`` element: name -> (N,) array (the file's dtype)."""
    data = Path(path).read_bytes()
    fmt, elements, body = _parse_header(data)
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise ValueError("PLY file has no 'vertex' element")
    vi = names.index("vertex")
    for name, _, props in elements[: vi + 1]:
        if any(t is None for _, t in props):
            raise ValueError(f"PLY list properties in element {name!r} (at or before 'vertex') are not supported")
    _, n, props = elements[vi]
    if fmt == "ascii":
        text = data[body:].decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[:vi])
        rows = [ln.split() for ln in text[skip: skip + n]]
        if len(rows) < n:
            raise ValueError("PLY file is truncated")
        table = np.array(rows, dtype=np.float64).reshape(n, len(props))
        return {name: table[:, k].astype(t) for k, (name, t) in enumerate(props)}
    endian = "<" if fmt == "binary_little_endian" else ">"
    offset = body
    for _, count, pr in elements[:vi]:
        offset += count * sum(np.dtype(t).itemsize for _, t in pr)
    dtype = np.dtype([(name, endian + t) for name, t in props])
    if offset + n * dtype.itemsize > len(data):
        raise ValueError("PLY file is truncated")
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
    return {name: arr[name].astype(arr[name].dtype.newbyteorder("=")) for name, _ in props}


def write_ply_vertices(path: str | Path, fields: dict[str, np.ndarray], comments: list[str] | None = None) -> None:
    """Write a binary little-endian PLY with one ``vertex`` element; ``fields`` (name -> (N,)
    array) in the order given, each keeping its dtype."""
    items = [(k, np.asarray(v)) for k, v in fields.items()]
    if not items:
        raise ValueError("no fields to write")
    n = len(items[0][1])
    if any(v.shape != (n,) for _, v in items):
        raise ValueError("every field must be a 1-D array of the same length")
    dtype = np.dtype([(k, "<" + v.dtype.str[1:]) for k, v in items])
    arr = np.empty(n, dtype=dtype)
    for k, v in items:
        arr[k] = v
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {c}" for c in comments or []]
    header.append(f"element vertex {n}")
    header += [f"property {_NAMES[v.dtype.str[1:]]} {k}" for k, v in items]
    header.append("end_header")
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(arr.tobytes())
