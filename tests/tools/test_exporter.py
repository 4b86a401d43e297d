"""The Prometheus exporter of ``delgrad monitor``: names, bad input, the fleet view."""

from __future__ import annotations

import json
import logging
import math
import socket
import tracemalloc

import msgpack
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from delgrad.errors import ConfigError
from delgrad.protocols import Alarm, IncomingMessage, Metrics, Status, encode, topic
from delgrad.tools._cli import main
from delgrad.tools._exporter import FleetExporter, exposition, parse_listen
from delgrad.tools._fleet_sim import FleetSimulator
from delgrad.tools._monitor import FLEET_ROWS, MonitorState, fleet_line, render
from delgrad.tools._prom_names import lookup, specs

NOW = 1_800_000_000.0


def _beat(n: int, period: float = 5.0) -> str:
    return json.dumps({"heartbeat": n, "heartbeat_period_s": period})


class Fleet:
    """A MonitorState with its exporter, fed like a broker would (fixed clock)."""

    def __init__(self, **kwargs: object) -> None:
        self.state = MonitorState(**kwargs)  # type: ignore[arg-type]
        self.now = NOW
        self.exporter = FleetExporter(self.state, clock=lambda: self.now)
        self.seq = 0

    def send(self, device: str, kind: str, msg: object) -> None:
        self.seq += 1
        payload = encode(msg, seq=self.seq, sender=device)  # type: ignore[arg-type]
        self.raw(device, kind, payload)

    def raw(self, device: str, kind: str, payload: bytes) -> None:
        record = self.state.feed(IncomingMessage(topic(device, kind), payload, 0, False), self.now)
        self.exporter.observe(record)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = exposition(self.exporter.snapshot()).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }


def _full_device(fleet: Fleet, device: str, i: int = 0) -> None:
    sim = FleetSimulator(None, i + 1)  # type: ignore[arg-type]
    fleet.send(device, "status", Status("alive", 30.0, _beat(4)))
    values = sim.metrics(i, NOW)
    fleet.send(device, "metrics", Metrics(7, values))


def test_every_name_follows_prometheus_conventions() -> None:
    for spec in specs():
        assert spec.family.startswith("delgrad_") and spec.family.islower()
        assert not spec.family.endswith("_total")  # added to counters by the client
        assert not spec.family.endswith(("_ms", "_per_s", "_s"))  # base units: seconds
    assert lookup("latency.p99_ms").scale == 1e-3  # type: ignore[union-attr]
    assert lookup("join.joined").kind == "counter"  # type: ignore[union-attr]
    assert lookup("accuracy.class63") is not None and lookup("accuracy.class64") is None
    assert lookup("accuracy.class01") is None and lookup("whatever") is None


def test_series_values_units_and_the_device_label() -> None:
    fleet = Fleet()
    _full_device(fleet, "edge-1")
    fleet.send("edge-1", "alarm", Alarm("degraded", True, 0.6, 0.9, "fell"))
    fleet.now += 2.0
    got = fleet.samples()
    dev = (("device", "edge-1"),)
    assert got[("delgrad_accuracy_ratio", dev)] == pytest.approx(0.93, abs=0.02)
    assert got[("delgrad_latency_p99_seconds", dev)] == pytest.approx(0.015)  # 15 ms
    assert got[("delgrad_join_joined_total", dev)] > 0
    assert got[("delgrad_device_state", (("device", "edge-1"), ("state", "alive")))] == 1
    assert got[("delgrad_device_stale", dev)] == 0
    assert got[("delgrad_device_heartbeats_total", dev)] == 4
    assert got[("delgrad_device_heartbeat_age_seconds", dev)] == pytest.approx(2.0)
    assert got[("delgrad_class_accuracy_ratio", (("class", "2"), ("device", "edge-1")))] > 0.9
    key = ("delgrad_health_warning", (("device", "edge-1"), ("warning", "storage")))
    assert got[key] == 0
    assert got[("delgrad_device_alarm", (("alarm", "degraded"), ("device", "edge-1")))] == 1
    assert got[("delgrad_monitor_devices", ())] == 1
    # three missed heartbeats: stale (metrics still flowing do not hide it)
    fleet.now += 12.5  # 14.5 s since the heartbeat
    fleet.send("edge-1", "metrics", Metrics(8, {"accuracy": 0.9}))
    assert fleet.samples()[("delgrad_device_stale", dev)] == 0
    fleet.now += 1.0  # 15.5 s: a third period passed without one
    got = fleet.samples()
    assert got[("delgrad_device_stale", dev)] == 1
    assert got[("delgrad_device_state", (("device", "edge-1"), ("state", "stale")))] == 1
    assert got[("delgrad_monitor_devices_by_state", (("state", "stale"),))] == 1


