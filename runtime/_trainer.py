"""Offline (epoch-based) training with exact DelGrad gradients, host or chip in the loop.

The :class:`Trainer` owns the full-precision parameters: weights (updated in
place in ``net.w``) and raw delay parameters (mapped to effective delays by a
:class:`DelayParametrisation`, possibly shared between input copies). Each
batch is run forward on an ``observe`` backend (the exact host model, or a
driver that returns observed spike times), the loss gradient is propagated
backward *at the observed times* with the nominal parameters, and Adam updates
the full-precision copy; quantisation and clipping act on the forward copy only.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._config import Config, config_from_dict
from delgrad.runtime._errors import ConfigError, NetworkFileError
from delgrad.runtime._io import network_arrays, network_from_arrays
from delgrad.runtime._losses import FirstSpikeCrossEntropy, LossResult, ShiftMSELoss, predict
from delgrad.runtime._network import Layer, Network, backward, forward
from delgrad.runtime._optim import (
    Adam,
    DelayParametrisation,
    ParamGroup,
    StepSchedule,
    WeightBumper,
    clip_weights,
)
from delgrad.runtime._yinyang import encode_yinyang, yinyang

CHECKPOINT_FORMAT = "delgrad-train-checkpoint"


class Observer(Protocol):
    """Runs a batch forward: ``(net, t_in (B, n_in)) -> (times per layer, arrivals per layer)``.

    ``arrivals[l]`` is None unless layer l's delays are physical elements whose
    delayed arrival times (B, n_pre) were observed.
    """

    def __call__(
        self, net: Network, t_in: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray | None] | None]: ...


def host_observer(net: Network, t_in: np.ndarray) -> tuple[list[np.ndarray], None]:
    """The exact model on the host: spike times from :func:`forward`, no arrivals."""
    return forward(net, t_in), None


@dataclass
class EpochStats:
    """What one epoch measured (accuracies are fractions, times in seconds)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_accuracy: float
    silent_hidden: float
    silent_output: float
    bumps: int
    samples_per_s: float
    seconds: float


def _build_layers(config: Config) -> list[Layer]:
    net = config.network
    sizes = [net.n_inputs * net.input_repeat, *net.hidden, net.n_outputs]
    bias = tuple(net.bias_times)
    return [
        Layer(a, b, net.delay, bias)  # type: ignore[arg-type]
        for a, b in itertools.pairwise(sizes)
    ]


