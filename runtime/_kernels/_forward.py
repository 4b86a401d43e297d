"""First-spike times of a layer of LIF neurons with exponential current synapses.

Time is in units of tau_s. For each (sample, neuron) the arrivals
``t_pre + d_axonal + d_synaptic + d_dendritic`` are sorted by insertion into a
preallocated buffer, then prefixes of the sorted arrivals are tried in order
(the causal-set search of Göltz et al.): the candidate time of prefix k is valid
when it lies in [a_k, a_{k+1}]; the first valid candidate is the spike.

Numerical tricks (why, not what):
* All sums are kept in the frame of the newest arrival a_k, i.e. as
  sum_i w_i exp((a_i - a_k)/tau); moving to the next arrival multiplies them by
  exp(-(a_{k+1} - a_k)/tau) <= 1. Nothing overflows for any input times, and only
  one exp per arrival is needed (two for a general ratio).
* The authors' eps (added to their absolute sums a1, a2, b) is carried in the
  same frame as eps*exp(-a_k/tau), updated by the same factors, so eps > 0
  reproduces their recorded times to rounding.
* error_model="numpy": divisions by zero give inf/nan instead of raising; every
  candidate is tested with comparisons that are false for nan, so nan never
  becomes a spike time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MODE_GENERAL, MODE_EQUAL, MODE_DOUBLE = 0, 1, 2
_INV_E = 1.0 / math.e
_EXP_CAP = 700.0  # keeps exp() finite when eps is carried for very early arrivals


@njit(cache=True, nogil=True, error_model="numpy")
def lambertw0(z: float) -> float:
    """Principal branch W0(z) for z in [-1/e, 0]; nan below -1/e.

    Halley's iteration from a branch-point series (z near -1/e) or a Taylor
    guess (small |z|); converges to rounding in a few steps.
    """
    if z < -_INV_E:
        # -1/e itself is not representable; accept rounding at the branch point.
        if z > -_INV_E * (1.0 + 1e-15):
            return -1.0
        return np.nan
    if z == 0.0:
        return 0.0
    if z < -0.32:
        p = math.sqrt(max(2.0 * (math.e * z + 1.0), 0.0))
        w = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p * p * p
    elif z < 1.0:
        w = z * (1.0 - z + 1.5 * z * z)
    else:
        lz = math.log(z)
        w = lz - math.log(lz) if lz > 1.0 else 0.5 * lz
    for _ in range(50):
        ew = math.exp(w)
        f = w * ew - z
        wp1 = w + 1.0
        if wp1 == 0.0 or f == 0.0:
            break
        step = f / (ew * wp1 - (w + 2.0) * f / (2.0 * wp1))
        w -= step
        if abs(step) <= 4e-16 * (1.0 + abs(w)):
            break
    return w


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_general(
    s1: float, s2: float, k: float, c: float, tau_s: float, tau_m: float, upper: float
) -> float:
    """First upward crossing of V(x) = k (s2 e^{-x/tau_m} - s1 e^{-x/tau_s}) = c in [0, upper].

    V has at most one extremum, so [0, upper] splits into at most two monotone
    pieces; the first piece whose ends bracket a sign change of V - c holds the
    root, found by Newton steps safeguarded with bisection. Returns inf if none.
    """
    f0 = k * (s2 - s1) - c
    if f0 >= 0.0:
        return 0.0
    if not f0 < 0.0:
        return np.inf
    hi = upper
    r = (s2 / tau_m) / (s1 / tau_s)
    if r > 0.0:
        x_star = math.log(r) / (1.0 / tau_m - 1.0 / tau_s)
        if x_star > 0.0 and x_star < upper:
            f_star = k * (s2 * math.exp(-x_star / tau_m) - s1 * math.exp(-x_star / tau_s)) - c
            if f_star >= 0.0:
                hi = x_star
    if hi == np.inf:
        return np.inf  # V -> 0 < c as x -> inf, and V - c < 0 at every extremum seen
    f_hi = k * (s2 * math.exp(-hi / tau_m) - s1 * math.exp(-hi / tau_s)) - c
    if not f_hi >= 0.0:
        return np.inf
    lo = 0.0
    x = 0.5 * (lo + hi)
    for _ in range(200):
        em = math.exp(-x / tau_m)
        es = math.exp(-x / tau_s)
        f = k * (s2 * em - s1 * es) - c
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        df = k * (-s2 * em / tau_m + s1 * es / tau_s)
        x_new = x - f / df
        if not (x_new > lo and x_new < hi):
            x_new = 0.5 * (lo + hi)
        if abs(x_new - x) <= 2e-16 * max(1.0, abs(x_new)) or hi - lo <= 4e-16 * max(1.0, hi):
            return x_new
        x = x_new
    return x


@njit(cache=True, nogil=True, error_model="numpy")
def first_spike(
    buf_t: np.ndarray,
    buf_i: np.ndarray,
    n: int,
    w: np.ndarray,
    j: int,
    tau_s: float,
    tau_m: float,
    theta: float,
    eps: float,
    mode: int,
) -> float:
    """Spike time of neuron ``j`` given ``n`` sorted arrivals ``buf_t[:n]`` from inputs ``buf_i``.

    Returns inf when no prefix of the arrivals yields a valid threshold crossing.
    """
    if n == 0:
        return np.inf
    c = theta * tau_s / tau_m
    k_general = tau_s / (tau_m - tau_s) if mode == MODE_GENERAL else 1.0
    s1 = 0.0  # sum w exp((a - a_k)/tau_s)
    s2 = 0.0  # sum w exp((a - a_k)/tau_m)
    sb = 0.0  # sum w ((a - a_k)/tau_s) exp((a - a_k)/tau_s), tau_m == tau_s only
    e1 = 0.0
    e2 = 0.0
    if eps > 0.0:
        e1 = eps * math.exp(min(-buf_t[0] / tau_s, _EXP_CAP))
        e2 = eps * math.exp(min(-buf_t[0] / tau_m, _EXP_CAP))
    # f1, f2: factors exp(-(a_{k+1} - a_k)/tau) that move the sums to the next
    # arrival. They are computed one step early because exp(-upper/tau) also
    # bounds the valid candidates, which lets invalid prefixes skip log / W.
    f1 = 1.0
    f2 = 1.0
    for kk in range(n):
        a_k = buf_t[kk]
        s1 = s1 * f1 + w[buf_i[kk], j]
        s2 = s2 * f2 + w[buf_i[kk], j]
        e1 *= f1
        e2 *= f2
        if kk + 1 < n:
            upper = buf_t[kk + 1] - a_k
            if mode == MODE_DOUBLE:
                f2 = math.exp(-upper / tau_m)
                f1 = f2 * f2
            elif mode == MODE_EQUAL:
                f1 = math.exp(-upper / tau_s)
                f2 = f1
            else:
                f1 = math.exp(-upper / tau_s)
                f2 = math.exp(-upper / tau_m)
        else:
            upper = np.inf
            f1 = 0.0
            f2 = 0.0
        if mode == MODE_DOUBLE:
            a1 = s1 + e1
            a2 = s2 + e2
            disc = a2 * a2 - 4.0 * a1 * c
            if not disc >= 0.0:
                continue
            # ratio = exp(x / tau_m); x in [0, upper]  <=>  1 <= ratio and ratio * f2 <= 1
            ratio = 2.0 * a1 / (a2 + math.sqrt(disc))
            if not (ratio >= 1.0 and ratio * f2 <= 1.0):
                continue
            x = min(max(tau_m * math.log(ratio), 0.0), upper)
            return a_k + x
        elif mode == MODE_EQUAL:
            a = s1 + e1
            if a > 0.0:
                bb = sb + e1 * (1.0 - a_k / tau_s)
                r = bb / a
                q = math.exp(r)
                z = -(c / a) * q
                # x = tau_s (r - W0(z)) in [0, upper]  <=>  r - upper/tau_s <= W0(z) <= r;
                # W0 and w e^w are increasing on [-1, inf), so compare z with the
                # images of the bounds (q = e^r, f1 = e^{-upper/tau_s}); W0 only once.
                w_lo = r - upper / tau_s
                if (
                    r >= -1.0
                    and z >= -_INV_E * (1.0 + 1e-15)
                    and z <= r * q
                    and (w_lo <= -1.0 or z >= w_lo * q * f1)
                ):
                    x = min(max(tau_s * (r - lambertw0(z)), 0.0), upper)
                    return a_k + x
            sb = (sb - (upper / tau_s) * s1) * f1
        else:
            x = _solve_general(s1 + e1, s2 + e2, k_general, c, tau_s, tau_m, upper)
            if x >= 0.0 and x <= upper:
                return a_k + x
    return np.inf


@njit(cache=True, nogil=True, error_model="numpy")
def layer_forward(
    t_in: np.ndarray,
    w: np.ndarray,
    d_syn: np.ndarray,
    d_ax: np.ndarray,
    d_den: np.ndarray,
    tau_s: float,
    tau_m: float,
    theta: float,
    eps: float,
    mode: int,
    out: np.ndarray,
) -> None:
    """Spike times of one layer for a batch.

    Args:
        t_in: (B, n_pre) presynaptic spike times; inf (or any non-finite) = silent.
        w: (n_pre, n_post) weights.
        d_syn: (n_pre, n_post) synaptic delays (zeros if unused).
        d_ax: (n_pre,) axonal delays (zeros if unused).
        d_den: (n_post,) dendritic delays (zeros if unused).
        out: (B, n_post) written with the first spike times, inf for none.
    """
    n_batch, n_pre = t_in.shape
    n_post = w.shape[1]
    buf_t = np.empty(n_pre + 1)
    buf_i = np.empty(n_pre + 1, dtype=np.int64)
    for b in range(n_batch):
        for j in range(n_post):
            n = 0
            d_j = d_den[j]
            for i in range(n_pre):
                a = t_in[b, i] + d_ax[i] + d_syn[i, j] + d_j
                if not (a < np.inf and a > -np.inf):
                    continue
                k = n
                while k > 0 and buf_t[k - 1] > a:
                    buf_t[k] = buf_t[k - 1]
                    buf_i[k] = buf_i[k - 1]
                    k -= 1
                buf_t[k] = a
                buf_i[k] = i
                n += 1
            out[b, j] = first_spike(buf_t, buf_i, n, w, j, tau_s, tau_m, theta, eps, mode)
