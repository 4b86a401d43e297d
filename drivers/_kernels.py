"""Event-driven membrane integration of LIF layers, independent of the learner's closed forms.

Per neuron the state (V, I) is carried exactly between sorted input arrivals with
the linear propagator of

    tau_m dV/dt = -V + I,    tau_s dI/dt = -I,    I += w at each arrival,

i.e. over a gap x:  I(x) = I0 e^{-x/tau_s},
V(x) = V0 e^{-x/tau_m} + I0 e^{-x/tau_s} expm1(x delta) / (tau_m delta),
delta = 1/tau_s - 1/tau_m (the limit x/tau_m for delta = 0). This gives
V = sum_i w_i kappa(t - a_i) with the core's kernel kappa for any tau_m/tau_s.
In each inter-arrival interval the first upward crossing of the threshold is
found by bracketing (V has at most one extremum per interval: it lies where
V' = (I - V)/tau_m changes sign) and Newton steps safeguarded by bisection.

Pure numba functions: arrays in, caller-owned output arrays, no allocation in loops.
The threshold must be > 0 (a rising V then crosses at most once before its maximum).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_MAX_ITER = 200
_MAX_DOUBLINGS = 80


@njit(cache=True, nogil=True)
def _v_at(v0: float, i0: float, x: float, tau_s: float, tau_m: float, delta: float) -> float:
    """Membrane V after a gap x from state (v0, i0)."""
    if delta == 0.0:
        g = x / tau_m
    else:
        g = math.expm1(x * delta) / (tau_m * delta)
    return v0 * math.exp(-x / tau_m) + i0 * math.exp(-x / tau_s) * g


@njit(cache=True, nogil=True)
def _h_at(v0: float, i0: float, x: float, tau_s: float, tau_m: float, delta: float) -> float:
    """I - V after a gap x (tau_m times the slope of V)."""
    return i0 * math.exp(-x / tau_s) - _v_at(v0, i0, x, tau_s, tau_m, delta)


@njit(cache=True, nogil=True)
def _root(
    which: int,
    v0: float,
    i0: float,
    c: float,
    lo: float,
    hi: float,
    tau_s: float,
    tau_m: float,
    delta: float,
) -> float:
    """Root in [lo, hi] of V - c (which=0, increasing) or of I - V (which=1, decreasing).

    Safeguarded Newton: the bracket shrinks every step; a Newton step leaving it
    is replaced by bisection.
    """
    x = 0.5 * (lo + hi)
    for _ in range(_MAX_ITER):
        i_x = i0 * math.exp(-x / tau_s)
        v_x = _v_at(v0, i0, x, tau_s, tau_m, delta)
        h = i_x - v_x
        if which == 0:
            f = v_x - c
            df = h / tau_m
            if f < 0.0:
                lo = x
            else:
                hi = x
        else:
            f = h
            df = -i_x / tau_s - h / tau_m
            if f > 0.0:
                lo = x
            else:
                hi = x
        if f == 0.0:
            return x
        x_new = x - f / df if df != 0.0 else 0.5 * (lo + hi)
        if not (x_new > lo and x_new < hi):
            x_new = 0.5 * (lo + hi)
        if abs(x_new - x) <= 1e-15 * (1.0 + x) or hi - lo <= 1e-15 * (1.0 + hi):
            return x_new
        x = x_new
    return x


@njit(cache=True, nogil=True)
def first_crossing(
    v0: float, i0: float, c: float, upper: float, tau_s: float, tau_m: float, delta: float
) -> float:
    """First x in [0, upper] with V(x) >= c from state (v0, i0); inf if none.

    ``upper`` may be inf (after the last arrival).
    """
    if v0 >= c:
        return 0.0
    if not (i0 > v0):
        return np.inf  # V is not rising, and its only extremum ahead is a minimum
    hi = upper
    if hi == np.inf:
        hi = max(tau_s, tau_m)
        found = False
        for _ in range(_MAX_DOUBLINGS):
            if (
                _v_at(v0, i0, hi, tau_s, tau_m, delta) >= c
                or _h_at(v0, i0, hi, tau_s, tau_m, delta) < 0.0
            ):
                found = True
                break
            hi *= 2.0
        if not found:
            return np.inf
    if _v_at(v0, i0, hi, tau_s, tau_m, delta) < c:
        if _h_at(v0, i0, hi, tau_s, tau_m, delta) >= 0.0:
            return np.inf  # still rising at hi, and below threshold there
        x_star = _root(1, v0, i0, c, 0.0, hi, tau_s, tau_m, delta)
        if _v_at(v0, i0, x_star, tau_s, tau_m, delta) < c:
            return np.inf  # the maximum stays below threshold
        hi = x_star
    return _root(0, v0, i0, c, 0.0, hi, tau_s, tau_m, delta)


@njit(cache=True, nogil=True)
def membrane_layer(
    arrivals: np.ndarray,
    w: np.ndarray,
    thresholds: np.ndarray,
    tau_s: float,
    tau_m: float,
    t_max: float,
    out: np.ndarray,
    buf_t: np.ndarray,
    buf_i: np.ndarray,
) -> int:
    """First-spike times of one layer by event-driven membrane integration.

    Args:
        arrivals: (B, n_pre) arrival times at the neurons (delays already applied);
            non-finite = no arrival.
        w: (n_pre, n_post) weights.
        thresholds: (B, n_post) threshold of V per trial and neuron (g_l * theta), > 0.
        tau_s, tau_m: time constants in model units.
        t_max: read-out window; spikes later than it are written as inf and counted.
        out: (B, n_post) written with the first spike times (inf = none).
        buf_t: (n_pre,) float64 scratch; buf_i: (n_pre,) int64 scratch.

    Returns:
        The number of spikes later than ``t_max`` (reported as inf).
    """
    n_post = w.shape[1]
    taus_s = np.full(n_post, tau_s)
    taus_m = np.full(n_post, tau_m)
    return membrane_layer_taus(arrivals, w, thresholds, taus_s, taus_m, t_max, out, buf_t, buf_i)


@njit(cache=True, nogil=True)
def membrane_layer_taus(
    arrivals: np.ndarray,
    w: np.ndarray,
    thresholds: np.ndarray,
    taus_s: np.ndarray,
    taus_m: np.ndarray,
    t_max: float,
    out: np.ndarray,
    buf_t: np.ndarray,
    buf_i: np.ndarray,
) -> int:
    """:func:`membrane_layer` with one (tau_s, tau_m) per neuron, (n_post,) each.

    Used for the emulator's time-constant mismatch extension; with equal entries
    it is :func:`membrane_layer`.
    """
    n_batch, n_pre = arrivals.shape
    n_post = w.shape[1]
    late = 0
    for b in range(n_batch):
        n = 0
        for i in range(n_pre):
            a = arrivals[b, i]
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
        for j in range(n_post):
            tau_s = taus_s[j]
            tau_m = taus_m[j]
            delta = 1.0 / tau_s - 1.0 / tau_m
            c = thresholds[b, j]
            v = 0.0
            cur = 0.0
            spike = np.inf
            for k in range(n):
                a = buf_t[k]
                if k > 0:
                    gap = a - buf_t[k - 1]
                    if gap > 0.0:
                        v = _v_at(v, cur, gap, tau_s, tau_m, delta)
                        cur = cur * math.exp(-gap / tau_s)
                cur += w[buf_i[k], j]
                if k + 1 < n:
                    upper = buf_t[k + 1] - a
                    if upper <= 0.0:
                        continue  # simultaneous arrivals: add them all first
                else:
                    upper = np.inf
                x = first_crossing(v, cur, c, upper, tau_s, tau_m, delta)
                if x <= upper:
                    spike = a + x
                    break
            if spike > t_max and spike < np.inf:
                late += 1
                spike = np.inf
            out[b, j] = spike
    return late
