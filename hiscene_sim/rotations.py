"""Rotations and quaternions: the one home of the project's conversions (NumPy / SciPy only).

Convention: quaternions are ``[w, x, y, z]`` (scalar first, as in ``scene.json``, MJCF and
3DGS PLY files) unless a name says ``xyzw`` (PyBullet's and SciPy's default order). Rotation
matrices act on column vectors (``p_world = R @ p_local``). Roll-pitch-yaw angles are
fixed-axis ``x``, then ``y``, then ``z`` (URDF's ``rpy``; SciPy's lower-case ``"xyz"``).

Where a function returns one spelling of a rotation it picks ``w >= 0`` (``q`` and ``-q`` are
the same rotation) unless told otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

__all__ = [
    "IDENTITY",
    "matrices_to_quaternions",
    "matrix_to_rpy",
    "normalize_quaternions",
    "quaternion_from_rotation",
    "quaternion_multiply",
    "quaternions_to_matrices",
    "rotation_angle_deg",
    "rotation_from_quaternion",
    "rpy_to_matrix",
    "rpy_to_quaternion",
    "unit_quaternion",
    "wxyz_to_xyzw",
    "xyzw_to_wxyz",
]

IDENTITY = (1.0, 0.0, 0.0, 0.0)  # w, x, y, z


def _positive_w(q: np.ndarray) -> np.ndarray:
    """``q`` with rows whose ``w`` is negative negated (``w = 0`` rows are kept as they are)."""
    return np.where(q[..., :1] < 0, -q, q)


# ------------------------------------------------------------------------------ quaternion <-> matrix
def matrices_to_quaternions(rotation: ArrayLike, positive_w: bool = True) -> np.ndarray:
    """(3, 3) or (N, 3, 3) proper rotation matrices -> (4,) or (N, 4) float64 unit ``[w, x, y, z]``.

    ``positive_w``: negate quaternions with ``w < 0`` (one spelling per rotation); False keeps
    SciPy's own choice of sign."""
    q = Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_quat(scalar_first=True)
    return _positive_w(q) if positive_w else q


def quaternion_from_rotation(rotation: ArrayLike) -> tuple[float, float, float, float]:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a proper 3x3 rotation matrix."""
    return tuple(float(v) for v in matrices_to_quaternions(rotation))


def rotation_from_quaternion(q: ArrayLike) -> np.ndarray:
    """(3, 3) rotation matrix of a quaternion ``[w, x, y, z]`` (normalised here); (N, 4) gives
    (N, 3, 3). A zero quaternion is a ValueError."""
    return Rotation.from_quat(np.asarray(q, dtype=np.float64), scalar_first=True).as_matrix()


def normalize_quaternions(q: ArrayLike) -> np.ndarray:
    """(N, 4) quaternions of any norm -> (N, 4) float64 unit quaternions; a zero (norm <= 1e-12)
    or non-finite one becomes the identity (how 3D Gaussians' rotations are read)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(n > 1e-12, q / np.where(n > 0, n, 1.0), np.array(IDENTITY))


def quaternions_to_matrices(q: ArrayLike) -> np.ndarray:
    """(N, 4) ``[w, x, y, z]`` quaternions of any norm -> (N, 3, 3) rotation matrices; a zero or
    non-finite quaternion gives the identity (:func:`normalize_quaternions`)."""
    return rotation_from_quaternion(normalize_quaternions(q)).reshape(-1, 3, 3)


def unit_quaternion(q: ArrayLike) -> np.ndarray:
    """(4,) float64 ``q / |q|``; ValueError when ``q`` is zero or not finite."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"orientation {list(q)} is not a usable quaternion")
    return q / n


def stored_unit_quaternion(q: tuple[float, ...], where: str, error: type[Exception] = ValueError) -> tuple[float, ...]:
    """A ``[w, x, y, z]`` read from a file: within 1e-3 of unit norm (else ``error`` naming
    ``where`` and the norm), then normalised exactly."""
    norm = math.sqrt(sum(v * v for v in q))
    if abs(norm - 1.0) > 1e-3:
        raise error(f"{where}: quaternion [w,x,y,z] must have unit norm, has {norm:.6f}")
    return tuple(v / norm for v in q)


# ------------------------------------------------------------------------------ wxyz <-> xyzw
def wxyz_to_xyzw(q: ArrayLike) -> tuple[float, float, float, float]:
    """``[w, x, y, z]`` -> ``(x, y, z, w)`` (PyBullet's order), unchanged otherwise."""
    w, x, y, z = q
    return (float(x), float(y), float(z), float(w))


def xyzw_to_wxyz(q: ArrayLike) -> tuple[float, float, float, float]:
    """``[x, y, z, w]`` -> unit ``(w, x, y, z)`` with ``w >= 0`` (a zero quaternion stays zero)."""
    x, y, z, w = q
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    out = (w / n, x / n, y / n, z / n)
    return tuple(-v for v in out) if out[0] < 0 else out


# ------------------------------------------------------------------------------ products, angles
def quaternion_multiply(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Hamilton product ``a * b`` of ``[w, x, y, z]`` quaternions, broadcasting over leading axes.

    Not normalised and defined for any norm (SciPy's ``Rotation`` would normalise and refuse zero
    quaternions): rotating raw 3D-Gaussian rotations keeps their norms."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def rotation_angle_deg(q1: ArrayLike, q2: ArrayLike) -> float:
    """Angle of the rotation taking orientation ``q1`` to ``q2`` (``[w, x, y, z]``, any norm), in
    degrees (0..180): ``2 acos |<q1, q2>|`` of the normalised quaternions."""
    a = np.asarray(q1, dtype=float) / np.linalg.norm(q1)
    b = np.asarray(q2, dtype=float) / np.linalg.norm(q2)
    d = min(1.0, abs(float(np.dot(a, b))))
    return math.degrees(2.0 * math.acos(d))


# ------------------------------------------------------------------------------ roll, pitch, yaw
def rpy_to_matrix(rpy: ArrayLike, degrees: bool = False) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw (about x, then y, then z) -> (3, 3) rotation matrix."""
    return Rotation.from_euler("xyz", rpy, degrees=degrees).as_matrix()


def rpy_to_quaternion(rpy: ArrayLike, degrees: bool = False) -> tuple[float, float, float, float]:
    """Fixed-axis roll, pitch, yaw -> unit ``(w, x, y, z)`` with ``w >= 0``."""
    q = _positive_w(Rotation.from_euler("xyz", rpy, degrees=degrees).as_quat(scalar_first=True))
    return tuple(float(v) for v in q)


def matrix_to_rpy(rotation: ArrayLike) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) fixed-axis roll, pitch, yaw in radians (URDF's ``rpy``).
    At gimbal lock SciPy warns (UserWarning) and sets the third angle to zero; the angles
    still give the same rotation."""
    return Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_euler("xyz")
