"""Property-based fuzzing: decoders only ever raise typed protocol errors."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delgrad.protocols import ProtocolError, decode, encode, message_types
from delgrad.protocols._arrays import ElementBudget

from .conftest import sample_messages

SAMPLES = sample_messages()
ENCODED = {k: encode(m, seq=3, sender="dev1", timestamp_ns=7) for k, m in SAMPLES.items()}
FUZZ = settings(
    max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
trees = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(["dtype", "shape", "data"]), kids, max_size=5
        )
    ),
    max_leaves=25,
)


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        decode(data, max_bytes=1 << 20)
    except ProtocolError as exc:
        assert isinstance(exc.reason, str) and exc.reason


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@FUZZ
@given(
    st.sampled_from(sorted(ENCODED)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_valid_messages(schema: str, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(ENCODED[schema])
    for pos, val in flips:
        data[pos % len(data)] = val
    _decode_or_protocol_error(bytes(data))
    _decode_or_protocol_error(bytes(data[: cut % len(data)]))


@FUZZ
@given(st.sampled_from(sorted(ENCODED)), st.data())
def test_random_field_values(schema: str, data: st.DataObject) -> None:
    """Replace one body field (or a nested array field) by a random msgpack tree."""
    env = msgpack.unpackb(ENCODED[schema])
    body = env["body"]
    key = data.draw(st.sampled_from(sorted(body)))
    if isinstance(body[key], dict) and body[key] and data.draw(st.booleans()):
        sub = data.draw(st.sampled_from(sorted(body[key])))
        body[key][sub] = data.draw(trees)
    else:
        body[key] = data.draw(trees)
    _decode_or_protocol_error(msgpack.packb(env, use_bin_type=True))


@FUZZ
@given(st.sampled_from(sorted(message_types())), trees)
def test_from_body_with_random_bodies(schema: str, body: object) -> None:
    cls = message_types()[schema]
    if not isinstance(body, dict):
        body = {"x": body}
    try:
        cls.from_body(body, budget=ElementBudget(1 << 16))
    except ProtocolError:
        pass


@FUZZ
@given(trees)
def test_random_envelopes(tree: object) -> None:
    env = {"schema": "status", "major": 1, "seq": 0, "timestamp_ns": 0, "sender": "a"}
    if isinstance(tree, dict):
        env.update(tree)
    else:
        env["body"] = tree
    _decode_or_protocol_error(msgpack.packb(env, use_bin_type=True))


@pytest.mark.parametrize("depth", [100, 5000])
def test_deep_nesting_is_a_protocol_error_or_ok(depth: int) -> None:
    _decode_or_protocol_error(b"\x91" * depth + b"\x00")


def test_huge_declared_lengths_do_not_allocate() -> None:
    # bin32 header claiming 4 GiB, and array32 claiming 2**32-1 items, with no data behind
    for data in (b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"):
        with pytest.raises(ProtocolError):
            decode(data)


@pytest.mark.parametrize("schema", ["metrics", "command", "params", "params_delta"])
def test_binary_map_keys_are_protocol_errors(schema: str) -> None:
    """msgpack may carry bytes keys; mixed str/bytes keys must not reach sorted()."""
    env = msgpack.unpackb(ENCODED[schema])
    body = env["body"]
    if schema == "metrics":
        body["values"][b"x"] = 1.0
    elif schema == "command":
        body["args"][b"x"] = 1
    elif schema == "params":
        body["layers"][0]["tensors"][b"x"] = body["layers"][0]["tensors"]["w"]
    else:
        body["layers"][0][b"x"] = body["layers"][0]["w"]
    with pytest.raises(ProtocolError):
        decode(msgpack.packb(env, use_bin_type=True))
