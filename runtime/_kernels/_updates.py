"""Numba kernels for parameter updates (arrays in, arrays out, caller-owned).

All kernels work on flat (n,) float64 views so the caller can pass any
C-contiguous parameter array through ``arr.reshape(-1)`` and have it updated
in place.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    step_size: float,
    beta1: float,
    beta2: float,
    bias_correction2_sqrt: float,
    eps: float,
) -> None:
    """One Adam step in place (torch.optim.Adam arithmetic, no weight decay).

    Args:
        param: (n,) float64 parameters, updated in place.
        grad: (n,) float64 gradient of the loss w.r.t. ``param``.
        exp_avg: (n,) float64 first-moment estimate m, updated in place.
        exp_avg_sq: (n,) float64 second-moment estimate v, updated in place.
        step_size: lr / (1 - beta1**step), the bias-corrected learning rate.
        beta1: decay of m.
        beta2: decay of v.
        bias_correction2_sqrt: sqrt(1 - beta2**step).
        eps: added to the denominator after bias correction (as torch does).
    """
    for i in range(param.shape[0]):
        g = grad[i]
        m = beta1 * exp_avg[i] + (1.0 - beta1) * g
        v = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


@njit(cache=True, nogil=True)
def add_to_columns(w: np.ndarray, columns: np.ndarray, value: float) -> None:
    """Add ``value`` to every row of the selected columns, in place.

    Args:
        w: (n_in, n_out) float64 weights, updated in place.
        columns: (n_out,) bool, which columns to change.
        value: amount added to each selected weight.
    """
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            if columns[j]:
                w[i, j] += value
