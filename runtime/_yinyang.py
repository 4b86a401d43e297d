"""The Yin-Yang data set (Kriener et al. 2022) and its spike-time encoding.

Points (x, y) are drawn uniformly from the disc of radius ``r_big`` centred on
(r_big, r_big) and labelled 0, 1 (the two halves) or 2 (the two dots). The
reference rule calls region 1 ``is_yin``: the upper half and the ring around the
left dot. Each sample carries the four features (x, y, 1 - x, 1 - y) so that
every class is separable without a bias input. The generator reproduces the
reference implementation draw for draw (same ``np.random.RandomState`` stream),
so the standard splits below are the same points every publication uses.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError

__all__ = [
    "YINYANG_SPLITS",
    "encode_yinyang",
    "yinyang",
    "yinyang_class",
    "yinyang_split",
]

#: The standard splits: name -> (size, seed).
YINYANG_SPLITS: dict[str, tuple[int, int]] = {
    "train": (5000, 42),
    "validation": (1000, 41),
    "test": (1000, 40),
}


def _check_radii(r_small: float, r_big: float) -> tuple[float, float]:
    r_small = float(r_small)
    r_big = float(r_big)
    if not (math.isfinite(r_big) and r_big > 0.0):
        raise ParameterError(f"r_big must be finite and > 0, got {r_big!r}")
    # The yin criterion `r_small < d_left <= r_big / 2` is empty otherwise.
    if not (math.isfinite(r_small) and 0.0 < r_small < 0.5 * r_big):
        raise ParameterError(
            f"r_small must lie in (0, r_big / 2) = (0, {0.5 * r_big!r}), got {r_small!r}"
        )
    return r_small, r_big


def _class_of_point(x: float, y: float, r_small: float, r_big: float) -> int:
    """Scalar class rule; the same arithmetic as :func:`yinyang_class`."""
    dxr = x - 1.5 * r_big
    dxl = x - 0.5 * r_big
    dy = y - r_big
    d_right = math.sqrt(dxr * dxr + dy * dy)
    d_left = math.sqrt(dxl * dxl + dy * dy)
    if d_right < r_small or d_left < r_small:
        return 2
    criterion1 = d_right <= r_small
    criterion2 = r_small < d_left <= 0.5 * r_big
    criterion3 = y > r_big and d_right > 0.5 * r_big
    return int(criterion1 or criterion2 or criterion3)


def yinyang_class(
    x: ArrayLike, y: ArrayLike, *, r_small: float = 0.1, r_big: float = 0.5
) -> NDArray[np.int64]:
    """Label points of the plane (vectorised; e.g. for plotting the class regions).

    Points outside the big disc are labelled too (by the same rule); the data set
    itself only contains points inside it.

    Args:
        x: x coordinates, any shape broadcastable with ``y``.
        y: y coordinates.
        r_small: radius of the two dots.
        r_big: radius of the whole figure.

    Returns:
        Labels (broadcast shape of x and y) as int64 in {0, 1, 2} (2 = dots).
    """
    r_small, r_big = _check_radii(r_small, r_big)
    try:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError("x and y must be numeric arrays") from exc
    try:
        x, y = np.broadcast_arrays(x, y)
    except ValueError as exc:
        raise ParameterError(f"x {x.shape} and y {y.shape} do not broadcast") from exc
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ParameterError("x and y must be finite")
    dxr = x - 1.5 * r_big
    dxl = x - 0.5 * r_big
    dy = y - r_big
    d_right = np.sqrt(dxr * dxr + dy * dy)
    d_left = np.sqrt(dxl * dxl + dy * dy)
    is_yin = (
        (d_right <= r_small)
        | ((d_left > r_small) & (d_left <= 0.5 * r_big))
        | ((y > r_big) & (d_right > 0.5 * r_big))
    )
    is_dot = (d_right < r_small) | (d_left < r_small)
    return np.where(is_dot, 2, is_yin.astype(np.int64)).astype(np.int64)


def yinyang(
    size: int, seed: int, *, r_small: float = 0.1, r_big: float = 0.5
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Generate ``size`` Yin-Yang samples with the reference generator.

    For each sample the class is drawn first (uniformly), then points are drawn
    by rejection until one lies in the big disc and has that class, which keeps
    the classes balanced in expectation.

    Args:
        size: number of samples (>= 0).
        seed: seed of the ``np.random.RandomState`` stream (0 <= seed < 2**32).
        r_small: radius of the two dots.
        r_big: radius of the whole figure.

    Returns:
        ``features`` (size, 4) float64, columns (x, y, 1 - x, 1 - y), and
        ``labels`` (size,) int64 in {0, 1, 2}. Fresh, writable arrays.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 0:
        raise ParameterError(f"size must be an integer >= 0, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ParameterError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    r_small, r_big = _check_radii(r_small, r_big)
    rng = np.random.RandomState(int(seed))
    features = np.empty((int(size), 4), dtype=np.float64)
    labels = np.empty(int(size), dtype=np.int64)
    for k in range(int(size)):
        # Draw order (class, then pairs of uniforms) must match the reference
        # generator exactly, or the standard splits would change.
        goal = int(rng.randint(3))
        while True:
            x, y = (float(v) for v in rng.rand(2) * 2.0 * r_big)
            dx = x - r_big
            dy = y - r_big
            if math.sqrt(dx * dx + dy * dy) > r_big:
                continue
            if _class_of_point(x, y, r_small, r_big) == goal:
                break
        # The mirrored features are 1 - x, 1 - y as in the reference (not 2 r_big - x).
        features[k] = (x, y, 1.0 - x, 1.0 - y)
        labels[k] = goal
    return features, labels


@functools.cache
def _cached_split(name: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    size, seed = YINYANG_SPLITS[name]
    features, labels = yinyang(size, seed)
    # Shared between callers through the cache, so nobody may modify them.
    features.flags.writeable = False
    labels.flags.writeable = False
    return features, labels


def yinyang_split(
    name: Literal["train", "validation", "test"],
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One of the standard splits: train (5000, seed 42), validation (1000, 41), test (1000, 40).

    Args:
        name: ``"train"``, ``"validation"`` or ``"test"``.

    Returns:
        ``features`` (N, 4) float64 and ``labels`` (N,) int64, cached and
        read-only (copy them before modifying).
    """
    if name not in YINYANG_SPLITS:
        raise ParameterError(
            f"unknown Yin-Yang split {name!r}; expected one of {sorted(YINYANG_SPLITS)}"
        )
    return _cached_split(name)


def encode_yinyang(
    features: ArrayLike, *, t_early: float = 0.15, t_late: float = 2.0
) -> NDArray[np.float64]:
    """Encode feature values linearly into input spike times.

    ``t = t_early + (t_late - t_early) * v``: larger values spike later.

    Args:
        features: feature values, any shape, normally (N, 4) in [0, 1].
        t_early: spike time of the value 0, in units of tau_s.
        t_late: spike time of the value 1, in units of tau_s (> t_early).

    Returns:
        Spike times, same shape as ``features``, float64, in units of tau_s.
    """
    t_early = float(t_early)
    t_late = float(t_late)
    if not (math.isfinite(t_early) and math.isfinite(t_late) and t_late > t_early):
        raise ParameterError(
            f"need finite t_early < t_late, got t_early={t_early!r}, t_late={t_late!r}"
        )
    try:
        values = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError("features must be a numeric array") from exc
    if not np.isfinite(values).all():
        raise ParameterError("features must be finite")
    return t_early + (t_late - t_early) * values
