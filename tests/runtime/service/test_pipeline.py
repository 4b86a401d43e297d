"""The pipeline: predictions run on the driver while a step learns, and learning stays
exact (docs/runtime.md, "Pipeline and parameter versions")."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from delgrad.drivers import EmulatorDriver, RecordingDriver, driver_from_config
from delgrad.errors import ParameterError
from delgrad.protocols import InProcessBus, Labels, SpikeBatch, topic
from delgrad.runtime import Learner, forward, resolve_config
from delgrad.runtime.service import OnlineLearner, Service
from delgrad.runtime.service._run_config import run_config_from_dict
from delgrad.tools._run_app import build_online
from delgrad.tools._sensor import YinYangSource

from .test_service import DEVICE, Client, make_config, start_service, stop_service, stream

STEP = 20
SIZES = [7, 13, 31, 20, 5, 44, 9, 26, 15]  # 170 trials: 8 steps, 10 left in the buffer


def make_online(driver: RecordingDriver | None = None, *, twin: bool = False) -> OnlineLearner:
    learner = Learner(resolve_config("yinyang_H30_WS"))
    return OnlineLearner(
        learner,
        driver or driver_from_config("emulator-ideal"),
        step_every=STEP,
        refresh=True,
        reobserve=driver_from_config("emulator-ideal") if twin else None,
    )


def trials(n: int, n_inputs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.15, 2.0, (n, n_inputs)), rng.integers(0, 3, n)


class Versions:
    """Copies of the forward parameters of every version the learner reaches (wraps
    ``sync``), and a check of every step: its spike times are those of its parameters."""

    def __init__(self, online: OnlineLearner) -> None:
        learner = online.learner
        self.nets = {learner.version: learner.net_forward.copy()}
        self.steps_checked = 0
        sync, learn = learner.sync, learner.learn

        def syncing() -> None:
            sync()
            self.nets[learner.version] = learner.net_forward.copy()

        def learning(t_in, times, arrivals, labels, *, loss=None):  # type: ignore[no-untyped-def]
            expected = forward(learner.net_forward, t_in)
            for got, want in zip(times, expected, strict=True):
                np.testing.assert_array_equal(got, want)
            self.steps_checked += 1
            return learn(t_in, times, arrivals, labels, loss=loss)

        learner.sync = syncing  # type: ignore[method-assign]
        learner.learn = learning  # type: ignore[method-assign]


@pytest.mark.parametrize("twin", [False, True], ids=["one driver", "twin re-observes"])
def test_pipelined_steps_equal_one_step_at_a_time_and_use_their_own_times(twin: bool) -> None:
    online = make_online(twin=twin)
    versions = Versions(online)
    t_all, labels = trials(sum(SIZES), online.n_inputs)
    cuts = np.cumsum([0, *SIZES])
    # predictions on one thread, steps on another: batch k+1 runs while step k learns
    with (
        ThreadPoolExecutor(1, "driver") as driver_thread,
        ThreadPoolExecutor(1, "learner") as learner_thread,
    ):
        observed = [
            driver_thread.submit(online.observe, t_all[a:b]) for a, b in itertools.pairwise(cuts)
        ]
        jobs = []
        for (a, b), future in zip(itertools.pairwise(cuts), observed, strict=True):
            observation, version = future.result()
            # each batch ran with the parameters of the version it is tagged with
            want = forward(versions.nets[version], t_all[a:b])
            np.testing.assert_array_equal(observation.output, want[-1])
            rows = online.pack(t_all[a:b], observation, version)
            jobs.append(learner_thread.submit(online.learn_rows, rows, labels[a:b]))
        reports = [job.result() for job in jobs]
    n_steps = sum(SIZES) // STEP
    assert sum(r.steps + r.bumps for r in reports) == n_steps == versions.steps_checked
    assert online.refreshed <= n_steps * STEP  # never more than the trials learned from

    # the same trials, one step at a time: observed with the current parameters, learned
    plain = make_online()
    for start in range(0, n_steps * STEP, STEP):
        t_in = t_all[start : start + STEP]
        observation, version = plain.observe(t_in)
        plain.learn_rows(plain.pack(t_in, observation, version), labels[start : start + STEP])
    assert plain.refreshed == 0
    for ours, theirs in zip(
        [*online.learner.net.w, *online.learner.raw],
        [*plain.learner.net.w, *plain.learner.raw],
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_a_step_re_observes_only_its_stale_rows() -> None:
    driver = RecordingDriver(driver_from_config("emulator-ideal"))
    online = make_online(driver)
    t_in, labels = trials(2 * STEP, online.n_inputs, seed=1)
    first, v1 = online.observe(t_in[:30])  # 30 trials, version v1
    rows = online.pack(t_in[:30], first, v1)
    online.learn_rows(rows[:STEP], labels[:STEP])  # step 1: its rows are fresh
    assert online.refreshed == 0 and online.version != v1
    second, v2 = online.observe(t_in[30:])  # 10 trials with the new version
    assert v2 == online.version
    runs = len(driver.methods())
    online.learn_rows(rows[STEP:], labels[STEP:30])  # 10 stale rows of v1 ...
    online.learn_rows(online.pack(t_in[30:], second, v2), labels[30:])  # ... + 10 fresh
    # step 2 ran the driver once more, for exactly the 10 stale trials
    new = driver.calls[runs:]
    assert [c.method for c in new if c.method == "run"] == ["run"]
    (rerun,) = [c for c in new if c.method == "run"]
    assert rerun.t_in is not None
    np.testing.assert_array_equal(rerun.t_in, t_in[STEP:30])
    assert online.refreshed == 10


def test_a_prediction_does_not_wait_for_a_running_step() -> None:
    online = make_online()
    t_in, labels = trials(STEP + 5, online.n_inputs, seed=2)
    observation, version = online.observe(t_in[:STEP])
    rows = online.pack(t_in[:STEP], observation, version)
    in_step, release = threading.Event(), threading.Event()
    learn = online.learner.learn

    def slow_learn(*args, **kwargs):  # type: ignore[no-untyped-def]
        in_step.set()
        assert release.wait(10.0)
        return learn(*args, **kwargs)

    online.learner.learn = slow_learn  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as learner_thread:
        step = learner_thread.submit(online.learn_rows, rows, labels[:STEP])
        assert in_step.wait(10.0)
        with ThreadPoolExecutor(1) as driver_thread:
            # the step holds its parameters: the batch runs with the version before it
            _, during = driver_thread.submit(online.observe, t_in[STEP:]).result(timeout=10.0)
        assert during == version
        release.set()
        assert step.result(timeout=10.0).steps + step.result().bumps == 1
    _, after = online.observe(t_in[STEP:])
    assert after == online.version != version


def test_learning_threads_reach_the_backward_pass_and_the_ideal_driver() -> None:
    config = run_config_from_dict({"learning": {"threads": 2}})
    online = build_online(config)
    assert online.learner.threads == 2
    assert isinstance(online.driver, EmulatorDriver) and online.driver.threads == 2
    twin = online._twin  # the ideal emulator's re-observations run on a twin
    assert twin is not None and isinstance(twin.driver, EmulatorDriver)
    assert twin.driver is not online.driver and twin.driver.threads == 2
    t_in, _ = trials(9, online.n_inputs, seed=3)
    two, _ = online.observe(t_in)
    np.testing.assert_array_equal(two.output, forward(online.learner.net_forward, t_in)[-1])
    with pytest.raises(ParameterError, match="threads must be an integer >= 1"):
        EmulatorDriver("ideal", threads=0)


@pytest.mark.parametrize("pipeline", [True, False])
async def test_predictions_run_in_the_drivers_thread_unless_the_pipeline_is_off(
    pipeline: bool,
) -> None:
    config = make_config(learning={"pipeline": pipeline})
    learner = Learner(resolve_config(config.model.recipe))
    driver = RecordingDriver()
    online = OnlineLearner(learner, driver, step_every=config.learning.step_every)
    bus = InProcessBus()
    async with Client(bus) as client:
        transport = bus.transport("service")
        await transport.__aenter__()
        service = Service(config, transport, online)
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        await stream(client, 1000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 1000)
        await stop_service(service, transport, task)
    m = service.metrics()
    assert m["join.joined"] == 1000
    assert m["learning.steps"] + m["learning.bumps"] == 1000 // config.learning.step_every
    threads = {call.thread.rsplit("_", 1)[0] for call in driver.calls if call.method == "run"}
    assert threads <= {"delgrad-driver", "delgrad-learner"}
    assert ("delgrad-driver" in threads) == pipeline


@pytest.mark.parametrize("cut_worth_s", [0.0, float("inf")], ids=["cut", "not worth it"])
async def test_batches_end_where_a_step_does_so_no_trial_is_observed_twice(
    cut_worth_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the pipeline, a driver run takes at most what the next step still
    needs where one step's trials cost the driver more than ``CUT_WORTH_S``: labels
    sent before their trials make every step of fresh rows, although the messages
    (100 trials) do not divide ``step_every`` (150). Where it is not worth a batch
    (256-trial batches, as for every network before issue 24), the rest of a
    message is a step old and observed again."""
    monkeypatch.setattr("delgrad.runtime.service._inference.CUT_WORTH_S", cut_worth_s)
    config = make_config(learning={"pipeline": False, "step_every": 150})
    source = YinYangSource("train")
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        for _ in range(10):
            tb = source.take(100)
            await client.publisher.publish(topic(DEVICE, "labels"), Labels(tb.trial_ids, tb.labels))
            await client.publisher.publish(
                topic(DEVICE, "events/in"),
                SpikeBatch(tb.trial_ids, tb.offsets, tb.channels, tb.times, "tau_s"),
            )
        await client.wait_for(lambda: service.counters["trials.processed"] >= 1000)
        await stop_service(service, transport, task)
    m = service.metrics()
    assert m["join.joined"] == 1000
    assert m["learning.steps"] + m["learning.bumps"] == 6
    if cut_worth_s == 0.0:
        assert m["learning.refreshed_trials"] == 0
    else:
        assert m["learning.refreshed_trials"] > 100
