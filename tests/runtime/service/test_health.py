"""The silent failures of issue 11 raise named warnings (metrics, log, status text)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import SensorEvents, SpikeBatch
from delgrad.runtime.service import run_config_from_dict
from delgrad.runtime.service._health import HEALTH_CONDITIONS, HealthCheck
from delgrad.runtime.service._ingest import Ingest
from delgrad.runtime.service._run_config import IngestSection
from delgrad.runtime.service._stats import Counters


def _run(check: HealthCheck, series: list[dict[str, float]], **kw) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, values in enumerate(series):
        found = check.update(values, now_s=float(i * 5), **kw)
    return found


def test_a_healthy_run_has_no_warnings():
    series = [
        {
            "learning.steps": 10 * i,
            "join.joined": 100 * i,
            "trials.processed": 100 * i,
            "events.received": 400 * i,
            "trials.received": 100 * i,
        }
        for i in range(4)
    ]
    assert _run(HealthCheck(), series) == {}


def test_labelled_trials_without_steps_and_bumps_without_steps(caplog):
    series = [
        {
            "learning.steps": 0,
            "learning.bumps": 40 * i,
            "join.joined": 150 * i,
            "trials.processed": 150 * i,
        }
        for i in range(4)
    ]
    check = HealthCheck(window_s=10.0)
    with caplog.at_level(logging.WARNING):
        found = _run(check, series)
    assert set(found) == {"no_steps", "bumps_without_steps"}
    assert "no learning step for 10 s while 300 labelled trials arrived" in found["no_steps"]
    assert "health: no_steps" in caplog.text
    assert check.metrics()["health.no_steps"] == 1.0 and check.metrics()["health.warnings"] == 2
    assert "bumps_without_steps: weight bumps rose" in check.detail()
    # not while inferring or paused
    assert _run(HealthCheck(), series, training=False) == {}


def test_most_trials_silent_at_the_output():
    series = [{"trials.processed": 100 * i, "trials.silent_output": 80 * i} for i in range(4)]
    found = _run(HealthCheck(), series)
    assert found["silent_output"].startswith("80 % of the last 200 trials had no output spike")


def test_most_events_refused():
    series = [{"events.received": 1000 * i, "refused.channel_outside": 900 * i} for i in range(4)]
    assert "90 % of the last 2000 events" in _run(HealthCheck(), series)["refused_events"]


def test_inputs_that_never_fire_and_clearing(caplog):
    check = HealthCheck(min_trials=100)
    found = check.update({"trials.received": 100}, now_s=0.0, silent_inputs=(16, 20))
    assert "16 of the network's 20 inputs never received an event" in found["silent_inputs"]
    assert "--input-repeat 5" in found["silent_inputs"]
    with caplog.at_level(logging.INFO):
        assert check.update({"trials.received": 200}, now_s=1.0, silent_inputs=(0, 20)) == {}
    assert "silent_inputs cleared" in caplog.text
    assert set(HEALTH_CONDITIONS) == {k[7:] for k in check.metrics() if k != "health.warnings"}


def test_ingest_tracks_inputs_that_never_fired_and_refuses_outside_channels(caplog):
    counters = Counters()
    ingest = Ingest(IngestSection(), 20, counters, lambda ids: None)
    # a plain 4-channel Yin-Yang sensor feeding a 20-input hardware recipe
    ingest.spikes(SpikeBatch(np.array([0]), np.array([0, 4]), np.arange(4), np.ones(4)), 0.0)
    assert ingest.silent_inputs == (16, 20)
    with caplog.at_level(logging.WARNING):
        ingest.stream(SensorEvents(np.array([3, 25, 30]), np.array([1.0, 2.0, 3.0])), 0.0)
    assert counters["refused.channel_outside"] == 2 and counters["events.received"] == 3
    assert "refusing events on channels >= 20" in caplog.text
    assert ingest.silent_inputs == (16, 20)


@pytest.mark.parametrize("name", HEALTH_CONDITIONS)
def test_every_condition_is_a_metric(name):
    assert f"health.{name}" in HealthCheck().metrics()


async def test_a_hw_recipe_fed_four_channels_warns_in_metrics_and_status():
    import json

    from delgrad.protocols import InProcessBus, Metrics, Status

    from .test_service import Client, make_config, start_service, stop_service, stream

    bus = InProcessBus()
    config = make_config(model={"recipe": "yinyang_hw_WA"})  # 20 inputs
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await stream(client, 1000)  # the plain 4-channel Yin-Yang sensor

        def warned() -> bool:
            metrics = client.of(Metrics)
            return bool(metrics) and metrics[-1].values.get("health.silent_inputs") == 1.0

        await client.wait_for(warned)
        await client.wait_for(
            lambda: any(
                "silent_inputs" in json.loads(m.detail).get("health", []) for m in client.of(Status)
            )
        )
        await stop_service(service, transport, task)


def test_a_sparse_labelled_stream_whose_step_is_not_due_is_no_failure():
    # 100 trials/s, a tenth labelled, 150 per step: a step is due every 15 s, so a
    # 10 s window often holds labelled trials and no step
    def series(steps_at: set[int]) -> list[dict[str, float]]:
        steps = 0
        out = []
        for i in range(40):  # every 5 s, 200 s
            steps += i in steps_at
            out.append({"learning.steps": steps, "join.joined": 50 * i})
        return out

    learning = series({3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39})
    check = HealthCheck(step_every=150)
    for i, values in enumerate(learning):
        assert check.update(values, now_s=5.0 * i) == {}
    # steps stop: the warning once two steps' worth (300) arrived since the last one
    stuck = HealthCheck(step_every=150)
    found = [stuck.update(values, now_s=5.0 * i) for i, values in enumerate(series({3, 6}))]
    raised = [i for i, warnings in enumerate(found) if warnings]
    assert raised[0] == 12  # last step at i = 6 (joined 300), 600 joined at i = 12
    assert found[12]["no_steps"] == (
        "no learning step for 10 s while 100 labelled trials arrived (300 since the last step)"
    )
    assert raised == list(range(12, 40))  # it holds while steps stay away


def test_a_recording_sent_again_is_counted_late_and_logged_once_with_the_remedy(caplog):
    counters = Counters()
    ingest = Ingest(IngestSection(us_per_tau=6.0, window_length=2.5), 4, counters, lambda i: None)
    t_us = np.arange(0.0, 301.0, 3.0)  # 0 .. 300 us: the window at 300 us is still open
    events = SensorEvents(np.arange(t_us.size) % 4, t_us, "us")
    assert ingest.stream(events, 0.0)
    assert counters["events.late"] == 0
    with caplog.at_level(logging.WARNING):
        ingest.stream(events, 1.0)  # the same recording again, without --offset-us
        ingest.stream(events, 2.0)
    late = int(np.count_nonzero(t_us < 300.0))  # the event at 300 us is in an open window
    assert counters["events.late"] == 2 * late
    assert caplog.text.count("older than every open window") == 1
    # a stream that follows starts after the window holding the newest event (315 us)
    assert "at least 315)" in caplog.text and "events.late" in caplog.text
    # events before the stream's origin are in no window: counted apart
    ingest.stream(SensorEvents(np.array([0]), np.array([-30.0]), "us"), 3.0)
    assert counters["events.unwindowed"] == 1


def test_idle_flush_completes_the_started_windows_once_the_stream_goes_quiet():
    counters = Counters()
    section = IngestSection(us_per_tau=6.0, window_length=2.5, idle_flush_s=2.0)
    ingest = Ingest(section, 4, counters, lambda i: None)
    assert ingest.idle_flush_in(0.0) is None  # nothing started
    # events in windows 0 and 1 (15 us each): window 0 completes, window 1 is started
    ingest.stream(SensorEvents(np.array([0, 1, 2]), np.array([1.0, 14.0, 20.0]), "us"), 10.0)
    assert ingest.pending_trials == 1
    assert ingest.idle_flush_in(11.5) == pytest.approx(0.5)
    assert ingest.flush_idle(12.0) and ingest.pending_trials == 2
    assert counters["windows.idle_flushed"] == 1 and ingest.idle_flush_in(13.0) is None
    ids, t_in, _ = ingest.take(2)
    assert list(ids) == [0, 1] and t_in[1, 2] == pytest.approx(20.0 / 6.0 - 2.5)
    off = Ingest(IngestSection(idle_flush_s=0.0), 4, Counters(), lambda i: None)
    off.stream(SensorEvents(np.array([0]), np.array([0.1])), 0.0)
    assert off.idle_flush_in(100.0) is None  # 0: never


async def test_a_recordings_last_window_is_scored_after_the_stream_ends():
    from delgrad.protocols import InProcessBus, Labels, topic

    from .test_service import DEVICE, Client, make_config, start_service, stop_service

    bus = InProcessBus()
    config = make_config(ingest={"idle_flush_s": 0.3, "window_length": 2.5})
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        # three windows of 2.5 tau_s, each with events; labels for all three
        times = np.array([0.5, 1.0, 3.0, 3.5, 5.5, 6.0])
        await client.publisher.publish(
            topic(DEVICE, "events/in"),
            SensorEvents(np.array([0, 1, 0, 2, 1, 3]), times, "tau_s"),
        )
        await client.publisher.publish(
            topic(DEVICE, "labels"), Labels(np.array([0, 1, 2]), np.array([0, 1, 2]))
        )
        # windows 0 and 1 complete at once; window 2 only once the stream is quiet
        await client.wait_for(lambda: service.counters["trials.processed"] == 3, timeout=5.0)
        await stop_service(service, transport, task)
    assert service.counters["windows.idle_flushed"] == 1
    assert service.metrics()["join.joined"] == 3  # the last window was joined to its label


@pytest.mark.parametrize("value", [-1.0, 3601.0, float("nan")])
def test_idle_flush_range(value):
    with pytest.raises(ConfigError, match=r"ingest.idle_flush_s"):
        run_config_from_dict({"ingest": {"idle_flush_s": value}})
    assert run_config_from_dict({"ingest": {"idle_flush_s": 0}}).ingest.idle_flush_s == 0
