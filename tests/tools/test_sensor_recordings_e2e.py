"""Event recordings end to end: ``delgrad sensor --source FILE`` (structured array,
AEDAT4, ROS 2 bag) -> Mosquitto -> ``delgrad run``, which cuts the continuous stream
into windows, predicts every window, joins the windows' labels and learns."""

from __future__ import annotations

import re

import numpy as np
import pytest

from delgrad.protocols import Metrics, Predictions
from delgrad.runtime import digits_split
from delgrad.runtime.sources import SaccadeSensor, write_aedat4, write_label_file, write_rosbag

from ._e2e_helpers import (  # noqa: F401  (fixtures)
    RuntimeProcess,
    Subscriber,
    processes_fixture,
    run_sensor,
    wait_for,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]
pytest.importorskip("sklearn")
pytest.importorskip("faery")
pytest.importorskip("rosbags")

SACCADE_US = 6_000.0  # one digit = 18 ms of recording = one 3 tau_s window
N_DIGITS = 40
MAPPING = ["--roi", "2,2,32,32", "--pool", "4", "--polarity", "split"]
WINDOWS = ["--window-length", "3", "--us-per-tau", str(SACCADE_US)]


def _recordings(folder):
    features, labels = digits_split("train")
    rec = SaccadeSensor(saccade_us=SACCADE_US).record(
        features[:N_DIGITS].reshape(-1, 8, 8), labels[:N_DIGITS]
    )
    arr = np.zeros(len(rec), dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    arr["x"], arr["y"], arr["t"], arr["p"] = rec.x, rec.y, rec.t_us.astype(np.int64), rec.p
    np.save(folder / "digits.npy", arr)
    paths = [
        folder / "digits.npy",
        write_aedat4(folder / "digits.aedat4", rec),
        write_rosbag(folder / "digits_bag", rec),
    ]
    for path in paths:
        write_label_file(path.with_name(path.name + ".labels.csv"), rec.labels)
    return paths, labels[:N_DIGITS]


async def test_npy_aedat4_and_ros2_bag_stream_into_delgrad_run(mosquitto, processes, tmp_path):
    paths, _ = _recordings(tmp_path)
    device = "events"
    rt = RuntimeProcess(
        processes,
        mosquitto.url,
        device,
        model={"recipe": "digits_events_H100_W"},
        ingest={"us_per_tau": SACCADE_US, "window_length": 3.0},
        learning={"step_every": 10},
    )
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await wait_for(lambda: sub.of(Metrics), 60, "the service's first metrics")
        offset = 0
        for k, path in enumerate(paths):
            out = await run_sensor(
                processes,
                mosquitto.url,
                device,
                "--source",
                path,
                *MAPPING,
                *WINDOWS,
                "--speed",
                "inf",
                "--offset-us",
                offset,
                timeout=60,
            )
            assert f"{N_DIGITS} window labels" in out.splitlines()[-1], out
            # (the sensors' log accumulates: the last line is this stream's)
            offset = int(re.findall(r"--offset-us (\d+)", out)[-1])
            first = k * N_DIGITS
            # Every window of this recording but the last (closed by the next stream)
            # is predicted under its window id.
            wanted = set(range(first, first + N_DIGITS - 1))

            def predicted() -> set[int]:
                ids = [m.trial_ids for m in sub.of(Predictions)]
                return set(np.concatenate(ids).tolist()) if ids else set()

            await wait_for(lambda w=wanted: w <= predicted(), 60, f"predictions of {path.name}")
        rt.assert_running()

        def joined() -> float:
            metrics = sub.of(Metrics)
            return metrics[-1].values.get("labels.received", 0.0) if metrics else 0.0

        await wait_for(lambda: joined() >= 3 * N_DIGITS, 30, "all labels")
        values = sub.of(Metrics)[-1].values
        assert values.get("refused.channel_outside", 0.0) == 0.0
        assert values["events.received"] > 0


async def test_events_outside_the_inputs_are_refused_counted_and_said(
    mosquitto, processes, tmp_path
):
    paths, _ = _recordings(tmp_path)
    device = "wrongmap"
    rt = RuntimeProcess(
        processes,
        mosquitto.url,
        device,
        model={"recipe": "digits_events_H100_W"},
        ingest={"us_per_tau": SACCADE_US, "window_length": 3.0},
    )
    async with Subscriber(mosquitto.port, device) as sub:
        rt.start()
        await wait_for(lambda: sub.of(Metrics), 60, "the service's first metrics")
        # No pooling: 36 x 36 pixels = 1296 channels for a 128-input network.
        await run_sensor(
            processes,
            mosquitto.url,
            device,
            "--source",
            paths[0],
            *WINDOWS,
            "--speed",
            "inf",
            timeout=60,
        )

        def refused() -> float:
            metrics = sub.of(Metrics)
            return metrics[-1].values.get("refused.channel_outside", 0.0) if metrics else 0.0

        await wait_for(lambda: refused() > 0, 30, "refused events in the metrics")
    assert "refusing events on channels >= 128" in rt.output()
