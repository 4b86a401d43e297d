"""The exporter's allow-list: which device metrics become which Prometheus series.

A device's metrics message names its figures freely (``accuracy``, ``join.joined``,
``latency.p99_ms``, ...; docs/runtime.md). Only names on this list are exported, so
a device cannot create series at will (label cardinality stays bounded). Each entry
says the Prometheus name (the wire name with ``delgrad_`` before, dots as
underscores and the base unit after, as Prometheus' conventions ask: seconds, bytes,
ratios, ``_total`` for counters), the type and the scale to the base unit.

Three families take a second, bounded label besides ``device``: per-class accuracy
(``class``, 0 .. :data:`MAX_INDEX`), per-layer silence (``layer``) and the health
warnings (``warning``, the names of :data:`~delgrad.runtime.service.HEALTH_CONDITIONS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from delgrad.runtime.service import HEALTH_CONDITIONS

__all__ = ["MAX_INDEX", "PREFIX", "Spec", "lookup", "specs", "wire_names"]

PREFIX = "delgrad_"
#: Highest class or layer index exported (``accuracy.class63``); beyond: refused.
MAX_INDEX = 63


@dataclass(frozen=True)
class Spec:
    """How one wire metric is exported.

    Attributes:
        family: Prometheus name without ``_total`` (prometheus_client adds it to counters).
        kind: ``"counter"`` (cumulative since the device started) or ``"gauge"``.
        help: The family's help text.
        scale: Factor from the wire unit to the base unit (ms -> s: 1e-3).
        label: Name of the second label (``class``, ``layer``, ``warning``) or ``""``.
        label_value: Its value for this wire name.
    """

    family: str
    kind: Literal["counter", "gauge"]
    help: str
    scale: float = 1.0
    label: str = ""
    label_value: str = ""


def _c(family: str, help_text: str) -> Spec:
    return Spec(PREFIX + family, "counter", help_text)


def _g(family: str, help_text: str, scale: float = 1.0) -> Spec:
    return Spec(PREFIX + family, "gauge", help_text, scale)


_EXACT: dict[str, Spec] = {
    # learning quality (sliding window of publish.metrics_window labelled trials)
    "accuracy": _g("accuracy_ratio", "Prequential accuracy over the sliding window (0..1)."),
    "loss": _g("loss", "Mean loss over the sliding window."),
    "labelled_in_window": _g("labelled_in_window_trials", "Labelled trials in the window."),
    "scored.trials": _c("scored_trials", "Labelled trials scored since the device started."),
    "scored.correct": _c("scored_correct_trials", "Correctly predicted scored trials."),
    "degradation.accuracy": _g("degradation_accuracy_ratio", "Detector: recent accuracy."),
    "degradation.reference": _g("degradation_reference_ratio", "Detector: reference accuracy."),
    "degradation.silent": _g("degradation_silent_ratio", "Detector: recent silent-label rate."),
    "degradation.silent_reference": _g(
        "degradation_silent_reference_ratio", "Detector: reference silent-label rate."
    ),
    "degradation.alarms": _c("degradation_alarms", "Degradation alarms raised."),
    # throughput and latency
    "samples_per_s": _g("samples_per_second", "Trials inferred per second."),
    "bytes_published_per_s": _g("published_bytes_per_second", "Bytes published per second."),
    "spikes_per_trial": _g("spikes_per_trial", "Mean output spikes per trial."),
    "latency.p50_ms": _g("latency_p50_seconds", "Trial latency, median.", 1e-3),
    "latency.p90_ms": _g("latency_p90_seconds", "Trial latency, 90th percentile.", 1e-3),
    "latency.p99_ms": _g("latency_p99_seconds", "Trial latency, 99th percentile.", 1e-3),
    "latency.max_ms": _g("latency_max_seconds", "Trial latency, largest in the window.", 1e-3),
    # queues
    "queue.pending_trials": _g("queue_pending_trials", "Trials waiting for inference."),
    "queue.learning_buffer": _g("queue_learning_buffer_trials", "Trials waiting to be learned."),
    "queue.join_waiting": _g("queue_join_waiting", "Trials and labels waiting in the join."),
    "join.waiting_trials": _g("join_waiting_trials", "Trials waiting for their label."),
    "join.waiting_labels": _g("join_waiting_labels", "Labels waiting for their trial."),
    # state
    "uptime_s": _g("uptime_seconds", "Seconds since the device process started."),
    "param_seq": _g("param_seq", "Update number of the device's parameters."),
    "mode_train": _g("mode_train", "1 in train mode, 0 in infer mode."),
    "paused": _g("paused", "1 while learning is paused."),
    "broker.outage_s": _g("broker_outage_seconds", "The device's current broker outage."),
    "health.warnings": _g("health_warnings", "Active health warnings."),
    "replay.trials": _g("replay_trials", "Trials in the replay buffer."),
    "replay.capacity_trials": _g("replay_capacity_trials", "Replay buffer capacity."),
    "replay.bytes": _g("replay_bytes", "Bytes held by the replay buffer."),
    "learning.refreshed_trials": _c("learning_refreshed_trials", "Trials re-inferred to learn."),
    "transport.down_s": _c("transport_down_seconds", "Seconds the device's broker link was down."),
}

#: Cumulative counters of the service (runtime/service/_stats.py ``Counters`` and the
#: join's), exported as ``delgrad_<name>_total``.
_COUNTERS = (
    "checkpoints.failed",
    "checkpoints.refused",
    "checkpoints.skipped",
    "checkpoints.written",
    "commands.duplicate",
    "commands.executed",
    "commands.failed",
    "commands.refused.invalid",
    "commands.reply_failed",
    "dropped.bad_events",
    "dropped.bad_label",
    "dropped.commands_overflow",
    "dropped.overload",
    "dropped.publish_failed",
    "events.late",
    "events.received",
    "events.unwindowed",
    "join.duplicate_labels",
    "join.duplicate_trials",
    "join.joined",
    "join.labels_in",
    "join.late_labels",
    "join.missing_labels",
    "join.orphan_labels",
    "join.trials_in",
    "labels.received",
    "learning.bumps",
    "learning.rejected_steps",
    "learning.steps",
    "malformed.wrong_schema_for_topic",
    "params.withheld",
    "published.bytes",
    "published.messages",
    "refused.channel_outside",
    "replay.replayed_trials",
    "storage.failures",
    "storage.writes",
    "tasks.restarts",
    "transport.coalesced_out",
    "transport.dropped_in_lossy",
    "transport.dropped_in_reliable",
    "transport.dropped_out_lossy",
    "transport.dropped_out_reliable",
    "transport.published",
    "transport.received",
    "transport.reconnects",
    "transport.refused_oversize",
    "transport.stalls",
    "trials.processed",
    "trials.received",
    "trials.silent_output",
    "windows.idle_flushed",
)
for _name in _COUNTERS:
    _EXACT[_name] = _c(_name.replace(".", "_"), f"Device counter {_name}.")
for _name in HEALTH_CONDITIONS:
    _EXACT[f"health.{_name}"] = Spec(
        PREFIX + "health_warning",
        "gauge",
        "1 while the device's health warning holds (runtime/service/_health.py).",
        label="warning",
        label_value=_name,
    )

_INDEXED = re.compile(r"^(accuracy\.class|silent\.layer)(0|[1-9][0-9]?)$")
_INDEXED_SPECS = {
    "accuracy.class": ("class_accuracy_ratio", "Accuracy among the window's trials of a class."),
    "silent.layer": ("layer_silent_ratio", "Share of a layer's neurons silent in the last batch."),
}


def lookup(name: str) -> Spec | None:
    """The export of wire metric ``name``, or None when it is not on the allow-list."""
    spec = _EXACT.get(name)
    if spec is not None:
        return spec
    match = _INDEXED.match(name)
    if match is None or int(match.group(2)) > MAX_INDEX:
        return None
    family, help_text = _INDEXED_SPECS[match.group(1)]
    label = "class" if match.group(1) == "accuracy.class" else "layer"
    return Spec(PREFIX + family, "gauge", help_text, label=label, label_value=match.group(2))


def wire_names() -> list[str]:
    """Every wire name on the allow-list (of the indexed ones, index 0)."""
    return [*_EXACT, "accuracy.class0", "silent.layer0"]


def specs() -> list[Spec]:
    """Every family of the allow-list, one spec each (for docs and tests)."""
    seen: dict[str, Spec] = {}
    for name in wire_names():
        spec = lookup(name)
        if spec is not None:
            seen.setdefault(spec.family, spec)
    return list(seen.values())
