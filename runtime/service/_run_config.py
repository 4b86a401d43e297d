"""Configuration of the streaming service (``delgrad run --config FILE``).

Every field has a default: an empty file runs the demonstration setup (embedded
broker, ideal emulator, Yin-Yang 4-30-3 synaptic-delay recipe, online learning).
The field reference is ``docs/runtime.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from delgrad.errors import ConfigError
from delgrad.protocols import is_valid_name
from delgrad.runtime._drift_spec import DriftSpec
from delgrad.runtime._driver import DRIVER_NAMES
from delgrad.runtime._schema import build_dataclass, read_toml


@dataclass(frozen=True)
class BrokerSection:
    """MQTT broker. An empty ``url`` starts the embedded broker on 127.0.0.1.

    Attributes:
        url: ``mqtt://[user@]host[:port]`` or ``mqtts://...`` (TLS); "" = embedded.
        client_id: MQTT client id ("" = the device id if it is the URL's user name,
            else ``delgrad-run-{device}``).
            A URL with a user but no password takes it from $DELGRAD_MQTT_PASSWORD.
        embedded_port: port of the embedded broker (0 = any free port).
        tls_ca_file: PEM file of the CA(s) that sign the broker's certificate
            ("" = the system CAs); also ``?ca=PATH`` on the URL.
        tls_cert_file, tls_key_file: PEM client certificate and its key (mutual TLS);
            also ``?cert=PATH&key=PATH`` on the URL.
        tls_insecure: skip verifying the broker's certificate and host name (testing
            only); also ``?insecure=1`` on the URL.
        max_packet_bytes: largest MQTT packet accepted from the broker (announced as the
            MQTT 5 Maximum Packet Size; larger packets are refused before being read).
        keepalive_s: MQTT keep-alive (s, 1 .. 65535): a broker that holds the connection
            but stops answering is noticed within ``2 * keepalive_s + 1`` s on a quiet link,
            within 5 s of an unacknowledged QoS 1 message otherwise, and reconnected.
    """

    url: str = ""
    client_id: str = ""
    embedded_port: int = 1883
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_insecure: bool = False
    max_packet_bytes: int = 16 * 1024 * 1024 + 64 * 1024
    keepalive_s: int = 10


@dataclass(frozen=True)
class DriverSection:
    """Backend: ``emulator-ideal``, ``emulator-bss2`` or ``brainscales2``; its chip seed;
    ``[driver.drift]``: how an ``emulator-bss2`` chip drifts (:class:`DriftSpec`, off)."""

    name: str = "emulator-ideal"
    chip_seed: int = 0
    drift: DriftSpec = field(default_factory=DriftSpec)


@dataclass(frozen=True)
class ModelSection:
    """What network learns: a training recipe (shipped name or TOML path) and,
    optionally, a network file to start from instead of the recipe's initialisation.

    Attributes:
        recipe: e.g. ``yinyang_H30_WS`` or ``path/to/config.toml``.
        network_file: ``.npz`` written by ``delgrad train`` or ``save_network``; "" = new.
        seed: initialisation seed.
    """

    recipe: str = "yinyang_H30_WS"
    network_file: str = ""
    seed: int = 0


@dataclass(frozen=True)
class LearningSection:
    """Online learning.

    Attributes:
        mode: ``train`` (predict, then learn from labelled trials) or ``infer``.
        step_every: labelled trials per optimiser step (the online batch size).
        lr_scale: multiplies the recipe's learning rates.
        refresh: before a step, re-observe on the driver the buffered trials whose
            spike times were observed with older parameters (the step then uses
            times of the network it changes; costs one extra driver run for them).
        pipeline: run the driver runs for predictions in their own thread beside the
            learner's, so a prediction never waits for a step; every trial learned
            is then observed twice (the prediction ran with the parameters the step
            was changing). Pays where the driver's runs cost no host CPU (a chip) or
            the predictions' latency must not include a step. Default false: one
            thread in order, each driver run ending where a step does, so every
            trial is observed once and the step uses those times (docs/runtime.md,
            "Pipeline and parameter versions"; measured in docs/performance.md).
        threads: kernel threads sharing each driver run on the ``emulator-ideal``
            driver and each learning step's backward pass; 0 (default): one per
            core this process may use; a pass is split only into parts worth a
            thread (``delgrad.runtime._network.SplitCost``). Bit-identical for a
            given count and batch size (rows are split and summed in a fixed
            order), equal to rounding across counts.
        lr_policy: ``constant`` (default) or ``boost``: while the degradation alarm
            holds, the learning-rate factor is multiplied by ``lr_boost`` (at most
            100), and set back when it clears (unless an ``lr`` command changed it).
        lr_boost: the factor of ``boost`` (1 .. 100).
        when_behind: what happens to new labelled trials while the learner is behind
            (its queue of learning jobs full, or more than ``inference.max_batch``
            trials waiting for inference): ``wait`` (default) holds the inference
            loop until a job ends, so every labelled trial is learned and, past the
            learner's speed, the pending queue sheds its oldest trials;
            ``sample`` scores them (accuracy, the degradation detector, replay) but
            does not learn from them, so the device keeps up with a fast sensor and
            learns from the share it can (``learning.sampled_fraction``).
    """

    mode: Literal["train", "infer"] = "train"
    step_every: int = 150
    lr_scale: float = 1.0
    refresh: bool = True
    pipeline: bool = False
    threads: int = 0
    lr_policy: Literal["constant", "boost"] = "constant"
    lr_boost: float = 2.0
    when_behind: Literal["wait", "sample"] = "wait"


@dataclass(frozen=True)
class ReplaySection:
    """Replay of past labelled trials (``_replay.ReplayBuffer``); off by default.

    Attributes:
        max_mb: bound of the buffer in MiB (0 = no replay); preallocated at start.
        policy: ``reservoir`` (every trial seen equally likely kept) or ``balanced``
            (a share per class).
        fraction: share of replayed trials in each learning step (0 .. 0.9); e.g. 0.5:
            as many replayed trials as new ones.
        seed: the sampling stream.
    """

    max_mb: float = 0.0
    policy: Literal["reservoir", "balanced"] = "reservoir"
    fraction: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class DegradationSection:
    """The degradation detector (``_degradation.DegradationDetector``): a ``degraded``
    health warning and a retained alarm when the device gets worse than it was.

    Attributes:
        enabled: judge at all (default true; only labelled trials are judged).
        window: labelled trials in the recent window (a multiple of 100, 100 .. 10^6).
        reference: labelled trials in the reference window (a multiple of 100, 100 .. 10^6).
        drop: accuracy drop that fires (0 .. 1; 0.05 = 5 points).
        silent_rise: rise of the silent-label rate that fires (0 .. 1).
    """

    enabled: bool = True
    window: int = 2000
    reference: int = 10_000
    drop: float = 0.07
    silent_rise: float = 0.07


@dataclass(frozen=True)
class IngestSection:
    """Input stream.

    Attributes:
        max_pending_trials: bound of the queue between ingest and inference; when
            full the oldest trials are dropped and counted (``dropped.overload``).
        max_pending_mb: the same queue's bound in MiB of trial rows (8 bytes per
            input and trial, plus 8 for its id); the smaller bound holds, so a
            sensor-sized input caps the count (``_limits.pending_bound``).
        us_per_tau: microseconds per model time unit, for streams in ``us``.
        window_length, window_period: cut a continuous (``sensor_events``) stream into
            trials; model units; period 0 = same as length.
        idle_flush_s: when no event has come for this many seconds, the windows the
            stream has started are completed with the events they hold, so a
            recording's last sample is scored (0 = never; events that come later for
            those windows are late, ``events.late``).
    """

    max_pending_trials: int = 20_000
    max_pending_mb: float = 64.0
    us_per_tau: float = 6.0
    window_length: float = 2.5
    window_period: float = 0.0
    idle_flush_s: float = 2.0


@dataclass(frozen=True)
class InferenceSection:
    """Batching: run when ``max_batch`` trials wait or ``max_latency_ms`` has passed."""

    max_batch: int = 1024
    max_latency_ms: float = 2.0


@dataclass(frozen=True)
class JoinSection:
    """Label join window: trials and labels wait at most ``max_age_s`` and at most
    ``capacity`` each; the oldest is evicted first and counted. ``max_mb`` bounds
    the waiting trials' rows in MiB as well (the smaller bound holds;
    ``_limits.join_capacity``)."""

    capacity: int = 10_000
    max_age_s: float = 10.0
    max_mb: float = 64.0


@dataclass(frozen=True)
class PublishSection:
    """Outgoing updates and metrics.

    Attributes:
        delta_every: optimiser steps per parameter delta.
        delta_interval_ms: at least this long between two deltas (0: no wait); the
            steps in between go into the next delta, which carries the change from
            what subscribers hold to the newest parameters, so nothing is lost.
            Default 100 ms: at most 10 deltas/s, so a fast learner neither spends a
            tenth of its throughput on deltas (784-350-10) nor floods a thin link
            (274 kB per int8 delta at 784-350-10).
        snapshot_every: deltas per retained full snapshot (and one at start).
        delta_encoding: ``int8`` (with error feedback) or ``float32``.
        metrics_period_s: seconds between metrics messages.
        metrics_window: labelled trials in the sliding accuracy / loss window.
        predictions: publish predictions (class and output times) per batch.
        heartbeat_period_s: seconds between retained ``alive`` status messages (the
            detail carries a ``heartbeat`` counter; a monitor shows the device as stale
            after 3 missed heartbeats).
    """

    delta_every: int = 1
    delta_interval_ms: float = 100.0
    snapshot_every: int = 100
    delta_encoding: Literal["int8", "float32"] = "int8"
    metrics_period_s: float = 2.0
    metrics_window: int = 5000
    predictions: bool = True
    heartbeat_period_s: float = 5.0


@dataclass(frozen=True)
class CheckpointSection:
    """Checkpoints: written atomically every ``period_s`` and on shutdown into ``dir``
    ("" = no checkpoints); the newest ``keep`` are kept, and a restart resumes from the
    newest one that loads and holds finite, valid parameters."""

    dir: str = ""
    period_s: float = 30.0
    keep: int = 3


@dataclass(frozen=True)
class CommandsSection:
    """Command acceptance: commands whose envelope ``timestamp_ns`` is more than
    ``max_age_s`` from the device's clock (old, or from the future) are refused."""

    max_age_s: float = 60.0


