"""The drift of an emulated chip: factors that move with device time (in trials).

:class:`ChipDrift` follows :class:`~delgrad.runtime.DriftSpec`. Walk steps are drawn
from streams keyed by (chip seed, drift seed, kind, step index), so the drifted
parameters after ``n`` trials of device time depend on ``n`` only, not on how the
trials were batched, and a chip with the same seeds drifts the same way in every
process. :class:`DriftState` is one moment of it, as tests and benchmarks read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad.runtime import DriftSpec

_DRIFT_STREAM = 7
_NEURON, _GAIN, _DELAY, _THERMAL = 0, 1, 2, 3
#: Kinds of the per-neuron walks, in the order of their rows.
NEURON_KINDS = ("threshold", "tau_m", "tau_s")
_MIN_FACTOR = 0.2  # drifted factors stay positive


@dataclass(frozen=True)
class DriftState:
    """An emulated chip at one moment of device time: what the host never sees.

    Per neuron circuit (layer neurons take circuits in order, as the fixed pattern):

    Attributes:
        device_trials: the device time of this state (trials, see ``DriftSpec.clock``).
        threshold_factor, tau_m_factor, tau_s_factor: (n_circuits,) drift factors
            (walk, thermal cycle and jumps; 1 = as calibrated).
        threshold: (n_circuits,) the threshold each circuit compares with now, in the
            units of ``BSS2Params.threshold`` (fixed pattern included; the membrane
            reaches it as ``g_l * threshold``), trial noise excluded.
        tau_m, tau_s: (n_circuits,) each circuit's time constants now (tau_s units;
            the mismatch extension included).
        gain_factor: one (n_pre, n_out) array of synapse-gain drift factors per layer
            of the configured network (empty before ``configure``).
        gain: the same layers' total synapse gains (mismatch times drift).
        delay_offset: one (n_pre,) array per layer: the offset each axonal delay
            element adds now (tau_s; zeros for layers without axonal delays).
    """

    device_trials: int
    threshold_factor: np.ndarray
    tau_m_factor: np.ndarray
    tau_s_factor: np.ndarray
    threshold: np.ndarray
    tau_m: np.ndarray
    tau_s: np.ndarray
    gain_factor: tuple[np.ndarray, ...]
    gain: tuple[np.ndarray, ...]
    delay_offset: tuple[np.ndarray, ...]


class ChipDrift:
    """Drifted factors of one emulated chip.

    Args:
        spec: the drift settings.
        n_circuits: neuron circuits of the chip (the per-neuron arrays' length).
        chip_seed: the chip (with ``spec.seed``, the random streams).
    """

    def __init__(self, spec: DriftSpec, n_circuits: int, chip_seed: int) -> None:
        self.spec = spec
        self.n_circuits = int(n_circuits)
        self._key = (int(chip_seed), _DRIFT_STREAM, spec.seed)
        self._scale = np.sqrt(spec.step_trials / spec.horizon_trials)
        self._step = 0
        self._neuron = np.zeros((3, self.n_circuits))  # walks of threshold, tau_m, tau_s
        self._spreads = np.array([spec.threshold, spec.tau_m, spec.tau_s])[:, None]
        self._gains: dict[int, tuple[int, np.ndarray]] = {}  # layer -> (step, walk)
        self._delays: dict[int, tuple[int, np.ndarray]] = {}
        rng = np.random.default_rng(np.random.SeedSequence([*self._key, _THERMAL]))
        self._sensitivity = 1.0 + 0.25 * rng.standard_normal(self.n_circuits)
        self.trials = 0

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([*self._key, *key]))

    def advance(self, trials: int) -> None:
        """Move device time to ``trials`` (>= the current one)."""
        if trials < self.trials:
            raise ValueError("device time does not go back")
        self.trials = int(trials)
        target = self._moving() // self.spec.step_trials
        if self._spreads.any():
            while self._step < target:
                self._step += 1
                steps = self._rng(_NEURON, self._step).standard_normal((3, self.n_circuits))
                self._neuron += self._spreads * self._scale * steps
        self._step = target

    def _walk(
        self, store: dict[int, tuple[int, np.ndarray]], kind: int, layer: int, shape: tuple
    ) -> np.ndarray:
        step, walk = store.get(layer, (0, np.zeros(shape)))
        if walk.shape != shape:
            step, walk = 0, np.zeros(shape)
        target = self._moving() // self.spec.step_trials
        while step < target:
            step += 1
            walk = walk + self._scale * self._rng(kind, layer, step).standard_normal(shape)
        store[layer] = (step, walk)
        return walk

    def _moving(self) -> int:
        """Device time since the walks began (``start_trials``)."""
        return max(0, self.trials - self.spec.start_trials)

    def _thermal(self) -> np.ndarray:
        spec = self.spec
        if spec.thermal_amplitude == 0:
            return np.zeros(self.n_circuits)
        phase = 2 * np.pi * self._moving() / spec.thermal_period_trials
        return spec.thermal_amplitude * self._sensitivity * np.sin(phase)

    def _jumps(self, kind: str) -> list[float]:
        """The changes of ``jump_KIND`` that have happened by now (device time)."""
        changes: list[float] = getattr(self.spec, f"jump_{kind}")
        if not changes:
            return []
        pairs = zip(self.spec.jump_trials, changes, strict=True)
        return [change for at, change in pairs if self.trials >= at]

    def _jump(self, kind: str) -> float:
        """Product of ``1 + jump`` over the relative jumps of ``kind`` so far."""
        factor = 1.0
        for change in self._jumps(kind):
            factor *= 1.0 + change
        return factor

    def neuron_factors(self) -> dict[str, np.ndarray]:
        """``threshold``, ``tau_m``, ``tau_s``: (n_circuits,) factors at the current time."""
        thermal = self._thermal()
        out = {}
        for row, kind in enumerate(NEURON_KINDS):
            factor = 1.0 + self._neuron[row]
            if kind != "tau_s":
                factor = factor * (1.0 + thermal)
            out[kind] = np.maximum(factor * self._jump(kind), _MIN_FACTOR)
        return out

    def gain_factors(self, layer: int, shape: tuple[int, int]) -> np.ndarray:
        """(n_pre, n_out) synapse gain factors of ``layer`` at the current time."""
        jump = self._jump("gain")
        if self.spec.gain == 0:
            return np.full(shape, jump)
        walk = self._walk(self._gains, _GAIN, layer, shape)
        return np.maximum((1.0 + self.spec.gain * walk) * jump, 0.0)

    def delay_offsets(self, layer: int, n: int) -> np.ndarray:
        """(n,) offsets of ``layer``'s delay elements at the current time (tau_s)."""
        jump = float(sum(self._jumps("delay")))
        if self.spec.delay == 0:
            return np.full(n, jump)
        return self.spec.delay * self._walk(self._delays, _DELAY, layer, (n,)) + jump
