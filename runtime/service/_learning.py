"""Learning pipeline: labelled trials are scored, then learned from in the worker, in order.

Joined trials wait here until the inference loop asks to learn. Every labelled
trial is first scored (prequential accuracy and loss, with the parameters of
its batch); while training, its rows then go to the online learner as a job in
the worker thread. Jobs are not awaited: the worker runs a step, then the next
batch's driver run queued behind it (so parameters still change between
batches only), while the event loop ingests and joins. At most
:data:`MAX_LEARNING_IN_FLIGHT` jobs wait; results are taken in submission order
and each one's steps go to the parameter stream.

Continual learning (issue 18): scored trials also feed the degradation detector
(``_degradation``), whose changes go to ``on_degradation``; with a replay buffer
(``_replay``) each batch of new labelled trials is learned together with replayed
ones (``fraction`` of the trials learned), which the step observes again first.

Each step's loss is computed once where it can be: rows are scored in pieces
cut at the learner's step boundaries, so a piece that makes up a whole step
hands its loss to the step (unless the step re-observes its trials).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np

from delgrad.runtime.service._degradation import DegradationDetector, Judgement
from delgrad.runtime.service._join import JoinedRows
from delgrad.runtime.service._online import OnlineLearner, Scored, StepReport
from delgrad.runtime.service._param_stream import Layers, ParameterStream
from delgrad.runtime.service._replay import ReplayBuffer
from delgrad.runtime.service._stats import Counters, SlidingAccuracy
from delgrad.runtime.service._worker import Worker

#: Learning jobs queued in the worker before the inference loop waits for the oldest.
MAX_LEARNING_IN_FLIGHT = 2

_JobResult = tuple[StepReport, Layers | None]


def step_pieces(n: int, filled: int, step_every: int, *, refresh: bool = False) -> list[slice]:
    """Cut ``n`` rows, added to a buffer holding ``filled`` of ``step_every``, at the
    points where the buffer fills (a step is taken).

    With ``refresh`` (the learner re-observes trials older than its last step),
    only a first piece that fills the empty buffer can be a step's own loss, so
    only it is cut off: scoring in fewer pieces costs the event loop less.
    """
    if refresh:
        first = step_every if filled == 0 else n
        return [s for s in (slice(0, min(first, n)), slice(first, n)) if s.stop > s.start]
    cuts = [0, *range(step_every - filled, n, step_every), n]
    return [slice(a, b) for a, b in itertools.pairwise(cuts) if b > a]


class LearningPipeline:
    """Labelled trials from the join to the online learner.

    Args:
        online: the learner (its learning methods run in the worker only).
        worker: the service's worker thread.
        params: where the steps' parameter deltas go.
        counters: the service's counters.
        metrics_window: labelled trials in the sliding accuracy / loss window.
        detector: judges the scored trials (None: no degradation alarm).
        replay: rehearses past labelled trials (None: no replay).
        replay_fraction: share of replayed trials among those learned (< 1).
        when_behind: ``wait`` for a learning job to end when :data:`MAX_LEARNING_IN_FLIGHT`
            are queued, or ``sample``: score the new trials but leave them unlearned
            while that many are queued or inference is behind (:meth:`learn`).
    """

    def __init__(
        self,
        online: OnlineLearner,
        worker: Worker,
        params: ParameterStream,
        counters: Counters,
        *,
        metrics_window: int,
        detector: DegradationDetector | None = None,
        replay: ReplayBuffer | None = None,
        replay_fraction: float = 0.0,
        when_behind: str = "wait",
    ) -> None:
        if when_behind not in ("wait", "sample"):
            raise ValueError(f"when_behind must be 'wait' or 'sample', got {when_behind!r}")
        self._sample = when_behind == "sample"
        self._online = online
        self.detector = detector
        self.replay = replay
        self._replay_ratio = replay_fraction / (1.0 - replay_fraction) if replay else 0.0
        self._replay_debt = 0.0  # fractional replayed trials carried to the next batch
        #: called (awaited) when the degradation alarm fires or clears
        self.on_degradation: Callable[[Judgement], Awaitable[None]] | None = None
        self._worker = worker
        self._params = params
        self._counters = counters
        self.accuracy = SlidingAccuracy(metrics_window)  # prequential, read by metrics
        self._labelled: list[JoinedRows] = []  # joined, not yet scored (per message)
        self._jobs: deque[asyncio.Future[_JobResult]] = deque()  # oldest first
        self._filled = online.buffered  # where the learner's buffer will be after the jobs
        self.last_rejection = ""  # why the last rejected step was rejected (status detail)

    @property
    def samples(self) -> bool:
        """Whether new trials go unlearned while the learner is behind (``sample``)."""
        return self._sample

    @property
    def filled(self) -> int:
        """Labelled trials the learner's step buffer will hold once the queued jobs
        are done (0 .. ``step_every - 1``)."""
        return self._filled

    def sampled_fraction(self) -> float:
        """Share of the labelled trials since boot that were learned from (``sample``:
        the rest came while the learner was behind); 1.0 before any."""
        learned = self._counters["learning.learned_trials"]
        total = learned + self._counters["learning.unlearned_trials"]
        return learned / total if total else 1.0

    def add(self, joined: JoinedRows) -> bool:
        """Keep joined trials for the next :meth:`learn`; returns whether there were any."""
        if not len(joined.labels):
            return False
        self._labelled.append(joined)
        return True

    async def learn(self, *, learning: bool, behind: bool = False) -> None:
        """Score the joined trials; with ``learning``, submit them to the learner.

        ``behind``: inference has more trials waiting than one batch takes. With
        ``sample`` the new trials are then left unlearned too: where driver runs and
        steps share one thread (``learning.pipeline`` false), jobs never pile up,
        since every driver run waits for the jobs before it, and only the waiting
        trials tell that the learner holds inference back.
        """
        if not self._labelled:
            return
        joined, self._labelled = self._labelled, []
        if len(joined) == 1:
            rows, labels = joined[0].rows, joined[0].labels
        else:
            rows = np.concatenate([j.rows for j in joined])
            labels = np.concatenate([j.labels for j in joined])
        valid = (labels >= 0) & (labels < self._online.n_outputs)
        if not valid.all():
            self._counters.inc("dropped.bad_label", int((~valid).sum()))
            rows, labels = rows[valid], labels[valid]
            if not len(labels):
                return
        step_every = self._online.step_every
        if learning and self._sample:
            await self.collect(block=False)
            if behind or len(self._jobs) >= MAX_LEARNING_IN_FLIGHT:
                learning = False  # behind: score them, learn from the next ones
                self._counters.inc("learning.unlearned_trials", len(labels))
                if self.replay is not None:
                    self.replay.add(rows[:, : self._online.rows.n_inputs], labels)
        if learning:
            self._counters.inc("learning.learned_trials", len(labels))
        cuts = [slice(None)]
        if learning:
            cuts = step_pieces(len(rows), self._filled, step_every, refresh=self._online.refresh)
        pieces: list[Scored] = []
        correct = []
        for cut in cuts:
            loss = self._online.score(rows[cut], labels[cut])
            self.accuracy.add(loss.correct, loss.loss, labels[cut])
            pieces.append((rows[cut], labels[cut], loss))
            correct.append(np.asarray(loss.correct, dtype=bool))
        if self.detector is not None:
            silent = np.isinf(self._online.rows.output_times(rows)).all(axis=1)
            for change in self.detector.add(np.concatenate(correct), silent):
                if self.on_degradation is not None:
                    await self.on_degradation(change)
        if not learning:
            return
        replayed = self._replayed(rows, labels) if self.replay is not None else None
        if replayed is not None:
            pieces.append(replayed)
        learned = len(rows) + (len(replayed[1]) if replayed is not None else 0)
        self._filled = (self._filled + learned) % step_every
        self._jobs.append(self._worker.submit(lambda: self._learn_job(pieces)))
        if len(self._jobs) > MAX_LEARNING_IN_FLIGHT:
            await self.collect(block=True, keep=MAX_LEARNING_IN_FLIGHT)

    def _replayed(self, rows: np.ndarray, labels: np.ndarray) -> Scored | None:
        """Offer the new trials to the replay buffer; the replayed trials that go with
        them (rows not observed yet), or None."""
        assert self.replay is not None
        inputs = self._online.rows.n_inputs
        want = self._replay_ratio * len(rows) + self._replay_debt
        k = int(want)
        self._replay_debt = want - k
        times, replay_labels = self.replay.sample(k)  # before adding: never the same trials
        self.replay.add(rows[:, :inputs], labels)
        if not len(replay_labels):
            return None
        self._counters.inc("replay.replayed_trials", len(replay_labels))
        return self._online.rows.unobserved(times), replay_labels, None

    def _learn_job(self, pieces: list[Scored]) -> _JobResult:
        """Worker thread: learn, and copy the parameters a delta is made from (so
        the event loop never reads parameters a later step is changing)."""
        report = self._online.learn_scored(pieces)
        layers = self._online.published_copy() if report.steps + report.bumps else None
        return report, layers

    async def collect(self, *, block: bool, keep: int = 0) -> None:
        """Account finished learning jobs in order and publish their deltas; with
        ``block``, wait until at most ``keep`` are left."""
        while self._jobs and (self._jobs[0].done() or (block and len(self._jobs) > keep)):
            report, layers = await self._jobs.popleft()
            self._counters.inc("learning.steps", report.steps)
            self._counters.inc("learning.bumps", report.bumps)
            if report.rejected:
                self._counters.inc("learning.rejected_steps", report.rejected)
                self.last_rejection = report.last_rejection
            await self._params.after_steps(report.steps + report.bumps, layers)
