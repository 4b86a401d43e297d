"""The DelGrad authors' hardware gradient rule as a rescaling of the observed rule.

The learner's rule differentiates V(T) = g_l theta at the observed spike time:
dT/dp = -(dV/dp)(T) / V'(T). The authors' hardware backward pass (fastAndDeep,
``utils_spiketime*.get_spiketime_derivative``, tau_m = tau_s) keeps the
numerators at the observed T but takes the denominator from the closed form at
the *nominal* threshold over the observed causal set C = {i : a_i < T}:

    dT/dw_i = -e^{a_i/tau} (T - a_i) / (a1 (1 + W0(z))),
    a1 = sum_C w_i e^{a_i/tau},  b = sum_C w_i (a_i/tau) e^{a_i/tau},
    z = -(g_l theta_nominal / a1) e^{b/a1},

with eps added to a1 and b. In the frame of T (x_i = (T - a_i)/tau,
A = sum_C w_i e^{-x_i}, B = sum_C w_i x_i e^{-x_i} = V(T)) the denominator is

    D = (A + e) (1 + W0(z)) / tau,   z = -(g_l theta / (A + e)) e^{(-B + e (1 - T/tau)) / (A + e)},
    e = eps e^{-T/tau},

while V'(T) = (A - B) / tau. So the authors' gradient of a neuron equals ours
with its incoming dL/dT multiplied by f = V'(T) / D. With theta_nominal equal to
the threshold the spike was produced at (and eps = 0), z = -(B/A) e^{-B/A} and
W0(z) = -B/A, so D = V'(T) and f = 1 to rounding.

Where the authors' rule has no value, f = 0: W0 undefined (z < -1/e: the
nominal threshold is above the maximum of the membrane built from the observed
causal set), 1 + W0(z) = 0, or a non-finite D. Where V'(T) <= 0 (the host model
has no upward crossing at the observed time) the observed rule already gives 0
and so does this rescaling, while the authors' formula would not: such spikes
are counted, not emulated.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_INV_E = math.exp(-1.0)


@njit(cache=True, nogil=True)
def lambert_w0(z: float) -> float:
    """Principal branch W0(z) for real z >= -1/e (NaN below, or for NaN).

    Halley iterations from a branch-point series (z near -1/e), log1p (moderate
    z) or log z - log log z (large z); converges to ~1 ulp in a few steps.
    """
    if not (z >= -_INV_E):
        return np.nan
    if z == np.inf:
        return np.inf
    if z == 0.0:
        return 0.0
    if z < -0.25:
        p = math.sqrt(max(2.0 * (math.e * z + 1.0), 0.0))
        w = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p * p * p
    elif z < 3.0:
        w = math.log1p(z)
    else:
        lz = math.log(z)
        w = lz - math.log(lz)
    for _ in range(64):
        ew = math.exp(w)
        f = w * ew - z
        wp1 = w + 1.0
        if wp1 == 0.0:
            break  # at the branch point itself
        step = f / (ew * wp1 - (w + 2.0) * f / (2.0 * wp1))
        w_new = w - step
        if w_new < -1.0:
            w_new = -1.0  # W0 >= -1; rounding near the branch point
        if abs(w_new - w) <= 1e-16 * (1.0 + abs(w_new)):
            return w_new
        w = w_new
    return w


@njit(cache=True, nogil=True, error_model="numpy")
def nominal_factors(
    t_in: np.ndarray,
    w: np.ndarray,
    d_syn: np.ndarray,
    d_ax: np.ndarray,
    d_den: np.ndarray,
    t_out: np.ndarray,
    tau_s: float,
    c: float,
    eps: float,
    out: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Per (sample, neuron) factor f = V'(T) / D (module doc), tau_m = tau_s only.

    Args:
        t_in: (B, n_pre) presynaptic times (inf = silent), as the backward kernel sees them.
        w, d_syn, d_ax, d_den: the layer's weights and delays (as in ``layer_backward``).
        t_out: (B, n_post) observed spike times (inf = none).
        tau_s: time constant (= tau_m).
        c: g_l * theta at the nominal threshold.
        eps: the authors' regulariser, added to a1 and b in absolute time.
        out: (B, n_post) written with f (0 where the rule has no value or T is inf).
        counts: (2,) int64, accumulated: [spikes with no value of the authors'
            rule (W0 undefined or D not finite / zero), spikes with V'(T) <= 0].
    """
    n_batch, n_pre = t_in.shape
    n_post = w.shape[1]
    inv_s = 1.0 / tau_s
    for b in range(n_batch):
        for j in range(n_post):
            t_spike = t_out[b, j]
            out[b, j] = 0.0
            if not (t_spike < np.inf and t_spike > -np.inf):
                continue
            big_a = 0.0
            big_b = 0.0
            for i in range(n_pre):
                a = t_in[b, i] + d_ax[i] + d_syn[i, j] + d_den[j]
                if a < t_spike and a > -np.inf:
                    x = (t_spike - a) * inv_s
                    e = math.exp(-x)
                    big_a += w[i, j] * e
                    big_b += w[i, j] * x * e
            v_dot = (big_a - big_b) * inv_s
            if not (v_dot > 0.0):
                counts[1] += 1
            e_abs = eps * math.exp(-t_spike * inv_s) if eps > 0.0 else 0.0
            a1 = big_a + e_abs
            z = -c / a1 * math.exp((-big_b + e_abs * (1.0 - t_spike * inv_s)) / a1)
            w0 = lambert_w0(z)
            d_nom = a1 * (1.0 + w0) * inv_s
            f = v_dot / d_nom
            if not (abs(f) < np.inf) or d_nom == 0.0:
                counts[0] += 1
                continue
            out[b, j] = f
