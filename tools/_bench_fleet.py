"""``delgrad bench fleet``: what one monitor with its Prometheus exporter costs at fleet size.

One Mosquitto on loopback, ``delgrad monitor + --metrics-only --prometheus`` as its
own process (``--full``: with the parameter stream), and the
:class:`~delgrad.tools._fleet_sim.FleetSimulator` publishing for N devices. Once
the monitor knows every device and a warm-up has passed, it measures over
``measure_s``: the monitor's CPU (user + system, all threads, from /proc, in % of one
core), its RSS (largest sample), and the wall time of full scrapes of
``/metrics`` (one every ``scrape_every_s``, 15 s as Prometheus' usual interval). Then it silences
``silence`` devices and polls the exporter until each shows
``delgrad_device_stale == 1``: the detection time is counted from the device's last
heartbeat, and also given in heartbeat periods (the monitor promises 3). Any other
device shown stale meanwhile is a false alarm, counted.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from delgrad.protocols import transport_from_url
from delgrad.tools._bench_e2e import DELGRAD, cpu_seconds, rss_bytes, stop_process
from delgrad.tools._fleet_sim import FleetSimulator
from delgrad.tools._mosquitto import Mosquitto, free_port

__all__ = ["bench_fleet", "median_of", "run_queue_wait_s", "series_values"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.MULTILINE)


def series_values(text: str, name: str) -> dict[str, float]:
    """Values of the samples of ``name`` in an exposition text, by label text
    (``'{device="sim0001"}'``; ``""`` without labels)."""
    return {
        m.group(2) or "": float(m.group(3)) for m in _SAMPLE.finditer(text) if m.group(1) == name
    }


def _get(url: str, timeout_s: float = 10.0) -> tuple[float, str]:
    """GET as Prometheus scrapes (gzip asked): (seconds until the body is in, text)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        body = resp.read()
        took = time.perf_counter() - started
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return took, body.decode()


def run_queue_wait_s(pid: int) -> float:
    """Seconds the threads of ``pid`` were runnable but waited for a core
    (/proc/PID/task/*/schedstat): on a shared machine, how starved the process was."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _scrape(url: str) -> tuple[float, int]:
    """A full scrape as Prometheus makes it: (seconds, series); the text is only
    counted, never parsed (the simulator shares this process)."""
    took, text = _get(url)
    return took, text.count("\n") - text.count("# ")


def _value(url: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` (a filtered scrape: small)."""
    _, text = _get(f"{url}?name[]={name}")
    return series_values(text, name)[""]


