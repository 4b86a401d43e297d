"""Message types for events, labels, predictions, metrics, status and commands.

Each class is a frozen dataclass registered under its schema name. Arrays are
normalised on construction (dtype, C order, read-only). Constructing with bad
values raises :class:`~delgrad.errors.ParameterError`; decoding bad bytes
raises a :class:`~delgrad.protocols.ProtocolError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from delgrad.errors import ParameterError, SchemaError

from ._arrays import ElementBudget, decode_array, encode_array
from ._codec import (
    MAX_CONTAINER_LEN,
    NAME_RE,
    Message,
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_map,
    get_name,
    get_str,
    register_message,
    sorted_names,
)

#: Units of event times: model time in units of tau_s, or microseconds.
TIME_UNITS: frozenset[str] = frozenset({"tau_s", "us"})
_M = TypeVar("_M", bound=Message)

_FLOATS = frozenset({"<f4", "<f8"})
_U4 = frozenset({"<u4"})
_I4 = frozenset({"<i4"})
_F4 = frozenset({"<f4"})
_INT_IDS = frozenset({"<i8"})
_CHANNELS = frozenset({"<u2", "<u4"})
_MAX_INT64 = (1 << 63) - 1


def _budget(budget: ElementBudget | None) -> ElementBudget:
    return ElementBudget() if budget is None else budget


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def _as_1d(name: str, values: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must be numeric")
    if np.dtype(dtype).kind in "iu" and arr.size and arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise ParameterError(f"{name} must hold integers")
    return arr.astype(dtype, copy=True)


def _check_ids(name: str, arr: np.ndarray) -> None:
    if arr.size and arr.min() < 0:
        raise ParameterError(f"{name} must be non-negative")


def _check_times(name: str, times: np.ndarray, *, allow_inf: bool = False) -> None:
    if times.size:
        bad = np.isnan(times) if allow_inf else ~np.isfinite(times)
        if bad.any():
            raise ParameterError(f"{name} must be finite" + (" or inf" if allow_inf else ""))


def _float_dtype(times: Any) -> np.dtype:
    dt = np.asarray(times).dtype
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _build(cls: type[_M], **kwargs: Any) -> _M:
    """Construct from decoded fields, turning construction errors into SchemaError."""
    try:
        return cls(**kwargs)
    except ParameterError as exc:
        raise SchemaError(f"{cls.SCHEMA}: {exc}") from exc


def _encode_channels(channels: np.ndarray) -> dict[str, Any]:
    small = channels.size == 0 or int(channels.max()) < 65536
    return encode_array(channels.astype(np.uint16) if small else channels)


def _set_events(msg: Any) -> None:
    """Validate and freeze the ``channels``, ``times`` and ``time_unit`` of an event message."""
    ch = _as_1d("channels", msg.channels, np.int64)
    t = _as_1d("times", msg.times, _float_dtype(msg.times))
    if msg.time_unit not in TIME_UNITS:
        raise ParameterError(f"time_unit must be one of {sorted(TIME_UNITS)}")
    if ch.size and (ch.min() < 0 or ch.max() >= 1 << 32):
        raise ParameterError("channels must be in 0 .. 2**32-1")
    if t.size != ch.size:
        raise ParameterError("times and channels must have the same length")
    _check_times("times", t)
    object.__setattr__(msg, "channels", _frozen(ch.astype(np.uint32)))
    object.__setattr__(msg, "times", _frozen(t))


@register_message
@dataclass(frozen=True, eq=False)
class SpikeBatch(Message):
    """A batch of trials with their input spike events, stored as CSR.

    Events of trial ``i`` are ``channels[offsets[i]:offsets[i+1]]`` and
    ``times[offsets[i]:offsets[i+1]]``.

    Attributes:
        trial_ids: (n_trials,) int64, non-negative trial ids.
        offsets: (n_trials + 1,) int64, non-decreasing, ``offsets[0] == 0``,
            ``offsets[-1] == n_events``.
        channels: (n_events,) uint32 input channel per event (< 2**32).
        times: (n_events,) float32 or float64 event times, finite.
        time_unit: ``"tau_s"`` (model time in units of tau_s) or ``"us"`` (microseconds).
    """

    SCHEMA: ClassVar[str] = "spikes"
    trial_ids: np.ndarray
    offsets: np.ndarray
    channels: np.ndarray
    times: np.ndarray
    time_unit: str = "tau_s"

    def __post_init__(self) -> None:
        ids = _as_1d("trial_ids", self.trial_ids, np.int64)
        off = _as_1d("offsets", self.offsets, np.int64)
        _check_ids("trial_ids", ids)
        _set_events(self)
        if off.size != ids.size + 1 or off[0] != 0 or off[-1] != self.channels.size:
            raise ParameterError("offsets must have n_trials+1 entries from 0 to n_events")
        if np.any(np.diff(off) < 0):
            raise ParameterError("offsets must be non-decreasing")
        object.__setattr__(self, "trial_ids", _frozen(ids))
        object.__setattr__(self, "offsets", _frozen(off))

    @classmethod
    def from_trials(
        cls,
        trial_ids: Sequence[int] | np.ndarray,
        events: Sequence[tuple[Any, Any]],
        *,
        time_unit: str = "tau_s",
        dtype: Any = np.float32,
    ) -> SpikeBatch:
        """Build from per-trial ``(channels, times)`` pairs.

        Args:
            trial_ids: (n_trials,) trial ids.
            events: One ``(channels (k,), times (k,))`` pair per trial.
            time_unit: ``"tau_s"`` or ``"us"``.
            dtype: float dtype of the times (float32 or float64).
        """
        if len(events) != len(trial_ids):
            raise ParameterError("one (channels, times) pair per trial id is needed")
        counts = [len(c) for c, _ in events]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ch = [np.asarray(c, dtype=np.int64) for c, _ in events]
        ts = [np.asarray(t, dtype=dtype) for _, t in events]
        return cls(
            np.asarray(trial_ids, dtype=np.int64),
            offsets,
            np.concatenate(ch) if ch else np.zeros(0, np.int64),
            np.concatenate(ts) if ts else np.zeros(0, dtype),
            time_unit,
        )

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return int(self.trial_ids.size)

    def trial(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(channels, times)`` of trial number ``i`` (position, not id)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.channels[a:b], self.times[a:b]

    def to_body(self) -> dict[str, Any]:
        return {
            "time_unit": self.time_unit,
            "trial_ids": encode_array(self.trial_ids),
            "offsets": encode_array(self.offsets.astype(np.uint32)),
            "channels": _encode_channels(self.channels),
            "times": encode_array(self.times),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = _budget(budget)
        return _build(
            cls,
            time_unit=get_choice(body, "time_unit", TIME_UNITS),
            trial_ids=decode_array(body.get("trial_ids"), "trial_ids", b, dtypes=_INT_IDS, ndim=1),
            offsets=decode_array(body.get("offsets"), "offsets", b, dtypes=_U4, ndim=1),
            channels=decode_array(body.get("channels"), "channels", b, dtypes=_CHANNELS, ndim=1),
            times=decode_array(body.get("times"), "times", b, dtypes=_FLOATS, ndim=1),
        )


@register_message
@dataclass(frozen=True, eq=False)
class SensorEvents(Message):
    """Timestamped events from a continuous sensor, without trial framing.

    Attributes:
        channels: (n_events,) uint32 input channel per event.
        times: (n_events,) float32 or float64 event times, finite.
        time_unit: ``"us"`` (microseconds, the usual case for sensors) or ``"tau_s"``.
    """

    SCHEMA: ClassVar[str] = "sensor_events"
    channels: np.ndarray
    times: np.ndarray
    time_unit: str = "us"

    def __post_init__(self) -> None:
        _set_events(self)

    def to_body(self) -> dict[str, Any]:
        return {
            "time_unit": self.time_unit,
            "channels": _encode_channels(self.channels),
            "times": encode_array(self.times),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = _budget(budget)
        return _build(
            cls,
            time_unit=get_choice(body, "time_unit", TIME_UNITS),
            channels=decode_array(body.get("channels"), "channels", b, dtypes=_CHANNELS, ndim=1),
            times=decode_array(body.get("times"), "times", b, dtypes=_FLOATS, ndim=1),
        )


@register_message
@dataclass(frozen=True, eq=False)
class Labels(Message):
    """Class labels for trial ids.

    Attributes:
        trial_ids: (n,) int64, non-negative.
        labels: (n,) int32 class index, non-negative.
    """

    SCHEMA: ClassVar[str] = "labels"
    trial_ids: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        ids = _as_1d("trial_ids", self.trial_ids, np.int64)
        lab = _as_1d("labels", self.labels, np.int64)
        if ids.size != lab.size:
            raise ParameterError("trial_ids and labels must have the same length")
        _check_ids("trial_ids", ids)
        if lab.size and (lab.min() < 0 or lab.max() > np.iinfo(np.int32).max):
            raise ParameterError("labels must be in 0 .. 2**31-1")
        object.__setattr__(self, "trial_ids", _frozen(ids))
        object.__setattr__(self, "labels", _frozen(lab.astype(np.int32)))

    def to_body(self) -> dict[str, Any]:
        return {"trial_ids": encode_array(self.trial_ids), "labels": encode_array(self.labels)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = _budget(budget)
        return _build(
            cls,
            trial_ids=decode_array(body.get("trial_ids"), "trial_ids", b, dtypes=_INT_IDS, ndim=1),
            labels=decode_array(body.get("labels"), "labels", b, dtypes=_I4, ndim=1),
        )


@register_message
@dataclass(frozen=True, eq=False)
class Predictions(Message):
    """Predicted classes and output spike times for trials.

    Attributes:
        trial_ids: (n,) int64, non-negative.
        predicted: (n,) int32 predicted class; -1 when no output neuron spiked.
        output_times: (n, n_out) float32 first output spike time per neuron in units
            of tau_s; ``inf`` when the neuron did not spike; never NaN.
    """

    SCHEMA: ClassVar[str] = "predictions"
    trial_ids: np.ndarray
    predicted: np.ndarray
    output_times: np.ndarray

    def __post_init__(self) -> None:
        ids = _as_1d("trial_ids", self.trial_ids, np.int64)
        pred = _as_1d("predicted", self.predicted, np.int64)
        out = np.asarray(self.output_times)
        if out.ndim != 2 or out.shape[0] != ids.size or pred.size != ids.size:
            raise ParameterError("output_times must be (n, n_out) with n = len(trial_ids)")
        if out.size and out.dtype.kind not in "biuf":
            raise ParameterError("output_times must be numeric")
        out = out.astype(np.float32)
        _check_ids("trial_ids", ids)
        if pred.size and (pred.min() < -1 or pred.max() > np.iinfo(np.int32).max):
            raise ParameterError("predicted must be in -1 .. 2**31-1")
        _check_times("output_times", out, allow_inf=True)
        object.__setattr__(self, "trial_ids", _frozen(ids))
        object.__setattr__(self, "predicted", _frozen(pred.astype(np.int32)))
        object.__setattr__(self, "output_times", _frozen(out))

    def to_body(self) -> dict[str, Any]:
        return {
            "trial_ids": encode_array(self.trial_ids),
            "predicted": encode_array(self.predicted),
            "output_times": encode_array(self.output_times),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = _budget(budget)
        return _build(
            cls,
            trial_ids=decode_array(body.get("trial_ids"), "trial_ids", b, dtypes=_INT_IDS, ndim=1),
            predicted=decode_array(body.get("predicted"), "predicted", b, dtypes=_I4, ndim=1),
            output_times=decode_array(
                body.get("output_times"), "output_times", b, dtypes=_F4, ndim=2
            ),
        )


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ParameterError(f"{kind} {name!r} is not a valid name (see NAME_RE)")
    return name


@register_message
@dataclass(frozen=True, eq=False)
class Metrics(Message):
    """Named scalar metrics at a training step.

    Attributes:
        step: Training step or update count, 0 .. 2**63-1.
        values: name -> finite float; at most 256 entries, names match ``NAME_RE``.
    """

    SCHEMA: ClassVar[str] = "metrics"
    step: int
    values: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.step) is not int or not 0 <= self.step <= _MAX_INT64:
            raise ParameterError("step must be an integer in 0 .. 2**63-1")
        if len(self.values) > 256:
            raise ParameterError("at most 256 metric values per message")
        vals = {}
        for k in sorted_names(self.values, "metric name"):
            v = self.values[k]
            if type(v) not in (int, float) and not isinstance(v, np.floating | np.integer):
                raise ParameterError(f"metric {k!r} must be a number")
            v = float(v)
            if not math.isfinite(v):
                raise ParameterError(f"metric {k!r} must be finite")
            vals[k] = v  # the name was checked by sorted_names
        object.__setattr__(self, "values", vals)

    def to_body(self) -> dict[str, Any]:
        return {"step": self.step, "values": dict(self.values)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        # names, types and finiteness are checked once, by __post_init__ (a fleet
        # monitor decodes hundreds of these per second)
        return _build(
            cls, step=get_int(body, "step", 0, _MAX_INT64), values=get_map(body, "values")
        )


@register_message
@dataclass(frozen=True, eq=False)
class Alarm(Message):
    """A named alarm of a device, published retained on ``alarm`` when it fires and
    again, with ``active`` false, when it clears (so a late subscriber sees the state).

    Attributes:
        name: the alarm, e.g. ``"degraded"`` (a name: letters, digits, ``._-``).
        active: whether it holds now.
        value: the figure that fired it (e.g. the sliding accuracy, 0 .. 1), finite.
        reference: what that figure is judged against (e.g. the reference accuracy).
        detail: free text, at most 256 characters.
    """

    SCHEMA: ClassVar[str] = "alarm"
    name: str
    active: bool
    value: float = 0.0
    reference: float = 0.0
    detail: str = ""

    def __post_init__(self) -> None:
        _check_name("alarm name", self.name)
        if not isinstance(self.active, bool):
            raise ParameterError("active must be a bool")
        for key in ("value", "reference"):
            v = float(getattr(self, key))
            if not math.isfinite(v):
                raise ParameterError(f"{key} must be finite")
            object.__setattr__(self, key, v)
        if not isinstance(self.detail, str) or len(self.detail) > 256:
            raise ParameterError("detail must be a string of at most 256 characters")

    def to_body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "active": self.active,
            "value": self.value,
            "reference": self.reference,
            "detail": self.detail,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        return _build(
            cls,
            name=get_name(body, "name"),
            active=get_bool(body, "active"),
            value=get_float(body, "value"),
            reference=get_float(body, "reference"),
            detail=get_str(body, "detail", max_len=256),
        )


#: Device states: born (first connect), alive (heartbeat), dead (graceful
#: shutdown), lost (ungraceful: sent by the broker as the last will).
STATUS_STATES: frozenset[str] = frozenset({"birth", "alive", "dead", "lost"})


@register_message
@dataclass(frozen=True, eq=False)
class Status(Message):
    """Life-cycle state of a device.

    Attributes:
        state: ``"birth"``, ``"alive"``, ``"dead"`` (graceful) or ``"lost"`` (ungraceful,
            the last will).
        uptime_s: Seconds since the device process started, >= 0.
        detail: Free text, at most 256 characters.
    """

    SCHEMA: ClassVar[str] = "status"
    state: str
    uptime_s: float = 0.0
    detail: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATUS_STATES:
            raise ParameterError(f"state must be one of {sorted(STATUS_STATES)}")
        up = float(self.uptime_s)
        if not math.isfinite(up) or up < 0:
            raise ParameterError("uptime_s must be finite and >= 0")
        if not isinstance(self.detail, str) or len(self.detail) > 256:
            raise ParameterError("detail must be a string of at most 256 characters")
        object.__setattr__(self, "uptime_s", up)

    def to_body(self) -> dict[str, Any]:
        return {"state": self.state, "uptime_s": self.uptime_s, "detail": self.detail}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        return _build(
            cls,
            state=get_choice(body, "state", STATUS_STATES),
            uptime_s=get_float(body, "uptime_s", lo=0.0),
            detail=get_str(body, "detail", max_len=256),
        )


Scalar = None | bool | int | float | str
_MAX_ARGS = 64


def _check_scalar(key: str, v: Any, depth: int = 0) -> Any:
    if v is None or type(v) in (bool, str):
        if isinstance(v, str) and len(v) > 1024:
            raise ParameterError(f"argument {key!r}: string longer than 1024")
        return v
    if type(v) is int:
        if not -(1 << 63) <= v <= _MAX_INT64:
            raise ParameterError(f"argument {key!r}: integer outside int64")
        return v
    if type(v) is float or isinstance(v, np.floating):
        if not math.isfinite(v):
            raise ParameterError(f"argument {key!r}: float must be finite")
        return float(v)
    if isinstance(v, list | tuple) and depth == 0:
        if len(v) > MAX_CONTAINER_LEN:
            raise ParameterError(f"argument {key!r}: list too long")
        return [_check_scalar(key, x, 1) for x in v]
    raise ParameterError(f"argument {key!r}: only None, bool, int, float, str or a flat list")


def _check_args(kind: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(args, Mapping) or len(args) > _MAX_ARGS:
        raise ParameterError(f"{kind} must be a map of at most {_MAX_ARGS} entries")
    return {
        _check_name(f"{kind} key", k): _check_scalar(k, args[k]) for k in sorted_names(args, kind)
    }


def _check_correlation(cid: Any) -> None:
    _check_name("correlation_id", cid)


#: The commands a device answers (docs/runtime.md, "Commands"), sorted; the
#: service checks each one's arguments.
COMMAND_NAMES: tuple[str, ...] = (
    "checkpoint",
    "lr",
    "mode",
    "pause",
    "reset",
    "resume",
    "snapshot",
    "status",
)


@register_message
@dataclass(frozen=True, eq=False)
class Command(Message):
    """A command to a device; answered by a :class:`Reply` with the same correlation id.

    Attributes:
        name: Command name (``NAME_RE``), also the last topic level ``cmd/{name}``.
        correlation_id: Requester-chosen id (``NAME_RE``), echoed in the reply.
        args: name -> None, bool, int (int64), float (finite), str (<= 1024 chars) or a
            flat list of those; at most 64 entries.
    """

    SCHEMA: ClassVar[str] = "command"
    name: str
    correlation_id: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("command name", self.name)
        _check_correlation(self.correlation_id)
        object.__setattr__(self, "args", _check_args("args", self.args))

    def to_body(self) -> dict[str, Any]:
        return {"name": self.name, "correlation_id": self.correlation_id, "args": dict(self.args)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        return _build(
            cls,
            name=get_name(body, "name"),
            correlation_id=get_name(body, "correlation_id"),
            args=get_map(body, "args"),
        )


@register_message
@dataclass(frozen=True, eq=False)
class Reply(Message):
    """The answer to a :class:`Command`.

    Attributes:
        correlation_id: The command's correlation id.
        ok: Whether the command succeeded.
        result: Same value rules as ``Command.args``.
        error: Error text when ``ok`` is false (<= 1024 characters), else empty.
    """

    SCHEMA: ClassVar[str] = "reply"
    correlation_id: str
    ok: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    def __post_init__(self) -> None:
        _check_correlation(self.correlation_id)
        if type(self.ok) is not bool:
            raise ParameterError("ok must be a bool")
        if not isinstance(self.error, str) or len(self.error) > 1024:
            raise ParameterError("error must be a string of at most 1024 characters")
        object.__setattr__(self, "result", _check_args("result", self.result))

    def to_body(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "ok": self.ok,
            "result": dict(self.result),
            "error": self.error,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        return _build(
            cls,
            correlation_id=get_name(body, "correlation_id"),
            ok=get_bool(body, "ok"),
            result=get_map(body, "result"),
            error=get_str(body, "error"),
        )
