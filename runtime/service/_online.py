"""Online learner: prequential learning on a driver (predict every trial, learn from labelled).

Two threads use it (docs/runtime.md, "Pipeline and parameter versions"): the
driver's worker calls :meth:`OnlineLearner.observe` (predictions), the learner's
worker calls the learning methods and :meth:`OnlineLearner.restore`. The driver
is one device, so its runs take turns (a lock), and it is configured *between*
runs, never during one, from parameters no step is changing (a second lock,
held while they change); a batch observed while a step runs uses the version
the driver holds. Every row keeps the version it was observed with, and a step
re-observes exactly its rows of another version. Observed trials are packed
into flat float64 rows (input times, spike times of every layer, observed
arrivals of physical delays) so a trial waiting for its label costs one small
array, whatever batch it came in. The learner owns its counters (steps, bumps,
re-observed trials); others read them and restore them through its methods.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime import Driver, DriverObserver, Learner, LossResult, NeuronParams, Observation
from delgrad.runtime._fit import fit_problems
from delgrad.runtime.service._limits import (
    LR_SCALE_MAX,
    LR_SCALE_MIN,
    state_problem,
)
from delgrad.runtime.service._rows import TrialRows


@dataclass
class StepReport:
    """What :meth:`OnlineLearner.learn_rows` did.

    Attributes:
        steps, bumps: optimiser steps and weight bumps taken.
        loss_sum: sum of the per-trial losses of those steps.
        rejected: steps (or bumps) whose result was not finite or beyond
            :data:`MAX_ABS_PARAMETER`; each was rolled back (parameters and
            optimiser as before it) and its trials dropped.
        last_rejection: why the last rejected step was rejected ("" if none).
    """

    steps: int = 0
    bumps: int = 0
    loss_sum: float = 0.0
    rejected: int = 0
    last_rejection: str = ""


@dataclass(frozen=True)
class NetworkSummary:
    """The structure of the network the driver runs.

    Attributes:
        layer_sizes: ``[n_inputs, n_1, ..., n_outputs]``.
        delay_kinds: per layer, ``"none"``, ``"synaptic"``, ``"axonal"`` or ``"dendritic"``.
        neuron: the neuron parameters (times in units of tau_s).
    """

    layer_sizes: tuple[int, ...]
    delay_kinds: tuple[str, ...]
    neuron: NeuronParams


#: labelled rows, their (K,) labels and, if already computed, the loss on their outputs
Scored = tuple[np.ndarray, np.ndarray, LossResult | None]


class OnlineLearner:
    """Holds the learner, the driver and a bounded buffer of labelled trials.

    Args:
        learner: parameters, optimiser and stabilisers (see :class:`Learner`).
        driver: the backend that runs trials (``configure`` / ``run``).
        step_every: labelled trials per optimiser step; the buffer holds at most this many.
        refresh: before a step, re-observe the buffered trials observed with another
            parameter version than the current one (one extra driver run for exactly
            those rows; the others are learned from as observed).
        reobserve: a second driver that runs exactly as ``driver`` does (a twin of a
            deterministic emulator), for the re-observations, so they need not wait
            for the predictions' runs; None: the one driver, taking turns.
    """

    def __init__(
        self,
        learner: Learner,
        driver: Driver,
        *,
        step_every: int,
        refresh: bool = True,
        reobserve: Driver | None = None,
    ) -> None:
        problems = fit_problems(learner.config, driver.capabilities)
        if problems:  # refused at startup, never a device that sits at chance
            raise ConfigError("the recipe does not fit the driver:\n  " + "\n  ".join(problems))
        self.learner = learner
        self.driver = driver
        self._loop = DriverObserver(driver)
        # One device: predictions and re-observations take turns on it.
        self._driver_lock = threading.Lock()
        # Held while the parameters change (step, rollback, restore), so the driver
        # is never configured from parameters half-way through a change.
        self._params_lock = threading.Lock()
        self._driver_version: int | None = None  # the parameter version the driver holds
        self._saved: dict[str, np.ndarray] = {}  # the state before a step (rollback)
        self._twin = DriverObserver(reobserve) if reobserve is not None else None
        self.step_every = int(step_every)
        self.refresh = bool(refresh)
        self.rows = TrialRows(learner.net_forward.layers)
        self.n_inputs = self.rows.n_inputs
        self._rows = np.empty((self.step_every, self.rows.width))
        self._labels = np.empty(self.step_every, dtype=np.int64)
        self._filled = 0
        self._steps = 0
        self._bumps = 0
        self._refreshed = 0
        self._rejected = 0

    # -- state --------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The learner's parameter version (changes at every step, bump and load)."""
        return self.learner.version

    @property
    def n_outputs(self) -> int:
        """Output neurons (classes)."""
        return self.rows.sizes[-1]

    @property
    def steps(self) -> int:
        """Optimiser steps taken (restored from checkpoints)."""
        return self._steps

    @property
    def bumps(self) -> int:
        """Weight bumps taken instead of a step (restored from checkpoints)."""
        return self._bumps

    @property
    def refreshed(self) -> int:
        """Trials re-observed before a step."""
        return self._refreshed

    @property
    def rejected(self) -> int:
        """Learning steps rejected and rolled back (non-finite or absurd result)."""
        return self._rejected

    @property
    def buffered(self) -> int:
        """Labelled trials waiting for the next step (at most ``step_every``)."""
        return self._filled

    @property
    def lr_scale(self) -> float:
        """The factor on the recipe's learning rates."""
        return self.learner.optimizer.lr_scale

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the recipe's learning rates by ``scale`` (> 0) from the next step on.

        Raises:
            ParameterError: if ``scale`` is not a finite number > 0.
        """
        self.learner.optimizer.set_lr_scale(scale)

    def network_summary(self) -> NetworkSummary:
        """Layer sizes, delay kinds and neuron of the network the driver runs."""
        net = self.learner.net_forward
        return NetworkSummary(
            layer_sizes=(net.n_inputs, *(ly.n_out for ly in net.layers)),
            delay_kinds=tuple(ly.delay for ly in net.layers),
            neuron=net.neuron,
        )

    def published_layers(self) -> list[dict[str, np.ndarray]]:
        """The parameters the driver runs, per layer ``{"w": (n_pre, n_out), "d": delays}``."""
        net = self.learner.net_forward
        return [{"w": w, "d": d} for w, d in zip(net.w, net.d, strict=True)]

    def published_copy(self) -> list[dict[str, np.ndarray]]:
        """A copy of :meth:`published_layers` (for a reader in another thread)."""
        return [{k: v.copy() for k, v in ly.items()} for ly in self.published_layers()]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Parameters, optimiser and bumping state as arrays (for one ``.npz``)."""
        return self.learner.state_arrays()

    def counters(self) -> dict[str, int]:
        """``{"steps", "bumps"}``: what a checkpoint keeps besides :meth:`state_arrays`."""
        return {"steps": self._steps, "bumps": self._bumps}

    def restore(self, arrays: dict[str, np.ndarray], *, steps: int, bumps: int) -> None:
        """Return to a checkpoint: :meth:`state_arrays` and :meth:`counters` as saved."""
        with self._params_lock:
            self.learner.load_state_arrays(arrays)
        self._steps = int(steps)
        self._bumps = int(bumps)

    # -- inference ----------------------------------------------------------------

    def run(self, t_in: np.ndarray) -> Observation:
        """Run one batch of trials on the driver with the current parameters (the
        learner's thread, or while no step runs); on the twin driver if there is one
        (only the learner's thread uses it, so it takes no turns)."""
        if self._twin is not None:
            return self._twin.observe(self.learner.net_forward, t_in, self.learner.version)
        with self._driver_lock:
            self._load_current()
            return self.driver.run(t_in)

    def _load_current(self) -> None:
        """Configure the driver with the current parameters if it holds others (the
        driver lock held; the parameters not changing)."""
        version = self.learner.version
        self._loop.load(self.learner.net_forward, version)
        self._driver_version = version

    def observe(self, t_in: np.ndarray) -> tuple[Observation, int]:
        """Run a batch for predictions; returns it and the parameter version it ran with.

        The driver's worker: the newest parameters, unless a step is changing them
        right now; then the version the driver holds already (a step older, or
        more), so a prediction never waits for a step to end.
        """
        with self._driver_lock:
            if self._params_lock.acquire(blocking=self._driver_version is None):
                try:  # not changing: bring the driver up to date (it keeps a copy)
                    self._load_current()
                finally:
                    self._params_lock.release()
            version = self._driver_version
            assert version is not None
            observation = self.driver.run(t_in)
            self.driver.stream_trials(len(t_in))
        return observation, version

    def pack(self, t_in: np.ndarray, observation: Observation, version: int) -> np.ndarray:
        """(B, width) rows of observed trials (see :class:`~._rows.TrialRows`)."""
        return self.rows.pack(t_in, observation, version)

    def score(self, rows: np.ndarray, labels: np.ndarray) -> LossResult:
        """The loss (and correctness) of packed rows' observed outputs for ``labels (K,)``.

        Handed back to :meth:`learn_scored` with the same rows, it is the loss of
        the step those rows make up, if they make up exactly one and were not
        re-observed: the loss is computed once.
        """
        return self.learner.loss(self.rows.output_times(rows), labels)

    # -- learning -----------------------------------------------------------------

    def learn_rows(self, rows: np.ndarray, labels: np.ndarray) -> StepReport:
        """Buffer labelled trials; every ``step_every`` of them make one learning step.

        Args:
            rows: (K, width) packed observed trials (:class:`~._rows.TrialRows`).
            labels: (K,) their classes.
        """
        return self.learn_scored([(rows, labels, None)])

    def learn_scored(self, pieces: Sequence[Scored]) -> StepReport:
        """:meth:`learn_rows` for each piece in order; a piece's loss (from
        :meth:`score`) is reused by the step it fills exactly, if not re-observed."""
        report = StepReport()
        for rows, labels, loss in pieces:
            whole = loss is not None and self._filled == 0 and len(rows) == self.step_every
            at = 0
            while at < len(rows):
                take = min(self.step_every - self._filled, len(rows) - at)
                self._rows[self._filled : self._filled + take] = rows[at : at + take]
                self._labels[self._filled : self._filled + take] = labels[at : at + take]
                self._filled += take
                at += take
                if self._filled == self.step_every:
                    self._take_step(loss if whole else None, report)
        return report

    def _take_step(self, loss: LossResult | None, report: StepReport) -> None:
        """One step from the full buffer, into ``report`` (``loss``: its loss, if known).

        The parameters change under the parameter lock, and a rejected step is rolled
        back before the lock is released: the driver never holds rejected parameters.
        """
        t_in, times, arrivals, loss = self._fresh_rows(loss)
        saved = self._save_state()
        with self._params_lock:
            loss_sum, bumped = self._learn_buffer(t_in, times, arrivals, loss)
            problem = state_problem(self.learner.state_views())
            if problem is not None:
                # never run, publish or checkpoint such parameters: back to the
                # state before the step; learning goes on from there, at the
                # learning rate set meanwhile (an lr command during the step)
                scale = self.learner.optimizer.lr_scale
                self.learner.load_state_arrays(saved)
                if LR_SCALE_MIN <= scale <= LR_SCALE_MAX:
                    self.learner.optimizer.lr_scale = scale
        if problem is not None:
            self._rejected += 1
            self._steps -= not bumped
            self._bumps -= bumped
            report.rejected += 1
            report.last_rejection = problem
            return
        report.loss_sum += loss_sum
        report.steps += not bumped
        report.bumps += bumped

    def _save_state(self) -> dict[str, np.ndarray]:
        """The learner's state before a step (to roll back to), copied into buffers
        kept from step to step: megabytes at sensor scale, and fresh allocations of
        that size cost a page fault per 4 KiB (the service maps big buffers anew)."""
        live = self.learner.state_views()
        saved = self._saved
        if saved.keys() != live.keys() or any(
            saved[k].shape != v.shape or saved[k].dtype != v.dtype for k, v in live.items()
        ):
            saved = self._saved = {k: np.array(v, copy=True) for k, v in live.items()}
            return saved
        for key, value in live.items():
            np.copyto(saved[key], value)
        return saved

    def _fresh_rows(
        self, loss: LossResult | None
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None], LossResult | None]:
        """The buffer's input times, spike times and arrivals, with ``refresh`` those of
        the current parameters: exactly the rows observed with another version are
        observed again (one driver run for them); rows of the current version (e.g.
        the predictions' own run, if no step came between) are used as they are.

        Returns:
            (t_in, times per layer, arrivals per layer, ``loss`` or None if re-observed).
        """
        t_in, times, arrivals = self.rows.unpack(self._rows)
        t_in = np.ascontiguousarray(t_in)
        times = [np.ascontiguousarray(t) for t in times]
        arrivals = [None if a is None else np.ascontiguousarray(a) for a in arrivals]
        stale = self._rows[:, -1] != self.version
        if self.refresh and stale.any():
            # Times observed before the last step: observe them again with the
            # current parameters, so the step is taken at spike times of the
            # network it changes (stale times: 1.5-3 points worse in simulation).
            every = bool(stale.all())
            observation = self.run(t_in if every else np.ascontiguousarray(t_in[stale]))
            for mine, new in zip(times, observation.times, strict=True):
                mine[stale] = new
            for index, new_arrivals in enumerate(observation.arrivals):
                mine_arrivals = arrivals[index]
                if new_arrivals is not None and mine_arrivals is not None:
                    mine_arrivals[stale] = new_arrivals
            self._refreshed += int(stale.sum())
            loss = None  # the loss of other times
        return t_in, times, arrivals, loss

    def _learn_buffer(
        self,
        t_in: np.ndarray,
        times: list[np.ndarray],
        arrivals: list[np.ndarray | None],
        loss: LossResult | None,
    ) -> tuple[float, bool]:
        """The learner's step (or bump) from the buffered rows; empties the buffer.

        Returns:
            (the sum of the per-trial losses, whether it was a weight bump).
        """
        has_arrivals = any(a is not None for a in arrivals)
        result, bumped = self.learner.learn(
            t_in,
            times,
            arrivals if has_arrivals else None,
            self._labels.copy(),
            loss=loss,
        )
        self._filled = 0
        if bumped is None:
            self._steps += 1
        else:
            self._bumps += 1
        return float(result.loss.sum()), bumped is not None
