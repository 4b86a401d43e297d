"""Figures of a BrainScaleS-2 system as the DelGrad authors describe and use it."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from delgrad.runtime import NeuronParams, ParameterError


@dataclass(frozen=True)
class BSS2Params:
    """A BrainScaleS-2 chip as seen by DelGrad (Göltz et al. 2025), every figure overridable.

    Model (per neuron j of a layer, trial b; times in units of tau_s = ``tau_s_us``)::

        tau_m dV/dt = -V + I,   tau_s dI/dt = -I,   I += w_q at each arrival a_i,
        spike at the first t <= t_window with V(t) = g_l * theta_bj,  g_l = tau_s / tau_m,
        theta_bj = threshold + fp_j + n_bj,  fp_j ~ N(fp_mean, fp_std^2) once per chip,
                                             n_bj ~ N(0, trial_std^2), drawn anew for every
                                             batch: one draw per neuron shared by the batch's
                                             trials (``noise_per="batch"``, the authors'
                                             b2b noise) or one per trial (``"trial"``),
        w_q = clip(round(weight_scale * w), -code_max, code_max) / weight_scale,
        a_i = t_i + d_q,i + e,  e ~ N(0, delay_jitter_std^2) per delayed spike,
        d_q = delay_min_us + round((clip(d_us) - delay_min_us) / delay_step_us) * delay_step_us.

    Attributes:
        tau_s_us: synaptic time constant (us); also the model time unit.
        tau_m_us: membrane time constant (us).
        threshold: nominal threshold theta in the host's units (2.6 in the authors' recipe).
        threshold_fp_mean: mean of the per-neuron fixed-pattern threshold offset.
        threshold_fp_std: std of the fixed-pattern offset (drawn once per chip seed).
        threshold_trial_std: std of the trial-to-trial threshold noise.
        noise_per: ``"batch"`` (default) or ``"trial"``: how often that noise is drawn.
        weight_scale: weight codes per model weight unit (30: |w| <= 63/30 = 2.1).
        weight_code_max: largest code magnitude (6-bit synapses: 63).
        quantise_weights: round weights to codes (False: only clip to the range).
        delay_min_us, delay_max_us, delay_step_us: axonal delay elements (us).
        quantise_delays: round delays to the step (False: only clip to the range).
        delay_jitter_std: spike-time jitter of a delayed spike (model units).
        trial_length_us: read-out window of one trial (us); 180 us = 30 model units.
        n_neuron_circuits: neurons available for network layers (fixed pattern size).
        max_input_spikes_per_trial: input spike budget of one trial (an emulator
            assumption, not a measured chip figure).
        tau_m_mismatch_std, tau_s_mismatch_std: *extension, not in the authors'
            model*: relative per-neuron spread of the membrane and synaptic time
            constants left after calibration. Neuron circuit j integrates with
            tau_m,j = tau_m (1 + tau_m_mismatch_std xi_j) and tau_s,j likewise
            (xi ~ N(0, 1), drawn once per chip seed, factors floored at 0.2); the
            threshold stays g_l theta_bj with the nominal g_l. 0 = off (default).
        weight_gain_std: *extension*: relative per-synapse gain mismatch; synapse
            (i, j) of layer l transmits w_q (1 + weight_gain_std xi_lij), drawn once
            per chip seed (factors floored at 0). 0 = off (default).

    The host learner knows none of these (it assumes the nominal ``neuron`` and
    its own weights), which is what the mismatch study in docs/hardware.md measures.
    """

    tau_s_us: float = 6.0
    tau_m_us: float = 6.0
    threshold: float = 2.6
    threshold_fp_mean: float = 0.13
    threshold_fp_std: float = 0.08
    threshold_trial_std: float = 0.04
    noise_per: Literal["batch", "trial"] = "batch"
    weight_scale: float = 30.0
    weight_code_max: int = 63
    quantise_weights: bool = True
    delay_min_us: float = 8.25
    delay_max_us: float = 33.25
    delay_step_us: float = 0.125
    quantise_delays: bool = True
    delay_jitter_std: float = 0.01
    trial_length_us: float = 180.0
    n_neuron_circuits: int = 512
    max_input_spikes_per_trial: int = 512
    tau_m_mismatch_std: float = 0.0
    tau_s_mismatch_std: float = 0.0
    weight_gain_std: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool",):
                if not isinstance(value, bool):
                    raise ParameterError(f"BSS2Params.{f.name} must be a bool, got {value!r}")
                continue
            if f.name == "noise_per":
                if value not in ("batch", "trial"):
                    raise ParameterError(
                        f"BSS2Params.noise_per must be 'batch' or 'trial', got {value!r}"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f"BSS2Params.{f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParameterError(f"BSS2Params.{f.name} must be finite, got {value!r}")
        positive = (
            "tau_s_us", "tau_m_us", "threshold", "weight_scale", "weight_code_max",
            "delay_step_us", "trial_length_us", "n_neuron_circuits", "max_input_spikes_per_trial",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ParameterError(f"BSS2Params.{name} must be > 0")
        for name in (
            "threshold_fp_std", "threshold_trial_std", "delay_jitter_std",
            "tau_m_mismatch_std", "tau_s_mismatch_std", "weight_gain_std",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ParameterError(f"BSS2Params.{name} must be >= 0")
        if not 0 <= self.delay_min_us <= self.delay_max_us:
            raise ParameterError("BSS2Params needs 0 <= delay_min_us <= delay_max_us")
        for name in ("weight_code_max", "n_neuron_circuits", "max_input_spikes_per_trial"):
            if not isinstance(getattr(self, name), int):
                raise ParameterError(f"BSS2Params.{name} must be an int")

    @property
    def time_unit_us(self) -> float:
        """Microseconds per model time unit (= tau_s_us)."""
        return self.tau_s_us

    @property
    def weight_max(self) -> float:
        """Largest realisable |w| in model units."""
        return self.weight_code_max / self.weight_scale

    @property
    def window(self) -> float:
        """Trial window in model units."""
        return self.trial_length_us / self.tau_s_us

    @property
    def neuron(self) -> NeuronParams:
        """The nominal model the host learner should assume (tau_s = 1, no noise)."""
        return NeuronParams(tau_s=1.0, tau_m=self.tau_m_us / self.tau_s_us, theta=self.threshold)

    @property
    def has_mismatch(self) -> bool:
        """Whether any of the mismatch extension's spreads is nonzero."""
        return (self.tau_m_mismatch_std, self.tau_s_mismatch_std, self.weight_gain_std) != (
            0.0,
            0.0,
            0.0,
        )

    def noiseless(self) -> BSS2Params:
        """The same chip without fixed pattern, trial noise, jitter and mismatch, unquantised."""
        return replace(
            self,
            threshold_fp_mean=0.0,
            threshold_fp_std=0.0,
            threshold_trial_std=0.0,
            delay_jitter_std=0.0,
            quantise_weights=False,
            quantise_delays=False,
            tau_m_mismatch_std=0.0,
            tau_s_mismatch_std=0.0,
            weight_gain_std=0.0,
        )
