"""Continual learning in the service (issue 18): replay in steps and checkpoints, the
degradation alarm end to end, the learning-rate boost, sparse labels, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import Alarm, InProcessBus, Metrics, Status
from delgrad.runtime.service import Service
from delgrad.tools._run_app import build_online
from delgrad.tools._sensor import TrialBatch, YinYangSource, stream_trials

from .test_service import DEVICE, Client, make_config, start_service, stop_service


class WrongLabels:
    """Yin-Yang trials whose labels are shifted by one class: the world changed."""

    time_unit = "tau_s"

    def __init__(self, first_trial_id: int) -> None:
        self._inner = YinYangSource("train", seed=5, first_trial_id=first_trial_id)

    def take(self, n: int) -> TrialBatch:
        batch = self._inner.take(n)
        assert batch.labels is not None
        return batch._replace(labels=(batch.labels + 1) % 3)


async def _stream(client, source, count, **kw):
    return await stream_trials(
        client.publisher, DEVICE, source, rate=float("inf"), batch=100, count=count, **kw
    )


async def test_replay_is_bounded_learned_from_and_kept_in_checkpoints(tmp_path):
    bound_mb = 0.05  # 1,310 trials of 4 inputs
    config = make_config(tmp_path, replay={"max_mb": bound_mb, "fraction": 0.5})
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _stream(client, YinYangSource("train", seed=1), 4000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 4000)
        await client.wait_for(lambda: service.metrics().get("replay.trials", 0) >= 1310)
        m = service.metrics()
        refreshed = m["learning.refreshed_trials"]
        await stop_service(service, transport, task)  # the final checkpoint
    assert m["replay.trials"] == m["replay.capacity_trials"] == 1310
    assert m["replay.bytes"] <= bound_mb * (1 << 20)
    # replayed trials are observed again before their step: about one per new trial
    assert refreshed >= 0.5 * 4000
    # a step holds new and replayed trials: about twice the steps of the new ones alone
    assert m["learning.steps"] + m["learning.bumps"] >= 1.6 * 4000 / 50
    held = service.replay.state_arrays() if service.replay else {}
    restarted = Service(config, bus.transport("again"), build_online(config))
    assert restarted.load_checkpoint() and restarted.replay is not None
    for key, value in restarted.replay.state_arrays().items():
        np.testing.assert_array_equal(value, held[key])


async def test_the_degradation_alarm_fires_and_boosts_the_learning_rate():
    config = make_config(
        None,
        degradation={"window": 500, "reference": 2000},
        learning={"lr_policy": "boost", "lr_boost": 3.0},
    )
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _stream(client, YinYangSource("train", seed=1), 6000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 6000)
        assert service.metrics()["health.degraded"] == 0.0
        assert service.online.lr_scale == 1.0
        await _stream(client, WrongLabels(first_trial_id=6000), 1000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 7000)
        await client.wait_for(lambda: bool(client.of(Alarm)), 10)
        await client.wait_for(lambda: service.metrics()["health.degraded"] == 1.0, 10)
        await client.wait_for(lambda: any("degraded" in s.detail for s in client.of(Status)), 10)
        boosted = service.online.lr_scale
        await stop_service(service, transport, task)
    alarm = client.of(Alarm)[0]
    assert alarm.name == "degraded" and alarm.active
    assert alarm.value < alarm.reference - 0.05 and "sliding accuracy" in alarm.detail
    assert boosted == 3.0
    published = [t for t, m in client.messages if isinstance(m, Alarm)]
    assert published == [f"delgrad/v1/{DEVICE}/alarm"]


async def test_sparse_labels_learn_without_false_warnings():
    config = make_config(None, publish={"metrics_period_s": 0.2})
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _stream(client, YinYangSource("train", seed=2), 20_000, label_fraction=0.1)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 20_000)
        await client.wait_for(lambda: len(client.of(Metrics)) >= 3)
        m = service.metrics()
        await stop_service(service, transport, task)
    assert 1500 <= m["join.joined"] <= 2500  # about a tenth labelled
    assert m["learning.steps"] + m["learning.bumps"] >= 25
    assert m["health.warnings"] == 0.0, {k: v for k, v in m.items() if k.startswith("health")}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"replay": {"max_mb": 0.001}}, r"holds 26 trials of 4 inputs \(40 bytes each\)"),
        ({"replay": {"max_mb": 1.0}, "learning": {"refresh": False}}, "needs learning.refresh"),
        ({"replay": {"fraction": 0.95}}, r"replay.fraction must be in 0 \.\. 0\.9"),
        ({"replay": {"policy": "lifo"}}, "policy"),
        ({"replay": {"size": 3}}, "unknown field"),
        ({"degradation": {"window": 150}}, "multiple of 100"),
        ({"degradation": {"drop": 0}}, r"degradation.drop must be in \(0, 1\)"),
        ({"learning": {"lr_boost": 0.5}}, "lr_boost must be in 1 .. 100"),
        ({"learning": {"lr_policy": "wild"}}, "lr_policy"),
    ],
)
def test_bad_continual_settings_are_refused_in_one_line(sections, message):
    with pytest.raises(ConfigError, match=message) as info:
        config = make_config(None, **sections)
        Service(config, InProcessBus().transport("x"), build_online(config))
    assert "\n" not in str(info.value)
