"""End-to-end benchmarks of the streaming runtime through a real MQTT broker.

Three processes on loopback, as deployed: ``mosquitto`` (started here on a free
port with a throw-away configuration, :class:`~delgrad.tools.Mosquitto`),
``delgrad run --config ... --quiet`` (the service: emulator-ideal driver, the
default recipe, learning on) and ``delgrad sensor`` (Yin-Yang trials, or a file
given as ``source``, as ``delgrad sensor --source``; every trial labelled, batched
in messages). The runtime's own metrics are read by subscribing to its metrics
topic; resident memory and CPU time come from ``/proc`` (Linux).

Run ``delgrad bench e2e {throughput,latency,memory,live}``; each prints one JSON line.
``--network 784-350-10`` (or ``2312-400-10``) runs the first three at sensor scale: the
shipped ``bench_*`` recipe, fed from a random trial file written here
(:func:`write_random_trials`). ``live`` streams an event recording through the
device's windows and measures event published -> prediction published.
See docs/performance.md, "Streaming runtime" and "Service at sensor scale".

Every wait is bounded; every process started here is stopped (SIGINT/SIGTERM,
then SIGKILL after a timeout) before the function returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.protocols import (
    Metrics,
    Predictions,
    ProtocolError,
    SensorEvents,
    SpikeBatch,
    Status,
    Transport,
    decode,
    topic,
    transport_from_url,
)
from delgrad.tools._mosquitto import Mosquitto
from delgrad.tools._toml import write_toml

__all__ = [
    "BENCHMARKS",
    "LIVE_NETWORKS",
    "NETWORKS",
    "check_live",
    "latency",
    "live",
    "memory",
    "parse_overrides",
    "throughput",
    "window_latency_ms",
    "write_random_trials",
]

DEVICE = "bench"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: The ``delgrad`` command of this interpreter (works without the console script).
DELGRAD = [sys.executable, "-m", "delgrad.tools"]


# ------------------------------------------------------------------ processes


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``/proc/PID/statm``), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its threads, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


# ------------------------------------------------------------------ networks


@dataclass(frozen=True)
class BenchNetwork:
    """A sensor-scale network of the benchmarks: its shipped recipe and trial file."""

    recipe: str
    n_inputs: int
    n_trials: int


#: ``--network`` of throughput, latency and memory ("yinyang": the built-in sensor).
NETWORKS: dict[str, BenchNetwork | None] = {
    "yinyang": None,
    "784-350-10": BenchNetwork("bench_784_350_10", 784, 5_000),
    "2312-400-10": BenchNetwork("bench_2312_400_10", 2312, 2_000),
}


def write_random_trials(path: Path, n_inputs: int, n_trials: int, *, seed: int = 0) -> Path:
    """A CSR trial file (``.npz``, ``delgrad sensor --source``) of random trials.

    In each trial 20-30 % of the ``n_inputs`` channels spike once, at times uniform
    in [0.15, 2] tau_s; labels uniform in 0-9 (not learnable: the looped file is
    memorised, so accuracy means nothing in these benchmarks).
    """
    rng = np.random.default_rng(seed)
    counts = (rng.uniform(0.2, 0.3, n_trials) * n_inputs).astype(int)
    channels = np.concatenate([np.sort(rng.choice(n_inputs, k, replace=False)) for k in counts])
    np.savez(
        path,
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        channels=channels.astype(np.int32),
        times=rng.uniform(0.15, 2.0, counts.sum()),
        labels=rng.integers(0, 10, n_trials),
    )
    return path


def _sections(config: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of a run configuration whose sections can be changed without touching
    the caller's."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in (config or {}).items()}


def _with_network(
    network: str, folder: Path, config: dict[str, Any] | None, source: str
) -> tuple[dict[str, Any], str]:
    """The run configuration and sensor source of ``network`` (written into ``folder``)."""
    try:
        spec = NETWORKS[network]
    except KeyError:
        raise ValueError(f"unknown network {network!r}: one of {', '.join(NETWORKS)}") from None
    merged = _sections(config)
    if spec is None:
        return merged, source
    merged.setdefault("model", {}).setdefault("recipe", spec.recipe)
    if source == "yinyang":
        source = str(
            write_random_trials(
                folder / f"trials_{spec.n_inputs}.npz", spec.n_inputs, spec.n_trials
            )
        )
    return merged, source


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20.0
) -> int:
    """Signal ``proc``, wait up to ``timeout_s``, then kill it. Returns its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
    return int(proc.returncode)