async def _wait_devices(
    url: str, n: int, monitor: subprocess.Popen[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if monitor.poll() is not None:
            raise RuntimeError(f"the monitor exited with {monitor.returncode}")
        try:
            _, text = await asyncio.to_thread(_get, url + "?name[]=delgrad_monitor_devices")
            if series_values(text, "delgrad_monitor_devices").get("", 0) >= n:
                return
        except OSError:
            pass
        await asyncio.sleep(1.0)
    raise RuntimeError(f"the monitor did not see {n} devices within {timeout_s:.0f} s")


async def bench_fleet(
    n_devices: int = 1000,
    *,
    measure_s: float = 30.0,
    warm_up_s: float = 10.0,
    scrape_every_s: float = 15.0,
    silence: int = 10,
    delta_rate_per_s: float = 0.0,
    full: bool = False,
    metrics_period_s: float = 2.0,
    heartbeat_period_s: float = 5.0,
    monitor_nice: int = 0,
) -> dict[str, Any]:
    """One run (see the module doc); returns the figures, keys naming their units.

    ``monitor_nice`` below 0 (root only) lets the monitor ahead of other jobs of a
    shared machine, so its CPU figure is what it needs rather than what it got."""
    with (
        tempfile.TemporaryDirectory(prefix="delgrad-fleet-") as tmp,
        Mosquitto(Path(tmp)) as broker,
    ):
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        cmd = [*DELGRAD, "monitor", "+", "--broker", broker.url, "--plain", "-q"]
        cmd += ["--prometheus", f"127.0.0.1:{port}"]
        cmd += [] if full else ["--metrics-only"]
        out = open(Path(tmp) / "monitor.out", "wb")
        monitor = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, monitor_nice))
            if monitor_nice
            else None,
        )
        transport = transport_from_url(broker.url, client_id="fleet-sim")
        stop = asyncio.Event()
        try:
            await transport.connect()
            sim = FleetSimulator(
                transport,
                n_devices,
                metrics_period_s=metrics_period_s,
                heartbeat_period_s=heartbeat_period_s,
                delta_rate_per_s=delta_rate_per_s,
            )
            task = asyncio.create_task(sim.run(stop))
            await _wait_devices(url, n_devices, monitor, timeout_s=60.0 + n_devices / 20)
            await asyncio.sleep(warm_up_s)
            received = "delgrad_monitor_messages_received_total"
            received0 = await asyncio.to_thread(_value, url, received)
            cpu0, t0 = cpu_seconds(monitor.pid), time.monotonic()
            wait0 = run_queue_wait_s(monitor.pid)
            published0 = transport.stats.published
            rss: list[int] = []
            scrapes: list[float] = []
            series = 0
            next_scrape = t0
            while (now := time.monotonic()) < t0 + measure_s:
                rss.append(rss_bytes(monitor.pid))
                if now >= next_scrape:
                    next_scrape += scrape_every_s
                    took, series = await asyncio.to_thread(_scrape, url)
                    scrapes.append(took)
                await asyncio.sleep(1.0)
            cpu1, t1 = cpu_seconds(monitor.pid), time.monotonic()
            wait1 = run_queue_wait_s(monitor.pid)
            published1 = transport.stats.published
            received1 = await asyncio.to_thread(_value, url, received)
            dropped = await asyncio.to_thread(
                _value, url, "delgrad_monitor_transport_dropped_in_total"
            )
            # staleness: silence devices and poll the exporter until each shows stale
            quiet = sim.devices[:: max(1, n_devices // max(1, silence))][:silence]
            sim.silence(quiet)
            detected: dict[str, float] = {}
            false_stale: set[str] = set()
            stale_url = url + "?name[]=delgrad_device_stale"
            deadline = time.monotonic() + 10 * heartbeat_period_s
            while len(detected) < len(quiet) and time.monotonic() < deadline:
                _, text = await asyncio.to_thread(_get, stale_url)
                seen = time.time()
                for labels, value in series_values(text, "delgrad_device_stale").items():
                    device = labels.split('"')[1]
                    if value == 1 and device in quiet:
                        detected.setdefault(device, seen - sim.last_beat_s[device])
                    elif value == 1:
                        false_stale.add(device)
                await asyncio.sleep(0.5)
            stop.set()
            await task
        finally:
            stop.set()
            await transport.close()
            stop_process(monitor)
            out.close()
    worst = max(detected.values()) if len(detected) == len(quiet) else float("nan")
    return {
        "devices_count": n_devices,
        "mode": "full" if full else "metrics-only",
        "monitor_nice_count": monitor_nice,
        "monitor_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "monitor_cpu_per_message_ms": 1e3 * (cpu1 - cpu0) / max(1.0, received1 - received0),
        "monitor_run_queue_wait_percent": 100 * (wait1 - wait0) / (t1 - t0),
        "monitor_rss_mb": max(rss) / 2**20,
        "messages_in_per_s": (received1 - received0) / max(1e-9, t1 - t0),
        "messages_published_per_s": (published1 - published0) / max(1e-9, t1 - t0),
        "monitor_inbox_dropped_count": dropped,
        "scrape_median_s": statistics.median(scrapes),
        "scrape_max_s": max(scrapes),
        "scrape_series_count": series,
        "stale_detect_max_s": worst,
        "stale_detect_heartbeats": worst / heartbeat_period_s,
        "stale_detected_count": len(detected),
        "silenced_count": len(quiet),
        "false_stale_count": len(false_stale),
        "load_1min": os.getloadavg()[0],
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median of several runs' figures (non-numbers from the first run)."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(float(r[key]) for r in runs)
        else:
            out[key] = value
    return out
