"""Continual learning in the service (issue 18): replay in steps and checkpoints, the
degradation alarm end to end, the learning-rate boost, sparse labels, bad settings."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import Alarm, InProcessBus, Labels, Metrics, SpikeBatch, Status, topic
from delgrad.runtime.service import Service
from delgrad.runtime.service._continual import DegradationState, LrPolicy
from delgrad.runtime.service._degradation import DegradationDetector
from delgrad.runtime.service._run_config import LearningSection
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
    # the learner may be up to two jobs behind the driver until the drain at stop
    steps = service.counters["learning.steps"] + service.counters["learning.bumps"]
    assert m["replay.trials"] == m["replay.capacity_trials"] == 1310
    assert m["replay.bytes"] <= bound_mb * (1 << 20)
    # replayed trials are observed again before their step: about one per new trial
    assert refreshed >= 0.5 * 4000
    # a step holds new and replayed trials: about twice the steps of the new ones alone
    assert steps >= 1.6 * 4000 / 50
    held = service.replay.state_arrays() if service.replay else {}
    restarted = Service(config, bus.transport("again"), build_online(config))
    assert restarted.load_checkpoint() and restarted.replay is not None
    for key, value in restarted.replay.state_arrays().items():
        np.testing.assert_array_equal(value, held[key])


def _boosting(tmp_path=None):
    """Short windows and the learning-rate boost, for a fall within seconds."""
    return make_config(
        tmp_path,
        degradation={"window": 500, "reference": 2000},
        learning={"lr_policy": "boost", "lr_boost": 3.0},
    )


async def _learn_then_fall(client, service):
    """6,000 trials learned, then 1,000 with shifted labels: until the alarm fires."""
    await _stream(client, YinYangSource("train", seed=1), 6000)
    await client.wait_for(lambda: service.counters["trials.processed"] >= 6000)
    assert service.metrics()["health.degraded"] == 0.0
    assert service.online.lr_scale == 1.0
    await _stream(client, WrongLabels(first_trial_id=6000), 1000)
    await client.wait_for(lambda: service.counters["trials.processed"] >= 7000)
    await client.wait_for(lambda: any(a.active for a in client.of(Alarm)), 10)


async def test_the_degradation_alarm_fires_boosts_the_learning_rate_and_clears():
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, _boosting())
        await _learn_then_fall(client, service)
        await client.wait_for(lambda: service.metrics()["health.degraded"] == 1.0, 10)
        await client.wait_for(lambda: any("degraded" in s.detail for s in client.of(Status)), 10)
        boosted = service.online.lr_scale
        # the world is back: the device relearns and the alarm clears
        await _stream(client, YinYangSource("train", seed=6, first_trial_id=7000), 8000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 15_000)
        await client.wait_for(lambda: len(client.of(Alarm)) >= 3, 10)
        m = service.metrics()
        restored = service.online.lr_scale
        await stop_service(service, transport, task)
    alarms = client.of(Alarm)
    started, fired, cleared = alarms[:3]
    # at start: not degraded, so a retained alarm of an earlier run is replaced
    assert not started.active and started.detail == "started: not judged yet"
    assert fired.name == "degraded" and fired.active
    assert fired.value < fired.reference - 0.05 and "sliding accuracy" in fired.detail
    assert not cleared.active and cleared.value >= cleared.reference - 0.07 / 2  # drop / 2
    assert boosted == 3.0 and restored == 1.0
    assert m["degradation.alarms"] == sum(a.active for a in alarms) >= 1
    published = {t for t, m in client.messages if isinstance(m, Alarm)}
    assert published == {f"delgrad/v1/{DEVICE}/alarm"}


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
        ({"degradation": {"reference": 2_000_000}}, r"multiple of 100 in 100 \.\. 1,000,000"),
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


async def test_sparse_late_labels_on_a_slow_stream_raise_no_warning():
    """A tenth of the trials labelled, each label 6 s late, 20 trials/s of device time
    (a step of 150 labelled trials every 75 s): no health warning at any evaluation,
    every late label joined (the health window is 10 s; the clock is the test's)."""
    now = [0.0]
    config = make_config(None, learning={"step_every": 150})
    bus = InProcessBus()
    seconds, per_second, lag = 400, 20, 3  # batches of 2 s; labels 3 batches late
    source = YinYangSource("train", seed=3)
    held: list[Labels] = []
    warnings: dict[str, float] = {}
    async with Client(bus) as client:
        transport = bus.transport("service")
        await transport.__aenter__()
        service = Service(config, transport, build_online(config), clock=lambda: now[0])
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        sent = labelled = 0
        for _ in range(seconds // 2):
            tb = source.take(2 * per_second)
            await client.publisher.publish(
                topic(DEVICE, "events/in"),
                SpikeBatch(tb.trial_ids, tb.offsets, tb.channels, tb.times, "tau_s"),
            )
            keep = tb.trial_ids % 10 == 0
            held.append(Labels(tb.trial_ids[keep], tb.labels[keep]))
            if len(held) > lag:
                late = held.pop(0)
                await client.publisher.publish(topic(DEVICE, "labels"), late)
                labelled += len(late.trial_ids)
            sent += len(tb.trial_ids)
            await client.wait_for(
                lambda s=sent, n=labelled: (
                    service.counters["trials.processed"] >= s
                    and service.metrics()["join.joined"] >= n
                )
            )
            now[0] += 2.0
            m = service.metrics()
            warnings.update({k: v for k, v in m.items() if k.startswith("health.") and v})
        await stop_service(service, transport, task)
    assert labelled == 10 * (seconds // 2 - lag) * 2 * per_second // 100
    assert m["join.joined"] == labelled and m["join.late_labels"] == 0
    assert m["learning.steps"] >= labelled // 150 - 1
    assert warnings == {}


class _Factor:
    """The learning-rate factor of an online learner, alone."""

    def __init__(self, scale: float = 1.0) -> None:
        self.lr_scale = scale

    def set_lr_scale(self, scale: float) -> None:
        self.lr_scale = scale


def _watch(online, **learning):
    section = LearningSection(**{"lr_policy": "boost", "lr_boost": 4.0, **learning})
    return DegradationState(
        DegradationDetector(window=200, reference=400), LrPolicy(section, online)
    )


def _degrade(state: DegradationState) -> None:
    rng = np.random.default_rng(0)
    assert state.detector is not None
    for accuracy in [0.9] * 6 + [0.3] * 3:
        for change in state.detector.add(rng.random(100) < accuracy, np.zeros(100, bool)):
            state.policy.degraded(change.degraded)
    assert state.detector.degraded


def test_a_boost_goes_on_after_a_restart_while_degraded_and_ends_otherwise():
    online = _Factor(0.5)
    before = _watch(online)
    _degrade(before)
    assert online.lr_scale == 2.0
    saved = before.state_arrays()  # the learner's factor (2.0) is saved with the learner
    # restarted while degraded: the boost goes on, and ends when the alarm clears
    again = _Factor(2.0)
    resumed = _watch(again)
    assert resumed.restore(saved) and resumed.detector.degraded and again.lr_scale == 2.0
    resumed.policy.degraded(False)
    assert again.lr_scale == 0.5
    # restarted with other windows (judged afresh) or the policy constant: it ends now
    afresh, constant = _Factor(2.0), _Factor(2.0)
    assert not DegradationState(DegradationDetector(), LrPolicy(LearningSection(), afresh)).restore(
        saved
    )
    assert _watch(constant, lr_policy="constant").restore(saved)
    assert afresh.lr_scale == constant.lr_scale == 0.5
    # an lr command had changed the factor: the operator's value stays
    operator = _Factor(0.7)
    _watch(operator, lr_policy="constant").restore(saved)
    assert operator.lr_scale == 0.7
    # a checkpoint from before these existed: nothing to restore, nothing changed
    plain = _Factor(2.0)
    assert not _watch(plain).restore({}) and plain.lr_scale == 2.0


@pytest.mark.parametrize("fraction", [0.2, 0.75])
async def test_the_replay_fraction_of_each_step(fraction):
    config = make_config(None, replay={"max_mb": 1.0, "fraction": fraction})
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _stream(client, YinYangSource("train", seed=1), 3000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 3000)
        await stop_service(service, transport, task)
    replayed = service.counters["replay.replayed_trials"]
    ratio = fraction / (1 - fraction)  # replayed per new labelled trial
    # all but the first batch (learned before anything was held) bring their share
    assert ratio * (3000 - 600) <= replayed <= ratio * 3000 + 1


async def test_checkpoints_load_with_and_without_a_replay_buffer(tmp_path):
    plain = make_config(tmp_path)
    replaying = make_config(tmp_path, replay={"max_mb": 0.05})
    bus = InProcessBus()
    async with Client(bus) as client:
        for config, first_id in ((plain, 0), (replaying, 1000), (plain, 2000)):
            service, transport, task = await start_service(bus, config)
            assert service.counters["trials.processed"] == first_id  # the checkpoint loaded
            if service.replay is not None:
                assert service.replay.size == 0  # none in the checkpoint: starts empty
            source = YinYangSource("train", seed=1, first_trial_id=first_id)
            await _stream(client, source, 1000)
            await client.wait_for(
                lambda s=service, n=first_id: s.counters["trials.processed"] >= n + 1000
            )
            await stop_service(service, transport, task)
    assert (tmp_path / "service_checkpoint.1.npz").is_file()
    with np.load(tmp_path / "service_checkpoint.1.npz") as saved:  # the replaying run's
        assert int(saved["replay.labels"].size) == 1000


async def test_a_restart_while_degraded_keeps_the_alarm_and_the_boost(tmp_path):
    config = _boosting(tmp_path)
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _learn_then_fall(client, service)
        await stop_service(service, transport, task)  # the final checkpoint, degraded
        reference = service._learning.detector.last.reference
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        assert service.online.lr_scale == 3.0
        # the retained alarm of the first run, then this start's
        await client.wait_for(lambda: len(client.of(Alarm)) >= 2, 10)
        retained, started = client.of(Alarm)[:2]
        assert retained.active and retained.detail.startswith("sliding accuracy")
        assert started.active and started.detail.startswith("started degraded: sliding accuracy")
        assert started.reference == reference
        await client.wait_for(lambda: service.metrics()["health.degraded"] == 1.0, 10)
        await _stream(client, YinYangSource("train", seed=6, first_trial_id=7000), 8000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 15_000)
        await client.wait_for(lambda: not client.of(Alarm)[-1].active, 10)
        assert service.online.lr_scale == 1.0
        # the one before the restart, and any since
        fired_since = sum(a.active for a in client.of(Alarm)[2:])
        assert service.counters["degradation.alarms"] == 1 + fired_since
        await stop_service(service, transport, task)


async def test_with_the_detector_off_a_start_still_replaces_a_retained_alarm():
    config = make_config(None, degradation={"enabled": False})
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await client.wait_for(lambda: bool(client.of(Alarm)), 10)
        m = service.metrics()
        await stop_service(service, transport, task)
    (alarm,) = client.of(Alarm)
    assert not alarm.active and alarm.detail == "started: the degradation detector is off"
    assert m["health.degraded"] == 0.0 and not any(k.startswith("degradation.") for k in m)


async def test_a_checkpoint_with_replay_and_detector_state_fits_delgrad_run_at_restart(tmp_path):
    """``delgrad run`` checks a checkpoint against the configuration before resuming: the
    service's own state (replay buffer, detector windows) varies in shape and must not
    make it refuse (it did: every SIGKILL restart ended with exit 2)."""
    from delgrad.tools._cmd_run import checkpoint_mismatch

    config = make_config(tmp_path, replay={"max_mb": 0.05})
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        await _stream(client, YinYangSource("train", seed=1), 3000)
        await client.wait_for(lambda: service.counters["trials.processed"] >= 3000)
        await stop_service(service, transport, task)  # the final checkpoint
    assert checkpoint_mismatch(config) is None
    other = make_config(tmp_path, model={"recipe": "yinyang_H30_WA"})
    assert "does not fit" in (checkpoint_mismatch(other) or "")
