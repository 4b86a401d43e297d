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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from delgrad.errors import ConfigError, NetworkFileError
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._config import Config, config_from_dict
from delgrad.runtime._digits import digits_split, encode_digits
from delgrad.runtime._learner import HostObserver, Learner, Observer
from delgrad.runtime._losses import LossResult, predict
from delgrad.runtime._trial_file import read_trial_file
from delgrad.runtime._yinyang import encode_yinyang, yinyang

CHECKPOINT_FORMAT = "delgrad-train-checkpoint"


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


def load_split(config: Config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoded input times (N, n_inputs * input_repeat) and labels (N,) of a data split.

    Yin-Yang splits use the standard seeds (train 42, validation 41, test 40) and
    the sizes in ``config.data``; digits splits are the fixed stratified split of
    :func:`~delgrad.runtime._digits.digits_split` with those sizes.
    """
    data = config.data
    if data.dataset == "stream":
        raise ConfigError(
            f"{config.name}: data.dataset = 'stream' has no offline split; stream a "
            "recording into delgrad run with delgrad sensor --source FILE"
        )
    if data.dataset == "file":
        path = getattr(data, f"{split}_file")
        times, labels = read_trial_file(path, config.network.n_inputs)
        times = np.repeat(times, config.network.input_repeat, axis=1)
        return np.ascontiguousarray(times), labels
    if data.dataset == "digits":
        sizes = (data.train_size, data.validation_size, data.test_size)
        features, labels = digits_split(split, sizes=sizes)  # type: ignore[arg-type]
        times = encode_digits(features, t_early=data.t_early, t_late=data.t_late)
        times = np.repeat(times, config.network.input_repeat, axis=1)
        return np.ascontiguousarray(times), labels.copy()
    size, seed = {
        "train": (data.train_size, 42),
        "validation": (data.validation_size, 41),
        "test": (data.test_size, 40),
    }[split]
    features, labels = yinyang(size, seed)
    times = encode_yinyang(features, t_early=data.t_early, t_late=data.t_late)
    times = np.repeat(times, config.network.input_repeat, axis=1)
    return np.ascontiguousarray(times), labels


class Trainer(Learner):
    """Trains a network offline, epoch by epoch, from a :class:`Config`.

    Args:
        config: the configuration.
        observe: forward backend (None: the exact host model with :attr:`threads`).
        threads: see :class:`Learner`.
    """

    def __init__(
        self, config: Config, *, observe: Observer | None = None, threads: int | None = None
    ) -> None:
        super().__init__(config, threads=threads)
        self.observe = HostObserver(self.threads) if observe is None else observe
        self.shuffle_rng = np.random.default_rng([config.seed, 1])
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.wall_time_s = 0.0
        self._data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: epoch (1-based) and validation accuracy of the best-validation network so far
        self.best_epoch = 0
        self.best_validation = -1.0
        self._best: dict[str, np.ndarray] = {}

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
        times, arrivals = self.observe(self.net_forward, t_in, self.version)
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
            parts.append(
                self.observe(self.net_forward, t_all[start : start + batch_size], self.version)[0]
            )
        times = [np.concatenate([p[i] for p in parts]) for i in range(len(self.layers))]
        return float(np.mean(predict(times[-1]) == labels)), times

    def train_epoch(self) -> EpochStats:
        """Run one epoch over the shuffled training set and evaluate on validation."""
        tr = self.config.training
        start = time.perf_counter()
        t_all, labels = self.data("train")
        order = self.shuffle_rng.permutation(len(labels))
        losses, correct, seen, bumps = 0.0, 0, 0, 0
        silent_h: list[float] = []
        silent_o: list[float] = []
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
        if val_acc > self.best_validation:  # strictly: the earliest epoch wins ties
            self.best_epoch, self.best_validation = self.epoch, val_acc
            self._best = self._parameter_arrays()
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
        if tr.select == "best_val":
            self.restore_best()
        return self.history

    # -- best-validation selection ------------------------------------------

    def _parameter_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"w.{i}": w.copy() for i, w in enumerate(self.net.w)}
        arrays.update({f"raw.{i}": r.copy() for i, r in enumerate(self.raw)})
        return arrays

    def restore_best(self) -> None:
        """Load the parameters of the best-validation epoch (``training.select = "best_val"``).

        The optimiser state is left as it was after the last epoch: the restored
        network is for evaluation, not for continuing training.
        """
        if not self._best:
            return
        for i, w in enumerate(self.net.w):
            w[...] = self._best[f"w.{i}"]
        for i, raw in enumerate(self.raw):
            raw[...] = self._best[f"raw.{i}"]
        self.sync()

    # -- checkpoints ----------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit-identically, as arrays for one ``.npz``."""
        arrays = super().state_arrays()
        arrays.update({f"best.{k}": v for k, v in self._best.items()})
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "history": self.history,
            "wall_time_s": self.wall_time_s,
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "config": self.config.to_dict(),
            "best_epoch": self.best_epoch,
            "best_validation": self.best_validation,
        }
        arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        return arrays

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the training state atomically."""
        arrays = self.state_arrays()
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, observe: Observer | None = None, threads: int | None = None
    ) -> Trainer:
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
            trainer = cls(config_from_dict(state["config"]), observe=observe, threads=threads)
            trainer.load_state_arrays(arrays)
        except NetworkFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise NetworkFileError(f"cannot resume from {path}: {exc}") from exc
        trainer.epoch = int(state["epoch"])
        trainer.history = list(state["history"])
        trainer.wall_time_s = float(state["wall_time_s"])
        trainer.shuffle_rng.bit_generator.state = state["shuffle_rng"]
        trainer.best_epoch = int(state.get("best_epoch", 0))
        trainer.best_validation = float(state.get("best_validation", -1.0))
        trainer._best = {k[5:]: v for k, v in arrays.items() if k.startswith("best.")}
        return trainer
