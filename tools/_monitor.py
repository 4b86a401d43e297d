"""Watching devices: metrics, status and parameters from the bus, without a terminal.

:class:`MonitorState` is pure: feed it received messages with :meth:`MonitorState.feed`
(raw) or :meth:`MonitorState.handle` (decoded) and read :attr:`MonitorState.devices`.
:func:`monitor` is the asyncio edge: it subscribes, feeds the state, asks the broker
for the retained parameter snapshot when a replica needs a re-sync, and calls back.
:func:`render` builds the rich table the ``delgrad monitor`` command shows.

A device is whatever publishes under ``delgrad/v1/{device}/``: MQTT does not tell a
subscriber who published (the envelope's ``sender`` is the publisher's own claim), so
the attribution rests on the broker's ACL letting only the device's account publish
there (docs/security.md, "Identities").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from delgrad.errors import NetworkFileError, ParameterError
from delgrad.protocols import (
    Alarm,
    Envelope,
    IncomingMessage,
    Metrics,
    ParameterDelta,
    ParameterReplica,
    ParameterSnapshot,
    ProtocolError,
    SequenceTracker,
    Status,
    TopicKind,
    Transport,
    TransportError,
    decode,
    parse_topic,
    subscription,
    topic,
)
from delgrad.runtime import Layer, Network, NeuronParams

log = logging.getLogger("delgrad.monitor")

__all__ = [
    "COLUMNS",
    "DEFAULT_HEARTBEAT_S",
    "FLEET_ROWS",
    "KINDS",
    "MAX_ALARMS",
    "MAX_DEVICES",
    "MAX_PARAMETER_DEVICES",
    "METRICS_KINDS",
    "MISSED_HEARTBEATS",
    "RESYNC_INTERVAL_S",
    "DeviceView",
    "LayerStats",
    "MonitorState",
    "fleet_line",
    "metric_order",
    "monitor",
    "render",
    "replica_network",
    "worst_first",
]

#: Topic kinds the monitor subscribes to.
KINDS: tuple[TopicKind, ...] = (
    TopicKind.METRICS,
    TopicKind.STATUS,
    TopicKind.ALARM,
    TopicKind.PARAMS_LATEST,
    TopicKind.PARAMS_DELTA,
)
#: Topic kinds of ``--metrics-only`` (no parameter stream: for a thin link).
METRICS_KINDS: tuple[TopicKind, ...] = (TopicKind.METRICS, TopicKind.STATUS, TopicKind.ALARM)
#: Heartbeat period assumed when a device's status does not say (seconds).
DEFAULT_HEARTBEAT_S = 5.0
#: A running device is shown ``stale`` after this many heartbeat periods of silence.
MISSED_HEARTBEATS = 3
#: Most devices tracked; messages of further devices are counted in
#: ``MonitorState.ignored_devices`` and otherwise dropped (docs/fleet.md: a fleet of
#: 1,000 devices, measured).
MAX_DEVICES = 2000
#: Most alarm names kept per device; further names are counted in
#: ``MonitorState.refused_alarms`` and dropped.
MAX_ALARMS = 32
#: Least time between two re-sync requests for one device, in seconds.
RESYNC_INTERVAL_S = 1.0
#: Metric names shown first, matched as substrings in this order.
_WELL_KNOWN = ("accuracy", "loss", "samples_per_s", "latency", "drop", "queue")
_RESERVED = frozenset({"time_s", "device", "kind", "step", "seq", "sender"})


def metric_order(name: str) -> tuple[int, str]:
    """Sort key of metric names: well-known ones first (accuracy, loss, samples/s,
    latency, drops, queues), then the rest alphabetically."""
    for i, pattern in enumerate(_WELL_KNOWN):
        if pattern in name:
            return (i, name)
    return (len(_WELL_KNOWN), name)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's parameters.

    Attributes:
        index: Layer number.
        delay_kind: The layer's delay kind (``"none"``, ``"synaptic"``, ...).
        w_mean: Mean weight.
        w_std: Standard deviation of the weights.
        d_mean: Mean delay in units of tau_s, or ``None`` without delays.
        d_min: Smallest delay in units of tau_s, or ``None``.
        d_max: Largest delay in units of tau_s, or ``None``.
    """

    index: int
    delay_kind: str
    w_mean: float
    w_std: float
    d_mean: float | None = None
    d_min: float | None = None
    d_max: float | None = None


