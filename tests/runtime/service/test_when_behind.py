"""``learning.when_behind``: a learner that cannot keep up either holds the inference
loop (``wait``) or leaves new trials unlearned and says which share it learned
(``sample``); every labelled trial is scored either way (issue 24)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from delgrad.drivers import driver_from_config
from delgrad.runtime import Learner, resolve_config
from delgrad.runtime.service import OnlineLearner
from delgrad.runtime.service._join import JoinedRows
from delgrad.runtime.service._learning import MAX_LEARNING_IN_FLIGHT, LearningPipeline
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._worker import Worker

STEP = 20
BATCHES = 6


class _Deltas:
    """Where the pipeline hands each finished job's steps (the parameter stream's role)."""

    def __init__(self) -> None:
        self.steps = 0

    async def after_steps(self, n: int, layers: object) -> None:
        self.steps += n


def _learner() -> OnlineLearner:
    return OnlineLearner(
        Learner(resolve_config("yinyang_H30_WS")),
        driver_from_config("emulator-ideal"),
        step_every=STEP,
        refresh=False,
    )


def _slow_learner(gate: threading.Event) -> OnlineLearner:
    online = _learner()
    learn = online.learn_scored
    online.learn_scored = lambda pieces: (gate.wait(20), learn(pieces))[1]  # type: ignore[method-assign]
    return online


async def _feed(pipe: LearningPipeline, online: OnlineLearner) -> None:
    rng = np.random.default_rng(0)
    for b in range(BATCHES):
        t_in = rng.uniform(0.15, 2.0, (STEP, online.n_inputs))
        observation, version = online.observe(t_in)
        ids = np.arange(b * STEP, (b + 1) * STEP)
        labels = rng.integers(0, online.n_outputs, STEP)
        pipe.add(JoinedRows(ids, online.pack(t_in, observation, version), labels))
        await pipe.learn(learning=True)


def _pipeline(
    online: OnlineLearner, when_behind: str
) -> tuple[LearningPipeline, Counters, _Deltas]:
    counters, deltas = Counters(), _Deltas()
    pipe = LearningPipeline(
        online,
        Worker(),
        deltas,
        counters,
        metrics_window=1000,
        when_behind=when_behind,  # type: ignore[arg-type]
    )
    return pipe, counters, deltas


async def test_sample_scores_every_trial_and_learns_what_the_learner_keeps_up_with() -> None:
    gate = threading.Event()  # the learner is stuck in its first job until set
    online = _slow_learner(gate)
    pipe, counters, deltas = _pipeline(online, "sample")
    await asyncio.wait_for(_feed(pipe, online), 30)  # never waits for the learner
    learned = MAX_LEARNING_IN_FLIGHT * STEP
    assert counters["learning.learned_trials"] == learned
    assert counters["learning.unlearned_trials"] == BATCHES * STEP - learned
    assert pipe.accuracy.total == BATCHES * STEP  # all of them scored
    assert pipe.sampled_fraction() == pytest.approx(learned / (BATCHES * STEP))
    gate.set()
    await pipe.collect(block=True)
    assert deltas.steps == counters["learning.steps"] == MAX_LEARNING_IN_FLIGHT


async def test_wait_holds_the_loop_until_the_learner_has_learned_every_trial() -> None:
    gate = threading.Event()
    online = _slow_learner(gate)
    pipe, counters, deltas = _pipeline(online, "wait")
    feeding = asyncio.ensure_future(_feed(pipe, online))
    await asyncio.sleep(1.0)
    assert not feeding.done()  # held behind the stuck learner
    gate.set()
    await asyncio.wait_for(feeding, 30)
    await pipe.collect(block=True)
    assert counters["learning.learned_trials"] == BATCHES * STEP
    assert counters["learning.unlearned_trials"] == 0 and pipe.sampled_fraction() == 1.0
    assert deltas.steps == counters["learning.steps"] == BATCHES


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="when_behind"):
        _pipeline(_slow_learner(threading.Event()), "drop")


async def test_sample_leaves_trials_unlearned_while_inference_is_behind() -> None:
    """Where driver runs and steps share one thread, jobs never pile up: the inference
    loop's backlog (``behind``) is what says the learner holds it back."""
    online = _learner()
    for policy, learned in (("sample", STEP), ("wait", 2 * STEP)):
        pipe, counters, _ = _pipeline(online, policy)
        rng = np.random.default_rng(1)
        for behind in (False, True):
            t_in = rng.uniform(0.15, 2.0, (STEP, online.n_inputs))
            observation, version = online.observe(t_in)
            labels = rng.integers(0, online.n_outputs, STEP)
            pipe.add(JoinedRows(np.arange(STEP), online.pack(t_in, observation, version), labels))
            await pipe.learn(learning=True, behind=behind)
            await pipe.collect(block=True)  # no job in flight when the next comes
        assert counters["learning.learned_trials"] == learned, policy
        assert counters["learning.unlearned_trials"] == 2 * STEP - learned, policy
        assert pipe.accuracy.total == 2 * STEP
