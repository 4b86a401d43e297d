"""The handwritten digits that ship with scikit-learn, and their spike-time encoding.

``sklearn.datasets.load_digits``: 1,797 real 8x8 grey images (values 0..16) of the
digits 0-9, bundled inside scikit-learn (no download). The split is stratified
and fixed (``sklearn.model_selection.train_test_split``, ``random_state`` 0 for
test, 1 for validation), so every run and every tool sees the same images.

Time-to-first-spike: pixel ``k`` of an image with value ``v`` (scaled to [0, 1])
spikes once at ``t_early + (t_late - t_early) * (1 - v)``: ink spikes early,
background late. scikit-learn is imported lazily, inside :func:`digits_split`.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ConfigError, ParameterError

__all__ = ["DIGITS_SIZE", "DIGITS_SPLITS", "digits_split", "encode_digits"]

#: Images in the data set.
DIGITS_SIZE = 1797
#: The standard split sizes: train, validation, test (70 / 10 / 20 %).
DIGITS_SPLITS: dict[str, int] = {"train": 1257, "validation": 180, "test": 360}


@functools.cache
def _split(
    n_validation: int, n_test: int
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.int64]]]:
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
        from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "the digits data set needs scikit-learn: pip install 'delgrad-runtime[sensors]'"
        ) from exc
    images, labels = load_digits(return_X_y=True)
    x = np.asarray(images, dtype=np.float64) / 16.0
    y = np.asarray(labels, dtype=np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=0
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_validation, stratify=y_rest, random_state=1
    )
    out = {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
    for f, lab in out.values():
        f.flags.writeable = False
        lab.flags.writeable = False
    return out


def digits_split(
    name: Literal["train", "validation", "test"],
    *,
    sizes: tuple[int, int, int] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One split of the digits.

    Args:
        name: ``"train"``, ``"validation"`` or ``"test"``.
        sizes: (train, validation, test) sizes summing to at most 1,797; default
            :data:`DIGITS_SPLITS`. Test and validation are drawn first; the train
            split is the first ``train`` of the rest.

    Returns:
        ``features`` (N, 64) float64 pixel values in [0, 1] (row-major 8x8) and
        ``labels`` (N,) int64 in 0..9; cached and read-only.

    Raises:
        ConfigError: If scikit-learn is missing or the sizes do not fit.
    """
    if name not in DIGITS_SPLITS:
        raise ParameterError(f"unknown digits split {name!r}; use train, validation or test")
    n_train, n_val, n_test = sizes or tuple(DIGITS_SPLITS.values())
    if min(n_train, n_val, n_test) < 1 or n_train + n_val + n_test > DIGITS_SIZE:
        raise ConfigError(
            f"digits split sizes (train {n_train}, validation {n_val}, test {n_test}) must be "
            f">= 1 and sum to at most {DIGITS_SIZE} (standard: 1257, 180, 360)"
        )
    features, labels = _split(n_val, n_test)[name]
    if name == "train":
        return features[:n_train], labels[:n_train]
    return features, labels


def encode_digits(
    features: ArrayLike, *, t_early: float = 0.15, t_late: float = 2.0
) -> NDArray[np.float64]:
    """Time-to-first-spike encoding: ``t = t_early + (t_late - t_early) * (1 - v)``.

    Args:
        features: pixel values in [0, 1], any shape (normally (N, 64)).
        t_early: spike time of full ink (v = 1), units of tau_s.
        t_late: spike time of the background (v = 0), units of tau_s (> t_early).

    Returns:
        Spike times, same shape, float64, units of tau_s.
    """
    if not (math.isfinite(t_early) and math.isfinite(t_late) and t_late > t_early):
        raise ParameterError(f"need finite t_early < t_late, got {t_early!r}, {t_late!r}")
    v = np.asarray(features, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ParameterError("pixel values must be finite")
    return t_early + (t_late - t_early) * (1.0 - v)
