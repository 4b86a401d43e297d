"""The envelope codec: message objects <-> bytes. Pure, no network.

Every message travels as one msgpack map, the *envelope*, with keys in this order::

    {"schema": str, "major": int, "seq": int, "timestamp_ns": int, "sender": str, "body": map}

The body's layout depends on ``schema``; each message class converts itself with
``to_body()`` / ``from_body()``. See docs/protocol.md for every field.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import msgpack

from delgrad.errors import (
    ParameterError,
    ProtocolError,
    SchemaError,
    SizeLimitError,
    VersionError,
)

from ._arrays import MAX_ELEMENTS, ElementBudget

#: Default largest accepted message, in bytes (16 MiB).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Largest sequence number (unsigned 64 bit).
MAX_SEQ = (1 << 64) - 1
#: Largest timestamp in ns (signed 64 bit).
MAX_TIMESTAMP_NS = (1 << 63) - 1
#: Largest number of entries of any map or array in a message (besides raw array bytes).
MAX_CONTAINER_LEN = 4096
#: Longest text field, in characters.
MAX_STR_LEN = 1024

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Device ids, command names, metric names, tensor names: 1-64 chars, no '/', '+', '#'."""


def sorted_names(mapping: Mapping[Any, Any], what: str) -> list[str]:
    """Return the keys of ``mapping`` sorted, after checking each matches ``NAME_RE``.

    Raises:
        ParameterError: If a key is not a valid name.
    """
    for k in mapping:
        if not isinstance(k, str) or not NAME_RE.match(k):
            raise ParameterError(f"{what} {k!r} is not a valid name")
    return sorted(mapping)


class Message:
    """Base of all message types: a frozen dataclass with a schema name and major version.

    Subclasses set ``SCHEMA`` and ``MAJOR`` and implement :meth:`to_body` and
    :meth:`from_body`. Equality compares the encoded bodies (arrays by their bytes).
    """

    SCHEMA: ClassVar[str] = ""
    MAJOR: ClassVar[int] = 1

    def to_body(self) -> dict[str, Any]:
        """Return the body as plain msgpack-able values, keys in canonical order."""
        raise NotImplementedError

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        """Build the message from a decoded body, validating every field.

        Raises:
            ProtocolError: (a subclass) on any missing, ill-typed or out-of-range field.
        """
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.to_body() == other.to_body())

    __hash__ = None  # type: ignore[assignment]


M = TypeVar("M", bound=type[Message])
_REGISTRY: dict[str, type[Message]] = {}


def register_message(cls: M) -> M:
    """Class decorator: map ``cls.SCHEMA`` to ``cls`` for :func:`decode`."""
    if not cls.SCHEMA or cls.SCHEMA in _REGISTRY:
        raise ValueError(f"schema name {cls.SCHEMA!r} empty or already registered")
    _REGISTRY[cls.SCHEMA] = cls
    return cls


