"""The learning state of one network: full-precision parameters, optimiser, stabilisers.

Offline training (:class:`~delgrad.runtime.Trainer`) and the online service both
observe spike times somewhere (host model or driver) and hand them to
:meth:`Learner.learn`, which takes one weight bump or one gradient step from the
*observed* times with the nominal parameters. Quantisation and clipping act on
the forward copy ``net_forward`` only.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime._adam import Adam, ParamGroup, StepSchedule
from delgrad.runtime._config import Config
from delgrad.runtime._delays import DelayParametrisation
from delgrad.runtime._io import network_arrays, network_from_arrays
from delgrad.runtime._losses import FirstSpikeCrossEntropy, LossResult, ShiftMSELoss
from delgrad.runtime._network import Layer, Network, backward, forward
from delgrad.runtime._stabilisers import WeightBumper, clip_weights


class Observer(Protocol):
    """Runs a batch forward: ``(net, t_in (B, n_in), version) -> (times, arrivals)``.

    ``version`` is the learner's parameter version (:attr:`Learner.version`), so a
    backend that holds a copy of the parameters (a driver) reloads them only when
    they changed. ``times`` is per layer (B, n_l); ``arrivals[l]`` is None unless
    layer l's delays are physical elements whose delayed arrival times (B, n_pre)
    were observed.
    """

    def __call__(
        self, net: Network, t_in: np.ndarray, version: int
    ) -> tuple[list[np.ndarray], list[np.ndarray | None] | None]: ...


def resolve_threads(threads: int) -> int:
    """``threads``, or for 0 the cores this process may run on (its CPU affinity,
    which containers and ``taskset`` narrow; the machine's count where unknown)."""
    if threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class HostObserver:
    """The exact model on the host: spike times from :func:`forward`, no arrivals.

    Args:
        threads: threads sharing each batch (>= 1).
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def __call__(
        self, net: Network, t_in: np.ndarray, version: int = 0
    ) -> tuple[list[np.ndarray], None]:
        return forward(net, t_in, threads=self.threads), None


#: The exact model on the host, one thread.
host_observer = HostObserver(1)


def _build_layers(config: Config) -> list[Layer]:
    net = config.network
    sizes = [net.n_inputs * net.input_repeat, *net.hidden, net.n_outputs]
    bias = tuple(net.bias_times)
    return [Layer(a, b, net.delay, bias) for a, b in itertools.pairwise(sizes)]


class Learner:
    """The learning state of one network: full-precision parameters, optimiser, stabilisers.

    Shared by offline training (:class:`Trainer`) and the online service: both
    observe spike times somewhere and hand them to :meth:`learn`.

    Args:
        config: the configuration (network, neuron, init and training sections).
        threads: threads sharing each backward pass; None: ``config.training.threads``
            (0 there: one per core).
    """

    def __init__(self, config: Config, *, threads: int | None = None) -> None:
        self.config = config
        self.threads = resolve_threads(config.training.threads if threads is None else threads)
        cfg, tr = config, config.training
        self.layers = _build_layers(cfg)
        init_rng = np.random.default_rng([cfg.seed, 0])
        n_layers = len(self.layers)

        def per_layer(values: list[float], index: int) -> float:
            return values[index] if len(values) == n_layers else values[0]

        w = [
            init_rng.normal(
                per_layer(cfg.init.w_mean, i), per_layer(cfg.init.w_std, i), ly.weight_shape
            )
            for i, ly in enumerate(self.layers)
        ]
        self.delay_param = DelayParametrisation(
            kind=cfg.network.delay_param,
            shift=cfg.network.delay_shift,
            scale=cfg.network.delay_scale,
        )
        # Raw delay parameters; groups[l] maps each delay element to its raw entry
        # (None = one raw entry per element).
        self.groups: list[np.ndarray | None] = []
        self.raw: list[np.ndarray] = []
        for index, ly in enumerate(self.layers):
            shape = ly.delay_shape
            groups = None
            if index == 0 and cfg.network.share_input_delay and cfg.network.input_repeat > 1:
                groups = np.arange(ly.n_pre) // cfg.network.input_repeat
                groups[ly.n_in :] = groups[ly.n_in - 1] + 1 + np.arange(len(ly.bias_times))
                shape = (int(groups.max()) + 1,)
            if cfg.network.delay_param == "bounded":
                raw = init_rng.normal(cfg.init.q_mean, cfg.init.q_std, shape)
            else:
                raw = np.maximum(init_rng.normal(cfg.init.d_mean, cfg.init.d_std, shape), 0.0)
            self.groups.append(groups)
            self.raw.append(np.ascontiguousarray(raw, dtype=np.float64))
        self.net = Network(self.layers, cfg.neuron, w)  # full-precision parameters
        self.net_forward = self.net if tr.weight_grid <= 0 else self.net.copy()
        groups_list = [ParamGroup("w", self.net.w, tr.lr_w)]
        self.has_delays = cfg.network.delay != "none"
        if self.has_delays:
            groups_list.append(ParamGroup("d", self.raw, tr.lr_d))
        self.optimizer = Adam(groups_list)
        self.schedule = StepSchedule(gamma=tr.lr_gamma, step_size=tr.lr_step)
        self.bumper = WeightBumper(start=tr.bump_start, tolerances=tuple(tr.bump_tolerances))
        self.loss = (
            ShiftMSELoss(delta_t=tr.delta_t)
            if tr.loss == "mse"
            else FirstSpikeCrossEntropy(
                xi=tr.xi, alpha=tr.alpha, beta=tr.beta, tau_s=cfg.neuron.tau_s
            )
        )
        #: +1 at every parameter change (step, bump, load): drivers are reconfigured on change.
        self.version = 0
        self.sync()

    # -- parameters -------------------------------------------------------

    def sync(self) -> None:
        """Write effective delays and the forward copy of the weights from the raw parameters.

        Every change of the parameters ends here, so :attr:`version` counts them.
        """
        self.version += 1
        for index, raw in enumerate(self.raw):
            if not self.has_delays:
                break
            full = raw if self.groups[index] is None else raw[self.groups[index]]
            self.net.d[index][...] = self.delay_param.effective(full)
        grid = self.config.training.weight_grid
        if self.net_forward is not self.net:
            for src, dst in zip(self.net.w, self.net_forward.w, strict=True):
                np.multiply(np.round(src / grid), grid, out=dst)
            for src, dst in zip(self.net.d, self.net_forward.d, strict=True):
                dst[...] = src

    def _delay_grads(self, grads_d: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for index, (raw, g) in enumerate(zip(self.raw, grads_d, strict=True)):
            groups = self.groups[index]
            full = raw if groups is None else raw[groups]
            g_raw = self.delay_param.raw_gradient(full, g)
            if groups is not None:
                g_raw = np.bincount(groups, weights=g_raw, minlength=raw.size).astype(np.float64)
            out.append(np.ascontiguousarray(g_raw))
        return out

    def learn(
        self,
        t_in: np.ndarray,
        times: list[np.ndarray],
        arrivals: list[np.ndarray | None] | None,
        labels: np.ndarray,
        *,
        loss: LossResult | None = None,
    ) -> tuple[LossResult, int | None]:
        """Learn from observed spike times: a weight bump, or one gradient step.

        Args:
            t_in: (B, n_inputs) input times the spikes were observed for.
            times: per layer (B, n_l) observed spike times.
            arrivals: per layer observed arrival times of physical delays, or None.
            labels: (B,) classes.
            loss: ``self.loss(times[-1], labels)`` if the caller already has it
                (computed once, e.g. for prequential accuracy); else computed here.

        Returns:
            (the loss on the observed output times, index of the bumped layer or None).
        """
        tr = self.config.training
        result = self.loss(times[-1], labels) if loss is None else loss
        bumped = self.bumper.bump(self.net.w, times)
        if bumped is not None:
            self.sync()
            return result, bumped
        grads = backward(
            self.net_forward,
            t_in,
            times,
            result.grad,
            max_dw_norm=tr.max_dw_norm if tr.max_dw_norm > 0 else None,
            arrivals=arrivals,
            rule=tr.backward_threshold,
            threads=self.threads,
        )
        update = [[g.w for g in grads.layers]]
        if self.has_delays:
            update.append(self._delay_grads([g.d for g in grads.layers]))
        self.optimizer.step(update)
        if self.has_delays:
            for raw in self.raw:
                self.delay_param.project(raw)
        if tr.weight_clip > 0:
            for w in self.net.w:
                clip_weights(w, tr.weight_clip)
        self.sync()
        return result, None

    def load_network(self, net: Network) -> None:
        """Start from a trained network's effective weights and delays (same structure).

        Raises:
            ConfigError: if the layer structure differs from the configuration's.
        """
        if net.layers != self.net.layers:
            raise ConfigError(
                f"network file layers {net.layers} differ from the recipe's {self.net.layers}"
            )
        for dst, src in zip(self.net.w, net.w, strict=True):
            dst[...] = src
        for index, raw in enumerate(self.raw):
            if not self.has_delays:
                break
            d = net.d[index]
            groups = self.groups[index]
            if groups is not None:  # shared delays: take the first element of each group
                first = np.unique(groups, return_index=True)[1]
                d = d[first]
            raw[...] = self.delay_param.raw_from_effective(d)
        self.sync()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Parameters, optimiser and bumping state as arrays (for one ``.npz``)."""
        return self._state(copy=True)

    def state_views(self) -> dict[str, np.ndarray]:
        """:meth:`state_arrays` without copying the optimiser's arrays: the live ones,
        to read (or copy) before the next change only."""
        return self._state(copy=False)

    def _state(self, *, copy: bool) -> dict[str, np.ndarray]:
        arrays = {f"net.{k}": v for k, v in network_arrays(self.net).items()}
        arrays.update({f"raw.{i}": r for i, r in enumerate(self.raw)})
        adam = self.optimizer.state_dict(copy=copy)
        arrays.update({f"adam.{k}": np.asarray(v) for k, v in adam.items()})
        arrays.update({f"bump.{k}": np.asarray(v) for k, v in self.bumper.state_dict().items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` wrote (same configuration)."""
        net, _ = network_from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("net.")})
        for dst, src in zip(self.net.w, net.w, strict=True):
            dst[...] = src
        for i, raw in enumerate(self.raw):
            raw[...] = arrays[f"raw.{i}"]
        self.optimizer.load_state_dict(
            {k[5:]: scalar_or_array(v) for k, v in arrays.items() if k.startswith("adam.")}
        )
        self.bumper.load_state_dict(
            {k[5:]: scalar_or_array(v) for k, v in arrays.items() if k.startswith("bump.")}
        )
        self.sync()


def scalar_or_array(value: np.ndarray) -> Any:
    """A 0-d array as a Python scalar, any other array unchanged (state-dict entries)."""
    return value.item() if value.ndim == 0 else value
