"""Broker URLs, trial sources, the paced sensor stream and ``delgrad sensor``."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import (
    InProcessBus,
    Labels,
    MqttTransport,
    Publisher,
    SpikeBatch,
    decode,
    parse_broker_url,
    subscription,
    topic,
    transport_from_url,
)
from delgrad.runtime import encode_yinyang, yinyang_split
from delgrad.tools import Mosquitto
from delgrad.tools._cli import main
from delgrad.tools._cmd_sensor import backlog_messages
from delgrad.tools._sensor import FileSource, Pacer, YinYangSource, stream_trials

EV = topic("dev1", "events/in")
LAB = topic("dev1", "labels")

# ---- broker URLs ------------------------------------------------------------------


def test_url_defaults_and_tls() -> None:
    a = parse_broker_url("mqtt://broker.example")
    assert (a.host, a.port, a.username, a.password, a.tls) == (
        "broker.example",
        1883,
        None,
        None,
        False,
    )
    b = parse_broker_url("MQTTS://10.0.0.2")
    assert (b.host, b.port, b.tls) == ("10.0.0.2", 8883, True)
    c = parse_broker_url("mqtt://[::1]:1999/")
    assert (c.host, c.port) == ("::1", 1999)
    assert c.url == "mqtt://[::1]:1999"


def test_url_credentials_and_env_password() -> None:
    a = parse_broker_url("mqtts://al%40ice:p%3Ass@h:9000", env={"DELGRAD_MQTT_PASSWORD": "env"})
    assert (a.username, a.password, a.port) == ("al@ice", "p:ss", 9000)
    assert "p:ss" not in repr(a) and "p:ss" not in a.url
    b = parse_broker_url("mqtt://bob@h", env={"DELGRAD_MQTT_PASSWORD": "secret"})
    assert (b.username, b.password) == ("bob", "secret")
    anon = parse_broker_url("mqtt://h", env={"DELGRAD_MQTT_PASSWORD": "secret"})
    assert anon.password is None  # a password without a user is not sent


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h", "scheme"),
        ("h:1883", "scheme"),
        ("", "empty"),
        ("mqtt://", "no host"),
        ("mqtt://h:0", "port"),
        ("mqtt://h:70000", "port"),
        ("mqtt://h:abc", "port"),
        ("mqtt://h/topic", "path"),
        ("mqtt://h?x=1", "query"),
        ("mqtt://:pw@h", "user name"),
    ],
)
def test_bad_urls(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_broker_url(url)


def test_bad_url_message_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url("mqtt://u:hunter2@h:x")
    assert "hunter2" not in str(info.value)


def test_transport_from_url() -> None:
    t = transport_from_url("mqtts://u:pw@h:8884", client_id="c1", timeout_s=1.5)
    assert isinstance(t, MqttTransport)
    assert (t.host, t.port, t.username, t.password, t.client_id) == ("h", 8884, "u", "pw", "c1")
    assert isinstance(t.tls, ssl.SSLContext) and t.tls.verify_mode == ssl.CERT_REQUIRED
    assert t.timeout_s == 1.5
    assert transport_from_url("mqtt://h", client_id=None).tls is None
    with pytest.raises(ConfigError, match="port"):
        transport_from_url("mqtt://h", client_id="c", port=1)


# ---- sources ----------------------------------------------------------------------


def test_yinyang_layout_with_input_repeat() -> None:
    features, labels = yinyang_split("validation")
    src = YinYangSource("validation", input_repeat=3, seed=5, first_trial_id=7)
    tb = src.take(10)
    assert list(tb.trial_ids) == list(range(7, 17))
    assert list(tb.offsets) == list(range(0, 121, 12))
    assert list(tb.channels[:12]) == list(range(12))
    t = tb.times.reshape(10, 12)
    # Find each trial's row in the split by its label and times.
    enc = encode_yinyang(features)
    for i in range(10):
        for k in range(12):
            assert t[i, k] == t[i, (k // 3) * 3]  # copies of one coordinate
        row = np.flatnonzero(np.all(enc == t[i, ::3], axis=1))
        assert row.size == 1 and labels[row[0]] == tb.labels[i]


def test_yinyang_cycles_reshuffled_passes() -> None:
    src = YinYangSource("test", seed=1)
    a = src.take(1000)  # a whole pass
    b = src.take(1000)
    ref = YinYangSource("test", seed=1).take(2000)
    assert np.array_equal(np.concatenate([a.times, b.times]), ref.times)  # reproducible
    assert np.array_equal(ref.trial_ids, np.arange(2000))
    ta, tb = a.times.reshape(-1, 4), b.times.reshape(-1, 4)
    assert not np.array_equal(ta, tb)  # reshuffled
    key = lambda x: np.sort(x.view([("", x.dtype)] * 4).ravel())  # noqa: E731
    assert np.array_equal(key(ta), key(tb))  # the same trials each pass
    assert np.bincount(a.labels).tolist() == np.bincount(yinyang_split("test")[1]).tolist()


def _csr(rows: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    off = np.cumsum([0] + [len(r) for r in rows])
    ch = np.array([c for r in rows for c, _ in r], dtype=np.int32)
    t = np.array([x for r in rows for _, x in r], dtype=np.float64)
    return off, ch, t


ROWS = [[(0, 1.0), (3, 0.5)], [], [(1, 2.5)]]


def test_file_sources_padded_and_csr_agree(tmp_path) -> None:
    off, ch, t = _csr(ROWS)
    np.savez(tmp_path / "csr.npz", offsets=off, channels=ch, times=t, labels=[2, 0, 1])
    pad_ch = np.array([[0, 3], [-1, -1], [1, -1]])
    pad_t = np.array([[1.0, 0.5], [np.inf, np.inf], [2.5, np.inf]])
    np.savez(tmp_path / "pad.npz", channels=pad_ch, times=pad_t, labels=[2, 0, 1], time_unit="us")
    a, b = FileSource(tmp_path / "csr.npz"), FileSource(tmp_path / "pad.npz")
    assert (a.time_unit, b.time_unit) == ("tau_s", "us")
    ta, tb = a.take(5), b.take(5)  # loops over the 3 trials
    for x in ta[:4]:
        assert isinstance(x, np.ndarray)
    assert list(ta.trial_ids) == list(range(5))
    assert list(ta.offsets) == [0, 2, 2, 3, 5, 5]
    assert list(ta.channels) == [0, 3, 1, 0, 3]
    assert list(ta.times) == [1.0, 0.5, 2.5, 1.0, 0.5]
    assert list(ta.labels) == [2, 0, 1, 2, 0]
    for x, y in zip(ta, tb, strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"channels": np.zeros((2, 2), int)}, "needs arrays"),
        ({"channels": np.zeros((2, 2)), "times": np.zeros((2, 2))}, "integers"),
        ({"channels": np.zeros((2, 2), int), "times": np.zeros((2, 3))}, "one \\(T, N\\) shape"),
        ({"offsets": [0, 3], "channels": [0, 1], "times": [0.0, 1.0]}, "offsets"),
        ({"offsets": [0, 1], "channels": [0], "times": [np.nan]}, "finite"),
        ({"offsets": [0, 1], "channels": [0], "times": [1.0], "labels": [0, 1]}, "labels"),
        ({"offsets": [0, 1], "channels": [0], "times": [1.0], "time_unit": "ms"}, "time_unit"),
    ],
)
def test_bad_files(tmp_path, arrays, match) -> None:
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(ConfigError, match=match):
        FileSource(tmp_path / "f.npz")


def test_missing_or_garbage_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        FileSource(tmp_path / "none.npz")
    (tmp_path / "g.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="npz"):
        FileSource(tmp_path / "g.npz")


# ---- pacing -----------------------------------------------------------------------


def test_pacer_keeps_the_schedule_and_limits_bursts() -> None:
    p = Pacer(0.1, start_s=0.0, max_burst=4)
    now, sent_at = 0.0, []
    for _ in range(20):  # a punctual sender sleeps exactly as told
        now += p.wait_s(now)
        sent_at.append(now)
        p.sent()
    assert sent_at == pytest.approx([0.1 * k for k in range(20)])
    # A 3 s stall (30 intervals): at most max_burst + 1 batches go out back to back.
    now += 3.0
    burst = 0
    while p.wait_s(now) == 0:
        p.sent()
        burst += 1
    assert burst == 5 and p.fell_behind == 1
    assert p.wait_s(now) == pytest.approx(0.1)
    assert Pacer(0.0, 0.0).wait_s(123.0) == 0.0  # unpaced


# ---- stream_trials over the in-process bus ------------------------------------------


async def _stream(source, **kw):
    bus = InProcessBus()
    async with bus.transport("rx") as rx, bus.transport("tx") as tx:
        await rx.subscribe(subscription("dev1"))
        stats = await stream_trials(Publisher(tx, "sensor-1"), "dev1", source, **kw)
        got = []
        while True:
            try:
                m = await rx.recv(timeout=0.01)
            except TimeoutError:
                break
            env = decode(m.payload)
            got.append((m.topic, env.seq, env.message))
    return stats, got


async def test_count_batch_and_labels() -> None:
    stats, got = await _stream(YinYangSource("train", seed=3), rate=1e5, batch=100, count=250)
    events = [(s, m) for t, s, m in got if t == EV]
    labels = [(s, m) for t, s, m in got if t == LAB]
    assert [s for s, _ in events] == [0, 1, 2] and [s for s, _ in labels] == [0, 1, 2]
    assert [m.n_trials for _, m in events] == [100, 100, 50]
    ids = np.concatenate([m.trial_ids for _, m in events])
    assert np.array_equal(ids, np.arange(250))
    ref = YinYangSource("train", seed=3).take(250)
    assert np.array_equal(np.concatenate([m.times for _, m in events]), ref.times)
    assert all(m.time_unit == "tau_s" for _, m in events)
    assert np.array_equal(np.concatenate([m.trial_ids for _, m in labels]), ids)
    assert np.array_equal(np.concatenate([m.labels for _, m in labels]), ref.labels)
    assert (stats.trials, stats.event_messages, stats.label_messages) == (250, 3, 3)
    assert (stats.first_trial_id, stats.last_trial_id, stats.events) == (0, 249, 1000)
    # Pacing guarantees the rate is never exceeded (no timing assumption involved).
    assert 0 < stats.achieved_rate <= 1e5 * (1 + 1e-9)
    # With lag 0 each Labels message directly follows its SpikeBatch.
    assert [t for t, _, _ in got] == [EV, LAB] * 3


async def test_label_fraction() -> None:
    stats, got = await _stream(
        YinYangSource(), rate=float("inf"), batch=64, count=1000, label_fraction=0.3
    )
    lab = [m for t, _, m in got if t == LAB]
    assert sum(m.trial_ids.size for m in lab) == stats.labels == 300
    ids = np.concatenate([m.trial_ids for m in lab])
    assert np.all(np.diff(ids) > 0)
    assert np.abs(np.diff(ids) - 1 / 0.3).max() < 1  # evenly spread
    _, none = await _stream(
        YinYangSource(), rate=float("inf"), batch=10, count=50, label_fraction=0
    )
    assert [t for t, _, _ in none] == [EV] * 5


async def test_label_lag_sends_labels_n_messages_later() -> None:
    stats, got = await _stream(YinYangSource(), rate=float("inf"), batch=10, count=50, label_lag=2)
    order = [(t, int(m.trial_ids[0])) for t, _, m in got]
    assert order == [
        (EV, 0),
        (EV, 10),
        (EV, 20),
        (LAB, 0),
        (EV, 30),
        (LAB, 10),
        (EV, 40),
        (LAB, 20),
        (LAB, 30),  # held-back labels go out at the end
        (LAB, 40),
    ]
    assert stats.labels == 50


async def test_time_unit_conversion(tmp_path) -> None:
    ref = YinYangSource(seed=2).take(20)
    _, got = await _stream(
        YinYangSource(seed=2), rate=float("inf"), batch=20, count=20, time_unit="us", us_per_tau=6.0
    )
    ev = got[0][2]
    assert isinstance(ev, SpikeBatch) and ev.time_unit == "us"
    assert np.allclose(ev.times, ref.times * 6.0, rtol=1e-12)
    off, ch, t = _csr(ROWS)
    np.savez(tmp_path / "us.npz", offsets=off, channels=ch, times=t * 1000, time_unit="us")
    _, got = await _stream(
        FileSource(tmp_path / "us.npz"), rate=float("inf"), batch=3, count=3, us_per_tau=4.0
    )
    ev = got[0][2]
    assert ev.time_unit == "tau_s" and np.allclose(ev.times, t * 250)
    assert [m for tt, _, m in got if tt == LAB] == []  # the file has no labels


async def test_file_labels_minus_one_are_not_sent(tmp_path) -> None:
    off, ch, t = _csr(ROWS)
    np.savez(tmp_path / "f.npz", offsets=off, channels=ch, times=t, labels=[1, -1, 0])
    _, got = await _stream(FileSource(tmp_path / "f.npz"), rate=float("inf"), batch=3, count=6)
    lab = [m for tt, _, m in got if tt == LAB]
    assert len(lab) == 2 and all(isinstance(m, Labels) for m in lab)
    assert np.concatenate([m.trial_ids for m in lab]).tolist() == [0, 2, 3, 5]
    assert np.concatenate([m.labels for m in lab]).tolist() == [1, 0, 1, 0]


async def test_stop_ends_cleanly_with_every_label_sent() -> None:
    bus = InProcessBus()
    stop = asyncio.Event()
    async with bus.transport("rx") as rx, bus.transport("tx") as tx:
        await rx.subscribe(subscription("dev1"))
        task = asyncio.create_task(
            stream_trials(
                Publisher(tx, "s"), "dev1", YinYangSource(), rate=200, batch=10, label_lag=3,
                stop=stop,
            )
        )  # fmt: skip
        first = await rx.recv(timeout=10)  # streaming has started
        assert first.topic == EV
        stop.set()
        stats = await asyncio.wait_for(task, 10)
    assert stats.stopped and stats.trials % 10 == 0 and stats.trials >= 10
    assert stats.labels == stats.trials


async def test_bad_stream_arguments() -> None:
    bus = InProcessBus()
    async with bus.transport("tx") as tx:
        pub = Publisher(tx, "s")
        for kw in (
            {"rate": 0},
            {"rate": float("nan")},
            {"batch": 0},
            {"label_fraction": 1.5},
            {"label_lag": -1},
            {"time_unit": "ms"},
            {"us_per_tau": 0.0},
        ):
            args = {"rate": 10.0, "batch": 1, "count": 1, **kw}
            with pytest.raises(ConfigError):
                await stream_trials(pub, "dev1", YinYangSource(), **args)


# ---- the command -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--broker", "http://h"], "scheme"),
        (["--device", "a/b"], "--device"),
        (["--rate", "0"], "--rate"),
        (["--batch", "0"], "--batch"),
        (["--count", "0"], "--count"),
        (["--duration", "-1"], "--duration"),
        (["--label-fraction", "2"], "--label-fraction"),
        (["--label-lag", "-1"], "--label-lag"),
        (["--us-per-tau", "0"], "--us-per-tau"),
        (["--source", "missing.npz"], "no such file"),
        (["--source", "x.npz", "--input-repeat", "2"], "yinyang"),
        (["--backlog-s", "-1"], "--backlog-s"),
        (["--backlog-s", "inf"], "--backlog-s"),
    ],
)
def test_cli_bad_arguments_exit_2(argv, match, capsys) -> None:
    assert main(["sensor", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_backlog_is_seconds_of_the_stream() -> None:
    # 2,000 trials/s in messages of 100 trials: 20 messages/s of each kind
    assert backlog_messages(5.0, 2000.0 / 100) == 100
    # a recording at 5x real time in 100 ms chunks: 50 messages/s
    assert backlog_messages(5.0, 5 * 1000.0 / 100.0) == 250
    assert backlog_messages(0.0, 20.0) == 1  # at least the newest message
    assert backlog_messages(0.01, 20.0) == 1  # rounded up, never 0
    assert backlog_messages(5.0, float("inf")) is None  # unpaced: the transport's bounds


@pytest.mark.broker
async def test_cli_streams_to_mosquitto(mosquitto: Mosquitto) -> None:
    async with asyncio.timeout(25):
        rx = MqttTransport("127.0.0.1", mosquitto.port, client_id="rx", timeout_s=3.0)
        async with rx:
            await rx.subscribe(subscription("dev7"), qos=1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "delgrad.tools._cli",
                "sensor",
                "--broker",
                mosquitto.url,
                "--device",
                "dev7",
                "--count",
                "300",
                "--batch",
                "50",
                "--rate",
                "5000",
                "--input-repeat",
                "2",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "sent 300 trials" in out.decode()
            events, labels = [], []
            while len(events) < 6 or len(labels) < 6:
                m = await rx.recv(timeout=10)
                env = decode(m.payload)
                (events if m.topic == topic("dev7", "events/in") else labels).append(env)
    assert [e.seq for e in events] == list(range(6)) and [e.seq for e in labels] == list(range(6))
    assert len({e.sender for e in events + labels}) == 1
    ids = np.concatenate([e.message.trial_ids for e in events])
    assert np.array_equal(ids, np.arange(300))
    assert all(e.message.channels.max() == 7 for e in events)
    assert np.array_equal(np.concatenate([e.message.trial_ids for e in labels]), ids)


@pytest.mark.parametrize("name", ["empty.npy", "empty.npz", "empty.csv"])
def test_an_empty_file_is_one_line_and_exit_2(tmp_path, name, capsys) -> None:
    (tmp_path / name).write_bytes(b"")
    assert main(["sensor", "--source", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--samples", "x"], "--samples wants A:B"),
        (["--samples", "0:9"], "not within the recording's 0:2"),
        (["--samples", "0:1", "--end-us", "5"], "choose the part twice"),
        (["--count", "10"], "--count counts trials of a trial stream"),
        (["--start-us", "5000"], "no event in 5000 .. inf us"),
    ],
)
def test_recording_part_options_are_checked(tmp_path, extra, match, capsys) -> None:
    t = np.array([0, 10, 20, 30], np.int64)
    events = np.zeros(4, dtype=[("t", np.int64), ("x", np.int64), ("y", np.int64), ("p", np.int64)])
    events["t"] = t
    np.save(tmp_path / "r.npy", events)
    (tmp_path / "r.npy.labels.csv").write_text("start_us,end_us,label\n0,20,1\n20,40,2\n")
    assert main(["sensor", "--source", str(tmp_path / "r.npy"), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
