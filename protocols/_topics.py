"""The topic tree. Pure: building, parsing and validating topics; no network.

All topics live under ``delgrad/v1/{device}/``::

    events/in       SpikeBatch or SensorEvents   QoS 0
    labels          Labels                      QoS 1
    predictions     Predictions                 QoS 0
    params/latest   ParameterSnapshot           QoS 1, retained
    params/delta    ParameterDelta              QoS 1
    metrics         Metrics                     QoS 0 (MQTT 5: expires after 60 s)
    status          Status                      QoS 1, retained, also the last will
    cmd/{name}      Command                     QoS 1
    cmd/{name}/reply Reply                      QoS 1

The ``v1`` level is the topic-tree version; message schema versions are inside the
envelope. See docs/protocol.md for the reasons behind each QoS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from delgrad.errors import ParameterError

#: First two levels of every topic.
ROOT = "delgrad/v1"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_TOPIC_LEVELS = 32


class TopicKind(StrEnum):
    """Kinds of topic below ``delgrad/v1/{device}/`` (the value is the sub-path)."""

    EVENTS_IN = "events/in"
    LABELS = "labels"
    PREDICTIONS = "predictions"
    PARAMS_LATEST = "params/latest"
    PARAMS_DELTA = "params/delta"
    METRICS = "metrics"
    STATUS = "status"
    CMD = "cmd"
    CMD_REPLY = "cmd/reply"
    ALARM = "alarm"


@dataclass(frozen=True)
class TopicPolicy:
    """Delivery rules of a topic kind.

    Attributes:
        qos: MQTT QoS (0 at most once, 1 at least once).
        retain: Whether publishers set the retain flag.
        state_like: Only the newest message matters (outgoing queue keeps latest per topic).
        expiry_s: MQTT 5 message expiry interval in seconds, or ``None``.
    """

    qos: int
    retain: bool = False
    state_like: bool = False
    expiry_s: int | None = None


#: Delivery rules per topic kind (see docs/protocol.md for the reasons).
POLICIES: dict[TopicKind, TopicPolicy] = {
    TopicKind.EVENTS_IN: TopicPolicy(qos=0),
    TopicKind.LABELS: TopicPolicy(qos=1),
    TopicKind.PREDICTIONS: TopicPolicy(qos=0),
    TopicKind.PARAMS_LATEST: TopicPolicy(qos=1, retain=True, state_like=True),
    TopicKind.PARAMS_DELTA: TopicPolicy(qos=1),
    TopicKind.METRICS: TopicPolicy(qos=0, expiry_s=60),
    TopicKind.STATUS: TopicPolicy(qos=1, retain=True, state_like=True),
    TopicKind.CMD: TopicPolicy(qos=1),
    TopicKind.CMD_REPLY: TopicPolicy(qos=1),
    TopicKind.ALARM: TopicPolicy(qos=1, retain=True, state_like=True),
}


@dataclass(frozen=True)
class TopicInfo:
    """A parsed topic.

    Attributes:
        device: Device id.
        kind: Topic kind.
        name: Command name for ``cmd`` and ``cmd/reply`` kinds, else ``None``.
    """

    device: str
    kind: TopicKind
    name: str | None = None

    @property
    def policy(self) -> TopicPolicy:
        """Delivery rules of this topic."""
        return POLICIES[self.kind]


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid device id or command name (1-64 of ``[A-Za-z0-9_.-]``,
    starting with a letter or digit; never ``/``, ``+``, ``#`` or ``$``)."""
    return isinstance(name, str) and _NAME_RE.match(name) is not None


