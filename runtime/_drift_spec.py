"""How an emulated analog chip drifts with device time: the settings, validated.

The drift itself lives with the emulator (``delgrad.drivers``); this is the small
frozen description a configuration file holds (``[driver.drift]`` of ``delgrad run``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from delgrad.errors import ConfigError

__all__ = ["DriftSpec"]

#: Largest relative spread of a random walk at its horizon (one standard deviation).
MAX_WALK = 1.0


@dataclass(frozen=True)
class DriftSpec:
    """Drift of an emulated BrainScaleS-2 chip over device time; everything 0 = off.

    Device time is the number of trials the chip has run (``clock = "runs"``), or the
    trials of the service's input stream it has run (``"stream"``: re-observations
    before a learning step do not age the chip, so a learning and a frozen device fed
    the same stream drift alike), less ``start_trials``. Parameter ``p`` of circuit
    ``j`` (a neuron's threshold, tau_m or tau_s; a synapse's gain) is realised as::

        p_j(n) = p_j * (1 + x_j(n)) * (1 + thermal_j(n)) * prod(1 + jump_k for jumps k <= n)

    * ``x_j`` is a seeded random walk, one step of N(0, s^2 step_trials/horizon_trials)
      every ``step_trials`` trials, so its spread is ``s`` (one standard deviation)
      after ``horizon_trials`` and grows as sqrt(n) beyond: ``threshold``, ``tau_m``,
      ``tau_s`` and ``gain`` set ``s`` for each kind;
    * ``thermal_j(n) = thermal_amplitude * k_j * sin(2 pi n / thermal_period_trials)``,
      one temperature for the chip and a per-neuron sensitivity ``k_j ~ N(1, 0.25^2)``
      (thresholds and tau_m only);
    * jumps: every threshold times ``1 + jump_threshold[k]`` from trial ``jump_trials[k]``
      on (a recalibration that moved the operating point).

    An axonal delay element ``i`` is shifted by an offset (units of tau_s) walking the
    same way with spread ``delay`` at the horizon.

    Attributes:
        horizon_trials: device time at which each walk reaches its spread (>= 1).
        step_trials: trials between walk steps (>= 1; drift moves between batches).
        threshold, tau_m, tau_s, gain: relative spreads at the horizon (0 .. 1).
        delay: spread of the delay-element offsets at the horizon (tau_s, 0 .. 10).
        thermal_amplitude: relative amplitude of the periodic component (0 .. 0.5).
        thermal_period_trials: its period in trials (>= 1).
        jump_trials: when each jump happens (trials run, ascending, >= 0).
        jump_threshold: each jump's relative threshold change (-0.5 .. 1).
        seed: the drift's own random stream (>= 0); with the chip seed it fixes the walks.
        clock: ``"runs"`` or ``"stream"`` (see above).
        start_trials: device time before any walk or thermal motion begins (jumps
            count from 0).
    """

    horizon_trials: int = 1_000_000
    step_trials: int = 1000
    threshold: float = 0.0
    tau_m: float = 0.0
    tau_s: float = 0.0
    gain: float = 0.0
    delay: float = 0.0
    thermal_amplitude: float = 0.0
    thermal_period_trials: int = 200_000
    jump_trials: list[int] = field(default_factory=list)
    jump_threshold: list[float] = field(default_factory=list)
    seed: int = 0
    clock: Literal["runs", "stream"] = "runs"
    start_trials: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, text: str) -> None:
            if not ok:
                raise ConfigError(f"driver.drift.{text}")

        need(
            self.clock in ("runs", "stream"),
            f"clock must be 'runs' or 'stream', got {self.clock!r}",
        )
        for name in (
            "horizon_trials",
            "step_trials",
            "thermal_period_trials",
            "seed",
            "start_trials",
        ):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}",
            )
        need(self.horizon_trials >= 1, f"horizon_trials must be >= 1, got {self.horizon_trials}")
        need(self.step_trials >= 1, f"step_trials must be >= 1, got {self.step_trials}")
        need(
            self.thermal_period_trials >= 1,
            f"thermal_period_trials must be >= 1, got {self.thermal_period_trials}",
        )
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(self.start_trials >= 0, f"start_trials must be >= 0, got {self.start_trials}")
        bounds = {
            "threshold": MAX_WALK,
            "tau_m": MAX_WALK,
            "tau_s": MAX_WALK,
            "gain": MAX_WALK,
            "delay": 10.0,
            "thermal_amplitude": 0.5,
        }
        for name, high in bounds.items():
            value = getattr(self, name)
            need(
                isinstance(value, int | float) and not isinstance(value, bool),
                f"{name} must be a number, got {value!r}",
            )
            need(
                math.isfinite(value) and 0.0 <= value <= high,
                f"{name} must be in 0 .. {high:g}, got {value!r}",
            )
        need(
            len(self.jump_trials) == len(self.jump_threshold),
            f"jump_trials ({len(self.jump_trials)}) and jump_threshold "
            f"({len(self.jump_threshold)}) must have the same length",
        )
        need(
            all(isinstance(t, int) and t >= 0 for t in self.jump_trials)
            and list(self.jump_trials) == sorted(self.jump_trials),
            f"jump_trials must be ascending integers >= 0, got {self.jump_trials!r}",
        )
        need(
            all(isinstance(j, int | float) and -0.5 <= j <= 1.0 for j in self.jump_threshold),
            f"jump_threshold entries must be in -0.5 .. 1, got {self.jump_threshold!r}",
        )

    @property
    def active(self) -> bool:
        """Whether any drift is set."""
        walks = (self.threshold, self.tau_m, self.tau_s, self.gain, self.delay)
        return any(walks) or self.thermal_amplitude > 0 or bool(self.jump_trials)
