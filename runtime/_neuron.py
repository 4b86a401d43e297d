"""Neuron parameters of the leaky integrate-and-fire model with exponential current synapses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from delgrad.errors import ParameterError

#: Kernel selector: closed form for tau_m == tau_s (Lambert W), tau_m == 2 tau_s
#: (quadratic in exp(-T/tau_m)), or a bracketed root find for any other ratio.
from delgrad.runtime._kernels._modes import MODE_DOUBLE, MODE_EQUAL, MODE_GENERAL


@dataclass(frozen=True)
class NeuronParams:
    """Leaky integrate-and-fire neuron with exponential current synapses.

    Convention of the DelGrad authors (C_m = tau_s = 1, E_l = 0,
    g_l = tau_s / tau_m): the neuron fires at the first T with

        sum_{i in C} w_i * kappa(T - t_i) = g_l * theta,
        kappa(s) = tau_s / (tau_m - tau_s) * (exp(-s / tau_m) - exp(-s / tau_s)),  s > 0,

    (kappa(s) = (s / tau_s) exp(-s / tau_s) when tau_m == tau_s), where t_i are
    arrival times and C the causal set. All times are in units of tau_s.

    Attributes:
        tau_s: synaptic time constant (the time unit; 1 by convention).
        tau_m: membrane time constant, in units of tau_s.
        theta: firing threshold (dimensionless, relative to E_l = 0).
        eps: constant the authors' closed forms add to their sums a (a1), b and a2
            to avoid 0/0; 0 gives the exact model, 1e-6 reproduces their recorded
            spike times. Applied in the forward pass only.
    """

    tau_s: float = 1.0
    tau_m: float = 2.0
    theta: float = 1.0
    eps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tau_s", "tau_m", "theta"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ParameterError(
                    f"NeuronParams.{name} must be a finite number > 0, got {value!r}"
                )
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ParameterError(f"NeuronParams.eps must be finite and >= 0, got {self.eps!r}")

    @property
    def g_l(self) -> float:
        """Leak conductance tau_s / tau_m (C_m = 1)."""
        return self.tau_s / self.tau_m

    @property
    def mode(self) -> int:
        """Which spike-time solver applies: MODE_EQUAL, MODE_DOUBLE or MODE_GENERAL."""
        if self.tau_m == self.tau_s:
            return MODE_EQUAL
        if self.tau_m == 2.0 * self.tau_s:
            return MODE_DOUBLE
        return MODE_GENERAL
