"""The emulator driver: the ideal analytic model, or an emulated BrainScaleS-2 chip."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from delgrad.drivers._chip_params import BSS2Params
from delgrad.drivers._drift import NEURON_KINDS, ChipDrift, DriftState
from delgrad.drivers._kernels import membrane_layer, membrane_layer_taus
from delgrad.drivers._units import (
    code_to_weight,
    model_to_us,
    quantise_delay_us,
    us_to_model,
    weight_to_code,
)
from delgrad.runtime import (
    Capabilities,
    DriftSpec,
    Driver,
    Layer,
    Network,
    Observation,
    ParameterError,
    forward,
)

EmulatorMode = Literal["ideal", "bss2"]

_FP_STREAM, _TRIAL_STREAM, _TAU_STREAM, _GAIN_STREAM = 0, 1, 2, 3
_MIN_TAU_FACTOR = 0.2  # mismatch extension: time constants stay positive


def axonal_arrivals(net: Network, index: int, t_pre: np.ndarray) -> np.ndarray:
    """Ideal arrival times (B, n_pre) of layer ``index``'s inputs: ``t_pre + d`` (bias included)."""
    return net.layer_input(index, t_pre) + net.d[index][None, :]


class EmulatorDriver(Driver):
    """Emulates trials in software, in one of two modes.

    * ``"ideal"``: :func:`delgrad.runtime.forward` of the configured parameters
      (bit-identical), no window, no noise; every delay kind.
    * ``"bss2"``: a BrainScaleS-2 chip as described by :class:`BSS2Params`,
      integrated event by event (:func:`~delgrad.drivers._kernels.membrane_layer`),
      independent of the learner's closed forms. Only ``"none"`` and ``"axonal"``
      layers; weights and delays outside the range are clipped and counted.

    The chip's neuron model (``params.neuron``) is used in ``"bss2"`` mode whatever
    ``network.neuron`` says: the calibration, not the host, sets tau and theta.

    Randomness: the fixed-pattern threshold offsets are drawn once from
    ``chip_seed`` (one value per neuron circuit; layer neurons take circuits in
    order), so a chip seed is one emulated chip. Trial noise (threshold per
    (trial, neuron), jitter per delayed spike) is drawn anew on every ``run``
    from a generator seeded with (``chip_seed``, run counter): a session of runs
    is reproducible, and no two runs share noise.

    Drift (``drift``, ``"bss2"`` only, off by default; :class:`~delgrad.runtime.DriftSpec`,
    :class:`~._drift.ChipDrift`): thresholds, time constants, synapse gains and delay
    elements move with device time, the trials this driver has run, the stream trials
    it has run, or wall-clock seconds times a rate (``DriftSpec.clock``).
    The drift is brought up to date at the start of each batch, and the whole batch
    runs with the drift as of its first trial; :meth:`drift_state` shows it. The
    trial clocks start at 0 with the driver (a restarted process restarts its emulated
    chip's clock); the seconds clock with a fixed ``since_unix_s`` does not.

    Args:
        mode: ``"ideal"`` or ``"bss2"``.
        params: chip figures for ``"bss2"`` (default :class:`BSS2Params`).
        chip_seed: which emulated chip (integer >= 0).
        drift: how the chip drifts (``"bss2"`` only), or None.
        wall_clock_s: the wall clock of the ``"seconds"`` drift clock (Unix time in s;
            tests pass their own).
        threads: kernel threads sharing each ``"ideal"`` run (its batch split into
            row ranges, results bit-identical); ``"bss2"`` runs use one.
    """

    def __init__(
        self,
        mode: EmulatorMode = "ideal",
        params: BSS2Params | None = None,
        chip_seed: int = 0,
        drift: DriftSpec | None = None,
        *,
        wall_clock_s: Callable[[], float] = time.time,
        threads: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
            raise ParameterError(f"threads must be an integer >= 1, got {threads!r}")
        self.threads = int(threads)
        if mode not in ("ideal", "bss2"):
            raise ParameterError(f"mode must be 'ideal' or 'bss2', got {mode!r}")
        if params is not None and not isinstance(params, BSS2Params):
            raise ParameterError(f"params must be BSS2Params, got {type(params).__name__}")
        if isinstance(chip_seed, bool) or not isinstance(chip_seed, int | np.integer):
            raise ParameterError(f"chip_seed must be an integer >= 0, got {chip_seed!r}")
        if chip_seed < 0:
            raise ParameterError(f"chip_seed must be an integer >= 0, got {chip_seed!r}")
        if drift is not None and not isinstance(drift, DriftSpec):
            raise ParameterError(f"drift must be a DriftSpec, got {type(drift).__name__}")
        if drift is not None and drift.active and mode != "bss2":
            raise ParameterError("drift is a property of an emulated chip: use mode 'bss2'")
        self.mode: EmulatorMode = mode
        self.params = params if params is not None else BSS2Params()
        self.chip_seed = int(chip_seed)
        self.runs = 0
        self.trials_run = 0  # trials run (device time of a drift with clock "runs")
        self.stream_trials_run = 0  # stream trials run (clock "stream")
        self.drift = (
            ChipDrift(drift, self.params.n_neuron_circuits, self.chip_seed)
            if drift is not None and drift.active
            else None
        )
        self._wall_clock_s = wall_clock_s
        self._origin_s = 0.0  # clock "seconds": when device time was 0 (Unix s)
        self._seconds_trials = 0  # clock "seconds": device time so far (never goes back)
        if self.drift is not None and self.drift.spec.clock == "seconds":
            self._origin_s = self.drift.spec.since_unix_s or float(wall_clock_s())
        p = self.params
        fp_rng = np.random.default_rng(np.random.SeedSequence([self.chip_seed, _FP_STREAM]))
        self._fp = p.threshold_fp_mean + p.threshold_fp_std * fp_rng.standard_normal(
            p.n_neuron_circuits
        )
        self._fp.setflags(write=False)
        # Mismatch extension (off by default; own streams, so the fixed pattern
        # above is the same with and without it).
        tau_rng = np.random.default_rng(np.random.SeedSequence([self.chip_seed, _TAU_STREAM]))
        xi = tau_rng.standard_normal((2, p.n_neuron_circuits))
        self._tau_m_factor = np.maximum(1.0 + p.tau_m_mismatch_std * xi[0], _MIN_TAU_FACTOR)
        self._tau_s_factor = np.maximum(1.0 + p.tau_s_mismatch_std * xi[1], _MIN_TAU_FACTOR)
        self._applied: Network | None = None
        self._clipped_w = 0
        self._clipped_d = 0
        self._caps = self._make_capabilities()

    def _make_capabilities(self) -> Capabilities:
        if self.mode == "ideal":
            return Capabilities(backend="emulator-ideal")
        p = self.params
        return Capabilities(
            backend="emulator-bss2",
            time_unit_us=p.time_unit_us,
            weight_max=p.weight_max,
            weight_resolution=1.0 / p.weight_scale if p.quantise_weights else 0.0,
            weight_rule="clip",
            delay_kinds=("none", "axonal"),
            delay_min=float(us_to_model(p.delay_min_us, p.time_unit_us)),
            delay_max=float(us_to_model(p.delay_max_us, p.time_unit_us)),
            delay_resolution=(
                float(us_to_model(p.delay_step_us, p.time_unit_us)) if p.quantise_delays else 0.0
            ),
            delay_rule="clip",
            max_trial_length=p.window,
            max_input_spikes_per_trial=p.max_input_spikes_per_trial,
            max_neurons=p.n_neuron_circuits,
            nominal_neuron=p.neuron,
            noisy=(p.threshold_trial_std > 0 or p.delay_jitter_std > 0),
        )

    @property
    def capabilities(self) -> Capabilities:
        """See :class:`Capabilities`; ``"bss2"`` figures derive from ``params``."""
        return self._caps

    @property
    def threshold_offsets(self) -> np.ndarray:
        """(n_neuron_circuits,) fixed-pattern threshold offsets of this chip (read-only)."""
        return self._fp

    @property
    def applied(self) -> Network | None:
        """The parameters as realised by the backend (quantised, clipped), a separate copy."""
        return self._applied

    def synapse_gains(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """Mismatch extension: gain factors (n_pre, n_out) of layer ``index``'s synapses.

        Fixed per chip seed and layer (ones when ``weight_gain_std`` is 0).
        """
        std = self.params.weight_gain_std
        if std == 0.0:
            return np.ones(shape)
        rng = np.random.default_rng(np.random.SeedSequence([self.chip_seed, _GAIN_STREAM, index]))
        return np.maximum(1.0 + std * rng.standard_normal(shape), 0.0)

    def time_constants(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Mismatch extension: (tau_s, tau_m) (n,) each of neuron circuits first..first+n-1."""
        neuron = self.params.neuron
        sl = slice(first, first + n)
        return neuron.tau_s * self._tau_s_factor[sl], neuron.tau_m * self._tau_m_factor[sl]

    def quantise(self, network: Network) -> tuple[Network, int, int]:
        """(realised copy of ``network``, clipped weights, clipped delays) under this backend."""
        if self.mode == "ideal":
            return network.copy(), 0, 0
        p = self.params
        w_q, d_q = [], []
        n_w = n_d = 0
        for index, layer in enumerate(network.layers):
            w = network.w[index]
            if p.quantise_weights:
                codes, clipped = weight_to_code(w, p.weight_scale, p.weight_code_max)
                w_q.append(code_to_weight(codes, p.weight_scale))
            else:
                clipped = int(np.count_nonzero(np.abs(w) > p.weight_max))
                w_q.append(np.clip(w, -p.weight_max, p.weight_max))
            n_w += clipped
            if layer.delay == "axonal":
                d_us, clipped = quantise_delay_us(
                    model_to_us(network.d[index], p.time_unit_us),
                    p.delay_min_us,
                    p.delay_max_us,
                    p.delay_step_us,
                    p.quantise_delays,
                )
                d_q.append(us_to_model(d_us, p.time_unit_us))
                n_d += clipped
            else:
                d_q.append(network.d[index].copy())
        return Network(network.layers, p.neuron, w_q, d_q), n_w, n_d

    def warm_up(self) -> None:
        """Compile the emulator's kernels on a twin (same mode, parameters and chip), so
        this driver's configuration and random streams stay untouched."""
        twin = EmulatorDriver(
            self.mode, self.params, chip_seed=self.chip_seed, drift=_spec(self.drift)
        )
        layers = [Layer(2, 2, "axonal"), Layer(2, 2, "none")]
        w = [np.full(ly.weight_shape, 1.5) for ly in layers]
        d = [np.full(ly.delay_shape, 0.5) for ly in layers]
        twin.configure(Network(layers, self.params.neuron, w=w, d=d))
        twin.run(np.array([[0.1, 0.4]]))
        twin.close()

    def _configure(self, network: Network) -> None:
        self._applied, self._clipped_w, self._clipped_d = self.quantise(network)

    def _run(self, t_in: np.ndarray) -> Observation:
        net = self._applied
        assert net is not None
        self.runs += 1
        if self.mode == "ideal":
            times = forward(net, t_in, threads=self.threads)
            arrivals: list[np.ndarray | None] = []
            t_pre = t_in
            for index, layer in enumerate(net.layers):
                arrivals.append(
                    axonal_arrivals(net, index, t_pre) if layer.delay == "axonal" else None
                )
                t_pre = times[index]
            return Observation(times=times, arrivals=arrivals, trials=t_in.shape[0])
        return self._run_bss2(net, t_in)

    def stream_trials(self, n: int) -> None:
        """Count ``n`` trials of the service's input stream (a ``"stream"`` drift clock)."""
        self.stream_trials_run += int(n)

    @property
    def device_trials(self) -> int:
        """The drift's device time in trials (``DriftSpec.clock``): trials run, stream
        trials run, or ``floor(seconds since the origin * trials_per_s)``."""
        spec = self.drift.spec if self.drift is not None else None
        if spec is not None and spec.clock == "stream":
            return self.stream_trials_run
        if spec is not None and spec.clock == "seconds":
            elapsed_s = max(0.0, float(self._wall_clock_s()) - self._origin_s)
            # a wall clock set back (NTP) does not make the chip younger
            self._seconds_trials = max(self._seconds_trials, int(elapsed_s * spec.trials_per_s))
            return self._seconds_trials
        return self.trials_run

    def drift_state(self) -> DriftState:
        """The chip now, at device time :attr:`device_trials`: the drift factors and what
        each circuit, synapse and delay element realises (:class:`DriftState`; factors of
        1 without drift). For tests and benchmarks; the host's parameters (``applied``,
        ``capabilities``) never show the drift."""
        n = self.params.n_neuron_circuits
        drift = self.drift
        if drift is not None:
            drift.advance(self.device_trials)
            factors = drift.neuron_factors()
        else:
            factors = {kind: np.ones(n) for kind in NEURON_KINDS}
        tau_s, tau_m = self.time_constants(0, n)
        gain_factor, gain, offsets = [], [], []
        net = self._applied
        for index, layer in enumerate(net.layers if net is not None else ()):
            assert net is not None
            shape = net.w[index].shape
            g = drift.gain_factors(index, shape) if drift is not None else np.ones(shape)
            gain_factor.append(g)
            gain.append(self.synapse_gains(index, shape) * g)
            if drift is not None and layer.delay == "axonal":
                offsets.append(drift.delay_offsets(index, layer.n_pre))
            else:
                offsets.append(np.zeros(layer.n_pre))
        return DriftState(
            device_trials=drift.trials if drift is not None else self.device_trials,
            threshold_factor=factors["threshold"],
            tau_m_factor=factors["tau_m"],
            tau_s_factor=factors["tau_s"],
            threshold=(self.params.threshold + self._fp) * factors["threshold"],
            tau_m=tau_m * factors["tau_m"],
            tau_s=tau_s * factors["tau_s"],
            gain_factor=tuple(gain_factor),
            gain=tuple(gain),
            delay_offset=tuple(offsets),
        )

    def _run_bss2(self, net: Network, t_in: np.ndarray) -> Observation:
        p = self.params
        drift = self.drift
        factors: dict[str, np.ndarray] = {}
        if drift is not None:
            drift.advance(self.device_trials)
            factors = drift.neuron_factors()
        self.trials_run += t_in.shape[0]
        rng = np.random.default_rng(
            np.random.SeedSequence([self.chip_seed, _TRIAL_STREAM, self.runs])
        )
        n_batch = t_in.shape[0]
        window = p.window
        neuron = p.neuron
        g_l = neuron.g_l
        dropped = 0
        late = 0
        times: list[np.ndarray] = []
        arrivals: list[np.ndarray | None] = []
        t_pre = t_in
        circuit = 0
        for index, layer in enumerate(net.layers):
            arr = net.layer_input(index, t_pre)
            if arr is t_pre:
                arr = arr.copy()
            outside = np.isfinite(arr) & (arr > window)
            if index == 0:
                dropped += int(np.count_nonzero(outside))
            else:  # bias spikes after the window never happen inside a trial
                dropped += int(np.count_nonzero(outside[:, layer.n_in :]))
            arr[outside] = np.inf
            if layer.delay == "axonal":
                arr = arr + net.d[index][None, :]
                if drift is not None:
                    arr = arr + drift.delay_offsets(index, arr.shape[1])[None, :]
                if p.delay_jitter_std > 0:
                    arr = arr + p.delay_jitter_std * rng.standard_normal(arr.shape)
                late_arr = np.isfinite(arr) & (arr > window)
                late += int(np.count_nonzero(late_arr))
                arr[late_arr] = np.inf
                arrivals.append(arr)
            else:
                arrivals.append(None)
            first = circuit
            theta = p.threshold + self._fp[first : first + layer.n_out]
            if drift is not None:
                theta = theta * factors["threshold"][first : first + layer.n_out]
            circuit += layer.n_out
            thresholds = np.empty((n_batch, layer.n_out))
            thresholds[:] = theta
            if p.threshold_trial_std > 0:
                # "batch": one draw per neuron for the whole batch (the authors' b2b noise)
                shape = (1, layer.n_out) if p.noise_per == "batch" else thresholds.shape
                thresholds += p.threshold_trial_std * rng.standard_normal(shape)
            thresholds *= g_l
            out = np.empty((n_batch, layer.n_out))
            buf_t = np.empty(layer.n_pre)  # per run: a driver may serve several threads
            buf_i = np.empty(layer.n_pre, dtype=np.int64)
            if p.has_mismatch or drift is not None:  # per-synapse gains, per-neuron taus
                taus_s, taus_m = self.time_constants(first, layer.n_out)
                gains = self.synapse_gains(index, net.w[index].shape)
                if drift is not None:
                    taus_s = taus_s * factors["tau_s"][first : first + layer.n_out]
                    taus_m = taus_m * factors["tau_m"][first : first + layer.n_out]
                    gains = gains * drift.gain_factors(index, net.w[index].shape)
                late += membrane_layer_taus(
                    np.ascontiguousarray(arr),
                    net.w[index] * gains,
                    thresholds,
                    taus_s,
                    taus_m,
                    window,
                    out,
                    buf_t,
                    buf_i,
                )
            else:
                late += membrane_layer(
                    np.ascontiguousarray(arr),
                    net.w[index],
                    thresholds,
                    neuron.tau_s,
                    neuron.tau_m,
                    window,
                    out,
                    buf_t,
                    buf_i,
                )
            times.append(out)
            t_pre = out
        return Observation(
            times=times,
            arrivals=arrivals,
            clipped_weights=self._clipped_w,
            clipped_delays=self._clipped_d,
            dropped_inputs=dropped,
            late_spikes=late,
            trials=n_batch,
        )


def _spec(drift: ChipDrift | None) -> DriftSpec | None:
    return None if drift is None else drift.spec
