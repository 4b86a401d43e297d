"""Benchmark of the protocol codec: encode/decode rates and bytes per update.

Run as ``python -m delgrad.tools.bench_protocol`` (prints one JSON line), or call
:func:`bench_protocol`. Figures are medians over ``repeats`` after one warm-up.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from delgrad.protocols import DeltaEncoder, NeuronParams, SpikeBatch, decode, encode


def _yinyang_batch(rng: np.random.Generator, n_trials: int = 100) -> SpikeBatch:
    """100 trials of 4 input events each (channels 0-3), times in model units (tau_s)."""
    events = [(np.arange(4), rng.uniform(0.0, 2.0, 4)) for _ in range(n_trials)]
    return SpikeBatch.from_trials(np.arange(n_trials), events, time_unit="tau_s")


def _network(rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """The 4-30-3 network with synaptic delays (weights and delays per layer)."""
    return [
        {"w": rng.normal(0, 0.5, (4, 30)), "d": rng.uniform(0, 1, (4, 30))},
        {"w": rng.normal(0, 0.5, (30, 3)), "d": rng.uniform(0, 1, (30, 3))},
    ]


def _rate(fn: Callable[[], Any], n: int, repeats: int) -> float:
    """Median calls per second of ``fn`` over ``repeats`` batches of ``n`` calls."""
    for _ in range(max(1, n // 10)):
        fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _codec_figures(msg: Any, n: int, repeats: int) -> dict[str, float]:
    data = encode(msg, seq=1, sender="bench", timestamp_ns=0)
    enc = _rate(lambda: encode(msg, seq=1, sender="bench", timestamp_ns=0), n, repeats)
    dec = _rate(lambda: decode(data), n, repeats)
    mb = len(data) / 1e6
    return {
        "bytes": len(data),
        "encode_msg_per_s": round(enc, 1),
        "encode_mb_per_s": round(enc * mb, 2),
        "decode_msg_per_s": round(dec, 1),
        "decode_mb_per_s": round(dec * mb, 2),
    }


def bench_protocol(repeats: int = 7) -> dict[str, Any]:
    """Measure codec throughput and message sizes.

    Args:
        repeats: Timed repeats per figure (the median is reported), >= 1.

    Returns:
        ``{"spikes_100_trials": {...}, "delta_int8": {...}, "delta_float32": {...},
        "snapshot_bytes": int, "params": int, "repeats": int}``; rates in messages/s and
        MB/s (10**6 bytes) of encoded payload, sizes in bytes including the envelope.
    """
    rng = np.random.default_rng(0)
    batch = _yinyang_batch(rng)
    layers = _network(rng)
    enc = DeltaEncoder(layers, seq=0)
    snap = enc.snapshot(
        layer_sizes=(4, 30, 3), neuron=NeuronParams(), delay_kinds=("synaptic", "synaptic")
    )
    moved = [{k: v + rng.normal(0, 1e-3, v.shape) for k, v in lay.items()} for lay in layers]
    d8 = enc.delta(moved, encoding="int8")
    moved = [{k: v + rng.normal(0, 1e-3, v.shape) for k, v in lay.items()} for lay in moved]
    d32 = enc.delta(moved, encoding="float32")
    n_params = sum(v.size for lay in layers for v in lay.values())
    make_rate = _rate(lambda: enc.delta(moved, encoding="int8"), 300, repeats)
    return {
        "spikes_100_trials": _codec_figures(batch, 2000, repeats),
        "delta_int8": _codec_figures(d8, 2000, repeats),
        "delta_float32": _codec_figures(d32, 2000, repeats),
        "delta_int8_make_per_s": round(make_rate, 1),
        "snapshot_bytes": len(encode(snap, seq=0, sender="bench", timestamp_ns=0)),
        "params": int(n_params),
        "repeats": repeats,
    }


def main() -> int:
    """Print the figures as one JSON line."""
    print(json.dumps(bench_protocol()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
