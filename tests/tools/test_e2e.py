"""End to end over a real Mosquitto: ``delgrad sensor`` -> broker -> ``delgrad run`` -> broker
-> a test subscriber that rebuilds the network from the published parameter stream.

Figures measured on the 2-core development machine are in the test docstrings.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import numpy as np
import pytest

from delgrad.protocols import Predictions, ReplicaStats
from delgrad.tools import Mosquitto

from ._e2e_helpers import (  # noqa: F401  (fixtures)
    Processes,
    RuntimeProcess,
    Subscriber,
    processes_fixture,
    replica_test_accuracy,
    run_sensor,
)

pytestmark = [pytest.mark.broker]

#: Startup (imports, numba cache load / compile) may take long on a cold, shared machine.
START_TIMEOUT_S = 180.0


async def _started(sub: Subscriber, rt: RuntimeProcess) -> None:
    async def check() -> None:
        while "birth" not in sub.statuses() or sub.replica.seq is None:
            rt.assert_running()
            await asyncio.sleep(0.1)

    await asyncio.wait_for(check(), START_TIMEOUT_S)


#: (trials, learning-rate scale set by the ``lr`` command before them): the online learner
#: has no schedule of its own and, at a constant rate, its test accuracy swings by
#: +-5 points from step to step (measured: 84.6 - 96.3 % after 300k trials), so the
#: operator anneals it, as the offline recipe does (lr_gamma).
SCHEDULE = ((150_000, None), (100_000, 0.3), (50_000, 0.1))


@pytest.mark.slow
async def test_ideal_emulator_learns_yinyang_to_95_percent_within_300k_trials(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    """Recipe yinyang_H30_WS on emulator-ideal, 300,000 streamed trials at 25,000/s.

    The subscriber's replica (snapshot + int8 deltas) is evaluated on the Yin-Yang
    test split while the stream runs and at the end. Measured (2 cores): 96.7 % after
    300k trials in 15 s, four runs (first >= 95 % after 42k - 54k trials).
    """
    device = "e2e-ideal"
    total = sum(count for count, _ in SCHEDULE)
    rate, batch = 25_000, 2_000  # batch: the sensor's link sustains ~20 messages/s
    # one step per 150 labelled trials, the recipe's offline batch size (300 measured
    # worse in an in-process simulation: 94.5 - 97.4 % against 96.3 - 98.0 % final)
    rt = RuntimeProcess(processes, mosquitto.url, device, learning={"step_every": 150})
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        curve: list[tuple[int, float]] = []  # (trials processed, test accuracy)
        started = time.monotonic()

        async def evaluate() -> None:
            while True:
                await asyncio.sleep(0.25)
                if not sub.replica.needs_resync and sub.replica.snapshot is not None:
                    done = int(sub.last_metrics().get("trials.processed", 0))
                    acc = replica_test_accuracy(sub.replica.layers(), sub.replica.snapshot)
                    curve.append((done, acc))

        evaluator = asyncio.create_task(evaluate())
        try:
            sent = 0
            for k, (count, scale) in enumerate(SCHEDULE):
                if scale is not None:
                    reply = await sub.command("lr", {"scale": scale})
                    assert reply.ok, reply.error
                await run_sensor(
                    processes,
                    mosquitto.url,
                    device,
                    "--rate", rate, "--batch", batch, "--count", count,
                    "--first-trial-id", sent, "--seed", k,
                    timeout=120,
                )  # fmt: skip
                sent += count
                # every streamed trial arrives and is predicted (no overload)
                await sub.wait_for(
                    lambda n=sent: sub.last_metrics().get("trials.processed", 0) >= n,
                    timeout=120,
                    what=f"{sent} trials processed",
                )
            elapsed_s = time.monotonic() - started
            # the last delta of the stream reaches the replica
            final_seq = int(sub.last_metrics()["param_seq"])
            await sub.wait_for(
                lambda: (sub.replica.seq or 0) >= final_seq, 30, "the last parameter update"
            )
        finally:
            evaluator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await evaluator  # re-raises an error of the evaluation itself
        final = replica_test_accuracy(sub.replica.layers(), sub.replica.snapshot)
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()
        await sub.wait_for(lambda: "dead" in sub.statuses(), 10, "the dead status")
        m = sub.last_metrics()  # the final metrics, published before "dead"

    first = next(((n, a) for n, a in curve if a >= 0.95), None)
    print(
        f"\nideal: test accuracy {100 * final:.1f} % after {total} trials in {elapsed_s:.1f} s "
        f"(prequential {100 * m['accuracy']:.1f} %); first >= 95 % (trials, acc): {first}; "
        "curve: " + ", ".join(f"{n // 1000}k:{100 * a:.1f}" for n, a in curve[::4])
    )
    peak = max(a for _, a in curve)
    assert peak >= 0.95, f"test accuracy peaked at {peak:.3f} within {total} trials"
    # and it stays there: after annealing the replica hovers at 94.7 - 96.5 % (measured)
    assert final >= 0.95, f"test accuracy {final:.3f} after {total} trials"
    assert m["accuracy"] >= 0.93  # the runtime's own prequential view agrees
    assert m["trials.received"] == total and m.get("dropped.overload", 0) == 0
    assert m["join.joined"] == total and m.get("join.missing_labels", 0) == 0
    assert m["learning.steps"] + m.get("learning.bumps", 0) == total // 150

    # the parameter stream stayed in sync: the birth snapshot at 0, then every delta
    stats: ReplicaStats = sub.replica.stats
    assert sub.replica.seq == m["param_seq"] == stats.applied >= final_seq
    assert stats.gaps == 0 and stats.rejected == 0
    # predictions arrived for the streamed trial ids (a sample), once each, and only those
    predicted = np.concatenate([p.trial_ids for p in sub.of(Predictions)])
    assert len(np.unique(predicted)) == len(predicted)
    assert predicted.min() >= 0 and predicted.max() < total
    sample = np.random.default_rng(0).choice(total, 500, replace=False)
    assert np.isin(sample, predicted).all()
    classes = np.concatenate([p.predicted for p in sub.of(Predictions)])
    assert set(np.unique(classes).tolist()) <= {-1, 0, 1, 2}
    # metrics and status flowed: birth first, dead last, metrics steps never go back
    states = sub.statuses()
    assert states[0] == "birth" and states[-1] == "dead", states
    steps = [mm.step for mm in sub.metrics()]
    assert len(steps) >= 10 and steps == sorted(steps) and steps[-1] > 0


#: bss2 emulator, recipe yinyang_hw_WA: (trials, lr scale before them).
HW_SCHEDULE = ((200_000, None), (200_000, 0.3), (200_000, 0.1))
#: Test accuracy on the emulated chip this test asserts. At 10,000 trials/s the
#: learner (every step re-observes its trials on the emulated chip) keeps up with
#: most of them on this 2-core host (83 % in one run), and ``when_behind = "sample"``
#: learns from that share while every trial is predicted. Measured 2026-12-06:
#: 87.9, 88.7, 89.2 and 89.9 % (with every trial learned, 600k: 91.1 and 92.0 %; at
#: 6,000 trials/s, 360k all learned, 88.5 % in both of two runs).
HW_MIN_ACCURACY = 0.87


@pytest.mark.slow
async def test_bss2_emulator_learns_yinyang_hardware_recipe(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    """Recipe yinyang_hw_WA (20-30-3, axonal delays, inputs repeated 5 times) with the
    chip in the loop on the bss2 emulator; 600,000 training trials, then the runtime is
    switched to ``infer`` by command and the test split (1000 points, 5 passes) is
    streamed: the runtime's own predictions on the noisy chip are the measure (its
    prequential window then holds test trials only).

    The sensor is faster than the learner: with ``when_behind = "sample"`` no trial
    is shed and the share learned is in ``learning.sampled_fraction``.
    """
    device = "e2e-bss2"
    rate, batch = 10_000, 1_000
    rt = RuntimeProcess(
        processes,
        mosquitto.url,
        device,
        driver={"name": "emulator-bss2"},
        model={"recipe": "yinyang_hw_WA"},
        learning={"step_every": 40, "when_behind": "sample"},
    )
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await _started(sub, rt)
        started = time.monotonic()
        sent = 0
        for k, (count, scale) in enumerate(HW_SCHEDULE):
            if scale is not None:
                assert (await sub.command("lr", {"scale": scale})).ok
            await run_sensor(
                processes,
                mosquitto.url,
                device,
                "--rate", rate, "--batch", batch, "--count", count, "--input-repeat", 5,
                "--first-trial-id", sent, "--seed", k,
                timeout=300,
            )  # fmt: skip
            sent += count
            await sub.wait_for(
                lambda n=sent: (
                    sub.last_metrics().get("trials.processed", 0)
                    + sub.last_metrics().get("dropped.overload", 0)
                    >= n
                ),
                timeout=120,
                what=f"{sent} trials processed",
            )
            print(f"\nbss2: {sent} trials, prequential {sub.last_metrics().get('accuracy')}")
        await sub.wait_quiet("learning.steps", 1.5, timeout=60)  # the last steps are done
        train_s = time.monotonic() - started
        trained = sub.last_metrics()
        reply = await sub.command("mode", {"mode": "infer"})
        assert reply.ok and reply.result["mode"] == "infer"
        steps = reply.result["steps"]
        n_test = 5_000
        await run_sensor(
            processes,
            mosquitto.url,
            device,
            "--rate", rate, "--batch", batch, "--count", n_test, "--input-repeat", 5,
            "--split", "test", "--first-trial-id", 10_000_000, "--seed", 7,
            timeout=120,
        )  # fmt: skip
        await sub.wait_for(
            lambda: sub.last_metrics().get("join.joined", 0) >= trained["join.joined"] + n_test,
            timeout=60,
            what="the test trials joined",
        )
        m = sub.last_metrics()
        # count the runtime's predictions of the test trials against the test labels
        from delgrad.runtime import yinyang_split
        from delgrad.tools._sensor import YinYangSource

        expected = YinYangSource("test", 5, 7, first_trial_id=10_000_000).take(n_test)
        truth = dict(zip(expected.trial_ids.tolist(), expected.labels.tolist(), strict=True))
        correct = seen = 0
        for p in sub.of(Predictions):
            for tid, cls in zip(p.trial_ids.tolist(), p.predicted.tolist(), strict=True):
                if tid in truth:
                    seen += 1
                    correct += int(cls == truth[tid])
        assert len(yinyang_split("test")[1]) == 1000
        rt.signal(signal.SIGTERM)
        assert await rt.wait_exit(60) == 0, rt.output()

    test_acc = correct / seen
    print(
        f"\nbss2: chip test accuracy {100 * test_acc:.1f} % ({seen} predictions), runtime "
        f"window {100 * m['accuracy']:.1f} %, after {sent} trials in {train_s:.0f} s "
        f"(prequential at the end of training {100 * trained['accuracy']:.1f} %, "
        f"dropped.overload {trained.get('dropped.overload', 0):.0f}, learned "
        f"{100 * trained['learning.sampled_fraction']:.0f} % of the trials)"
    )
    assert trained.get("dropped.overload", 0) == 0  # inference kept up with the sensor
    assert 0.2 < trained["learning.sampled_fraction"] <= 1.0
    assert seen == n_test
    assert m["learning.steps"] == steps  # infer mode: no learning
    assert abs(m["accuracy"] - test_acc) < 0.02  # the window holds test trials only
    assert test_acc >= HW_MIN_ACCURACY, f"chip test accuracy {test_acc:.3f}"