def load_split(config: Config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoded input times (N, n_inputs * input_repeat) and labels (N,) of a data split.

    Splits use the standard seeds (train 42, validation 41, test 40) and the
    sizes in ``config.data``.
    """
    data = config.data
    size, seed = {
        "train": (data.train_size, 42),
        "validation": (data.validation_size, 41),
        "test": (data.test_size, 40),
    }[split]
    features, labels = yinyang(size, seed)
    times = encode_yinyang(features, t_early=data.t_early, t_late=data.t_late)
    times = np.repeat(times, config.network.input_repeat, axis=1)
    return np.ascontiguousarray(times), labels


class Learner:
    """The learning state of one network: full-precision parameters, optimiser, stabilisers.

    Shared by offline training (:class:`Trainer`) and the online service: both
    observe spike times somewhere and hand them to :meth:`learn`.

    Args:
        config: the configuration (network, neuron, init and training sections).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
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
        self.sync()

    # -- parameters -------------------------------------------------------

    def sync(self) -> None:
        """Write effective delays and the forward copy of the weights from the raw parameters."""
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
                g_raw = np.bincount(groups, weights=g_raw, minlength=raw.size)
            out.append(np.ascontiguousarray(g_raw))
        return out

    def learn(
        self,
        t_in: np.ndarray,
        times: list[np.ndarray],
        arrivals: list[np.ndarray | None] | None,
        labels: np.ndarray,
    ) -> tuple[LossResult, int | None]:
        """Learn from observed spike times: a weight bump, or one gradient step.

        Args:
            t_in: (B, n_inputs) input times the spikes were observed for.
            times: per layer (B, n_l) observed spike times.
            arrivals: per layer observed arrival times of physical delays, or None.
            labels: (B,) classes.

        Returns:
            (the loss on the observed output times, index of the bumped layer or None).
        """
        tr = self.config.training
        result = self.loss(times[-1], labels)
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
        arrays = {f"net.{k}": v for k, v in network_arrays(self.net).items()}
        arrays.update({f"raw.{i}": r for i, r in enumerate(self.raw)})
        arrays.update({f"adam.{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
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
            {k[5:]: _scalar_or_array(v) for k, v in arrays.items() if k.startswith("adam.")}
        )
        self.bumper.load_state_dict(
            {k[5:]: _scalar_or_array(v) for k, v in arrays.items() if k.startswith("bump.")}
        )
        self.sync()


class Trainer(Learner):
    """Trains a network offline, epoch by epoch, from a :class:`Config`.

    Args:
        config: the configuration.
        observe: forward backend (default: the exact host model).
    """

    def __init__(self, config: Config, *, observe: Observer = host_observer) -> None:
        super().__init__(config)
        self.observe = observe
        self.shuffle_rng = np.random.default_rng([config.seed, 1])
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.wall_time_s = 0.0
        self._data: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- data ---------------------------------------------------------------

    def data(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Cached encoded split (times, labels)."""
        if split not in self._data:
            self._data[split] = load_split(self.config, split)
        return self._data[split]

    # -- training -----------------------------------------------------------

    def step(
        self, t_in: np.ndarray, labels: np.ndarray
    ) -> tuple[LossResult, list[np.ndarray], int | None]:
        """One batch: forward on the observer, then :meth:`Learner.learn`.

        Returns:
            (loss result, spike times per layer, index of the bumped layer or None).
        """
        times, arrivals = self.observe(self.net_forward, t_in)
        result, bumped = self.learn(t_in, times, arrivals, labels)
        return result, times, bumped

    def evaluate(self, split: str, batch_size: int | None = None) -> tuple[float, list[np.ndarray]]:
        """Accuracy on a split and the spike times of every layer.

        Batches default to the training batch size: on a noisy chip every batch
        draws its own threshold noise, so the accuracy averages over as many draws
        as training sees per epoch, not over one.
        """
        batch_size = batch_size or self.config.training.batch_size
        t_all, labels = self.data(split)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(labels), batch_size):
            parts.append(self.observe(self.net_forward, t_all[start : start + batch_size])[0])
        times = [np.concatenate([p[i] for p in parts]) for i in range(len(self.layers))]
        return float(np.mean(predict(times[-1]) == labels)), times

    def train_epoch(self) -> EpochStats:
        """Run one epoch over the shuffled training set and evaluate on validation."""
        tr = self.config.training
        start = time.perf_counter()
        t_all, labels = self.data("train")
        order = self.shuffle_rng.permutation(len(labels))
        losses, correct, seen, bumps = 0.0, 0, 0, 0
        silent_h, silent_o = [], []
        for first in range(0, len(order), tr.batch_size):
            idx = order[first : first + tr.batch_size]
            result, times, bumped = self.step(t_all[idx], labels[idx])
            bumps += bumped is not None
            losses += float(result.loss.sum())
            correct += int(result.correct.sum())
            seen += len(idx)
            silent_h.extend(float(np.isinf(t).mean()) for t in times[:-1])
            silent_o.append(float(np.isinf(times[-1]).mean()))
        self.epoch += 1
        self.optimizer.lr_scale = self.schedule.factor(self.epoch)
        train_seconds = time.perf_counter() - start
        val_acc, _ = self.evaluate("validation")
        seconds = time.perf_counter() - start
        self.wall_time_s += seconds
        stats = EpochStats(
            epoch=self.epoch,
            train_loss=losses / max(seen, 1),
            train_accuracy=correct / max(seen, 1),
            validation_accuracy=val_acc,
            silent_hidden=float(np.mean(silent_h)) if silent_h else 0.0,
            silent_output=float(np.mean(silent_o)),
            bumps=bumps,
            samples_per_s=seen / train_seconds if train_seconds > 0 else 0.0,
            seconds=seconds,
        )
        self.history.append(stats.__dict__.copy())
        return stats

    def fit(
        self,
        *,
        on_epoch: Callable[[EpochStats], None] | None = None,
        checkpoint: str | Path | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``config.training.epochs``; checkpoint every ``checkpoint_every`` epochs."""
        tr = self.config.training
        while self.epoch < tr.epochs:
            stats = self.train_epoch()
            if checkpoint is not None and (
                self.epoch % tr.checkpoint_every == 0 or self.epoch == tr.epochs
            ):
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(stats)
        return self.history

    # -- checkpoints ----------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit-identically, as arrays for one ``.npz``."""
        arrays = super().state_arrays()
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "history": self.history,
            "wall_time_s": self.wall_time_s,
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "config": self.config.to_dict(),
        }
        arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        return arrays

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the training state atomically."""
        arrays = self.state_arrays()
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, observe: Observer = host_observer) -> Trainer:
        """Restore a trainer saved by :meth:`save_checkpoint`.

        Raises:
            NetworkFileError: if the file is unreadable or not a training checkpoint.
        """
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            state = json.loads(bytes(arrays["state"]).decode())
            if state.get("format") != CHECKPOINT_FORMAT:
                raise NetworkFileError(f"{path} is not a training checkpoint")
            trainer = cls(config_from_dict(state["config"]), observe=observe)
            trainer.load_state_arrays(arrays)
        except NetworkFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise NetworkFileError(f"cannot resume from {path}: {exc}") from exc
        trainer.epoch = int(state["epoch"])
        trainer.history = list(state["history"])
        trainer.wall_time_s = float(state["wall_time_s"])
        trainer.shuffle_rng.bit_generator.state = state["shuffle_rng"]
        return trainer


def _scalar_or_array(value: np.ndarray) -> Any:
    return value.item() if value.ndim == 0 else value
