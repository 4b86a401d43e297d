"""Test helpers: random networks and a slow, independent membrane integrator."""

from __future__ import annotations

import itertools
import math

import numpy as np

from delgrad.runtime import Layer, Network, NeuronParams


def random_network(
    rng: np.random.Generator,
    sizes: list[int],
    delay: str,
    tau_m: float,
    *,
    theta: float = 1.0,
    w_mean: float = 1.5,
) -> Network:
    """A network whose neurons mostly fire for inputs in [0, 2]."""
    layers = [Layer(a, b, delay) for a, b in itertools.pairwise(sizes)]
    w = [rng.normal(w_mean, 1.0, ly.weight_shape) * (4.0 / ly.n_pre) ** 0.5 * 1.3 for ly in layers]
    d = [rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(tau_m=tau_m, theta=theta), w, d)


def membrane_spike(
    arrivals: np.ndarray,
    weights: np.ndarray,
    *,
    tau_s: float,
    tau_m: float,
    theta: float,
    step: float = 1e-3,
    t_end: float = 30.0,
) -> tuple[float, float]:
    """First threshold crossing by integrating the membrane ODE between input events.

    Model (time in tau_s units): tau_s dI/dt = -I with I += w at an arrival,
    tau_m dV/dt = -V + I, threshold g_l theta. The state (V, I) is carried from
    event to event by the exact linear propagator of this ODE; V is sampled on a
    grid of ``step`` and the first grid crossing refined by bisection. It shares
    no code with the causal-set search or the closed forms.

    Returns:
        (spike time or inf, the largest V/threshold margin seen; near 0 = tangent).
    """
    order = np.argsort(arrivals, kind="stable")
    a = arrivals[order]
    w = weights[order]
    keep = np.isfinite(a)
    a, w = a[keep], w[keep]
    c = theta * tau_s / tau_m
    if tau_m == tau_s:

        def prop(v0, i0, s):
            e = np.exp(-s / tau_s)
            return e * (v0 + i0 * s / tau_s), i0 * e
    else:
        k = tau_s / (tau_m - tau_s)

        def prop(v0, i0, s):
            es = np.exp(-s / tau_s)
            return v0 * np.exp(-s / tau_m) + i0 * k * (np.exp(-s / tau_m) - es), i0 * es

    v, cur = 0.0, 0.0
    best = -math.inf
    for idx in range(len(a)):
        cur += w[idx]
        start = a[idx]
        stop = a[idx + 1] if idx + 1 < len(a) else max(t_end, start + 40.0 * tau_m)
        s = np.arange(0.0, stop - start + step, step)
        s = np.minimum(s, stop - start)
        vs, _ = prop(v, cur, s)
        best = max(best, float(vs.max()) - c)
        hit = np.nonzero(vs >= c)[0]
        if hit.size:
            hi = s[hit[0]]
            lo = s[hit[0] - 1] if hit[0] > 0 else 0.0
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                if prop(v, cur, mid)[0] >= c:
                    hi = mid
                else:
                    lo = mid
            return start + hi, best
        v, cur = prop(v, cur, stop - start)
        v, cur = float(v), float(cur)
    return math.inf, best