@dataclass
class Setup:
    """The broker and the runtime of one benchmark."""

    folder: Path
    broker: Mosquitto
    runtime: subprocess.Popen[bytes]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: ``delgrad sensor --source`` ("yinyang", the default, or a trial/recording file)
    source: str = "yinyang"

    @property
    def url(self) -> str:
        return self.broker.url

    def sensor(
        self,
        *,
        rate: float | None = None,
        batch: int | None = None,
        duration_s: float | None = None,
        count: int | None = None,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``delgrad sensor`` (every trial labelled; ``extra`` options appended)."""
        cmd = [*DELGRAD, "sensor", "--broker", self.url, "--device", DEVICE]
        if rate is not None:
            cmd += ["--rate", str(rate)]
        if batch is not None:
            cmd += ["--batch", str(batch)]
        if self.source != "yinyang":
            cmd += ["--source", self.source]
        if duration_s is not None:
            cmd += ["--duration", str(duration_s)]
        if count is not None:
            cmd += ["--count", str(count)]
        cmd += list(extra)
        with open(self.folder / "sensor.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc


@contextlib.contextmanager
def running(
    config: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    source: str = "yinyang",
    network: str = "yinyang",
) -> Iterator[Setup]:
    """Start mosquitto and ``delgrad run`` (``config`` sections merged into its
    configuration, ``env`` added to its environment); stop both. The sensors started
    on the returned setup stream ``source`` (for a :data:`NETWORKS` entry other than
    Yin-Yang: its recipe and, unless ``source`` is given, its random trial file)."""
    folder = Path(tempfile.mkdtemp(prefix="delgrad-bench-"))
    broker = Mosquitto(folder, max_queued_messages=10_000)
    runtime = None
    setup = None
    try:
        config, source = _with_network(network, folder, config, source)
        broker.start(timeout_s=10.0)
        data: dict[str, Any] = {
            "device": DEVICE,
            "broker": {"url": broker.url},
            "publish": {"metrics_period_s": 1.0},
        }
        for key, value in (config or {}).items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        write_toml(folder / "run.toml", data)
        with open(folder / "runtime.log", "ab") as log:
            runtime = subprocess.Popen(
                [*DELGRAD, "run", "--config", str(folder / "run.toml"), "--quiet"],
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        setup = Setup(folder, broker, runtime, source=source)
        yield setup
    finally:
        if setup is not None:
            for proc in setup.processes:
                stop_process(proc, signal.SIGINT, 10.0)
        if runtime is not None:
            stop_process(runtime, signal.SIGTERM, 30.0)
        broker.stop(timeout_s=10.0)
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------- watching


@dataclass
class Sample:
    """One metrics message of the runtime, with the time it arrived and /proc readings."""

    wall_s: float
    values: dict[str, float]
    rss: int
    cpu: dict[str, float]


class SentLog:
    """The latest ``capacity`` (key, sensor timestamp ns) pairs of the event messages a
    watcher saw, keys non-decreasing, as arrays ready for ``np.searchsorted``.

    Appending is amortised O(1) (the older half is dropped when full) and reading is
    a view, so a predictions message costs a binary search, not a copy of the log.
    """

    def __init__(self, capacity: int) -> None:
        self._keys = np.empty(2 * capacity)
        self._stamps = np.empty(2 * capacity, dtype=np.int64)
        self._capacity = capacity
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, key: float, stamp_ns: int) -> None:
        if self._n == self._keys.size:  # keep the newest half
            keep = self._capacity
            self._keys[:keep] = self._keys[self._n - keep : self._n]
            self._stamps[:keep] = self._stamps[self._n - keep : self._n]
            self._n = keep
        self._keys[self._n] = key
        self._stamps[self._n] = stamp_ns
        self._n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, stamps) of the kept messages, oldest first (views)."""
        return self._keys[: self._n], self._stamps[: self._n]


def window_latency_ms(
    latest_us: np.ndarray,
    stamps_ns: np.ndarray,
    trial_ids: np.ndarray,
    period_us: float,
    length_us: float,
    received_ns: int,
) -> list[float]:
    """Latency of windowed predictions, ms: ``received_ns`` minus the sensor timestamp
    of the first event message whose latest event reaches the window's end (until
    that message the device cannot know that the window is over).

    Args:
        latest_us: (n_messages,) latest event time of each message, us, non-decreasing.
        stamps_ns: (n_messages,) the messages' sensor timestamps, ns.
        trial_ids: (n,) window indices k; window k ends at ``k * period_us + length_us``.
        period_us, length_us: the device's windows.
        received_ns: when the predictions arrived.

    Returns:
        One latency per window that such a message completed (windows closed by the
        device's idle flush have none and are left out).
    """
    ends = trial_ids * period_us + length_us
    at = np.searchsorted(latest_us, ends, side="left")
    ok = at < latest_us.size
    return ((received_ns - stamps_ns[at[ok]]) / 1e6).tolist()


class Watcher:
    """Subscribes to the runtime's metrics (and optionally events and predictions)."""

    def __init__(
        self,
        setup: Setup,
        *,
        latency: bool = False,
        window_us: tuple[float, float] | None = None,
    ) -> None:
        self.setup = setup
        self.latency = latency or window_us is not None
        # (period, length) of the device's windows, us: a windowed event stream
        self.window_us = window_us
        # (latest event time us, sensor timestamp ns) of recent sensor_events messages
        self._events = SentLog(100_000)
        self.samples: list[Sample] = []
        self.rss_peak = 0
        # (first trial id, n, sensor timestamp ns) of recent event messages (bounded)
        self._sent = SentLog(10_000)
        self.subscriber_latency_ms: deque[float] = deque(maxlen=200_000)
        # sensor timestamp -> this subscriber received the event message (the path
        # without the runtime: sensor and broker)
        self.transit_ms: deque[float] = deque(maxlen=200_000)
        self._transport: Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self.birth = asyncio.Event()

    def pids(self) -> dict[str, int]:
        out = {"runtime": self.setup.runtime.pid, "broker": self.setup.broker.pid}
        for i, proc in enumerate(self.setup.processes):
            out["sensor" if i == 0 else f"sensor{i}"] = proc.pid
        return out

    async def __aenter__(self) -> Watcher:
        transport = transport_from_url(
            self.setup.url, client_id=f"bench-watch-{os.getpid()}", inbox_capacity=100_000
        )
        await transport.__aenter__()
        self._transport = transport
        kinds = ["metrics", "status"] + (["events/in", "predictions"] if self.latency else [])
        for kind in kinds:
            await transport.subscribe(topic(DEVICE, kind), qos=0)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            await self._transport.__aexit__(None, None, None)

    async def _collect(self) -> None:
        assert self._transport is not None
        while True:
            msg = await self._transport.recv()
            received_ns = time.time_ns()
            try:
                env = decode(msg.payload)
            except ProtocolError:
                continue
            m = env.message
            if isinstance(m, Metrics):
                pid = self.setup.runtime.pid
                rss = rss_bytes(pid)
                self.rss_peak = max(self.rss_peak, rss)
                cpu = {name: cpu_seconds(p) for name, p in self.pids().items()}
                self.samples.append(Sample(time.monotonic(), dict(m.values), rss, cpu))
            elif isinstance(m, Status) and m.state == "birth":
                self.birth.set()
            elif isinstance(m, SpikeBatch) and m.n_trials:
                self._sent.append(int(m.trial_ids[0]), env.timestamp_ns)
                self.transit_ms.append((received_ns - env.timestamp_ns) / 1e6)
            elif isinstance(m, SensorEvents) and m.times.size and m.time_unit == "us":
                self._events.append(float(m.times.max()), env.timestamp_ns)
                self.transit_ms.append((received_ns - env.timestamp_ns) / 1e6)
            elif isinstance(m, Predictions) and m.trial_ids.size and self._events:
                self.subscriber_latency_ms.extend(self._window_latency_ms(m, received_ns))
            elif isinstance(m, Predictions) and m.trial_ids.size and self._sent:
                starts, stamps = self._sent.arrays()
                at = np.searchsorted(starts, m.trial_ids, side="right") - 1
                ok = at >= 0
                lat = (received_ns - stamps[at[ok]]) / 1e6
                self.subscriber_latency_ms.extend(lat.tolist())

    def _window_latency_ms(self, m: Predictions, received_ns: int) -> list[float]:
        if self.window_us is None:
            return []
        latest, stamps = self._events.arrays()
        return window_latency_ms(latest, stamps, m.trial_ids, *self.window_us, received_ns)

    async def wait(self, predicate: Callable[[dict[str, float]], bool], timeout_s: float) -> Sample:
        """Wait for a metrics sample satisfying ``predicate`` (bounded)."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for sample in self.samples[seen:]:
                if predicate(sample.values):
                    return sample
            seen = len(self.samples)
            if self.setup.runtime.poll() is not None:
                raise RuntimeError(f"runtime exited with {self.setup.runtime.returncode}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no matching metrics within {timeout_s} s")

    async def later(self, sample: Sample, seconds: float) -> Sample:
        """The first metrics sample ``seconds`` of runtime uptime after ``sample``."""
        since = _get(sample.values, "uptime_s")
        return await self.wait(lambda v: _get(v, "uptime_s") >= since + seconds, seconds + 30)


def _get(values: dict[str, float], key: str) -> float:
    return float(values.get(key, 0.0))


def _backlog(values: dict[str, float], batch: int) -> float:
    handled = (_get(values, "trials.received") + _get(values, "labels.received")) / batch
    return _get(values, "transport.received") - handled


def _outbox(values: dict[str, float]) -> float:
    gone = sum(
        _get(values, f"transport.{k}")
        for k in ("published", "dropped_out_lossy", "dropped_out_reliable", "coalesced_out")
    )
    return _get(values, "published.messages") - gone


def _window(a: Sample, b: Sample, batch: int) -> dict[str, Any]:
    dt = _get(b.values, "uptime_s") - _get(a.values, "uptime_s")

    def d(key: str) -> float:
        return _get(b.values, key) - _get(a.values, key)

    wall = b.wall_s - a.wall_s
    cpu = {k: round(100 * (b.cpu.get(k, 0) - a.cpu.get(k, 0)) / wall, 1) for k in b.cpu}
    received = d("trials.received")
    lossy = d("transport.dropped_in_lossy")
    offered = received + lossy * batch  # a dropped event message held `batch` trials
    dropped = d("dropped.overload") + lossy * batch
    return {
        "window_s": round(dt, 2),
        "trials_per_s": round(d("trials.processed") / dt, 1),
        "offered_per_s": round(offered / dt, 1),
        "joined_per_s": round(d("join.joined") / dt, 1),
        "learning_steps_per_s": round((d("learning.steps") + d("learning.bumps")) / dt, 2),
        "dropped_overload": int(d("dropped.overload")),
        "dropped_inbox_messages": int(lossy),
        "drop_rate": round(dropped / offered, 5) if offered else 0.0,
        "cpu_percent": cpu,
        "outbox_backlog": [int(_outbox(a.values)), int(_outbox(b.values))],
        "join_waiting": [
            [int(_get(x.values, f"join.waiting_{k}")) for k in ("trials", "labels")] for x in (a, b)
        ],
        "join_missing_labels": int(d("join.missing_labels")),
        "join_orphan_labels": int(d("join.orphan_labels")),
        "dropped_out_lossy": int(d("transport.dropped_out_lossy")),
        "accuracy": _get(b.values, "accuracy"),
        "latency_p99_ms": _get(b.values, "latency.p99_ms"),
    }


async def _started(setup: Setup, watcher: Watcher, timeout_s: float = 90.0) -> None:
    await watcher.wait(lambda v: True, timeout_s)  # the first metrics: subscribed and warm


async def _measured(
    watcher: Watcher, start_sensor: Callable[[], object], warmup_s: float, measure_s: float
) -> tuple[Sample, Sample]:
    """Start the sensor once the runtime is up; the metrics samples ``warmup_s`` after
    the first processed trial and ``measure_s`` after that (latencies kept from then)."""
    await _started(watcher.setup, watcher)
    start_sensor()
    first = await watcher.wait(lambda v: _get(v, "trials.processed") > 0, 60)
    a = await watcher.later(first, warmup_s)
    watcher.subscriber_latency_ms.clear()
    watcher.transit_ms.clear()
    return a, await watcher.later(a, measure_s)


# ------------------------------------------------------------------ benchmarks


async def throughput(
    rate: float = 60_000.0,
    batch: int = 1000,
    warmup_s: float = 8.0,
    measure_s: float = 24.0,
    config: dict[str, Any] | None = None,
    source: str = "yinyang",
    network: str = "yinyang",
) -> dict[str, Any]:
    """Sustained processed trials/s over ``measure_s`` after ``warmup_s``."""
    with running(config, source=source, network=network) as setup:
        async with Watcher(setup) as watcher:
            a, b = await _measured(
                watcher,
                lambda: setup.sensor(rate=rate, batch=batch, duration_s=warmup_s + measure_s + 10),
                warmup_s,
                measure_s,
            )
    return {"bench": "throughput", "rate": rate, "batch": batch, **_window(a, b, batch)}


async def latency(
    rate: float = 5_000.0,
    batch: int = 50,
    warmup_s: float = 5.0,
    measure_s: float = 20.0,
    config: dict[str, Any] | None = None,
    source: str = "yinyang",
    network: str = "yinyang",
) -> dict[str, Any]:
    """The service's p99 latency (event received -> prediction published) at ``rate``,
    and the subscriber's view (sensor timestamp -> prediction received)."""
    with running(config, source=source, network=network) as setup:
        async with Watcher(setup, latency=True) as watcher:
            a, b = await _measured(
                watcher,
                lambda: setup.sensor(rate=rate, batch=batch, duration_s=warmup_s + measure_s + 10),
                warmup_s,
                measure_s,
            )
            sub = np.array(watcher.subscriber_latency_ms)
            transit = np.array(watcher.transit_ms)
    result = {"bench": "latency", "rate": rate, "batch": batch, **_window(a, b, batch)}
    result.update(_latencies(b, sub, transit))
    return result


def _quantiles_ms(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.5, 0.9, 0.99, 1.0])
    return dict(zip(("p50", "p90", "p99", "max"), np.round(q, 3).tolist(), strict=True))


