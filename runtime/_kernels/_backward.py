"""Exact gradients of first-spike times (DelGrad), accumulated over a batch.

By the implicit function theorem on V(T) = g_l theta over the causal set
C = {i : a_i < T} (Göltz et al. 2025, eqs. for dT/dw and dT/dt):

    dT/dw_i = -kappa(T - a_i) / V'(T),   dT/da_i = w_i kappa'(T - a_i) / V'(T),
    V'(T) = sum_{i in C} w_i kappa'(T - a_i).

A delay shifts its arrivals, so dT/dd = dT/da summed over the arrivals it
shifts. Only spike times are needed, never membrane traces: the same kernel
serves observed (chip) spike times; where the ideal model has no upward
crossing at the observed time (V'(T) <= 0) the gradient is zero.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from delgrad.runtime._kernels._forward import MODE_DOUBLE, MODE_EQUAL


@njit(cache=True, nogil=True, error_model="numpy")
def layer_backward(
    t_in: np.ndarray,
    w: np.ndarray,
    d_syn: np.ndarray,
    d_ax: np.ndarray,
    d_den: np.ndarray,
    t_out: np.ndarray,
    grad_out: np.ndarray,
    tau_s: float,
    tau_m: float,
    mode: int,
    max_dw: float,
    grad_w: np.ndarray,
    grad_dsyn: np.ndarray,
    grad_dax: np.ndarray,
    grad_dden: np.ndarray,
    grad_tin: np.ndarray,
) -> int:
    """Accumulate (+=) dL/dw, dL/dd (all three kinds) and dL/dt_in for one layer.

    Args:
        t_in: (B, n_pre) presynaptic spike times (inf = silent).
        w, d_syn, d_ax, d_den: as in ``layer_forward``.
        t_out: (B, n_post) spike times of this layer (computed or observed).
        grad_out: (B, n_post) dL/dt_out.
        max_dw: if > 0, the authors' stabiliser: a (sample, neuron) whose weight
            gradient has an entry larger than max_dw in magnitude contributes no
            weight gradient (its time and delay gradients still flow).
        grad_w: (n_pre, n_post); grad_dsyn: (n_pre, n_post); grad_dax: (n_pre,);
            grad_dden: (n_post,); grad_tin: (B, n_pre). All accumulated into.

    Returns:
        The number of (sample, neuron) weight gradients dropped by ``max_dw``.
    """
    n_batch, n_pre = t_in.shape
    n_post = w.shape[1]
    kap = np.zeros(n_pre)
    kapd = np.zeros(n_pre)
    k_general = tau_s / (tau_m - tau_s) if mode != MODE_EQUAL and mode != MODE_DOUBLE else 1.0
    dropped = 0
    for b in range(n_batch):
        for j in range(n_post):
            t_spike = t_out[b, j]
            g = grad_out[b, j]
            if not (t_spike < np.inf and t_spike > -np.inf) or not (g != 0.0 and abs(g) < np.inf):
                continue
            v_dot = 0.0
            d_j = d_den[j]
            for i in range(n_pre):
                a = t_in[b, i] + d_ax[i] + d_syn[i, j] + d_j
                if a < t_spike and a > -np.inf:
                    s = t_spike - a
                    if mode == MODE_DOUBLE:
                        em = math.exp(-s / tau_m)
                        es = em * em
                        kap[i] = em - es
                        kapd[i] = es / tau_s - em / tau_m
                    elif mode == MODE_EQUAL:
                        es = math.exp(-s / tau_s)
                        kap[i] = (s / tau_s) * es
                        kapd[i] = (1.0 - s / tau_s) * es / tau_s
                    else:
                        em = math.exp(-s / tau_m)
                        es = math.exp(-s / tau_s)
                        kap[i] = k_general * (em - es)
                        kapd[i] = k_general * (es / tau_s - em / tau_m)
                    v_dot += w[i, j] * kapd[i]
                else:
                    kap[i] = 0.0
                    kapd[i] = 0.0
            if not (v_dot > 0.0 and v_dot < np.inf):
                continue
            scale = g / v_dot
            use_w = True
            if max_dw > 0.0:
                for i in range(n_pre):
                    if abs(scale * kap[i]) > max_dw:
                        use_w = False
                        dropped += 1
                        break
            for i in range(n_pre):
                if kapd[i] == 0.0 and kap[i] == 0.0:
                    continue
                if use_w:
                    grad_w[i, j] -= scale * kap[i]
                ga = scale * w[i, j] * kapd[i]
                grad_tin[b, i] += ga
                grad_dsyn[i, j] += ga
                grad_dax[i] += ga
                grad_dden[j] += ga
    return dropped