@dataclass(frozen=True)
class SupervisionSection:
    """Supervision of the service's tasks.

    Attributes:
        max_task_restarts: restarts of a failed task (receive, metrics, heartbeat,
            checkpoints) before the whole process ends with a ``dead`` status.
        shutdown_timeout_s: after SIGINT/SIGTERM the process ends within this bound,
            whatever state a task is in (forced exit 3 beyond it).
    """

    max_task_restarts: int = 10
    shutdown_timeout_s: float = 10.0


@dataclass(frozen=True)
class RunConfig:
    """The whole service configuration."""

    device: str = "demo"
    broker: BrokerSection = field(default_factory=BrokerSection)
    driver: DriverSection = field(default_factory=DriverSection)
    model: ModelSection = field(default_factory=ModelSection)
    learning: LearningSection = field(default_factory=LearningSection)
    replay: ReplaySection = field(default_factory=ReplaySection)
    degradation: DegradationSection = field(default_factory=DegradationSection)
    ingest: IngestSection = field(default_factory=IngestSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    join: JoinSection = field(default_factory=JoinSection)
    publish: PublishSection = field(default_factory=PublishSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    commands: CommandsSection = field(default_factory=CommandsSection)
    supervision: SupervisionSection = field(default_factory=SupervisionSection)


_POSITIVE = {
    ("learning", "step_every"),
    ("learning", "lr_scale"),
    ("ingest", "max_pending_trials"),
    ("ingest", "max_pending_mb"),
    ("ingest", "us_per_tau"),
    ("ingest", "window_length"),
    ("inference", "max_batch"),
    ("inference", "max_latency_ms"),
    ("join", "capacity"),
    ("join", "max_mb"),
    ("join", "max_age_s"),
    ("publish", "delta_every"),
    ("publish", "snapshot_every"),
    ("publish", "metrics_period_s"),
    ("publish", "metrics_window"),
    ("checkpoint", "period_s"),
    ("checkpoint", "keep"),
    ("publish", "heartbeat_period_s"),
    ("commands", "max_age_s"),
    ("supervision", "shutdown_timeout_s"),
    ("broker", "max_packet_bytes"),
}


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a nested mapping into a :class:`RunConfig`.

    Raises:
        ConfigError: unknown fields, wrong types, or out-of-range values.
    """
    config: RunConfig = build_dataclass(RunConfig, data, "top level")
    if config.driver.name not in DRIVER_NAMES or config.driver.name == "host":
        names = ", ".join(n for n in DRIVER_NAMES if n != "host")
        raise ConfigError(f"driver.name must be one of {names}, got {config.driver.name!r}")
    for section, key in sorted(_POSITIVE):
        value = getattr(getattr(config, section), key)
        if not value > 0:
            raise ConfigError(f"{section}.{key} must be > 0, got {value!r}")
    if config.driver.drift.active and config.driver.name != "emulator-bss2":
        raise ConfigError(
            f"[driver.drift] needs driver.name = 'emulator-bss2' (an emulated chip drifts), "
            f"got {config.driver.name!r}"
        )
    _check_continual(config)
    if config.ingest.window_period < 0:
        raise ConfigError("ingest.window_period must be >= 0")
    idle_s = config.ingest.idle_flush_s
    if not (0 <= idle_s <= 3600):
        raise ConfigError(f"ingest.idle_flush_s must be in 0 .. 3600 s (0: off), got {idle_s!r}")
    keepalive_s = config.broker.keepalive_s
    if not 1 <= keepalive_s <= 65535:
        raise ConfigError(f"broker.keepalive_s must be in 1..65535, got {keepalive_s!r}")
    if config.broker.embedded_port < 0 or config.broker.embedded_port > 65535:
        raise ConfigError("broker.embedded_port must be in 0..65535")
    if config.learning.lr_scale > 100.0:  # the lr command's range (service._online)
        raise ConfigError(f"learning.lr_scale must be <= 100, got {config.learning.lr_scale!r}")
    interval_ms = config.publish.delta_interval_ms
    if not 0 <= interval_ms <= 60_000:
        raise ConfigError(
            f"publish.delta_interval_ms must be in 0 .. 60,000 (0: no wait), got {interval_ms!r}"
        )
    if config.learning.threads < 0:
        raise ConfigError(f"learning.threads must be >= 0, got {config.learning.threads!r}")
    if config.supervision.max_task_restarts < 0:
        raise ConfigError("supervision.max_task_restarts must be >= 0")
    if not is_valid_name(config.device):
        raise ConfigError(f"device {config.device!r} is not a valid topic name")
    return config


def _check_continual(config: RunConfig) -> None:
    replay, det, learning = config.replay, config.degradation, config.learning
    if not (replay.max_mb >= 0 and replay.max_mb <= 4096):
        raise ConfigError(f"replay.max_mb must be in 0 .. 4096, got {replay.max_mb!r}")
    if not 0.0 <= replay.fraction <= 0.9:
        raise ConfigError(f"replay.fraction must be in 0 .. 0.9, got {replay.fraction!r}")
    if replay.seed < 0:
        raise ConfigError(f"replay.seed must be >= 0, got {replay.seed!r}")
    if replay.max_mb > 0 and not learning.refresh:
        raise ConfigError(
            "replay needs learning.refresh = true: replayed trials are observed again "
            "on the chip before their step"
        )
    for name in ("window", "reference"):
        value = getattr(det, name)
        if not 100 <= value <= 1_000_000 or value % 100:
            raise ConfigError(
                f"degradation.{name} must be a multiple of 100 in 100 .. 1,000,000, got {value!r}"
            )
    for name in ("drop", "silent_rise"):
        value = getattr(det, name)
        if not 0.0 < value < 1.0:
            raise ConfigError(f"degradation.{name} must be in (0, 1), got {value!r}")
    if not 1.0 <= learning.lr_boost <= 100.0:
        raise ConfigError(f"learning.lr_boost must be in 1 .. 100, got {learning.lr_boost!r}")


def load_run_config(path: str | Path | None) -> RunConfig:
    """Read a service configuration file (None = all defaults).

    Raises:
        ConfigError: missing file, invalid TOML or invalid fields.
    """
    if path is None:
        return run_config_from_dict({})
    return run_config_from_dict(read_toml(path))
