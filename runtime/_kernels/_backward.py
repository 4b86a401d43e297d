"""Exact gradients of first-spike times (DelGrad), accumulated over a batch.

By the implicit function theorem on V(T) = g_l theta over the causal set
C = {i : a_i < T} (Göltz et al. 2025, eqs. for dT/dw and dT/dt):

    dT/dw_i = -kappa(T - a_i) / V'(T),   dT/da_i = w_i kappa'(T - a_i) / V'(T),
    V'(T) = sum_{i in C} w_i kappa'(T - a_i).

A delay shifts its arrivals, so dT/dd = dT/da summed over the arrivals it
shifts. Only spike times are needed, never membrane traces: the same kernel
serves observed (chip) spike times; where the ideal model has no upward
crossing at the observed time (V'(T) <= 0) the gradient is zero.

Speed (tau_m = tau_s and tau_m = 2 tau_s; the general ratio keeps two exps per
causal arrival): the kernel needs e^{-(T - a_i)/tau_m} for every causal arrival
a_i = t_i + d_i. In the absolute frame of the forward kernel, with r the
sample's earliest input,

    e^{-(T - a_i)/tau_m} = e^{-(T - r)/tau_m} * e^{(t_i - r)/tau_m} * e^{d_i/tau_m},

one exp per (sample, neuron), per (sample, input) and per (synapse, call)
instead of one per causal arrival. Each factor is correctly rounded to ~1 ulp,
so the product is e^{-s/tau_m} to a few ulp: the same order as what rounding
of s = T - a_i already costs the direct exp (for kappa = e_m - e_m^2 near
e_m = 1 both cancel alike, an absolute error of a few 1e-16). The product is
used only while no factor over- or underflows: every |delay sum| and the
sample's input span <= _LIM tau_m and -_LIM <= (T - r)/tau_m <= 4 _LIM, so each
factor and partial product lies in [e^-5_LIM, e^3_LIM] (normal numbers);
otherwise (and for the general ratio) the direct per-arrival exps are used.
The gain is modest (the old kernel already took exps for causal arrivals
only); most of the rest is divisions, now multiplications by 1/tau (exact for
tau a power of two, else within 1 ulp), and memory traffic.

The arrival loop calls no helper with array arguments (each such call costs
an atomic incref/decref per array, see the forward kernel).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from delgrad.runtime._kernels._modes import MODE_DOUBLE, MODE_EQUAL

_LIM = 64.0  # absolute frame: |delay sums|, input span within _LIM * tau_m


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
    et = np.ones(n_pre)
    ed = np.ones((n_pre, n_post))
    k_general = tau_s / (tau_m - tau_s) if mode != MODE_EQUAL and mode != MODE_DOUBLE else 1.0
    inv_s = 1.0 / tau_s
    inv_m = 1.0 / tau_m
    lim = _LIM * tau_m  # tau_m >= tau_s in both closed-form modes
    # Per call: e^{d/tau_m} of every synapse's delay sum; the absolute frame
    # only if all of them are bounded (see module doc).
    safe = mode == MODE_EQUAL or mode == MODE_DOUBLE
    if safe:
        for i in range(n_pre):
            for j in range(n_post):
                dsum = d_ax[i] + d_syn[i, j] + d_den[j]
                if not abs(dsum) <= lim:
                    safe = False
                ed[i, j] = math.exp(dsum / tau_m)
    dropped = 0
    for b in range(n_batch):
        fast = False
        r = 0.0
        if safe:
            r = np.inf
            t_hi = -np.inf
            for i in range(n_pre):
                t = t_in[b, i]
                if t < np.inf and t > -np.inf:
                    r = min(r, t)
                    t_hi = max(t_hi, t)
            # r finite and |r| <= 1e300 keeps T - r and t - r finite.
            fast = t_hi - r <= lim and abs(r) <= 1e300
            if fast:
                for i in range(n_pre):
                    t = t_in[b, i]
                    if t < np.inf and t > -np.inf:
                        et[i] = math.exp((t - r) / tau_m)  # in [1, e^_LIM]
        for j in range(n_post):
            t_spike = t_out[b, j]
            g = grad_out[b, j]
            if not (t_spike < np.inf and t_spike > -np.inf) or not (g != 0.0 and abs(g) < np.inf):
                continue
            # Product form for this neuron: e^{-(T-r)/tau_m} in [e^-4_LIM, e^_LIM],
            # times et in [1, e^_LIM] and ed in [e^-_LIM, e^_LIM]: every partial
            # product is a normal number. Non-causal inputs are never multiplied.
            dt = t_spike - r
            use_abs = fast and dt >= -lim and dt <= 4.0 * lim
            e_t = math.exp(-dt * inv_m) if use_abs else 0.0
            v_dot = 0.0
            kmax = 0.0
            d_j = d_den[j]
            for i in range(n_pre):
                a = t_in[b, i] + d_ax[i] + d_syn[i, j] + d_j
                if a < t_spike and a > -np.inf:
                    s = t_spike - a
                    x = s * inv_m
                    if mode == MODE_DOUBLE:
                        # tau_s = tau_m / 2: e_s = e_m^2
                        if use_abs:
                            em = e_t * et[i] * ed[i, j]
                        else:
                            em = math.exp(-x)
                        kp = em - em * em
                        kd = (em * em) * inv_s - em * inv_m
                    elif mode == MODE_EQUAL:
                        # tau_m == tau_s: kappa = x e_s has no cancellation.
                        if use_abs:
                            em = e_t * et[i] * ed[i, j]
                        else:
                            em = math.exp(-x)
                        kp = x * em
                        kd = (1.0 - x) * em * inv_s
                    else:
                        em = math.exp(-s / tau_m)
                        es = math.exp(-s / tau_s)
                        kp = k_general * (em - es)
                        kd = k_general * (es / tau_s - em / tau_m)
                    kap[i] = kp
                    kapd[i] = kd
                    v_dot += w[i, j] * kd
                    ak = abs(kp)
                    if ak > kmax:
                        kmax = ak
                else:
                    kap[i] = 0.0
                    kapd[i] = 0.0
            if not (v_dot > 0.0 and v_dot < np.inf):
                continue
            scale = g / v_dot
            use_w = True
            # max_i |scale kappa_i| > max_dw  <=>  |scale| max_i |kappa_i| > max_dw:
            # rounding of a product is monotone in each factor, so both sides
            # round the same largest product.
            if max_dw > 0.0 and abs(scale) * kmax > max_dw:
                use_w = False
                dropped += 1
            # grad_dden[j] is carried in a register (same additions, same order).
            gden = grad_dden[j]
            for i in range(n_pre):
                kp = kap[i]
                kd = kapd[i]
                ga = scale * w[i, j] * kd
                dw = scale * kp
                if kp == 0.0 and kd == 0.0:
                    # non-causal (as before: skipped). Adding +0.0 leaves every sum
                    # unchanged and avoids an unpredictable branch; zeroing ga, dw
                    # also avoids inf * 0 for an infinite scale or weight.
                    ga = 0.0
                    dw = 0.0
                if use_w:
                    grad_w[i, j] -= dw
                grad_tin[b, i] += ga
                grad_dsyn[i, j] += ga
                grad_dax[i] += ga
                gden += ga
            grad_dden[j] = gden
    return dropped
