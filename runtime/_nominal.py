"""Which threshold the backward pass assumes: the observed rule or the authors' nominal one.

* ``"observed"`` (default): dT/dp = -(dV/dp)(T) / V'(T) at the observed spike
  time T. It needs no threshold at all: whatever threshold the chip's neuron
  really had, the crossing happened at T.
* ``"nominal"``: the DelGrad authors' hardware rule (tau_m = tau_s only): the
  denominator 1 / V'(T) is replaced by 1 / (a (1 + W0(z))), the closed form at
  the configured (nominal) theta over the observed causal set; 0 where W0 is
  undefined. It equals the observed rule with each neuron's dL/dT scaled by
  V'(T) / (a (1 + W0(z))) (``_kernels._nominal``), applied layer by layer in the
  backward recursion, so the gradient kernels stay untouched.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from delgrad.errors import ParameterError
from delgrad.runtime._kernels._modes import MODE_EQUAL
from delgrad.runtime._kernels._nominal import nominal_factors
from delgrad.runtime._neuron import NeuronParams

BackwardRule = Literal["observed", "nominal"]
BACKWARD_RULES: tuple[str, ...] = get_args(BackwardRule)


def check_rule(rule: object, neuron: NeuronParams) -> BackwardRule:
    """Validate a backward rule for a neuron model.

    Raises:
        ParameterError: for an unknown rule, or ``"nominal"`` with tau_m != tau_s
            (the authors' closed form exists for that ratio only).
    """
    if rule not in BACKWARD_RULES:
        raise ParameterError(f"backward rule must be one of {BACKWARD_RULES}, got {rule!r}")
    if rule == "nominal" and neuron.mode != MODE_EQUAL:
        raise ParameterError(
            "the nominal-threshold rule needs tau_m == tau_s (the authors' Lambert-W closed "
            f"form), got tau_m={neuron.tau_m}, tau_s={neuron.tau_s}"
        )
    return rule  # type: ignore[return-value]


def nominal_scale(
    t_pre: np.ndarray,
    w: np.ndarray,
    delays: tuple[np.ndarray, np.ndarray, np.ndarray],
    t_out: np.ndarray,
    neuron: NeuronParams,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Factors (B, n_out) turning the observed rule into the nominal one for one layer.

    Args:
        t_pre: (B, n_pre) presynaptic times as the backward kernel sees them
            (observed arrivals for a chip's axonal delays; inf = silent).
        w: (n_pre, n_out) weights.
        delays: (d_syn (n_pre, n_out), d_ax (n_pre,), d_den (n_out,)).
        t_out: (B, n_out) observed spike times of the layer.
        neuron: the nominal neuron (its theta is the rule's threshold); tau_m == tau_s.
        counts: optional (2,) int64 accumulator: [spikes where the authors' rule
            has no value (gradient 0), spikes with V'(T) <= 0 in the host model].

    Raises:
        ParameterError: on shape mismatches or tau_m != tau_s.
    """
    check_rule("nominal", neuron)
    t_pre = np.ascontiguousarray(t_pre, dtype=np.float64)
    t_out = np.ascontiguousarray(t_out, dtype=np.float64)
    d_syn, d_ax, d_den = delays
    n_batch, n_pre = t_pre.shape
    n_out = w.shape[1]
    if w.shape != (n_pre, n_out) or t_out.shape != (n_batch, n_out):
        raise ParameterError(
            f"nominal_scale: t_pre {t_pre.shape}, w {w.shape}, t_out {t_out.shape} do not match"
        )
    if d_syn.shape != (n_pre, n_out) or d_ax.shape != (n_pre,) or d_den.shape != (n_out,):
        raise ParameterError("nominal_scale: delay arrays do not match the layer")
    if counts is None:
        counts = np.zeros(2, dtype=np.int64)
    out = np.empty((n_batch, n_out))
    nominal_factors(
        t_pre, w, d_syn, d_ax, d_den, t_out, neuron.tau_s, neuron.g_l * neuron.theta,
        neuron.eps, out, counts,
    )  # fmt: skip
    return out