def _layer_stats(i: int, kind: str, layer: Mapping[str, np.ndarray]) -> LayerStats:
    w = layer.get("w", np.zeros(0, np.float32)).astype(np.float64)
    d = layer.get("d", np.zeros(0, np.float32)).astype(np.float64)
    nan = math.nan
    ws = (float(w.mean()), float(w.std())) if w.size else (nan, nan)
    if d.size:
        return LayerStats(i, kind, *ws, float(d.mean()), float(d.min()), float(d.max()))
    return LayerStats(i, kind, *ws)


@dataclass
class DeviceView:
    """What the monitor knows about one device.

    Attributes:
        device: Device id.
        state: Last status (``"birth"``, ``"alive"``, ``"dead"``, ``"lost"``) or ``None``.
        detail: Status detail text.
        uptime_s: Device uptime from its last status, seconds.
        step: Step of the last metrics, or ``None``.
        metrics: Last metric values by name.
        metrics_time_s: Wall-clock time the last metrics arrived (s since the epoch).
        last_seen_s: Wall-clock time of the last message of any kind.
        messages: Messages received from this device.
        replica: The device's parameters, kept in step by snapshots and deltas.
        resyncs: Re-syncs requested (gaps, checksum mismatches, deltas before a snapshot).
        status_time_s: Wall-clock time the last status arrived.
        heartbeat: The ``heartbeat`` counter of the last status detail, or ``None``.
        heartbeat_period_s: Seconds between heartbeats (the detail's
            ``heartbeat_period_s``, else :data:`DEFAULT_HEARTBEAT_S`).
        alarms: The device's alarms (``alarm`` topic) by name: whether each holds.
    """

    device: str
    state: str | None = None
    detail: str = ""
    uptime_s: float = 0.0
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_time_s: float | None = None
    last_seen_s: float | None = None
    messages: int = 0
    replica: ParameterReplica = field(default_factory=ParameterReplica)
    resyncs: int = 0
    status_time_s: float | None = None
    heartbeat: int | None = None
    heartbeat_period_s: float = DEFAULT_HEARTBEAT_S
    alarms: dict[str, bool] = field(default_factory=dict)
    _stats_cache: tuple[int | None, list[LayerStats]] = (None, [])
    _last_resync_s: float = -math.inf

    def shown_state(self, now_s: float) -> str:
        """The state to show: the last status, ``stale`` for a running device that
        missed :data:`MISSED_HEARTBEATS` heartbeats (without heartbeats: silent for as
        long), and ``alive`` for a device
        whose metrics arrive after its ``birth`` (older services send no heartbeat)."""
        state = self.state
        if state is None:
            state = "?" if self.metrics_time_s is None else "alive"
        if state == "birth" and (self.metrics_time_s or -math.inf) > (self.status_time_s or 0):
            state = "alive"
        # a device that sends heartbeats is judged by them alone (metrics flowing from
        # a device whose heartbeat stopped do not hide it); older ones by any message
        last = self.status_time_s if self.heartbeat is not None else self.last_seen_s
        if state in ("birth", "alive", "?") and last is not None:
            if now_s - last > MISSED_HEARTBEATS * self.heartbeat_period_s:
                return "stale"
        return state

    @property
    def warnings(self) -> list[str]:
        """The device's active health warnings (``health.<name>`` = 1 in its last metrics)
        and alarms (``alarm`` topic) that hold."""
        found = {
            key.removeprefix("health.")
            for key, value in self.metrics.items()
            if key.startswith("health.") and key != "health.warnings" and value >= 1.0
        }
        return sorted(found | {name for name, on in self.alarms.items() if on})

    @property
    def params_seq(self) -> int | None:
        """Update sequence number of the held parameters (``None`` before a snapshot)."""
        return self.replica.seq

    def layer_stats(self) -> list[LayerStats]:
        """Per-layer parameter statistics of the held parameters ([] before a snapshot)."""
        snap = self.replica.snapshot
        if snap is None or self.replica.seq is None:
            return []
        if self._stats_cache[0] != self.replica.seq:
            layers = self.replica.layers()
            pairs = zip(snap.delay_kinds, layers, strict=True)
            stats = [_layer_stats(i, k, lay) for i, (k, lay) in enumerate(pairs)]
            self._stats_cache = (self.replica.seq, stats)
        return self._stats_cache[1]