def test_fast_exposition_equals_prometheus_clients() -> None:
    fleet = Fleet()
    for i in range(30):
        _full_device(fleet, f"d{i:02d}", i)
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(fleet.exporter)  # type: ignore[arg-type]

    def parsed(text: str) -> list[tuple[str, str, tuple[tuple[str, str], ...], float]]:
        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in ("delgrad_monitor_scrapes_total",):  # counts this very scrape
                    continue
                if s.name == "delgrad_monitor_last_scrape_duration_seconds":
                    continue
                out.append((fam.type, s.name, tuple(sorted(s.labels.items())), s.value))
        return sorted(out)

    ours = parsed(exposition(fleet.exporter.snapshot()).decode())  # what /metrics serves
    theirs = parsed(generate_latest(registry).decode())
    assert len(ours) > 30 * 60 and ours == theirs


def test_bad_input_is_capped_counted_logged_once_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = Fleet(max_devices=50)
    _full_device(fleet, "good")
    base = len(fleet.samples())

    def flood(rounds: int, start: int) -> None:
        for r in range(start, start + rounds):
            # 250 fresh metric names per message (10,000 over 40 messages)
            names = {f"junk.n{r * 250 + k}": 1.0 for k in range(250)}
            fleet.send("noisy", "metrics", Metrics(r, {**names, "accuracy": 1e300}))
            fleet.raw("noisy", "metrics", bytes([0xC1, r % 256]) * 50)  # not msgpack
            body = msgpack.unpackb(encode(Metrics(r, {"loss": 1.0}), seq=r, sender="noisy"))
            body["body"]["values"]["loss"] = math.nan
            fleet.raw("noisy", "metrics", msgpack.packb(body))  # NaN: refused by decode
            for k in range(250):  # devices beyond the cap, alarm names beyond theirs
                fleet.send(f"dev{r * 250 + k}", "status", Status("alive", 1.0, ""))
                fleet.send("noisy", "alarm", Alarm(f"a{r * 250 + k}", True))

    caplog.set_level(logging.WARNING, logger="delgrad.monitor")
    flood(4, 0)  # warm-up: every structure at its bound
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    flood(36, 4)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 512 * 1024, f"memory grew by {grown} bytes"
    got = fleet.samples()
    refused = {dict(k[1])["reason"]: v for k, v in got.items() if k[0].endswith("refused_total")}
    assert refused["metric_name"] == 10_000
    assert refused["value"] == 40  # accuracy = 1e300: finite, implausible
    assert refused["malformed"] == 80  # non-msgpack and NaN
    assert refused["device_cap"] == 10_000 - 48  # "good" and "noisy" took two places
    assert refused["alarm_cap"] == 10_000 - 32
    assert len(fleet.state.devices) == 50
    assert not any("junk" in name for name, _ in got)
    assert ("delgrad_accuracy_ratio", (("device", "noisy"),)) not in got
    assert len(got) < base + 48 * 8 + 32 + 20  # the cap's devices, not the flood's names
    lines = [r.getMessage() for r in caplog.records]
    for what in ("allow-list", "beyond 1e+18", "malformed", "--max-devices", "alarm names"):
        assert sum(what in line for line in lines) == 1, (what, lines)
    assert len(lines) == 5


def test_parse_listen() -> None:
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("", "x", "70000", ":9464", "host:"):
        with pytest.raises(ConfigError, match=r"\[HOST:\]PORT"):
            parse_listen(bad)


def test_fleet_view_fits_80_columns_worst_first() -> None:
    fleet = Fleet()
    for i in range(1000):
        fleet.send(f"sim{i:04d}", "status", Status("alive", 10.0, _beat(1)))
        acc = 0.4 if i == 500 else 0.93
        fleet.send(f"sim{i:04d}", "metrics", Metrics(1, {"accuracy": acc}))
    fleet.send("sim0777", "status", Status("lost", 10.0, ""))
    fleet.send("sim0123", "metrics", Metrics(1, {"accuracy": 0.9, "health.degraded": 1.0}))
    console = Console(width=80, record=True, color_system=None)
    console.print(render(fleet.state, NOW + 1, title="delgrad monitor +", parameters=False))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert len(lines) < FLEET_ROWS + 12, text
    rows = [line.split()[0] for line in lines if line.strip().startswith("sim")]
    assert rows[:3] == ["sim0777", "sim0123", "sim0500"], rows  # lost, warned, least accurate
    assert "1000 devices (999 alive, 1 lost)" in text
    assert f"the {FLEET_ROWS} worst of 1000 devices" in text
    line = fleet_line(fleet.state, NOW + 1)
    assert len(line) <= 80 and "999 alive, 1 lost" in line and "sim0777 lost" in line


def test_cli_refuses_a_bad_or_taken_address_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["monitor", "+", "--prometheus", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "delgrad monitor: error: --prometheus wants [HOST:]PORT, e.g. 9464 or 0.0.0.0:9464; "
        "got '99999'"
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["monitor", "+", "--prometheus", str(port), "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port} cannot be bound" in err[0], err
    assert main(["monitor", "+", "--max-devices", "0"]) == 2
    assert "--max-devices must be >= 1" in capsys.readouterr().err
