"""The event digits live through a DV network server against the same files (issue 19,
acceptance; figures in docs/results.md, "Live through a DV network server").

For each seed, two arms on a fresh Mosquitto and ``delgrad run`` (the ``ev.toml`` of
docs/sensors.md, ``[model] seed``, ``step_every = 10``, ``lr_scale = 0.5``): one online
pass over the 1,257 training digits, ``mode infer``, the 360 test digits; the held-out
accuracy is the service's ``scored.correct`` / ``scored.trials`` over the test digits.

* file: ``delgrad sensor --source ev/digits_train.aedat4 --speed S --chunk-ms 100``, then
  the test file with the ``--offset-us`` it printed (docs/results.md);
* live: the same recordings written by a dv-processing ``NetworkWriter`` in this
  process, paced at S times real time in 20 ms packets, the test digits on the
  training digits' clock right after them (as a camera's clock runs on), read by one
  ``delgrad sensor --source tcp://127.0.0.1:PORT --labels ... --chunk-ms 20``.

    PATH=$PATH:/usr/sbin .venv/bin/python tests/tools/bench_dv_live.py [SEEDS [SPEED [LIMIT]]]

Not a test (no ``test_`` prefix); needs mosquitto, dv-processing, faery, scikit-learn.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from delgrad.runtime.sources import EventRecording, LabelSpans, read_events, write_label_file
from delgrad.tools import Mosquitto, free_port
from delgrad.tools._stream import window_grid
from tests.tools._dv_server import DvServer, event_packets
from tests.tools._e2e_helpers import DELGRAD, Processes, RuntimeProcess, Subscriber

SEEDS = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0").split(",")]
SPEED = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
LIMIT = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # first N digits per split (0: all)
US_PER_TAU = 100_000.0
MAP = ["--roi", "2,2,32,32", "--pool", "4", "--polarity", "split"]
WINDOWS = ["--window-length", "3", "--us-per-tau", str(US_PER_TAU)]
PACKET_US = 20_000.0
W = Path(tempfile.mkdtemp(prefix="delgrad-dvlive-"))


def _grid_origin(rec: EventRecording) -> float:
    return window_grid(rec, US_PER_TAU, window_length=3.0).origin_us


async def _scored(sub: Subscriber, at_least: float, quiet_s: float = 3.0) -> dict[str, float]:
    """Wait until ``scored.trials`` reached ``at_least`` (or stopped moving); the metrics."""
    deadline = time.monotonic() + 1800
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        now = sub.last_metrics().get("scored.trials", 0.0)
        if now != last:
            last, since = now, time.monotonic()
        if now >= at_least and time.monotonic() - since > 1.0:
            break
        if now > 0 and time.monotonic() - since > max(quiet_s, 30.0):
            break  # fewer than asked (a window lost): measured as it is
        await asyncio.sleep(0.2)
    return sub.last_metrics()


def _cmd(url: str, *args: str) -> None:
    subprocess.run([*DELGRAD, "cmd", "--broker", url, "digits", *args], check=True)


async def _sensor_to_end(processes: Processes, url: str, *args: str | float) -> str:
    argv = [*DELGRAD, "sensor", "--broker", url, "--device", "digits", *map(str, args)]
    proc, log = processes.spawn(argv, f"sensor-{time.monotonic_ns()}")
    while proc.poll() is None:
        await asyncio.sleep(0.2)
    text = log.read_text()
    assert proc.returncode == 0, text
    return text.strip().splitlines()[-1]


async def _arm(arm: str, seed: int, ev: Path) -> dict[str, object]:
    work = W / f"{arm}-{seed}"
    work.mkdir()
    processes = Processes(work)
    broker = Mosquitto(work)
    broker.start()
    server: DvServer | None = None
    try:
        rt = RuntimeProcess(
            processes,
            broker.url,
            "digits",
            model={"recipe": "digits_events_H100_W", "seed": seed},
            ingest={"us_per_tau": US_PER_TAU, "window_length": 3.0},
            learning={"step_every": 10, "lr_scale": 0.5},
            publish={"metrics_window": 360},
        )
        async with Subscriber(broker.port, "digits") as sub:
            rt.start()
            await sub.wait_for(lambda: bool(sub.metrics()), 120, "the service's metrics")
            train = read_events(ev / "digits_train.aedat4")
            test = read_events(ev / "digits_test.aedat4")
            assert train.labels is not None and test.labels is not None
            lines: list[str] = []
            if arm == "file":
                pace = ["--speed", SPEED, "--chunk-ms", 100]
                train_args = ["--source", ev / "digits_train.aedat4", *MAP, *WINDOWS, *pace]
                lines.append(await _sensor_to_end(processes, broker.url, *train_args))
                offset = re.findall(r"--offset-us (\d+)", lines[-1])[-1]
                before = await _scored(sub, len(train.labels) - 1)
                _cmd(broker.url, "mode", "infer")
                test_args = ["--source", ev / "digits_test.aedat4", *MAP, *WINDOWS, *pace]
                test_args += ["--offset-us", offset]
                lines.append(await _sensor_to_end(processes, broker.url, *test_args))
            else:
                span = window_grid(train, US_PER_TAU, window_length=3.0)
                shift = span.n_windows * span.period_us + _grid_origin(train) - _grid_origin(test)
                spans = LabelSpans(
                    np.concatenate([train.labels.start_us, test.labels.start_us + shift]),
                    np.concatenate([train.labels.end_us, test.labels.end_us + shift]),
                    np.concatenate([train.labels.label, test.labels.label]),
                )
                labels = write_label_file(work / "camera-labels.csv", spans)
                server = DvServer(free_port(), train.width, train.height)
                argv = [
                    *DELGRAD, "sensor", "--broker", broker.url, "--device", "digits",
                    "--source", f"tcp://127.0.0.1:{server.port}", *MAP, *WINDOWS,
                    "--labels", str(labels), "--chunk-ms", "20",
                ]  # fmt: skip
                proc, log = processes.spawn(argv, "sensor-live")
                while "live to device" not in log.read_text():
                    assert proc.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(server.wait_client)
                await asyncio.to_thread(_replay, server, train, 0.0)
                before = await _scored(sub, len(train.labels) - 1)
                _cmd(broker.url, "mode", "infer")
                await asyncio.to_thread(_replay, server, test, shift)
            after = await _scored(sub, before["scored.trials"] + len(test.labels))
            if arm == "live":
                proc.send_signal(signal.SIGINT)
                while proc.poll() is None:
                    await asyncio.sleep(0.1)
                lines.append(log.read_text().strip().splitlines()[-1])
            trials = after["scored.trials"] - before["scored.trials"]
            correct = after["scored.correct"] - before["scored.correct"]
            return {
                "arm": arm,
                "seed": seed,
                "test_accuracy": round(100 * correct / trials, 2),
                "test_scored": trials,
                "train_scored": before["scored.trials"],
                "events_received": after.get("events.received"),
                "events_late": after.get("events.late", 0.0),
                "written": None if server is None else server.written,
                "sensor": lines,
            }
    finally:
        processes.cleanup()
        if server is not None:
            server.close()
        broker.stop()


def _replay(server: DvServer, rec: EventRecording, shift_us: float) -> None:
    """Write ``rec`` in ``PACKET_US`` packets at SPEED times real time."""
    t = rec.t_us + shift_us
    bounds = np.searchsorted(t, np.arange(t[0] + PACKET_US, t[-1] + PACKET_US, PACKET_US))
    packets = event_packets(t.astype(np.int64), rec.x, rec.y, rec.p, bounds)
    start = time.monotonic()
    for pk in packets:
        due = (float(pk[0][-1]) - t[0]) / 1e6 / SPEED
        time.sleep(max(0.0, start + due - time.monotonic()))
        server.write([pk])
    server.drain()


async def main() -> None:
    ev = W / "ev"
    subprocess.run(
        [*DELGRAD, "digits", "events", "--out", str(ev), "--limit", str(LIMIT)], check=True
    )
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# speed {SPEED:g}, seeds {SEEDS}; uptime before: {out}", flush=True)
    for seed in SEEDS:
        for arm in ("file", "live"):
            result = await _arm(arm, seed, ev)
            print(json.dumps(result), flush=True)
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# uptime after: {out}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