def message_types() -> dict[str, type[Message]]:
    """Return a copy of the registry: schema name -> message class."""
    return dict(_REGISTRY)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with its framing.

    Attributes:
        schema: Schema name, e.g. ``"spikes"``.
        major: Schema major version.
        seq: Sequence number, per sender and topic (0 .. 2**64-1).
        timestamp_ns: Send time, ns since the Unix epoch (sender's clock).
        sender: Device id of the sender.
        message: The typed message.
    """

    schema: str
    major: int
    seq: int
    timestamp_ns: int
    sender: str
    message: Message


def encode(msg: Message, *, seq: int, sender: str, timestamp_ns: int | None = None) -> bytes:
    """Encode a message in its envelope.

    Args:
        msg: Any registered message object.
        seq: Sequence number per sender and topic, 0 .. 2**64-1.
        sender: Device id of the sender (see ``NAME_RE``).
        timestamp_ns: Send time in ns since the Unix epoch; now when ``None``.

    Returns:
        The msgpack bytes.
    """
    if type(msg).SCHEMA not in _REGISTRY:
        raise SchemaError(f"message type {type(msg).__name__} is not registered")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise SchemaError("seq must be an integer in 0 .. 2**64-1")
    if not isinstance(sender, str) or not NAME_RE.match(sender):
        raise SchemaError(f"sender {sender!r} is not a valid device id")
    ts = time.time_ns() if timestamp_ns is None else timestamp_ns
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP_NS:
        raise SchemaError("timestamp_ns must be an integer in 0 .. 2**63-1")
    env = {
        "schema": msg.SCHEMA,
        "major": msg.MAJOR,
        "seq": seq,
        "timestamp_ns": ts,
        "sender": sender,
        "body": msg.to_body(),
    }
    packed: bytes = msgpack.packb(env, use_bin_type=True)
    return packed


def _reject_ext(code: int, data: bytes) -> Any:
    raise SchemaError(f"msgpack extension type {code} is not allowed")


def unpack_limited(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Unpack untrusted msgpack bytes with size limits; no ext types, no evaluation.

    Raises:
        SizeLimitError: If ``data`` is longer than ``max_bytes`` or a limit is exceeded.
        ProtocolError: On any malformed input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError("payload must be bytes")
    if len(data) > max_bytes:
        raise SizeLimitError(f"message of {len(data)} bytes exceeds {max_bytes}")
    # unpackb sets the buffer limit (max_buffer_size) to len(data) <= max_bytes itself.
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=min(max_bytes, 1 << 16),
            max_bin_len=max_bytes,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_ext_len=0,
            ext_hook=_reject_ext,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises ValueError, UnicodeDecodeError, ExtraData, ...
        raise ProtocolError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc


def decode(
    data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_elements: int = MAX_ELEMENTS
) -> Envelope:
    """Decode and validate untrusted bytes into an :class:`Envelope`.

    Unknown keys in the envelope and bodies are ignored.

    Args:
        data: The received payload.
        max_bytes: Largest accepted payload in bytes.
        max_elements: Cap on the total array elements in the message.

    Raises:
        VersionError: If the schema's major version differs from this receiver's.
        SchemaError, ArrayError, SizeLimitError, ChecksumError: On invalid content.
    """
    obj = unpack_limited(data, max_bytes=max_bytes)
    if not isinstance(obj, dict):
        raise SchemaError("envelope must be a map")
    schema = get_str(obj, "schema", max_len=64)
    major = get_int(obj, "major", 0, 1 << 16)
    cls = _REGISTRY.get(schema)
    if cls is None:
        raise SchemaError(f"unknown schema {schema!r}")
    if major != cls.MAJOR:
        word = "higher" if major > cls.MAJOR else "lower"
        raise VersionError(
            f"schema {schema!r} major version {major} is {word} than supported {cls.MAJOR}"
        )
    seq = get_int(obj, "seq", 0, MAX_SEQ)
    ts = get_int(obj, "timestamp_ns", 0, MAX_TIMESTAMP_NS)
    sender = get_name(obj, "sender")
    body = get_map(obj, "body")
    msg = cls.from_body(body, budget=ElementBudget(max_elements))
    return Envelope(schema, major, seq, ts, sender, msg)


# ---- field readers used by from_body implementations --------------------------------


def _need(body: Mapping[str, Any], key: str) -> Any:
    try:
        return body[key]
    except KeyError:
        raise SchemaError(f"missing field {key!r}") from None


def get_int(body: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    """Read an integer field (bool refused) within ``lo .. hi``."""
    v = _need(body, key)
    if type(v) is not int:
        raise SchemaError(f"{key}: expected an integer")
    if not lo <= v <= hi:
        raise SchemaError(f"{key}: {v} outside {lo} .. {hi}")
    return v


def get_float(
    body: Mapping[str, Any], key: str, *, lo: float = -math.inf, hi: float = math.inf
) -> float:
    """Read a finite float field (integers accepted) within ``lo .. hi``."""
    v = _need(body, key)
    if type(v) not in (float, int):
        raise SchemaError(f"{key}: expected a number")
    v = float(v)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise SchemaError(f"{key}: {v} is not finite or outside {lo} .. {hi}")
    return v


def get_bool(body: Mapping[str, Any], key: str) -> bool:
    """Read a boolean field."""
    v = _need(body, key)
    if type(v) is not bool:
        raise SchemaError(f"{key}: expected a boolean")
    return v


def get_str(body: Mapping[str, Any], key: str, *, max_len: int = MAX_STR_LEN) -> str:
    """Read a text field of at most ``max_len`` characters."""
    v = _need(body, key)
    if not isinstance(v, str):
        raise SchemaError(f"{key}: expected a string")
    if len(v) > max_len:
        raise SizeLimitError(f"{key}: longer than {max_len} characters")
    return v


def get_name(body: Mapping[str, Any], key: str) -> str:
    """Read a name field matching ``NAME_RE``."""
    v = get_str(body, key, max_len=64)
    if not NAME_RE.match(v):
        raise SchemaError(f"{key}: {v!r} is not a valid name")
    return v


def get_choice(body: Mapping[str, Any], key: str, choices: frozenset[str]) -> str:
    """Read a text field that must be one of ``choices``."""
    v = get_str(body, key, max_len=64)
    if v not in choices:
        raise SchemaError(f"{key}: {v!r} not one of {sorted(choices)}")
    return v


def get_map(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Read a map field."""
    v = _need(body, key)
    if not isinstance(v, dict):
        raise SchemaError(f"{key}: expected a map")
    return v


def get_list(body: Mapping[str, Any], key: str, *, max_len: int = MAX_CONTAINER_LEN) -> list[Any]:
    """Read an array field of at most ``max_len`` items."""
    v = _need(body, key)
    if not isinstance(v, list):
        raise SchemaError(f"{key}: expected an array")
    if len(v) > max_len:
        raise SizeLimitError(f"{key}: more than {max_len} items")
    return v