def _latencies(b: Sample, sub: np.ndarray, transit: np.ndarray) -> dict[str, Any]:
    """The service's own latency quantiles and the subscriber's view, ms."""
    out: dict[str, Any] = {
        "service_ms": {
            k: round(_get(b.values, f"latency.{k}_ms"), 3) for k in ("p50", "p90", "p99", "max")
        }
    }
    if sub.size:
        out["subscriber_ms"] = _quantiles_ms(sub)
        out["subscriber_trials"] = int(sub.size)
    if transit.size:
        out["events_transit_ms"] = _quantiles_ms(transit)
    return out


#: ``live``: how each network sees the event digits of ``delgrad digits events`` (36 x 36
#: pixels): its recipe and the sensor's pixel mapping (docs/sensors.md).
LIVE_NETWORKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "digits": (
        "digits_events_H100_W",
        ("--roi", "2,2,32,32", "--pool", "4", "--polarity", "split"),
    ),
    "784": ("bench_784_350_10", ("--roi", "4,4,28,28", "--pool", "1", "--polarity", "merge")),
}
#: The event digits' device windows: one digit per 3 tau_s at 100,000 us per tau_s.
LIVE_US_PER_TAU = 100_000.0
LIVE_WINDOW_TAU = 3.0
#: Event messages per second the live sensor aims at (windows are grouped above it).
LIVE_MESSAGES_PER_S = 2_000.0


