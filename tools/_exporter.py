"""Prometheus exporter of a monitor: every device's metrics, state and health as series.

:class:`FleetExporter` is a prometheus_client collector over a
:class:`~delgrad.tools._monitor.MonitorState`: each scrape reads the state as it is
(nothing is copied per message), so a scrape costs what the fleet holds and the
message path only pays for :meth:`FleetExporter.observe`, the allow-list check.
:func:`serve` starts the scrape endpoint (prometheus_client's threaded HTTP server).

Cardinality is bounded: devices by the state's ``max_devices``, metric names by the
allow-list of :mod:`~delgrad.tools._prom_names`, alarm names by the state's
``MAX_ALARMS``. Refusals (devices beyond the cap, names off the list, implausible
values, malformed messages) are counted in ``delgrad_monitor_refused_total{reason}``
and each reason is logged once.
"""

from __future__ import annotations

import gzip
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.samples import Sample

from delgrad.errors import ConfigError
from delgrad.tools._monitor import MonitorState
from delgrad.tools._prom_names import PREFIX, Spec, lookup

__all__ = ["MAX_VALUE", "STATES", "FleetExporter", "exposition", "parse_listen", "serve"]

log = logging.getLogger("delgrad.monitor")

#: Largest magnitude exported; a device sending more is refused (reason ``value``).
MAX_VALUE = 1e18
#: Device states of ``delgrad_device_state{state}``.
STATES = ("birth", "alive", "stale", "dead", "lost", "unreachable", "unknown")
_STATE_NAMES = {name: name for name in STATES}  # the monitor's "?" (nothing yet): unknown
_REASONS = ("device_cap", "metric_name", "value", "malformed", "alarm_cap")


