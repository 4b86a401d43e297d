"""``delgrad monitor --prometheus`` end to end: a real Mosquitto, the simulated fleet,
broker restarts and garbage, a real Prometheus scraping it, the alert rules under
``promtool test rules``, and the Grafana dashboard's queries."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from delgrad.protocols import (
    Alarm,
    IncomingMessage,
    Metrics,
    Status,
    encode,
    topic,
    transport_from_url,
)
from delgrad.tools import Mosquitto, free_port
from delgrad.tools._bench_fleet import series_values
from delgrad.tools._exporter import FleetExporter, exposition
from delgrad.tools._fleet_sim import FleetSimulator
from delgrad.tools._monitor import MonitorState
from delgrad.tools._prom_names import specs, wire_names

from ._e2e_helpers import DELGRAD, Processes, processes_fixture  # noqa: F401

pytestmark = pytest.mark.broker

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
RULES = DEPLOY / "delgrad-alerts.yml"
RULE_TESTS = DEPLOY / "delgrad-alerts.test.yml"
DASHBOARD = DEPLOY / "delgrad-fleet.grafana.json"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _wait(what: str, check: object, timeout_s: float = 15.0) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
        except OSError:
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last!r})")


def _start_monitor(
    processes: Processes, broker: Mosquitto
) -> tuple[subprocess.Popen[bytes], str, Path]:
    proc, log = processes.spawn(
        [*DELGRAD, "monitor", "+", "--broker", broker.url, "--metrics-only", "--plain",
         "--prometheus", "127.0.0.1:0"],
        "monitor",
    )  # fmt: skip
    line = _wait(
        "the exporter's address", lambda: re.search(r"http://\S+/metrics", log.read_text())
    )
    return proc, line.group(0), log  # type: ignore[union-attr]


async def _publish(url: str, topic_: str, payload: bytes) -> None:
    transport = transport_from_url(url, client_id="test-garbage")
    await transport.connect()
    await transport.publish(topic_, payload)
    await transport.flush(timeout=5)
    await transport.close()


class _Sim:
    """The fleet simulator on a thread of its own (fast periods for tests)."""

    def __init__(self, url: str, n: int, heartbeat_s: float = 1.0) -> None:
        self.url, self.n, self.heartbeat_s = url, n, heartbeat_s
        self.stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sim: FleetSimulator | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        transport = transport_from_url(self.url, client_id="test-fleet")
        await transport.connect()
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        self.sim = FleetSimulator(
            transport,
            self.n,
            metrics_period_s=self.heartbeat_s / 2,
            heartbeat_period_s=self.heartbeat_s,
        )
        try:
            await self.sim.run(self.stop)
        finally:
            await transport.close()

    def __enter__(self) -> _Sim:
        self.thread.start()
        _wait("the simulator", lambda: self.sim is not None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


def test_exporter_through_garbage_and_a_broker_restart(
    mosquitto: Mosquitto, processes: Processes
) -> None:
    proc, url, log = _start_monitor(processes, mosquitto)
    with _Sim(mosquitto.url, 5):
        _wait("5 devices", lambda: len(series_values(_get(url), "delgrad_accuracy_ratio")) == 5)
        asyncio.run(_publish(mosquitto.url, topic("sim0001", "metrics"), b"\xc1 not msgpack"))
        _wait(
            "the garbage counted",
            lambda: (
                series_values(_get(url), "delgrad_monitor_refused_total")['{reason="malformed"}']
                == 1
            ),
        )
        text = _get(url)
        accuracy = series_values(text, "delgrad_accuracy_ratio")
        assert len(accuracy) == 5 and all(0.5 < v < 1 for v in accuracy.values()), accuracy
        mosquitto.kill()
        _wait(
            "the outage seen",
            lambda: series_values(_get(url), "delgrad_monitor_broker_up")[""] == 0,
        )
        assert proc.poll() is None
        before = series_values(_get(url), "delgrad_monitor_messages_received_total")[""]
        mosquitto.start()
        _wait(
            "messages after the restart",
            lambda: (
                series_values(_get(url), "delgrad_monitor_messages_received_total")[""]
                > before + 20
            ),
            timeout_s=30,
        )
        text = _get(url)
        assert series_values(text, "delgrad_monitor_broker_up")[""] == 1
        assert series_values(text, "delgrad_monitor_transport_reconnects_total")[""] >= 1
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    out = log.read_text()
    assert "Traceback" not in out
    assert out.count("malformed message") == 1, out


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[object]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus); CI has it")
    yield binary


def test_a_real_prometheus_scrapes_the_fleet(
    mosquitto: Mosquitto, processes: Processes, prometheus: str, tmp_path: Path
) -> None:
    proc, url, _ = _start_monitor(processes, mosquitto)
    target = urllib.parse.urlsplit(url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n  - job_name: delgrad-monitor\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    processes.spawn(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        "prometheus",
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1/"

    def query(promql: str) -> list[dict[str, object]]:
        body = json.loads(_get(api + "query?" + urllib.parse.urlencode({"query": promql})))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    with _Sim(mosquitto.url, 4, heartbeat_s=0.5) as sim:
        got = _wait("4 accuracies in Prometheus", lambda: len(query("delgrad_accuracy_ratio")) == 4)
        assert got
        assert query('up{job="delgrad-monitor"}')[0]["value"][1] == "1"  # type: ignore[index]
        (devices,) = query("delgrad_monitor_devices")
        assert devices["value"][1] == "4"  # type: ignore[index]
        rates = _wait("4 rates", lambda: query("rate(delgrad_scored_trials_total[3s]) > 0"))
        assert len(rates) == 4, rates  # type: ignore[arg-type]
        latency = query("max(delgrad_latency_p99_seconds)")
        assert 0.01 < float(latency[0]["value"][1]) < 0.1  # type: ignore[index]
        assert sim.sim is not None
        sim.sim.silence(["sim0002"])  # misses 3 heartbeats of 0.5 s: stale, then an alert
        stale = _wait("sim0002 stale", lambda: query("delgrad_device_stale == 1"), timeout_s=20)
        assert [s["metric"]["device"] for s in stale] == ["sim0002"]  # type: ignore[index]
        alerts = _wait(
            "the DelgradDeviceStale alert",
            lambda: [
                a for a in query("ALERTS") if a["metric"]["alertname"] == "DelgradDeviceStale"
            ],  # type: ignore[index]
        )
        assert alerts[0]["metric"]["device"] == "sim0002"  # type: ignore[index]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0


def test_alert_rules_pass_promtool_with_a_firing_and_a_quiet_case() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); CI has it")
    yaml = pytest.importorskip("yaml")
    run = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rules = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    cases = [
        c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]
    ]
    for alert in rules:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no firing case"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no quiet case"


def _exported_names() -> set[str]:
    """Every sample name the exporter writes, from a device that sends every metric on
    the allow-list (counters appear on a device once they count)."""
    state = MonitorState()
    exporter = FleetExporter(state)
    now = time.time()
    values = dict.fromkeys(wire_names(), 1.0)

    def feed(kind: str, msg: object) -> None:
        payload = encode(msg, seq=1, sender="d")  # type: ignore[arg-type]
        exporter.observe(state.feed(IncomingMessage(topic("d", kind), payload, 0, False), now))

    feed("status", Status("alive", 1.0, json.dumps({"heartbeat": 1})))
    feed("alarm", Alarm("degraded", True))
    for chunk in range(0, len(values), 200):
        feed("metrics", Metrics(1, dict(list(values.items())[chunk : chunk + 200])))
    exporter.transport = type("T", (), {"stats": type("S", (), {
        "dropped_in_lossy": 0, "dropped_in_reliable": 0, "reconnects": 0})()})()  # fmt: skip
    text = exposition(exporter.collect()).decode()
    return {m.group(1) for m in re.finditer(r"^([a-z0-9_]+)[{ ]", text, re.MULTILINE)}


def _promql_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(delgrad_[a-z0-9_]+)\b", expr))


def test_dashboard_and_rules_name_only_exported_series() -> None:
    exported = _exported_names()
    assert {s.family for s in specs()} <= {n.removesuffix("_total") for n in exported}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        t["expr"]
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
    ] + [v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
         for v in dashboard["templating"]["list"] if v["type"] == "query"]  # fmt: skip
    assert len(exprs) >= 15
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic_ in ("accuracy", "loss", "throughput", "latency", "drops", "health"):
        assert topic_ in titles, topic_
    yaml = pytest.importorskip("yaml")
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for expr in exprs + rules:
        names = _promql_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
