"""Health: the silent failures, made loud.

:class:`HealthCheck` looks at the metrics the service already publishes (and the
step count) and raises a named warning while one of these holds over the last
``window_s`` seconds:

* ``no_steps``: labelled trials were joined but no learning step happened (in
  train mode, not paused), and at least two steps' worth (``2 * step_every``) were
  joined since the last step: a sparse or slow labelled stream, whose next step is
  simply not due yet, is no failure;
* ``bumps_without_steps``: weight bumps rose while no step happened (the
  network is too silent to learn: recipe, driver or inputs do not fit);
* ``silent_output``: most trials ended with no output spike at all;
* ``refused_events``: most events arrived on channels the network does not have;
* ``degraded``: the degradation detector's alarm holds (:mod:`~._degradation`: the
  sliding accuracy fell below its reference, or silent labels rose);
* ``storage``: writes to the checkpoint folder fail or are slow (full, read-only or
  vanished filesystem, :mod:`~._storage`); the device goes on inferring and learning;
* ``silent_inputs``: after ``min_trials`` trials, most input channels never saw an
  event (the sensor sends fewer channels than the network has, e.g. a Yin-Yang
  hardware recipe fed without ``--input-repeat 5``).

Each warning is a metric ``health.<name>`` (1 while active), is logged once when
it starts (and when it clears), and the active ones form the status detail. Pure
and synchronous: the caller passes the values and the time.
"""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger(__name__)

__all__ = ["HEALTH_CONDITIONS", "HealthCheck"]

HEALTH_CONDITIONS = (
    "bumps_without_steps",
    "degraded",
    "no_steps",
    "refused_events",
    "silent_inputs",
    "silent_output",
    "storage",
)


class HealthCheck:
    """Warnings from the metrics (see the module doc).

    Args:
        window_s: the interval each condition is judged over (seconds).
        min_trials: trials before ``silent_inputs`` is judged.
        step_every: labelled trials per learning step (``learning.step_every``).
    """

    def __init__(
        self, *, window_s: float = 10.0, min_trials: int = 500, step_every: int = 1
    ) -> None:
        self.window_s = float(window_s)
        self.min_trials = int(min_trials)
        self.step_every = int(step_every)
        self._last_step: tuple[float, float] | None = None  # (steps, joined) then
        self._history: deque[tuple[float, dict[str, float]]] = deque()
        self.active: dict[str, str] = {}

    def _delta(self, now: dict[str, float], then: dict[str, float], key: str) -> float:
        return now.get(key, 0.0) - then.get(key, 0.0)

    def update(
        self,
        values: dict[str, float],
        *,
        now_s: float,
        silent_inputs: tuple[int, int] = (0, 0),
        training: bool = True,
        storage: str | None = None,
        degraded: str | None = None,
    ) -> dict[str, str]:
        """Judge the conditions; returns the active warnings (name -> text).

        Args:
            values: the current metrics, with ``learning.steps``, ``learning.bumps``,
                ``join.joined``, ``trials.processed``, ``trials.silent_output``,
                ``events.received``, ``refused.channel_outside`` where known.
            now_s: monotonic seconds.
            silent_inputs: (input channels that never saw an event, all inputs).
            training: whether the service learns (train mode and not paused).
            storage: why writes fail now (:attr:`~._storage.Storage.problem`), or None.
            degraded: the degradation alarm's text while it holds, or None.
        """
        self._history.append((now_s, dict(values)))
        while len(self._history) > 2 and now_s - self._history[1][0] >= self.window_s:
            self._history.popleft()
        t0, old = self._history[0]
        now_steps = values.get("learning.steps", 0.0)
        if not training or self._last_step is None or self._last_step[0] != now_steps:
            self._last_step = (now_steps, values.get("join.joined", 0.0))
        unlearned = values.get("join.joined", 0.0) - self._last_step[1]
        found: dict[str, str] = {}
        if now_s - t0 >= self.window_s:
            span = now_s - t0
            steps = self._delta(values, old, "learning.steps")
            joined = self._delta(values, old, "join.joined")
            bumps = self._delta(values, old, "learning.bumps")
            if training and joined > 0 and steps == 0 and unlearned >= 2 * self.step_every:
                found["no_steps"] = (
                    f"no learning step for {span:.0f} s while {joined:.0f} labelled trials "
                    f"arrived ({unlearned:.0f} since the last step)"
                )
            if training and bumps > 0 and steps == 0:
                found["bumps_without_steps"] = (
                    f"weight bumps rose by {bumps:.0f} in {span:.0f} s without a learning step: "
                    "the network is too silent to learn (do recipe, driver and inputs fit?)"
                )
            trials = self._delta(values, old, "trials.processed")
            silent = self._delta(values, old, "trials.silent_output")
            if trials > 0 and silent / trials > 0.5:
                found["silent_output"] = (
                    f"{100 * silent / trials:.0f} % of the last {trials:.0f} trials had no "
                    "output spike"
                )
            events = self._delta(values, old, "events.received")
            refused = self._delta(values, old, "refused.channel_outside")
            if events > 0 and refused / events > 0.5:
                found["refused_events"] = (
                    f"{100 * refused / events:.0f} % of the last {events:.0f} events were on "
                    "channels the network does not have (refused.channel_outside)"
                )
        never, n_inputs = silent_inputs
        if values.get("trials.received", 0.0) >= self.min_trials and never > n_inputs / 2:
            found["silent_inputs"] = (
                f"{never} of the network's {n_inputs} inputs never received an event: the "
                "sensor sends fewer channels than the recipe expects (the yinyang_hw recipes "
                "need delgrad sensor --input-repeat 5)"
            )
        if storage:
            found["storage"] = storage
        if degraded:
            found["degraded"] = degraded
        for name in sorted(found.keys() - self.active.keys()):
            log.warning("health: %s: %s", name, found[name])
        for name in sorted(self.active.keys() - found.keys()):
            log.info("health: %s cleared", name)
        self.active = found
        return found

    def metrics(self) -> dict[str, float]:
        """``health.<name>``: 1.0 while active, else 0.0; ``health.warnings``: how many."""
        out = {f"health.{name}": float(name in self.active) for name in HEALTH_CONDITIONS}
        out["health.warnings"] = float(len(self.active))
        return out

    def detail(self) -> str:
        """The active warnings as one line (for the status), or ``""``."""
        return "; ".join(f"{k}: {v}" for k, v in sorted(self.active.items()))