def parse_listen(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1.

    Raises:
        ConfigError: not a port in 0 .. 65535, or an empty host.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535 or (sep and not host):
        raise ConfigError(
            f"--prometheus wants [HOST:]PORT, e.g. 9464 or 0.0.0.0:9464; got {text!r}"
        )
    return host, port


class FleetExporter:
    """The monitor's state as Prometheus metric families (a prometheus_client collector).

    Args:
        state: What the monitor received (read at every scrape).
        clock: Wall-clock seconds since the epoch (ages, staleness).
        max_value: Largest magnitude exported; larger values are refused.
    """

    def __init__(
        self,
        state: MonitorState,
        *,
        clock: Callable[[], float] = time.time,
        max_value: float = MAX_VALUE,
    ) -> None:
        self.state = state
        self._clock = clock
        self.max_value = float(max_value)
        self.refused = dict.fromkeys(("metric_name", "value"), 0)
        self._logged: set[str] = set()
        self._allowed: dict[str, Spec] = {}
        self.scrapes = 0
        self.last_scrape_s = 0.0
        self._lock = threading.Lock()  # one scrape at a time: two would double the cost
        #: The monitor's transport, read for its statistics (``stats``) when set.
        self.transport: Any = None

    # ---- message path --------------------------------------------------------------

    def observe(self, record: Mapping[str, Any] | None) -> None:
        """Check a metrics record against the allow-list and the value bound (counting
        refusals); cheap: one dict lookup per value."""
        if record is None or record.get("kind") != "metrics":
            return
        view = self.state.devices.get(record["device"])
        if view is None:
            return
        allowed, limit = self._allowed, self.max_value
        for name, value in view.metrics.items():
            if name not in allowed and not self._allow(name):
                self._refuse(
                    "metric_name",
                    f"metric {name!r} of device {view.device!r} is not on the exporter's "
                    "allow-list (tools/_prom_names.py): not exported",
                )
            elif not abs(value) <= limit:
                self._refuse(
                    "value",
                    f"metric {name!r} of device {view.device!r} is {value!r}, beyond "
                    f"{limit:g}: not exported",
                )

    def _allow(self, name: str) -> bool:
        """Whether ``name`` is on the allow-list (remembering the allowed: a finite set)."""
        spec = lookup(name)
        if spec is not None:
            self._allowed[name] = spec
        return spec is not None

    def _refuse(self, reason: str, text: str) -> None:
        self.refused[reason] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "monitor: %s (further refusals counted in "
                'delgrad_monitor_refused_total{reason="%s"}, not logged)',
                text,
                reason,
            )

    # ---- scrape --------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing: the families depend on what devices send (no collect at register)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Every family, built from the state as it is now (prometheus_client's API)."""
        families = self.snapshot()
        for fam in families:
            fam.samples = [Sample(*s) for s in fam.samples]
        return families

    def snapshot(self) -> list[Metric]:
        """Every family as :meth:`collect` gives it, but with plain ``(name, labels,
        value)`` tuples as samples: half the cost of ``Sample`` objects for 76,000
        series, and all :func:`exposition` needs."""
        started = time.perf_counter()
        with self._lock:
            families = self._collect(self._clock())
            self.scrapes += 1
        self.last_scrape_s = time.perf_counter() - started
        return families

    def _collect(self, now_s: float) -> list[Metric]:
        state = self.state
        views = list(state.devices.values())  # one C-level copy: safe against the loop
        fams: dict[str, Metric] = {}
        device = _Families(fams)
        limit = self.max_value
        for view in views:
            dev = view.device
            labels = {"device": dev}
            shown = _STATE_NAMES.get(state.shown_state(view, now_s), "unknown")
            device.gauge("device_state", "1 for the device's state.", ("device", "state"))
            device.add("device_state", {"device": dev, "state": shown}, 1.0)
            device.gauge("device_stale", "1 while a running device missed 3 heartbeats.")
            device.add("device_stale", labels, float(shown == "stale"))
            if view.last_seen_s is not None:
                device.gauge("device_last_seen_timestamp_seconds", "Last message, epoch s.")
                device.add("device_last_seen_timestamp_seconds", labels, view.last_seen_s)
            if view.status_time_s is not None:
                device.gauge("device_heartbeat_age_seconds", "Seconds since the last status.")
                device.add("device_heartbeat_age_seconds", labels, now_s - view.status_time_s)
                device.gauge("device_status_uptime_seconds", "Uptime in the last status.")
                device.add("device_status_uptime_seconds", labels, view.uptime_s)
            device.gauge("device_heartbeat_period_seconds", "The device's heartbeat period.")
            device.add("device_heartbeat_period_seconds", labels, view.heartbeat_period_s)
            if view.heartbeat is not None:
                device.counter("device_heartbeats", "Heartbeats the device has sent.")
                device.add("device_heartbeats_total", labels, float(view.heartbeat))
            device.counter("device_messages", "Messages the monitor received from it.")
            device.add("device_messages_total", labels, float(view.messages))
            for alarm, active in list(view.alarms.items()):
                device.gauge("device_alarm", "1 while the alarm holds.", ("device", "alarm"))
                device.add("device_alarm", {"device": dev, "alarm": alarm}, float(active))
            for name, value in view.metrics.items():
                spec = self._allowed.get(name)
                if spec is None:
                    if not self._allow(name):
                        continue
                    spec = self._allowed[name]
                if abs(value) <= limit:
                    device.wire(spec, dev, labels, value)
        self._monitor_families(fams, views, now_s)
        return list(fams.values())

    def _monitor_families(self, fams: dict[str, Metric], views: list[Any], now_s: float) -> None:
        state = self.state
        own = _Families(fams)
        for name, help_text, value in (
            ("monitor_messages_received", "Messages received.", state.received),
            ("monitor_received_bytes", "Bytes received (payload and topic).", state.bytes_received),
            ("monitor_messages_foreign", "Messages of a type foreign to the topic.", state.foreign),
            ("monitor_sequence_missed_messages", "Gaps in the senders' sequence numbers.",
             state.sequence.missed),
            ("monitor_scrapes", "Scrapes served before this one.", self.scrapes),
        ):  # fmt: skip
            own.counter(name, help_text, ())
            own.add(name + "_total", {}, float(value))
        stats = getattr(self.transport, "stats", None)
        if stats is not None:  # the monitor's own link: drops here mean it falls behind
            own.counter("monitor_transport_dropped_in", "Messages its full inbox dropped.", ())
            dropped = stats.dropped_in_lossy + stats.dropped_in_reliable
            own.add("monitor_transport_dropped_in_total", {}, float(dropped))
            own.counter("monitor_transport_reconnects", "Reconnects to the broker.", ())
            own.add("monitor_transport_reconnects_total", {}, float(stats.reconnects))
        refused = {
            "device_cap": state.ignored_devices,
            "malformed": state.malformed,
            "alarm_cap": state.refused_alarms,
            **self.refused,
        }
        own.counter("monitor_refused", "Refused inputs by reason (each logged once).", ("reason",))
        for reason in _REASONS:
            own.add("monitor_refused_total", {"reason": reason}, float(refused[reason]))
        gauges: tuple[tuple[str, str, float], ...] = (
            ("monitor_devices", "Devices known.", len(views)),
            ("monitor_max_devices", "The device cap.", state.max_devices),
            ("monitor_broker_outage_seconds", "The monitor's current broker outage.",
             state.broker_outage_s),
            ("monitor_broker_up", "1 while the monitor's broker link is up.",
             float(state.broker_outage_s == 0)),
            ("monitor_last_scrape_duration_seconds", "Time the previous scrape took.",
             self.last_scrape_s),
        )  # fmt: skip
        for name, help_text, figure in gauges:
            own.gauge(name, help_text, ())
            own.add(name, {}, float(figure))
        counts = dict.fromkeys(STATES, 0)
        for view in views:
            shown = _STATE_NAMES.get(state.shown_state(view, now_s), "unknown")
            counts[shown] += 1
        own.gauge("monitor_devices_by_state", "Devices by state.", ("state",))
        for name, count in counts.items():
            own.add("monitor_devices_by_state", {"state": name}, float(count))


