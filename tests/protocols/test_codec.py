"""Round trips of every message type and the envelope's rules."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from delgrad.errors import ParameterError
from delgrad.protocols import (
    ArrayError,
    ChecksumError,
    Envelope,
    Labels,
    ParameterSnapshot,
    ProtocolError,
    SchemaError,
    SizeLimitError,
    SpikeBatch,
    Status,
    VersionError,
    decode,
    decode_array,
    encode,
    encode_array,
    message_types,
)
from delgrad.protocols._arrays import ElementBudget

from .conftest import sample_messages

SAMPLES = sample_messages()


def test_every_registered_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(message_types())


@pytest.mark.parametrize("schema", sorted(SAMPLES))
def test_round_trip(schema: str) -> None:
    msg = SAMPLES[schema]
    data = encode(msg, seq=42, sender="dev-1", timestamp_ns=1_700_000_000_000_000_000)
    env = decode(data)
    assert env == Envelope(schema, 1, 42, 1_700_000_000_000_000_000, "dev-1", msg)
    assert type(env.message) is type(msg)
    assert encode(env.message, seq=42, sender="dev-1", timestamp_ns=env.timestamp_ns) == data


def test_spike_batch_layout() -> None:
    sb = SAMPLES["spikes"]
    assert isinstance(sb, SpikeBatch)
    got = decode(encode(sb, seq=0, sender="a", timestamp_ns=0)).message
    assert got.n_trials == 3
    ch, t = got.trial(0)
    assert ch.tolist() == [0, 1, 2, 3] and t.dtype == np.float32
    assert got.trial(1)[0].size == 0
    assert got.trial(2)[0].tolist() == [3]
    assert got.times.flags.writeable is False


def test_sensor_channels_above_uint16_survive() -> None:
    got = decode(encode(SAMPLES["sensor_events"], seq=0, sender="a")).message
    assert got.channels.tolist() == [5, 70000, 2]
    assert got.times.dtype == np.float64 and got.time_unit == "us"


def test_predictions_keep_inf_refuse_nan() -> None:
    got = decode(encode(SAMPLES["predictions"], seq=0, sender="a")).message
    assert np.isinf(got.output_times[1]).all()
    with pytest.raises(ParameterError):
        type(got)([1], [0], [[np.nan]])


def test_unknown_keys_are_ignored() -> None:
    env = msgpack.unpackb(encode(Status("birth"), seq=1, sender="a", timestamp_ns=5))
    env["future_field"] = [1, 2, 3]
    env["body"]["extra"] = {"x": 1}
    got = decode(msgpack.packb(env))
    assert got.message == Status("birth") and got.seq == 1


def test_higher_major_version_is_refused() -> None:
    env = msgpack.unpackb(encode(Status("birth"), seq=1, sender="a", timestamp_ns=5))
    env["major"] = 2
    with pytest.raises(VersionError, match="higher") as info:
        decode(msgpack.packb(env))
    assert "major version 2" in info.value.reason


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda e: e.pop("body"), SchemaError),
        (lambda e: e.update(schema="nope"), SchemaError),
        (lambda e: e.update(seq=-1), SchemaError),
        (lambda e: e.update(seq=True), SchemaError),
        (lambda e: e.update(sender="a/b"), SchemaError),
        (lambda e: e["body"].update(state="zombie"), SchemaError),
        (lambda e: e["body"].update(uptime_s=float("nan")), SchemaError),
    ],
)
def test_bad_envelopes(mutate, error) -> None:
    env = msgpack.unpackb(encode(Status("alive", 1.0), seq=1, sender="a", timestamp_ns=5))
    mutate(env)
    with pytest.raises(error):
        decode(msgpack.packb(env))


def test_size_limits() -> None:
    data = encode(SAMPLES["spikes"], seq=0, sender="a")
    with pytest.raises(SizeLimitError):
        decode(data, max_bytes=len(data) - 1)
    assert decode(data, max_bytes=len(data)).message == SAMPLES["spikes"]
    with pytest.raises(SizeLimitError):
        decode(data, max_elements=5)
    with pytest.raises(ProtocolError):
        decode(data + b"\x00")  # trailing bytes


def test_extension_types_and_non_maps_are_refused() -> None:
    with pytest.raises(ProtocolError):
        decode(msgpack.packb(msgpack.ExtType(1, b"x")))
    with pytest.raises(SchemaError):
        decode(msgpack.packb([1, 2]))


@pytest.mark.parametrize("dtype", ["|O", "|V8", "<U4", "|S4", ">f4", "<c8"])
def test_array_dtype_whitelist(dtype: str) -> None:
    obj = {"dtype": dtype, "shape": [1], "data": b"\0" * 8}
    with pytest.raises(ArrayError):
        decode_array(obj, "x", ElementBudget())


def test_array_checks_shape_and_length_before_allocating() -> None:
    huge = {"dtype": "<f8", "shape": [1 << 30, 1 << 30], "data": b""}
    with pytest.raises(SizeLimitError):
        decode_array(huge, "x", ElementBudget())
    with pytest.raises(ArrayError):
        decode_array({"dtype": "<f4", "shape": [3], "data": b"\0" * 8}, "x", ElementBudget())
    with pytest.raises(ArrayError):
        decode_array({"dtype": "<f4", "shape": [-1], "data": b""}, "x", ElementBudget())
    with pytest.raises(ArrayError):
        decode_array({"dtype": "<f4", "shape": [1] * 5, "data": b"\0" * 4}, "x", ElementBudget())


def test_big_endian_input_is_encoded_little_endian() -> None:
    a = np.arange(3, dtype=">i4")
    enc = encode_array(a)
    assert enc["dtype"] == "<i4" and enc["data"] == np.arange(3, dtype="<i4").tobytes()
    assert decode_array(enc, "a", ElementBudget()).tolist() == [0, 1, 2]


def test_csr_consistency_is_checked_on_decode() -> None:
    env = msgpack.unpackb(encode(SAMPLES["spikes"], seq=0, sender="a"))
    env["body"]["offsets"] = encode_array(np.array([0, 9, 4, 5], dtype=np.uint32))
    with pytest.raises(SchemaError, match="non-decreasing"):
        decode(msgpack.packb(env))


def test_labels_length_mismatch() -> None:
    with pytest.raises(ParameterError):
        Labels([1, 2], [0])


def test_snapshot_checksum_is_verified() -> None:
    snap = SAMPLES["params"]
    assert isinstance(snap, ParameterSnapshot)
    env = msgpack.unpackb(encode(snap, seq=0, sender="a"))
    data = bytearray(env["body"]["layers"][0]["tensors"]["w"]["data"])
    data[0] ^= 1
    env["body"]["layers"][0]["tensors"]["w"]["data"] = bytes(data)
    with pytest.raises(ChecksumError):
        decode(msgpack.packb(env))


def test_snapshot_checks_shapes_against_structure() -> None:
    snap = SAMPLES["params"]
    with pytest.raises(ParameterError, match="d must be"):
        ParameterSnapshot(0, (4, 30, 3), snap.neuron, ("axonal", "synaptic"), tuple(snap.layers))


def test_encode_refuses_bad_framing() -> None:
    with pytest.raises(SchemaError):
        encode(Status("alive"), seq=-1, sender="a")
    with pytest.raises(SchemaError):
        encode(Status("alive"), seq=0, sender="bad/name")
