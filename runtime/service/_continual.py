"""Continual learning, wired from the configuration: the replay buffer, the degradation
detector and the learning-rate policy (docs/runtime.md, "Continual learning")."""

from __future__ import annotations

import logging

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.service._degradation import DegradationDetector
from delgrad.runtime.service._limits import LR_SCALE_MAX
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._replay import ReplayBuffer, replay_capacity
from delgrad.runtime.service._run_config import DegradationSection, LearningSection, RunConfig

log = logging.getLogger(__name__)

__all__ = ["DegradationState", "LrPolicy", "degradation_detector", "replay_buffer"]


def replay_buffer(config: RunConfig, online: OnlineLearner) -> ReplayBuffer | None:
    """The replay buffer of ``[replay]``, or None when off.

    Raises:
        ConfigError: the bound cannot hold one learning step's trials (or, balanced,
            one per class).
    """
    section = config.replay
    if section.max_mb <= 0:
        return None
    n_inputs = online.n_inputs
    capacity = replay_capacity(section.max_mb, n_inputs)
    step = config.learning.step_every
    if capacity < step:
        raise ConfigError(
            f"replay.max_mb = {section.max_mb:g} MiB holds {capacity} trials of {n_inputs} "
            f"inputs ({8 * n_inputs + 8} bytes each), fewer than one step's "
            f"learning.step_every = {step}: raise it to at least "
            f"{(step * (8 * n_inputs + 8)) / (1 << 20):.3g} MiB"
        )
    n_classes = online.n_outputs
    if section.policy == "balanced" and capacity // n_classes < 1:
        raise ConfigError(
            f"replay.max_mb holds {capacity} trials, fewer than the {n_classes} classes"
        )
    buffer = ReplayBuffer(
        section.max_mb, n_inputs, n_classes, policy=section.policy, seed=section.seed
    )
    log.info(
        "replay: %s buffer of %d trials (%.1f MiB), %.0f %% of each step replayed",
        section.policy,
        buffer.capacity,
        buffer.nbytes / (1 << 20),
        100 * section.fraction,
    )
    return buffer


def degradation_detector(section: DegradationSection) -> DegradationDetector | None:
    """The detector of ``[degradation]``, or None when disabled."""
    if not section.enabled:
        return None
    return DegradationDetector(
        window=section.window,
        reference=section.reference,
        drop=section.drop,
        silent_rise=section.silent_rise,
    )


class LrPolicy:
    """``learning.lr_policy``: ``constant`` leaves the learning rate alone; ``boost``
    multiplies it by ``lr_boost`` while degraded and sets it back when the alarm clears,
    unless an ``lr`` command changed it in between (then the operator's value stays).

    Args:
        section: the ``[learning]`` section.
        online: whose learning-rate factor is steered.
    """

    def __init__(self, section: LearningSection, online: OnlineLearner) -> None:
        self._boost = section.lr_boost if section.lr_policy == "boost" else 1.0
        self._online = online
        self._base: float | None = None  # the factor before the boost
        self._boosted: float | None = None  # the factor the boost set

    def degraded(self, now: bool) -> None:
        """The alarm fired (``now``) or cleared."""
        if self._boost == 1.0:
            return
        if now and self._base is None:
            self._base = self._online.lr_scale
            self._boosted = min(self._base * self._boost, LR_SCALE_MAX)
            self._online.set_lr_scale(self._boosted)
            log.info("learning rate x%.3g while degraded", self._boost)
        elif not now and self._base is not None:
            if self._online.lr_scale == self._boosted:  # nobody changed it meanwhile
                self._online.set_lr_scale(self._base)
            self._base = self._boosted = None

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``degradation.lr_factors``: (factor before the boost, boosted factor) while
        boosted, else zeros (a factor is always > 0)."""
        if self._base is None or self._boosted is None:
            return {"degradation.lr_factors": np.zeros(2)}
        return {"degradation.lr_factors": np.array([self._base, self._boosted])}

    def restore(self, arrays: dict[str, np.ndarray], *, degraded: bool) -> None:
        """Resume from a checkpoint whose learner state is already restored: a boost
        that was on goes on while ``degraded`` (the restored alarm holds), and is taken
        back now otherwise (the alarm is judged afresh, or the policy changed), unless
        an ``lr`` command had changed the factor."""
        factors = np.asarray(arrays.get("degradation.lr_factors", np.zeros(2)), dtype=float)
        if factors.shape != (2,) or not factors[0] > 0:
            return
        base, boosted = float(factors[0]), float(factors[1])
        if self._online.lr_scale != boosted:
            return
        if degraded and self._boost != 1.0:
            self._base, self._boosted = base, boosted
        else:
            self._online.set_lr_scale(base)
            log.info("learning rate back to x%.3g: the boost ended with the last run", base)


class DegradationState:
    """What a checkpoint keeps of the degradation alarm (``degradation.*`` arrays): the
    detector's history and the learning-rate policy's factors. Restored at start only
    (a ``reset`` restores the learner, not the history of the stream).

    Args:
        detector: the detector, or None when disabled.
        policy: the learning-rate policy.
    """

    def __init__(self, detector: DegradationDetector | None, policy: LrPolicy) -> None:
        self.detector = detector
        self.policy = policy

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save."""
        arrays = self.policy.state_arrays()
        if self.detector is not None:
            arrays.update(self.detector.state_arrays())
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> bool:
        """Take them back (after the learner); returns whether the detector's history
        was (else it judges afresh: none kept, or other windows)."""
        restored = self.detector is not None and self.detector.restore(arrays)
        self.policy.restore(
            arrays, degraded=restored and bool(self.detector and self.detector.degraded)
        )
        return restored