def _sample(name: str, labels: dict[str, str], value: float) -> Sample:
    """A plain tuple standing in for a ``Sample`` (same first three fields)."""
    return (name, labels, value)  # type: ignore[return-value]


class _Families:
    """Creates families on first use and appends samples without per-sample checks
    (prometheus_client's ``add_metric`` builds a dict per sample; this reuses ours)."""

    def __init__(self, fams: dict[str, Metric]) -> None:
        self.fams = fams

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ("device",)) -> None:
        if PREFIX + name not in self.fams:
            self.fams[PREFIX + name] = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ("device",)) -> None:
        if PREFIX + name not in self.fams:
            self.fams[PREFIX + name] = CounterMetricFamily(PREFIX + name, help_text, labels=labels)

    def add(self, sample: str, labels: dict[str, str], value: float) -> None:
        family = sample[: -len("_total")] if sample.endswith("_total") else sample
        self.fams[PREFIX + family].samples.append(_sample(PREFIX + sample, labels, value))

    def wire(self, spec: Spec, device: str, labels: dict[str, str], value: float) -> None:
        """Add the sample of a device metric (``labels``: the device's, shared)."""
        fam = self.fams.get(spec.family)
        if fam is None:
            names = ("device", spec.label) if spec.label else ("device",)
            make = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            fam = self.fams[spec.family] = make(spec.family, spec.help, labels=names)
        if spec.label:
            labels = {"device": device, spec.label: spec.label_value}
        value *= spec.scale
        if spec.kind == "counter":
            if value >= 0:  # a counter never goes below zero
                fam.samples.append(_sample(spec.family + "_total", labels, value))
        elif math.isfinite(value):
            fam.samples.append(_sample(spec.family, labels, value))


def _label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:  # never for NAME_RE names
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if math.isfinite(value):
        return repr(float(value))
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def exposition(families: Iterable[Metric]) -> bytes:
    """The text format 0.0.4 of counter and gauge families (samples as ``Sample`` or
    as the plain tuples of :meth:`FleetExporter.snapshot`), as prometheus_client's
    ``generate_latest`` writes it (same series, same values; tested), about four times
    faster: every label value here is a checked name, so the escaping is one test."""
    out: list[str] = []
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        doc = fam.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {fam.type}\n")
        for sample_name, sample_labels, value in (s[:3] for s in fam.samples):
            if sample_labels:
                labels = ",".join(f'{k}="{_label(v)}"' for k, v in sample_labels.items())
                out.append(f"{sample_name}{{{labels}}} {_number(value)}\n")
            else:
                out.append(f"{sample_name} {_number(value)}\n")
    return "".join(out).encode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape (the default writes every request to stderr)."""


def serve(exporter: FleetExporter, host: str, port: int) -> tuple[Any, int]:
    """Serve ``exporter`` on ``http://host:port/metrics`` from a daemon thread (any
    path answers; ``?name[]=X`` keeps only the samples named X), in the text format
    0.0.4 (:func:`exposition`), gzipped when the scraper asks (Prometheus does).

    Returns:
        (server, bound port); stop it with ``server.shutdown(); server.server_close()``.

    Raises:
        ConfigError: the address cannot be bound (taken, or not this machine's).
    """

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        families = exporter.snapshot()
        names = set(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", ()))
        if names:
            families = [m for m in (f._restricted_metric(names) for f in families) if m]
        body = exposition(families)
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)  # 4.6 MB -> 0.3 MB in 40 ms
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
    try:
        server: Any = make_server(host, port, app, server_class, _QuietHandler)
    except OSError as exc:
        raise ConfigError(
            f"--prometheus {host}:{port} cannot be bound ({exc.strerror or exc}): "
            "choose another port (0: any free one)"
        ) from None
    threading.Thread(target=server.serve_forever, name="prometheus", daemon=True).start()
    return server, int(server.server_address[1])