class MonitorState:
    """Everything received so far, per device. Pure and synchronous.

    Args:
        max_devices: Most devices tracked (further ones are counted and ignored).
        resync_interval_s: Least seconds between re-sync requests of one device.
    """

    def __init__(
        self, *, max_devices: int = MAX_DEVICES, resync_interval_s: float = RESYNC_INTERVAL_S
    ) -> None:
        self.max_devices = max_devices
        self.resync_interval_s = resync_interval_s
        self.devices: dict[str, DeviceView] = {}
        self.received = 0
        self.bytes_received = 0
        self.first_message_s: float | None = None
        self.malformed = 0
        self.foreign = 0
        self.ignored_devices = 0
        self.refused_alarms = 0
        self._logged: set[str] = set()
        self.sequence = SequenceTracker()
        self.last_error = ""
        #: Seconds the monitor's own link to the broker has been down (0 while up):
        #: every device is then shown ``unreachable``, whatever it last said.
        self.broker_outage_s = 0.0
        self._resync: set[str] = set()

    # ---- input -------------------------------------------------------------------

    def feed(self, msg: IncomingMessage, now_s: float) -> dict[str, Any] | None:
        """Decode and handle a received message; malformed ones are counted, not raised.

        Returns:
            The record of a metrics or status message (see :meth:`handle`), else None.
        """
        self.received += 1
        self.bytes_received += len(msg.payload) + len(msg.topic.encode())
        if self.first_message_s is None:
            self.first_message_s = now_s
        try:
            env = decode(msg.payload)
        except ProtocolError as exc:
            self.malformed += 1
            self.last_error = f"{msg.topic}: {exc}"
            self._log_once("malformed", f"a malformed message on {msg.topic[:120]}: {exc}")
            return None
        return self.handle(env, msg.topic, now_s, retained=msg.retain)

    def handle(
        self, envelope: Envelope, topic_str: str, now_s: float, *, retained: bool = False
    ) -> dict[str, Any] | None:
        """Update the state with one decoded message.

        Args:
            envelope: The decoded message.
            topic_str: Topic it arrived on (gives the device and kind).
            now_s: Wall-clock receive time, seconds since the epoch.
            retained: Whether it came from the broker's retained store (not counted for
                sequence gaps).

        Returns:
            For metrics and status, a flat JSON-able record ``{"time_s", "device",
            "kind", ...}`` (metric values beside, renamed ``value.<name>`` if they
            clash with those keys); else None.
        """
        try:
            info = parse_topic(topic_str)
        except ParameterError:
            self.foreign += 1
            return None
        view = self.devices.get(info.device)
        if view is None:
            if len(self.devices) >= self.max_devices:
                self.ignored_devices += 1
                self._log_once(
                    "device_cap",
                    f"device {info.device!r} is beyond the {self.max_devices} devices watched "
                    "(--max-devices): its messages are dropped",
                )
                return None
            view = self.devices[info.device] = DeviceView(info.device)
        view.messages += 1
        view.last_seen_s = now_s
        if not retained:
            self.sequence.observe(envelope.sender, topic_str, envelope.seq)
        msg = envelope.message
        base = {"time_s": now_s, "device": info.device}
        if info.kind is TopicKind.METRICS and isinstance(msg, Metrics):
            view.step = msg.step
            view.metrics = dict(msg.values)
            view.metrics_time_s = now_s
            record = {**base, "kind": "metrics", "step": msg.step}
            for k, v in msg.values.items():
                record[f"value.{k}" if k in _RESERVED else k] = v
            return record
        if info.kind is TopicKind.ALARM and isinstance(msg, Alarm):
            if msg.name not in view.alarms and len(view.alarms) >= MAX_ALARMS:
                self.refused_alarms += 1
                self._log_once(
                    "alarm_cap",
                    f"device {info.device!r} sent more than {MAX_ALARMS} alarm names: "
                    f"{msg.name!r} dropped",
                )
                return None
            view.alarms[msg.name] = msg.active
            return {
                **base,
                "kind": "alarm",
                "name": msg.name,
                "active": msg.active,
                "value": msg.value,
                "reference": msg.reference,
                "detail": msg.detail,
            }
        if info.kind is TopicKind.STATUS and isinstance(msg, Status):
            view.state, view.detail, view.uptime_s = msg.state, msg.detail, msg.uptime_s
            view.status_time_s = now_s
            _read_heartbeat(view, msg.detail)
            return {
                **base,
                "kind": "status",
                "state": msg.state,
                "uptime_s": msg.uptime_s,
                "detail": msg.detail,
            }
        if info.kind is TopicKind.PARAMS_LATEST and isinstance(msg, ParameterSnapshot):
            view.replica.apply_snapshot(msg)
            self._resync.discard(info.device)
            return None
        if info.kind is TopicKind.PARAMS_DELTA and isinstance(msg, ParameterDelta):
            if not view.replica.apply_delta(msg) and view.replica.needs_resync:
                self._want_resync(view, now_s)
            return None
        self.foreign += 1  # a message type that does not belong on this topic
        return None

    def _log_once(self, reason: str, text: str) -> None:
        """Log the first refusal of each reason (the counters count them all)."""
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("monitor: %s (further ones counted, not logged)", text)

    def _want_resync(self, view: DeviceView, now_s: float) -> None:
        if now_s - view._last_resync_s >= self.resync_interval_s:
            view._last_resync_s = now_s
            view.resyncs += 1
            self._resync.add(view.device)

    def bytes_per_s(self, now_s: float) -> float:
        """Received bytes (payload and topic) per second since the first message."""
        if self.first_message_s is None:
            return 0.0
        return self.bytes_received / max(1.0, now_s - self.first_message_s)

    def shown_state(self, view: DeviceView, now_s: float) -> str:
        """What to show for ``view``: ``unreachable`` while the broker is, else
        :meth:`DeviceView.shown_state`."""
        return "unreachable" if self.broker_outage_s > 0 else view.shown_state(now_s)

    def device_counts(self, now_s: float) -> dict[str, int]:
        """Devices by shown state, e.g. ``{"alive": 19, "stale": 1}``."""
        counts: dict[str, int] = {}
        for view in self.devices.values():
            shown = self.shown_state(view, now_s)
            counts[shown] = counts.get(shown, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self, now_s: float) -> str:
        """``3 devices (2 alive, 1 lost)``: every device counted once."""
        n = len(self.devices)
        parts = ", ".join(f"{c} {k}" for k, c in self.device_counts(now_s).items())
        return f"{n} device{'s' if n != 1 else ''}" + (f" ({parts})" if parts else "")

    def take_resync_requests(self) -> list[str]:
        """Return (and forget) the devices whose replica needs the retained snapshot."""
        out = sorted(self._resync)
        self._resync.clear()
        return out

    # ---- output ------------------------------------------------------------------

    def metric_names(self) -> list[str]:
        """Every metric name seen in the latest metrics of any device, well-known first."""
        names = {k for v in self.devices.values() for k in v.metrics}
        return sorted(names, key=metric_order)

    def quiet_line(self, record: Mapping[str, Any]) -> str:
        """One line of text for a metrics, status or alarm record (``--quiet`` output)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(record["time_s"]))
        if record["kind"] == "alarm":
            state = "ALARM" if record["active"] else "cleared"
            return f"{stamp} {record['device']} {state} {record['name']}: {record['detail']}"
        if record["kind"] == "status":
            text = f"{stamp} {record['device']} status={record['state']}"
            if record.get("detail"):
                text += f" ({record['detail']})"
            return text
        view = self.devices.get(record["device"])
        values = view.metrics if view is not None else {}
        parts = [f"{k}={_fmt_metric(k, values[k])}" for k in sorted(values, key=metric_order)]
        return f"{stamp} {record['device']} step={record['step']} " + " ".join(parts)


def _read_heartbeat(view: DeviceView, detail: str) -> None:
    """Take ``heartbeat`` and ``heartbeat_period_s`` from a JSON status detail."""
    try:
        data = json.loads(detail) if detail.startswith("{") else None
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    beat = data.get("heartbeat")
    if isinstance(beat, int) and not isinstance(beat, bool):
        view.heartbeat = beat
    period = data.get("heartbeat_period_s")
    if isinstance(period, int | float) and not isinstance(period, bool) and period > 0:
        view.heartbeat_period_s = float(period)


def _is_accuracy(name: str) -> bool:
    return name == "accuracy" or name.endswith((".accuracy", "_accuracy"))


def _fmt_metric(name: str, v: float | None) -> str:
    """A metric value; accuracies (0 .. 1 on the wire) in %."""
    if v is not None and _is_accuracy(name) and math.isfinite(v):
        return f"{100 * v:.1f}%"
    return _fmt(v)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


_STATE_STYLE = {
    "birth": "cyan",
    "alive": "green",
    "dead": "yellow",
    "lost": "bold red",
    "stale": "bold yellow",
    "unreachable": "bold red",
}
#: The device table's columns: (header, metric name or None, format).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("acc %", "accuracy"),
    ("loss", "loss"),
    ("trials/s", "samples_per_s"),
    ("p99 ms", "latency.p99_ms"),
)
#: Devices whose parameter statistics are shown (more: one line).
MAX_PARAMETER_DEVICES = 3
#: Beyond this many devices the live view summarizes: counts by state and the
#: worst devices first, so a fleet fits one screen.
FLEET_ROWS = 20
#: How bad each shown state is (lower: worse; shown first in a fleet).
_SEVERITY = {"lost": 0, "unreachable": 1, "stale": 2, "dead": 3, "?": 4, "birth": 5, "alive": 6}


def worst_first(state: MonitorState, now_s: float) -> list[tuple[str, DeviceView]]:
    """Devices ordered worst first: by state (lost, unreachable, stale, dead, ...),
    then those with health warnings, then by accuracy (lowest first), then by name."""

    def key(item: tuple[str, DeviceView]) -> tuple[int, int, float, str]:
        name, view = item
        accuracy = view.metrics.get("accuracy", math.inf)
        severity = _SEVERITY.get(state.shown_state(view, now_s), 4)
        return (severity, 0 if view.warnings else 1, accuracy, name)

    return sorted(state.devices.items(), key=key)


def fleet_line(state: MonitorState, now_s: float, width: int = 80) -> str:
    """One line of at most ``width`` characters: the time, the counts by state and the
    worst devices (the plain output of a fleet monitor)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(now_s))
    line = f"{stamp} {state.summary(now_s)}"
    worst = []
    for name, view in worst_first(state, now_s)[:5]:
        shown = state.shown_state(view, now_s)
        if shown != "alive" or view.warnings:
            worst.append(f"{name} {shown}" + "".join(f" {w}" for w in view.warnings))
    if worst:
        line += "; worst: " + ", ".join(worst)
    return line if len(line) <= width else line[: width - 3] + "..."


