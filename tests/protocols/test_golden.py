"""Golden vectors: docs/protocol.md's hex dumps must match the codec byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from delgrad.protocols import (
    Command,
    Labels,
    Message,
    Metrics,
    NeuronParams,
    ParameterDelta,
    ParameterSnapshot,
    Predictions,
    Reply,
    SensorEvents,
    SpikeBatch,
    Status,
    TensorDelta,
    decode,
    encode,
    parameters_checksum,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, fixed for the examples


def _tiny_layers() -> tuple[dict[str, np.ndarray], ...]:
    return ({"d": np.array([[0.5], [0.25]]), "w": np.array([[1.0], [-2.0]])},)


def _delta() -> ParameterDelta:
    q = TensorDelta(np.array([[1], [-127]], dtype=np.int8), 0.0078125)
    new = ({"d": _tiny_layers()[0]["d"], "w": _tiny_layers()[0]["w"] + q.dequantised()},)
    return ParameterDelta(3, 4, "int8", ({"w": q},), parameters_checksum(new))


GOLDEN: dict[str, tuple[Message, int]] = {
    "status": (Status("alive", 12.5, "ok"), 7),
    "spikes": (SpikeBatch.from_trials([1, 2], [([0, 3], [0.5, 1.25]), ([2], [0.75])]), 0),
    "sensor_events": (SensorEvents([1, 2], [100.0, 250.0], time_unit="us"), 0),
    "labels": (Labels([1, 2], [0, 2]), 0),
    "predictions": (Predictions([1, 2], [0, -1], [[1.5, np.inf], [np.inf, np.inf]]), 0),
    "params": (
        ParameterSnapshot(3, (2, 1), NeuronParams(1.0, 2.0, 1.0), ("synaptic",), _tiny_layers()),
        3,
    ),
    "params_delta": (_delta(), 4),
    "metrics": (Metrics(10, {"loss": 0.5}), 1),
    "command": (Command("reset", "c1", {"hard": True}), 0),
    "reply": (Reply("c1", True, {}, ""), 0),
}


def golden_bytes(name: str) -> bytes:
    msg, seq = GOLDEN[name]
    return encode(msg, seq=seq, sender="dev1", timestamp_ns=TS)


def hexdump(data: bytes) -> str:
    """16 bytes per line, lower-case pairs separated by spaces (the doc's format)."""
    return "\n".join(data[i : i + 16].hex(" ") for i in range(0, len(data), 16))


def doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- golden:([a-z_]+) -->\s*```text\n(.*?)```", text, flags=re.S)
    return {name: bytes.fromhex(body.replace("\n", " ")) for name, body in blocks}


def test_doc_has_every_golden_vector() -> None:
    assert set(doc_vectors()) == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoding_matches_doc(name: str) -> None:
    assert golden_bytes(name) == doc_vectors()[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_doc_bytes_decode_to_the_example(name: str) -> None:
    env = decode(doc_vectors()[name])
    msg, seq = GOLDEN[name]
    assert (env.schema, env.seq, env.sender, env.timestamp_ns) == (name, seq, "dev1", TS)
    assert env.message == msg


def test_encoding_is_deterministic() -> None:
    for name in GOLDEN:
        assert golden_bytes(name) == golden_bytes(name)


def test_documented_sizes_match_the_codec() -> None:
    """The §8 size table in docs/protocol.md is what the benchmark's messages encode to."""
    from delgrad.tools import bench_protocol as b

    rng = np.random.default_rng(0)
    batch = b._yinyang_batch(rng)
    layers = b._network(rng)
    enc = b.DeltaEncoder(layers, seq=0)
    snap = enc.snapshot(
        layer_sizes=(4, 30, 3), neuron=NeuronParams(), delay_kinds=("synaptic",) * 2
    )
    moved = [{k: v + rng.normal(0, 1e-3, v.shape) for k, v in lay.items()} for lay in layers]
    d8 = enc.delta(moved, encoding="int8")
    moved = [{k: v + rng.normal(0, 1e-3, v.shape) for k, v in lay.items()} for lay in moved]
    d32 = enc.delta(moved, encoding="float32")

    def size(m: Message) -> int:
        return len(encode(m, seq=1, sender="bench", timestamp_ns=0))

    text = DOC.read_text(encoding="utf-8")
    for label, msg in [
        ("parameter delta, float32 (all tensors changed)", d32),
        ("parameter delta, int8 (all tensors changed)", d8),
        ("parameter snapshot", snap),
        ("100 Yin-Yang trials × 4 events, times `<f4` in tau_s", batch),
    ]:
        assert f"| {label} | {size(msg)} |" in text, label
