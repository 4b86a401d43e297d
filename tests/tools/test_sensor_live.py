"""A live iniVation event stream: ``delgrad sensor --source tcp://HOST:PORT`` against a
real dv-processing ``NetworkWriter`` on loopback (and ``--source camera`` refused
without a camera), through the real entry point and Mosquitto."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from delgrad.protocols import Labels, SensorEvents
from delgrad.runtime import digits_split
from delgrad.runtime.sources import EventRecording, PixelMapping, SaccadeSensor, write_label_file
from delgrad.tools import free_port
from delgrad.tools._cli import main
from delgrad.tools._live import LiveWindows
from delgrad.tools._stream import plan_stream

from ._dv_server import DvServer, event_packets, save_packets
from ._e2e_helpers import (  # noqa: F401  (fixtures)
    Processes,
    Subscriber,
    processes_fixture,
    sensor_args,
)

dv = pytest.importorskip("dv_processing")

SACCADE_US = 6_000.0
MAP = ["--roi", "2,2,32,32", "--pool", "4", "--polarity", "split"]
WINDOWS = ["--window-length", "3", "--us-per-tau", str(SACCADE_US)]


def _digits(n: int, t0_us: float = 0.0) -> EventRecording:
    """``n`` event digits (three 6 ms saccades each), labelled, from ``t0_us`` on."""
    features, labels = digits_split("train")
    rec = SaccadeSensor(saccade_us=SACCADE_US).record(features[:n].reshape(-1, 8, 8), labels[:n])
    spans = rec.labels
    assert spans is not None
    return EventRecording(
        rec.t_us + t0_us, rec.x, rec.y, rec.p, rec.width, rec.height, spans.shifted(t0_us)
    )


def _packets(rec: EventRecording, seed: int) -> list[tuple[np.ndarray, ...]]:
    """The events in packets of random sizes (1 .. 400 events)."""
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(rng.integers(1, 400, size=len(rec)))
    bounds = bounds[bounds < len(rec)]
    return event_packets(rec.t_us.astype(np.int64), rec.x, rec.y, rec.p, bounds)


def _mapping(rec: EventRecording) -> PixelMapping:
    return PixelMapping(
        rec.width, rec.height, roi=(2, 2, 32, 32), pool=(4, 4), polarity="split",
        us_per_tau=SACCADE_US,
    )  # fmt: skip


def _received(sub: Subscriber) -> tuple[np.ndarray, np.ndarray]:
    msgs = sub.of(SensorEvents)
    if not msgs:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate([m.channels for m in msgs]), np.concatenate([m.times for m in msgs])


async def _line(sub: Subscriber, log: Path, text: str) -> None:
    await sub.wait_for(lambda: text in log.read_text(), 30, f"{text!r} in {log.name}")


async def _stop(proc, log: Path) -> str:
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the sensor did not stop after SIGINT"
        await asyncio.sleep(0.05)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    return text


# ---- pure: live batches give the file's stream ------------------------------------------


def test_live_batches_give_the_stream_of_the_file() -> None:
    rec = _digits(12)
    plan = plan_stream(rec, _mapping(rec), window_length=3.0)
    windows = LiveWindows(_mapping(rec), rec.labels, window_length=3.0, offset_us=0.0)
    chans, times, ids, labels = [], [], [], []
    for t, x, y, p in _packets(rec, seed=1):
        c, w = windows.events(EventRecording(t, x, y, p, rec.width, rec.height))
        chans.append(c)
        times.append(w)
        msg = windows.due_labels()
        if msg is not None:
            # a window's label goes once the stream has passed its end
            assert msg.trial_ids.max() * plan.period_us + 3 * SACCADE_US <= windows.reached_us
            ids.append(msg.trial_ids)
            labels.append(msg.labels)
    last = windows.due_labels(final=True)
    assert last is not None
    ids.append(last.trial_ids)
    labels.append(last.labels)
    assert np.array_equal(np.concatenate(chans), plan.channels)
    assert np.array_equal(np.concatenate(times), plan.t_us)
    assert np.array_equal(np.concatenate(ids), plan.window_ids)
    assert np.array_equal(np.concatenate(labels), plan.window_labels)
    assert windows.end_us == plan.span_us


def test_live_offset_moves_times_and_window_ids() -> None:
    rec = _digits(3, t0_us=1_700_000_000_000_000.0)  # a camera's clock: Unix time in us
    w = LiveWindows(_mapping(rec), rec.labels, window_length=3.0, offset_us=18_000 * 5)
    _, t = w.events(rec)
    assert rec.labels is not None  # the origin: the first span, before the first event
    assert t[0] == 18_000 * 5 + rec.t_us[0] - rec.labels.start_us.min() > 18_000 * 5
    msg = w.due_labels(final=True)
    assert msg is not None and msg.trial_ids.tolist() == [5, 6, 7]


# ---- refusals: one line, the right exit code ----------------------------------------------


def test_camera_without_a_camera_is_one_line_and_exit_2(capsys) -> None:
    if dv.io.camera.discover():
        pytest.skip("an iniVation camera is attached to this machine")
    for source in ("camera", "camera:DXA00093"):
        assert main(["sensor", "--source", source, *MAP]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"delgrad sensor: error: --source {source}: "), err
        assert "no iniVation camera is attached" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("source", "extra", "code", "match"),
    [
        ("tcp://127.0.0.1", [], 2, "a DV network stream is tcp://HOST:PORT"),
        ("tcp://127.0.0.1:{port}", ["--samples", "0:5"], 2, "--samples does not apply"),
        ("tcp://127.0.0.1:{port}", ["--speed", "5"], 2, "--speed does not apply"),
        ("tcp://127.0.0.1:{port}", [], 3, "Connection refused (is the DV network server running"),
    ],
)
def test_bad_live_sources(source, extra, code, match, capsys) -> None:
    argv = ["sensor", "--source", source.format(port=free_port()), *extra]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ---- a real NetworkWriter -----------------------------------------------------------------


@pytest.fixture(name="dv_server")
def dv_server_fixture(processes: Processes):
    """A DvServer factory; at teardown the sensors go first (a writer with a client
    cannot be destroyed), then the servers."""
    servers: list[DvServer] = []

    def make(width: int, height: int) -> DvServer:
        servers.append(DvServer(free_port(), width, height))
        return servers[-1]

    yield make
    processes.cleanup()
    for server in servers:
        server.close()


@pytest.mark.broker
async def test_the_events_written_are_the_events_sent(mosquitto, processes, dv_server, tmp_path):
    rec = _digits(30)
    assert rec.labels is not None
    labels = write_label_file(tmp_path / "camera.csv", rec.labels)  # any name
    plan = plan_stream(rec, _mapping(rec), window_length=3.0)
    server = dv_server(rec.width, rec.height)
    device = "live"
    async with Subscriber(mosquitto.port, device) as sub:
        argv = sensor_args(
            mosquitto.url, device, "--source", f"tcp://127.0.0.1:{server.port}",
            *MAP, *WINDOWS, "--labels", labels, "--offset-us", 0,
        )  # fmt: skip
        proc, log = processes.spawn(argv, "sensor-live")
        await _line(sub, log, "live to device")  # connected (after its probe)
        await asyncio.to_thread(server.wait_client)
        await asyncio.to_thread(server.write, _packets(rec, seed=2))
        await sub.wait_for(lambda: _received(sub)[0].size == plan.channels.size, 30, "every event")
        text = await _stop(proc, log)
        labelled = lambda: sum(m.trial_ids.size for m in sub.of(Labels)) >= 30  # noqa: E731
        await sub.wait_for(labelled, 10, "every label")
    channels, times = _received(sub)
    assert np.array_equal(channels, plan.channels)
    assert np.array_equal(times, plan.t_us)
    got = sub.of(Labels)
    assert np.array_equal(np.concatenate([m.trial_ids for m in got]), plan.window_ids)
    assert np.array_equal(np.concatenate([m.labels for m in got]), plan.window_labels)
    assert f"received {len(rec)} events from tcp://127.0.0.1:{server.port}" in text, text
    assert f"sent {plan.channels.size} in" in text and "30 window labels" in text, text
    assert "outage" not in text


@pytest.mark.broker
async def test_a_killed_server_loses_the_gap_only(mosquitto, processes, dv_server, tmp_path):
    rec = _digits(30)
    third = 10 * 3 * SACCADE_US  # 10 digits each
    parts = [rec.between(k * third, (k + 1) * third) for k in range(3)]
    port = free_port()
    script = str(Path(__file__).with_name("_dv_server.py"))

    def serve(part: EventRecording, name: str):
        path = save_packets(tmp_path / f"{name}.npz", _packets(part, 3), (rec.width, rec.height))
        go = tmp_path / f"{name}.go"
        proc, log = processes.spawn([sys.executable, script, str(port), str(path), str(go)], name)
        return proc, log, go

    device = "livekill"
    async with Subscriber(mosquitto.port, device) as sub:
        first, first_log, go = serve(parts[0], "server-1")
        await _line(sub, first_log, "listening")
        argv = sensor_args(
            mosquitto.url, device, "--source", f"tcp://127.0.0.1:{port}", *MAP, *WINDOWS
        )
        proc, log = processes.spawn(argv, "sensor-live")
        await _line(sub, log, "live to device")
        go.touch()
        await _line(sub, first_log, "written")
        want1 = _mapping(rec).map(parts[0]).channels.size
        await sub.wait_for(lambda: _received(sub)[0].size == want1, 30, "the first part")
        first.send_signal(signal.SIGKILL)  # the server goes away without a word
        await _line(sub, log, "lost the DV stream")
        await asyncio.sleep(1.0)  # the gap: parts[1] happens while nobody serves it
        _, second_log, go = serve(parts[2], "server-2")
        await _line(sub, log, "is back after")
        go.touch()
        await _line(sub, second_log, "written")
        want = want1 + _mapping(rec).map(parts[2]).channels.size
        await sub.wait_for(lambda: _received(sub)[0].size == want, 30, "the third part")
        text = await _stop(proc, log)
    channels, times = _received(sub)
    kept = EventRecording(
        np.concatenate([parts[0].t_us, parts[2].t_us]),
        np.concatenate([parts[0].x, parts[2].x]),
        np.concatenate([parts[0].y, parts[2].y]),
        np.concatenate([parts[0].p, parts[2].p]),
        rec.width,
        rec.height,
    )
    mapped = _mapping(rec).map(kept)
    assert np.array_equal(channels, mapped.channels)
    assert np.array_equal(times, mapped.t_us - np.floor(rec.t_us[0]))
    assert text.count("lost the DV stream") == 1, text
    assert text.count("is back after") == 1, text
    assert "1 outage(s), 1 reconnected" in text, text