def _cell(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if _is_accuracy(name):
        return f"{100 * value:.1f}"
    if name == "samples_per_s":
        return f"{value:,.0f}"
    if name.endswith("_ms"):
        return f"{value:.1f}"
    return _fmt(value)


def render(
    state: MonitorState,
    now_s: float,
    *,
    title: str = "delgrad monitor",
    extra: tuple[str, ...] = (),
    parameters: bool = True,
) -> RenderableType:
    """Build the live view: a device table that fits 80 columns, a parameter table
    (for at most :data:`MAX_PARAMETER_DEVICES` devices) and a counter line.

    Args:
        state: What was received.
        now_s: Wall-clock seconds (ages and staleness).
        title: The table's title.
        extra: Further metric names to show as columns (beyond 80 columns the
            terminal wraps or rich shortens them).
        parameters: Show the parameter statistics (off in ``--metrics-only``).
    """
    table = Table(
        title=title,
        title_justify="left",
        expand=False,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("device", justify="left", max_width=16, overflow="ellipsis", no_wrap=True)
    table.add_column("status", justify="left", no_wrap=True, max_width=26, overflow="ellipsis")
    for header in ("age s", "step"):
        table.add_column(header, justify="right", no_wrap=True)
    columns = [*COLUMNS, *((name, name) for name in extra)]
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    shown_rows = sorted(state.devices.items())
    if len(shown_rows) > FLEET_ROWS:  # a fleet: counts below, the worst devices here
        shown_rows = worst_first(state, now_s)[:FLEET_ROWS]
        table.title = f"{title}: the {FLEET_ROWS} worst of {len(state.devices)} devices"
    for name, view in shown_rows:
        age = "-" if view.last_seen_s is None else f"{max(0.0, now_s - view.last_seen_s):.0f}"
        shown = state.shown_state(view, now_s)
        status = Text(shown, style=_STATE_STYLE.get(shown, "dim"))
        if view.warnings and shown in ("alive", "birth"):  # what the device says is wrong
            status.append(" " + ",".join(view.warnings), style="bold yellow")
        step = "-" if view.step is None else str(view.step)
        cells = [_cell(metric, view.metrics.get(metric)) for _, metric in columns]
        table.add_row(name, status, age, step, *cells)
    parts: list[Any] = [table]
    ptable = Table(title="parameters", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("device", "seq", "layer", "delays", "w mean", "w std", "d mean", "d min", "d max"):
        ptable.add_column(
            col,
            justify="left" if col in ("device", "delays") else "right",
            no_wrap=True,
            max_width=16 if col == "device" else None,
            overflow="ellipsis",
        )
    rows = 0
    with_params = [(n, v) for n, v in shown_rows if v.layer_stats()]
    for name, view in with_params[:MAX_PARAMETER_DEVICES] if parameters else []:
        seq = "-" if view.params_seq is None else str(view.params_seq)
        if view.replica.needs_resync and view.params_seq is not None:
            seq += " (re-sync)"
        for ls in view.layer_stats():
            ptable.add_row(
                name,
                seq,
                str(ls.index),
                ls.delay_kind,
                _fmt(ls.w_mean),
                _fmt(ls.w_std),
                _fmt(ls.d_mean),
                _fmt(ls.d_min),
                _fmt(ls.d_max),
            )
            rows += 1
    if rows:
        parts.append(ptable)
    if parameters and len(with_params) > MAX_PARAMETER_DEVICES:
        more = len(with_params) - MAX_PARAMETER_DEVICES
        parts.append(
            Text(f"(parameters of {more} more devices: delgrad monitor DEVICE)", style="dim")
        )
    outage = ""
    if state.broker_outage_s > 0:
        outage = f"broker not answering for {state.broker_outage_s:.0f} s, reconnecting; "
    counters = (
        f"{outage}{state.summary(now_s)}; {state.received} messages, "
        f"{state.bytes_per_s(now_s) / 1024:.1f} KiB/s, {state.malformed} malformed, "
        f"{state.sequence.missed} missed"
    )
    resyncs = sum(v.resyncs for v in state.devices.values())
    if resyncs:
        counters += f", {resyncs} parameter re-syncs"
    if state.ignored_devices:
        counters += f", {state.ignored_devices} from devices beyond {state.max_devices}"
    parts.append(Text(counters, style="dim"))
    if not state.devices:
        parts.append(Text("waiting for messages ...", style="dim"))
    return Group(*parts)


async def _resync(transport: Transport, device_filter: str, device: str) -> str | None:
    """Ask the broker for ``device``'s retained snapshot again (re-subscribing gives it).

    Returns:
        The extra concrete filter subscribed for a ``+`` monitor (to drop later), or None.
    """
    pattern = subscription(device_filter, TopicKind.PARAMS_LATEST)
    if device_filter == "+":
        # A concrete filter of its own; the wildcard one keeps running meanwhile.
        pattern = topic(device, TopicKind.PARAMS_LATEST)
    await transport.unsubscribe(pattern)
    await transport.subscribe(pattern, qos=1)
    return pattern if device_filter == "+" else None


async def monitor(
    transport: Transport,
    device: str = "+",
    *,
    on_update: Callable[[MonitorState, dict[str, Any] | None], None] | None = None,
    stop: asyncio.Event | None = None,
    duration_s: float | None = None,
    state: MonitorState | None = None,
    clock: Callable[[], float] = time.time,
    poll_s: float = 0.25,
    kinds: tuple[TopicKind, ...] = KINDS,
) -> MonitorState:
    """Subscribe to a device's (or every device's) metrics, status and parameters.

    Runs until ``stop`` is set, ``duration_s`` passes or the transport closes.
    Decoding errors are counted in the state, never raised. When a replica needs a
    re-sync (a gap in the deltas, a checksum mismatch), the retained
    ``params/latest`` snapshot is requested again by re-subscribing (at most once per
    ``MonitorState.resync_interval_s`` per device). With the ``+`` filter a concrete
    per-device subscription is added for that and removed once the retained snapshot
    has arrived.

    Args:
        transport: A connected transport.
        device: Device id, or ``"+"`` for every device.
        on_update: Called after every received message with the state and the record
            of a metrics/status message (None for others); also every ``poll_s``
            seconds without messages (with None), so views can refresh ages.
        stop: Set it to end.
        duration_s: Seconds to run, or None.
        state: State to update (a new one if None).
        clock: Wall-clock seconds since the epoch (record ``time_s``).
        poll_s: Longest wait for a message before checking ``stop``, seconds.
        kinds: Topic kinds to subscribe to (:data:`METRICS_KINDS` for a thin link).

    Returns:
        The state.
    """
    state = MonitorState() if state is None else state
    stop = asyncio.Event() if stop is None else stop
    for kind in kinds:
        await transport.subscribe(subscription(device, kind), qos=1)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    extra: set[str] = set()  # concrete re-sync filters of a "+" monitor
    while not stop.is_set():
        state.broker_outage_s = float(getattr(transport, "outage_s", 0.0))
        wait = poll_s
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                break
        try:
            msg = await transport.recv(timeout=wait)
        except TimeoutError:
            if on_update is not None:
                on_update(state, None)
            continue
        except TransportError:
            break
        record = state.feed(msg, clock())
        if msg.retain and msg.topic in extra:
            extra.discard(msg.topic)
            await transport.unsubscribe(msg.topic)
        for dev in state.take_resync_requests():
            pattern = await _resync(transport, device, dev)
            if pattern is not None:
                extra.add(pattern)
        if on_update is not None:
            on_update(state, record)
    return state


def replica_network(replica: ParameterReplica) -> Network:
    """The network a device's parameter stream describes (float64 copies of the
    float32 wire values).

    Raises:
        NetworkFileError: no snapshot yet, or layers with bias inputs (their spike
            times are not on the wire).
    """
    snap = replica.snapshot
    if snap is None or replica.seq is None:
        raise NetworkFileError("no parameter snapshot received yet")
    layers, ws, ds = [], [], []
    for i, (kind, lay) in enumerate(zip(snap.delay_kinds, replica.layers(), strict=True)):
        w = np.asarray(lay["w"], dtype=np.float64)
        n_in, n_out = snap.layer_sizes[i], snap.layer_sizes[i + 1]
        if w.shape != (n_in, n_out):
            raise NetworkFileError(
                f"layer {i}: weights {w.shape} for {n_in} inputs (bias inputs are not on the "
                "wire); save the network on the device instead"
            )
        layers.append(Layer(n_in, n_out, kind))  # type: ignore[arg-type]
        ws.append(w)
        ds.append(np.asarray(lay.get("d", np.zeros(0)), dtype=np.float64))
    p = snap.neuron
    neuron = NeuronParams(tau_s=p.tau_s, tau_m=p.tau_m, theta=p.theta)
    return Network(layers, neuron, w=ws, d=ds)
