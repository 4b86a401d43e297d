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
#: Largest delay-element spread and jump (units of tau_s).
MAX_DELAY = 10.0
#: Range of a relative jump (a factor 1 + jump, so 0.5 .. 2).
JUMP_RANGE = (-0.5, 1.0)
#: Largest rate of the ``"seconds"`` clock (trials of device time per second).
MAX_TRIALS_PER_S = 1e9
#: The jump lists, relative (factor ``1 + jump``) but for ``jump_delay`` (added, tau_s).
JUMP_KINDS = ("jump_threshold", "jump_tau_m", "jump_tau_s", "jump_gain", "jump_delay")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(ok: bool, text: str) -> None:
    """Raise ``ConfigError('driver.drift.' + text)`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"driver.drift.{text}")


@dataclass(frozen=True)
class DriftSpec:
    """Drift of an emulated BrainScaleS-2 chip over device time; everything 0 = off.

    Device time ``n`` is counted in trials by one of three clocks, less ``start_trials``
    for the walks and the thermal cycle:

    * ``"runs"``: every trial the chip runs (re-observations before a learning step too);
    * ``"stream"``: the trials of the service's input stream the chip has run
      (:meth:`~delgrad.runtime.Driver.stream_trials`), so a learning and a frozen
      device fed the same stream drift alike;
    * ``"seconds"``: wall-clock time, ``floor(elapsed_s * trials_per_s)``, elapsed since
      ``since_unix_s`` (0: since the driver was made); a chip that ages whether or not
      it runs.

    Parameter ``p`` of circuit ``j`` (a neuron's threshold, tau_m or tau_s; a synapse's
    gain) is realised as::

        p_j(n) = p_j * (1 + x_j(n)) * (1 + thermal_j(n)) * prod(1 + jump_k for jumps k <= n)

    * ``x_j`` is a seeded random walk, one step of N(0, s^2 step_trials/horizon_trials)
      every ``step_trials`` trials, so its spread is ``s`` (one standard deviation)
      after ``horizon_trials`` and grows as sqrt(n) beyond: ``threshold``, ``tau_m``,
      ``tau_s`` and ``gain`` set ``s`` for each kind;
    * ``thermal_j(n) = thermal_amplitude * k_j * sin(2 pi n / thermal_period_trials)``,
      one temperature for the chip and a per-neuron sensitivity ``k_j ~ N(1, 0.25^2)``
      (thresholds and tau_m only);
    * jumps (a recalibration that moved the operating point): from device time
      ``jump_trials[k]`` on (not delayed by ``start_trials``), every threshold times
      ``1 + jump_threshold[k]``, and likewise ``jump_tau_m``, ``jump_tau_s``,
      ``jump_gain``; an empty list leaves that kind alone.

    An axonal delay element ``i`` is shifted by an offset (units of tau_s) walking the
    same way with spread ``delay`` at the horizon, plus ``jump_delay[k]`` from each jump.

    Attributes:
        horizon_trials: device time at which each walk reaches its spread (>= 1; with
            a horizon that is not a multiple of ``step_trials`` the last whole step
            before it has ``s * sqrt(floor(h / step) * step / h)``).
        step_trials: trials between walk steps (1 .. ``horizon_trials``; drift moves
            between batches).
        threshold, tau_m, tau_s, gain: relative spreads at the horizon (0 .. 1).
        delay: spread of the delay-element offsets at the horizon (tau_s, 0 .. 10).
        thermal_amplitude: relative amplitude of the periodic component (0 .. 0.5).
        thermal_period_trials: its period in trials (>= 1).
        jump_trials: when each jump happens (device time, ascending, >= 0).
        jump_threshold, jump_tau_m, jump_tau_s, jump_gain: each jump's relative change
            (-0.5 .. 1), one per entry of ``jump_trials``, or empty.
        jump_delay: each jump's delay-element offset (tau_s, -10 .. 10), or empty.
        seed: the drift's own random stream (>= 0); with the chip seed it fixes the walks.
        clock: ``"runs"``, ``"stream"`` or ``"seconds"`` (see above).
        trials_per_s: device time per wall-clock second of the ``"seconds"`` clock
            (trials/s, > 0 .. 1e9).
        since_unix_s: origin of the ``"seconds"`` clock (Unix time in s; 0 = when the
            driver is made). A fixed origin keeps the drift across restarts.
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
    jump_tau_m: list[float] = field(default_factory=list)
    jump_tau_s: list[float] = field(default_factory=list)
    jump_gain: list[float] = field(default_factory=list)
    jump_delay: list[float] = field(default_factory=list)
    seed: int = 0
    clock: Literal["runs", "stream", "seconds"] = "runs"
    trials_per_s: float = 1000.0
    since_unix_s: float = 0.0
    start_trials: int = 0

    def __post_init__(self) -> None:
        _need(
            self.clock in ("runs", "stream", "seconds"),
            f"clock must be 'runs', 'stream' or 'seconds', got {self.clock!r}",
        )
        for name in (
            "horizon_trials",
            "step_trials",
            "thermal_period_trials",
            "seed",
            "start_trials",
        ):
            value = getattr(self, name)
            _need(_integer(value), f"{name} must be an integer, got {value!r}")
        _need(self.horizon_trials >= 1, f"horizon_trials must be >= 1, got {self.horizon_trials}")
        _need(
            1 <= self.step_trials <= self.horizon_trials,
            f"step_trials must be in 1 .. horizon_trials ({self.horizon_trials}), "
            f"got {self.step_trials}",
        )
        _need(
            self.thermal_period_trials >= 1,
            f"thermal_period_trials must be >= 1, got {self.thermal_period_trials}",
        )
        _need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _need(self.start_trials >= 0, f"start_trials must be >= 0, got {self.start_trials}")
        bounds = {
            "threshold": (0.0, MAX_WALK),
            "tau_m": (0.0, MAX_WALK),
            "tau_s": (0.0, MAX_WALK),
            "gain": (0.0, MAX_WALK),
            "delay": (0.0, MAX_DELAY),
            "thermal_amplitude": (0.0, 0.5),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            _need(_number(value), f"{name} must be a number, got {value!r}")
            _need(
                math.isfinite(value) and low <= value <= high,
                f"{name} must be in {low:g} .. {high:g}, got {value!r}",
            )
        since = self.since_unix_s
        _need(
            _number(since) and math.isfinite(since) and since >= 0,
            f"since_unix_s must be a Unix time >= 0 (s), got {since!r}",
        )
        rate = self.trials_per_s
        _need(
            _number(rate) and math.isfinite(rate) and 0 < rate <= MAX_TRIALS_PER_S,
            f"trials_per_s must be a number in (0, {MAX_TRIALS_PER_S:g}], got {rate!r}",
        )
        self._check_jumps()

    def _check_jumps(self) -> None:
        trials = self.jump_trials
        _need(isinstance(trials, list), f"jump_trials must be a list, got {trials!r}")
        _need(
            all(_integer(t) and t >= 0 for t in trials) and trials == sorted(trials),
            f"jump_trials must be ascending integers >= 0, got {trials!r}",
        )
        given = []
        for name in JUMP_KINDS:
            values = getattr(self, name)
            _need(isinstance(values, list), f"{name} must be a list, got {values!r}")
            if not values:
                continue
            given.append(name)
            _need(
                len(values) == len(trials),
                f"{name} ({len(values)}) and jump_trials ({len(trials)}) must have the same length",
            )
            low, high = (-MAX_DELAY, MAX_DELAY) if name == "jump_delay" else JUMP_RANGE
            _need(
                all(_number(v) and low <= v <= high for v in values),
                f"{name} entries must be in {low:g} .. {high:g}, got {values!r}",
            )
        _need(
            bool(given) or not trials,
            f"jump_trials {trials!r} needs at least one of {', '.join(JUMP_KINDS)}",
        )

    @property
    def active(self) -> bool:
        """Whether any drift is set."""
        walks = (self.threshold, self.tau_m, self.tau_s, self.gain, self.delay)
        return any(walks) or self.thermal_amplitude > 0 or bool(self.jump_trials)
