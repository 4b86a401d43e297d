"""DeltaEncoder (sender) and ParameterReplica (receiver)."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ParameterError
from delgrad.protocols import (
    DeltaEncoder,
    NeuronParams,
    ParameterDelta,
    ParameterReplica,
    decode,
    encode,
    parameters_checksum,
)

from .conftest import yinyang_like_network

NEURON = NeuronParams(1.0, 2.0, 1.0)
KINDS = ("synaptic", "synaptic")


def _start(encoding: str = "int8") -> tuple[list[dict], DeltaEncoder, ParameterReplica]:
    params = [{k: v.astype(np.float32) for k, v in lay.items()} for lay in yinyang_like_network()]
    enc = DeltaEncoder(params, seq=0, encoding=encoding)
    rep = ParameterReplica()
    assert rep.needs_resync
    snap = enc.snapshot(layer_sizes=(4, 30, 3), neuron=NEURON, delay_kinds=KINDS)
    assert rep.apply_snapshot(decode(encode(snap, seq=0, sender="a")).message)
    assert not rep.needs_resync and rep.seq == 0
    return params, enc, rep


def _step(params: list[dict], rng: np.random.Generator, size: float = 1e-3) -> None:
    for lay in params:
        for v in lay.values():
            v += rng.normal(0, size, v.shape).astype(np.float32)


def test_int8_error_feedback_10000_deltas_stay_within_one_step() -> None:
    rng = np.random.default_rng(0)
    params, enc, rep = _start("int8")
    for _ in range(10_000):
        _step(params, rng)
        delta = enc.delta(params)
        assert rep.apply_delta(delta)
    assert rep.seq == 10_000 and rep.stats.applied == 10_000
    got = rep.layers()
    for i, lay in enumerate(params):
        for name, value in lay.items():
            step = delta.layers[i][name].scale  # quantisation step of the last delta
            assert step > 0
            err = np.max(np.abs(value - got[i][name]))
            assert err <= step, (i, name, err, step)
    # the receiver's copy is bit-identical to the sender's view
    assert parameters_checksum(got) == parameters_checksum(enc.view())


def test_without_error_feedback_the_copy_would_drift() -> None:
    """Control: quantising each step's own change (no residual) drifts far beyond a step."""
    rng = np.random.default_rng(0)
    params, _, _ = _start()
    naive = [{k: v.copy() for k, v in lay.items()} for lay in params]
    for _ in range(2_000):
        for lay, nlay in zip(params, naive, strict=True):
            for k, v in lay.items():
                change = rng.normal(0, 1e-3, v.shape).astype(np.float32)
                v += change
                scale = np.float32(np.abs(change).max() / 127)
                nlay[k] += np.rint(change / scale).astype(np.float32) * scale
    drift = max(np.abs(params[i][k] - naive[i][k]).max() for i in range(2) for k in params[i])
    assert drift > 1e-4  # the error-feedback test above bounds the error by ~2e-5


def test_float32_deltas_are_exact_views() -> None:
    rng = np.random.default_rng(1)
    params, enc, rep = _start("float32")
    for _ in range(50):
        _step(params, rng)
        d = decode(encode(enc.delta(params), seq=0, sender="a")).message
        assert d.encoding == "float32"
        assert rep.apply_delta(d)
    for i, lay in enumerate(params):
        for k, v in lay.items():
            np.testing.assert_allclose(rep.layers()[i][k], v, rtol=0, atol=1e-6)


def test_int8_delta_is_smaller_than_float32() -> None:
    rng = np.random.default_rng(2)
    params, enc, _ = _start()
    _step(params, rng)
    i8 = len(encode(enc.delta(params, encoding="int8"), seq=1, sender="a"))
    _step(params, rng)
    f32 = len(encode(enc.delta(params, encoding="float32"), seq=1, sender="a"))
    assert i8 < f32 / 2


def test_gap_triggers_resync_and_snapshot_recovers() -> None:
    rng = np.random.default_rng(3)
    params, enc, rep = _start()
    _step(params, rng)
    assert rep.apply_delta(enc.delta(params))
    _step(params, rng)
    enc.delta(params)  # lost on the way
    _step(params, rng)
    d3 = enc.delta(params)
    assert not rep.apply_delta(d3)
    assert rep.needs_resync and rep.stats.gaps == 1 and rep.seq == 1
    snap = enc.snapshot(layer_sizes=(4, 30, 3), neuron=NEURON, delay_kinds=KINDS)
    assert snap.seq == 3
    assert rep.apply_snapshot(snap)
    _step(params, rng)
    assert rep.apply_delta(enc.delta(params)) and rep.seq == 4


def test_duplicate_delta_is_stale_not_a_gap() -> None:
    rng = np.random.default_rng(4)
    params, enc, rep = _start()
    _step(params, rng)
    d = enc.delta(params)
    assert rep.apply_delta(d)
    assert not rep.apply_delta(d)
    assert rep.stats.stale == 1 and not rep.needs_resync


def test_checksum_mismatch_triggers_resync() -> None:
    rng = np.random.default_rng(5)
    params, enc, rep = _start()
    _step(params, rng)
    d = enc.delta(params)
    bad = ParameterDelta(d.base_seq, d.seq, d.encoding, d.layers, bytes(16))
    before = rep.layers()
    assert not rep.apply_delta(bad)
    assert rep.needs_resync and rep.stats.rejected == 1
    np.testing.assert_array_equal(rep.layers()[0]["w"], before[0]["w"])  # not half-applied


def test_stale_snapshot_is_ignored_when_in_sync() -> None:
    rng = np.random.default_rng(6)
    params, enc, rep = _start()
    old = enc.snapshot(layer_sizes=(4, 30, 3), neuron=NEURON, delay_kinds=KINDS)
    _step(params, rng)
    assert rep.apply_delta(enc.delta(params))
    assert not rep.apply_snapshot(old)
    assert rep.seq == 1


def test_encoder_refuses_changed_structure() -> None:
    params, enc, _ = _start()
    with pytest.raises(ParameterError):
        enc.delta(params[:1])
    with pytest.raises(ParameterError):
        enc.delta([{"w": params[0]["w"][:2]} | {"d": params[0]["d"]}, params[1]])


def test_residual_is_current_minus_view() -> None:
    rng = np.random.default_rng(7)
    params, enc, _ = _start()
    _step(params, rng)
    enc.delta(params)
    res = enc.residual()
    view = enc.view()
    np.testing.assert_array_equal(res[1]["w"], params[1]["w"] - view[1]["w"])
    assert np.abs(res[1]["w"]).max() > 0