def validate_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` or raise :class:`ParameterError` if it is not valid."""
    if not is_valid_name(name):
        raise ParameterError(f"{what} {name!r} is not valid: 1-64 of [A-Za-z0-9_.-]")
    return name


def topic(device: str, kind: TopicKind | str, *, name: str | None = None) -> str:
    """Build a topic.

    Args:
        device: Device id.
        kind: A :class:`TopicKind` or its value, e.g. ``"params/latest"``.
        name: Command name, required for ``cmd`` and ``cmd/reply``, else forbidden.

    Returns:
        E.g. ``"delgrad/v1/dev1/cmd/reset/reply"``.
    """
    validate_name(device, what="device id")
    try:
        k = TopicKind(kind)
    except ValueError:
        raise ParameterError(f"unknown topic kind {kind!r}") from None
    if k in (TopicKind.CMD, TopicKind.CMD_REPLY):
        validate_name(name or "", what="command name")
        tail = f"cmd/{name}" + ("/reply" if k is TopicKind.CMD_REPLY else "")
    else:
        if name is not None:
            raise ParameterError(f"topic kind {k.value!r} takes no name")
        tail = k.value
    return f"{ROOT}/{device}/{tail}"


def parse_topic(topic_str: str) -> TopicInfo:
    """Parse a concrete topic of the tree.

    Raises:
        ParameterError: If the topic is not in the tree or has invalid names.
    """
    parts = topic_str.split("/") if isinstance(topic_str, str) else []
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        raise ParameterError(f"topic {topic_str!r} is not under {ROOT}/")
    device, rest = parts[2], parts[3:]
    validate_name(device, what="device id")
    if rest[0] == "cmd" and len(rest) in (2, 3):
        validate_name(rest[1], what="command name")
        if len(rest) == 2:
            return TopicInfo(device, TopicKind.CMD, rest[1])
        if rest[2] == "reply":
            return TopicInfo(device, TopicKind.CMD_REPLY, rest[1])
    else:
        tail = "/".join(rest)
        for k in TopicKind:
            if k.value == tail and k not in (TopicKind.CMD, TopicKind.CMD_REPLY):
                return TopicInfo(device, k)
    raise ParameterError(f"topic {topic_str!r} is not in the topic tree")


def policy_for(topic_str: str) -> TopicPolicy:
    """Return the delivery rules of a concrete topic (QoS 0, no retain for foreign topics)."""
    try:
        return parse_topic(topic_str).policy
    except ParameterError:
        return TopicPolicy(qos=0)


def subscription(device: str = "+", kind: TopicKind | str | None = None) -> str:
    """Build a subscription pattern.

    Args:
        device: Device id, or ``"+"`` for every device.
        kind: Topic kind; ``None`` for every topic of the device (``.../#``);
            ``cmd`` gives ``cmd/+`` (all commands), ``cmd/reply`` gives ``cmd/+/reply``.
    """
    if device != "+":
        validate_name(device, what="device id")
    if kind is None:
        return f"{ROOT}/{device}/#"
    k = TopicKind(kind)
    if k is TopicKind.CMD:
        return f"{ROOT}/{device}/cmd/+"
    if k is TopicKind.CMD_REPLY:
        return f"{ROOT}/{device}/cmd/+/reply"
    return f"{ROOT}/{device}/{k.value}"


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid MQTT subscription filter, else raise.

    ``+`` must fill a whole level; ``#`` must be the whole last level.
    """
    if not isinstance(pattern, str) or not pattern or len(pattern) > 65535 or "\0" in pattern:
        raise ParameterError(f"invalid subscription pattern {pattern!r}")
    levels = pattern.split("/")
    if len(levels) > _MAX_TOPIC_LEVELS:
        raise ParameterError("subscription pattern has too many levels")
    for i, lev in enumerate(levels):
        if ("+" in lev and lev != "+") or ("#" in lev and (lev != "#" or i != len(levels) - 1)):
            raise ParameterError(f"invalid wildcard use in {pattern!r}")
    return pattern


def validate_publish_topic(topic_str: str) -> str:
    """Return ``topic_str`` if it is a valid topic to publish to (no wildcards), else raise."""
    if (
        not isinstance(topic_str, str)
        or not topic_str
        or len(topic_str) > 65535
        or any(c in topic_str for c in "+#\0")
    ):
        raise ParameterError(f"invalid publish topic {topic_str!r}")
    return topic_str


def topic_matches(pattern: str, topic_str: str) -> bool:
    """MQTT filter matching: ``+`` matches one level, ``#`` the rest (including none).

    Topics starting with ``$`` are not matched by a leading wildcard.
    """
    p, t = pattern.split("/"), topic_str.split("/")
    if topic_str.startswith("$") and p[0] in ("+", "#"):
        return False
    for i, lev in enumerate(p):
        if lev == "#":
            return True
        if i >= len(t) or (lev != "+" and lev != t[i]):
            return False
    return len(p) == len(t)
