"""The driver contract: trial-based backends that configure a network and emulate batches.

A trial presents one sample's input spikes, lets the network run for at most
``Capabilities.max_trial_length`` and reads out the first spike of every neuron.
``run`` emulates a batch of trials and returns an :class:`Observation` in model
units (tau_s). Drivers may block; kernels release the GIL so a runtime can call
them from a worker thread.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import numpy as np

from delgrad.errors import CapabilityError, DriverError, ParameterError
from delgrad.runtime._network import DELAY_KINDS, Network
from delgrad.runtime._neuron import NeuronParams

#: Every driver name a configuration may use (``[driver] name`` of ``delgrad run``,
#: ``training.driver`` of a recipe); ``delgrad.drivers.driver_from_config`` builds them.
DRIVER_NAMES: tuple[str, ...] = (
    "brainscales2",
    "emulator-bss2",
    "emulator-ideal",
    "host",
    "recording",
)
#: Older spellings of recipes' ``training.driver``, read as the names they stand for.
DRIVER_ALIASES: dict[str, str] = {"bss2": "emulator-bss2", "ideal": "emulator-ideal"}

#: What a backend does with a parameter outside its range: ``"exact"`` (no range,
#: used as given), ``"clip"`` (clipped into range and counted in the
#: :class:`Observation`), ``"refuse"`` (``configure`` raises :class:`CapabilityError`).
RangeRule = Literal["exact", "clip", "refuse"]
RANGE_RULES: tuple[str, ...] = ("exact", "clip", "refuse")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can emulate, in model units (tau_s) unless named otherwise.

    Attributes:
        backend: short name of the backend.
        time_unit_us: microseconds of chip time per model time unit; None for a
            backend without physical time.
        weight_max: largest |w| the backend realises (inf: unbounded).
        weight_resolution: spacing of realisable weights (0: continuous).
        weight_rule: what happens to |w| > weight_max (see ``RangeRule``); weights
            inside the range are rounded to the resolution without being counted.
        delay_kinds: the ``Layer.delay`` kinds accepted; other kinds are refused.
        delay_min, delay_max: range of a physical delay (model units).
        delay_resolution: spacing of realisable delays (0: continuous).
        delay_rule: what happens to delays outside [delay_min, delay_max].
        max_trial_length: read-out window of one trial; later spikes are dropped
            (reported as inf and counted). inf: no window.
        max_input_spikes_per_trial: spike budget of one trial's input (including
            bias spikes); a batch with a trial above it is refused. None: unbounded.
        max_neurons: neurons (all layers) the backend can host; None: unbounded.
        nominal_neuron: the neuron model the host should assume for this backend
            (its calibration target), or None when the network's own is used.
        noisy: whether repeated runs of one input can give different times.
    """

    backend: str
    time_unit_us: float | None = None
    weight_max: float = math.inf
    weight_resolution: float = 0.0
    weight_rule: RangeRule = "exact"
    delay_kinds: tuple[str, ...] = DELAY_KINDS
    delay_min: float = 0.0
    delay_max: float = math.inf
    delay_resolution: float = 0.0
    delay_rule: RangeRule = "exact"
    max_trial_length: float = math.inf
    max_input_spikes_per_trial: int | None = None
    max_neurons: int | None = None
    nominal_neuron: NeuronParams | None = None
    noisy: bool = False

    def __post_init__(self) -> None:
        for name in ("weight_rule", "delay_rule"):
            if getattr(self, name) not in RANGE_RULES:
                raise ParameterError(f"Capabilities.{name} must be one of {RANGE_RULES}")
        unknown = set(self.delay_kinds) - set(DELAY_KINDS)
        if unknown:
            raise ParameterError(f"unknown delay kinds {sorted(unknown)}")
        if not (self.weight_max > 0 and self.max_trial_length > 0):
            raise ParameterError("weight_max and max_trial_length must be > 0")
        if not (0 <= self.delay_min <= self.delay_max):
            raise ParameterError("need 0 <= delay_min <= delay_max")
        if self.weight_resolution < 0 or self.delay_resolution < 0:
            raise ParameterError("resolutions must be >= 0")

    def as_dict(self) -> dict[str, object]:
        """Plain values (for logs and JSON); the nominal neuron as a dict."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, NeuronParams):
                value = {"tau_s": value.tau_s, "tau_m": value.tau_m, "theta": value.theta}
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


@dataclass
class Observation:
    """What a batch of trials showed, in model units (tau_s).

    Attributes:
        times: per layer, (B, n_l) observed first-spike times; inf = no spike in the window.
        arrivals: per layer, for a layer whose axonal delays are physical elements,
            (B, n_pre) observed arrival times of its inputs (``t_pre + d + jitter``,
            bias inputs included; inf = none); else None.
        clipped_weights: weights clipped into range by the current configuration.
        clipped_delays: delays clipped into range by the current configuration.
        dropped_inputs: input spikes of this batch later than the trial window.
        late_spikes: spikes (neurons and delay elements) after the window, reported as inf.
        trials: number of trials (B).
    """

    times: list[np.ndarray]
    arrivals: list[np.ndarray | None]
    clipped_weights: int = 0
    clipped_delays: int = 0
    dropped_inputs: int = 0
    late_spikes: int = 0
    trials: int = 0

    @property
    def output(self) -> np.ndarray:
        """(B, n_outputs) first-spike times of the last layer."""
        return self.times[-1]


def check_input(t_in: np.ndarray, n_inputs: int) -> np.ndarray:
    """Validated float64 C-contiguous copy of an input batch (B, n_inputs); inf = no spike."""
    arr = np.array(t_in, dtype=np.float64, order="C", copy=True)
    if arr.ndim != 2 or arr.shape[1] != n_inputs:
        raise ParameterError(f"input batch must have shape (B, {n_inputs}), got {arr.shape}")
    if np.isnan(arr).any() or np.isneginf(arr).any():
        raise ParameterError("input batch contains nan or -inf (use +inf for no spike)")
    if (arr < 0).any():
        raise ParameterError("input spike times must be >= 0 (trial time starts at 0)")
    return arr


class Driver(ABC):
    """A trial-based backend: ``configure`` a network, ``run`` batches, ``close``.

    Subclasses implement ``capabilities``, ``_configure`` and ``_run``; this base
    checks the call order and the input shape. The driver never mutates the
    :class:`Network` it is given; quantisation applies inside the backend only.
    Usable as a context manager (``close`` on exit).
    """

    def __init__(self) -> None:
        self._network: Network | None = None
        self._closed = False

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend can emulate."""

    @property
    def network(self) -> Network | None:
        """The (host) network last configured, or None."""
        return self._network

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def configure(self, network: Network) -> None:
        """Write the network's parameters to the backend (clipped or refused by the rules).

        Raises:
            CapabilityError: a delay kind, size or value the backend refuses.
            DriverError: the driver is closed.
        """
        self._check_open()
        if not isinstance(network, Network):
            raise ParameterError(f"configure needs a Network, got {type(network).__name__}")
        caps = self.capabilities
        for index, layer in enumerate(network.layers):
            if layer.delay != "none" and layer.delay not in caps.delay_kinds:
                raise CapabilityError(
                    f"layer {index}: {caps.backend} supports delay kinds "
                    f"{caps.delay_kinds}, not {layer.delay!r}"
                )
        n_neurons = sum(ly.n_out for ly in network.layers)
        if caps.max_neurons is not None and n_neurons > caps.max_neurons:
            raise CapabilityError(
                f"{caps.backend} hosts at most {caps.max_neurons} neurons, network has {n_neurons}"
            )
        self._configure(network)
        self._network = network

    def run(self, t_in: np.ndarray) -> Observation:
        """Emulate one trial per row of ``t_in`` and observe first spikes.

        Args:
            t_in: (B, n_inputs) input spike times in model units, >= 0; inf = no spike.

        Returns:
            The :class:`Observation` of the batch.

        Raises:
            DriverError: not configured, or closed.
            CapabilityError: a trial exceeds the input spike budget.
            ParameterError: a wrong shape or nan / negative times.
        """
        self._check_open()
        if self._network is None:
            raise DriverError("run called before configure")
        t = check_input(t_in, self._network.n_inputs)
        budget = self.capabilities.max_input_spikes_per_trial
        if budget is not None and t.shape[0]:
            n_bias = len(self._network.layers[0].bias_times)
            worst = int(np.max(np.sum(np.isfinite(t), axis=1))) + n_bias
            if worst > budget:
                raise CapabilityError(
                    f"a trial has {worst} input spikes, the budget is {budget} per trial"
                )
        return self._run(t)

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Compile or load what the first :meth:`run` needs, leaving the driver's state
        (configuration, random streams, counters) as it was. Default: nothing."""

    def stream_trials(self, n: int) -> None:  # noqa: B027 - optional hook
        """The service ran ``n`` trials of its input stream on this driver (not counting
        re-observations before a learning step): device time for a chip whose drift
        follows the stream (``DriftSpec.clock = "stream"``). Default: nothing."""

    def close(self) -> None:
        """Release the backend; further calls raise :class:`DriverError`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DriverError(f"{type(self).__name__} is closed")

    @abstractmethod
    def _configure(self, network: Network) -> None:
        """Backend part of ``configure`` (the network is already checked)."""

    @abstractmethod
    def _run(self, t_in: np.ndarray) -> Observation:
        """Backend part of ``run``; ``t_in`` is a validated (B, n_inputs) float64 copy."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Backend part of ``close`` (default: nothing)."""
