"""Continual learning, wired from the configuration: the replay buffer, the degradation
detector and the learning-rate policy (docs/runtime.md, "Continual learning")."""

from __future__ import annotations

import logging

from delgrad.errors import ConfigError
from delgrad.runtime.service._degradation import DegradationDetector
from delgrad.runtime.service._limits import LR_SCALE_MAX
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._replay import ReplayBuffer, replay_capacity
from delgrad.runtime.service._run_config import DegradationSection, LearningSection, RunConfig

log = logging.getLogger(__name__)

__all__ = ["LrPolicy", "degradation_detector", "replay_buffer"]


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