def check_live(rate: float, source: str, network: str) -> None:
    """Refuse what :func:`live` cannot run, before anything starts.

    Raises:
        ValueError: an unknown network, a source that is not an existing recording,
            or a rate that is not finite and > 0 windows/s.
    """
    if network not in LIVE_NETWORKS:
        raise ValueError(f"unknown live network {network!r}: one of {', '.join(LIVE_NETWORKS)}")
    if source == "yinyang" or not Path(source).exists():
        raise ValueError(
            f"live streams an event recording, not {source!r}: make one with "
            "`delgrad digits events --out ev`, then --source ev/digits_train.aedat4"
        )
    if not (rate > 0 and np.isfinite(rate)):
        raise ValueError(f"live needs a finite rate > 0 windows/s, got {rate}")


async def live(
    rate: float = 1_000.0,
    batch: int = 0,
    warmup_s: float = 5.0,
    measure_s: float = 20.0,
    config: dict[str, Any] | None = None,
    source: str = "yinyang",
    network: str = "digits",
) -> dict[str, Any]:
    """The live path: an event recording (``source``) streamed through the device's
    windows at ``rate`` windows/s, ``batch`` windows per event message (0: enough that
    at most :data:`LIVE_MESSAGES_PER_S` messages/s are sent); latency from the sensor
    publishing the events that complete a window to the window's prediction arriving
    at a subscriber beside the device (``subscriber_ms``), and the service's own
    (``service_ms``: events received -> prediction published)."""
    check_live(rate, source, network)
    recipe, mapping = LIVE_NETWORKS[network]
    per_message = batch or max(1, round(rate / LIVE_MESSAGES_PER_S))
    window_us = LIVE_WINDOW_TAU * LIVE_US_PER_TAU
    merged = _sections(config)
    merged.setdefault("model", {}).setdefault("recipe", recipe)
    merged.setdefault("ingest", {}).update(
        us_per_tau=LIVE_US_PER_TAU, window_length=LIVE_WINDOW_TAU, window_period=0.0
    )
    options = [
        *mapping,
        "--window-length", str(LIVE_WINDOW_TAU),
        "--us-per-tau", str(LIVE_US_PER_TAU),
        "--speed", str(rate * window_us / 1e6),
        "--chunk-ms", str(per_message * window_us / 1e3),
        "--passes", "10000",
    ]  # fmt: skip
    with running(merged, source=source) as setup:
        async with Watcher(setup, window_us=(window_us, window_us)) as watcher:
            a, b = await _measured(
                watcher,
                lambda: setup.sensor(duration_s=warmup_s + measure_s + 10, extra=options),
                warmup_s,
                measure_s,
            )
            sub = np.array(watcher.subscriber_latency_ms)
            transit = np.array(watcher.transit_ms)
    result = {
        "bench": "live",
        "network": network,
        "rate": rate,
        "windows_per_message": per_message,
        **_window(a, b, per_message),
    }
    result.update(_latencies(b, sub, transit))
    return result


async def memory(
    rate: float = 20_000.0,
    batch: int = 1000,
    overload: float = 1.0,
    first: int = 100_000,
    last: int = 2_000_000,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    source: str = "yinyang",
    network: str = "yinyang",
) -> dict[str, Any]:
    """Runtime RSS after ``first`` and after ``last`` streamed trials, offered at
    ``rate * overload`` trials/s. Streamed = received by the service plus those in
    event messages its transport inbox dropped."""
    offered = rate * overload

    def streamed(v: dict[str, float]) -> float:
        return _get(v, "trials.received") + batch * _get(v, "transport.dropped_in_lossy")

    with running(config, env=env, source=source, network=network) as setup:
        async with Watcher(setup) as watcher:
            await _started(setup, watcher)
            rss_start = rss_bytes(setup.runtime.pid)
            budget = last / max(offered, 1.0) * 4 + 120
            setup.sensor(rate=offered, batch=batch, duration_s=budget)
            a = await watcher.wait(lambda v: streamed(v) >= first, budget)
            watcher.rss_peak = a.rss
            b = await watcher.wait(lambda v: streamed(v) >= last, budget)
    out = {
        "bench": "memory",
        "rate_offered": offered,
        "overload": overload,
        "batch": batch,
        "streamed_first": int(streamed(a.values)),
        "streamed_last": int(streamed(b.values)),
        "rss_start_mb": round(rss_start / 2**20, 2),
        "rss_first_mb": round(a.rss / 2**20, 2),
        "rss_last_mb": round(b.rss / 2**20, 2),
        "rss_peak_after_first_mb": round(watcher.rss_peak / 2**20, 2),
        "growth_mb": round((b.rss - a.rss) / 2**20, 2),
        # messages the runtime's transport queued but the service had not handled yet
        "inbox_backlog_first": int(_backlog(a.values, batch)),
        "inbox_backlog_last": int(_backlog(b.values, batch)),
        **_window(a, b, batch),
    }
    return out


BENCHMARKS: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {
    "throughput": throughput,
    "latency": latency,
    "memory": memory,
    "live": live,
}


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``SECTION.KEY=JSON`` strings as ``{section: {key: value}}``.

    Raises:
        ValueError: an item without ``SECTION.KEY=`` or with a value that is not JSON.
    """
    config: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (eq and dot and section and name):
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=JSON")
        try:
            config.setdefault(section, {})[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--set {item!r}: the value is not JSON ({exc.msg})") from None
    return config
