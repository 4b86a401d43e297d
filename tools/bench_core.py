"""Core kernel throughput: forward and forward+backward samples/s (one core).

Network: 4-30-3 with synaptic delays, initialised as the DelGrad H30_WS recipe
(w ~ N(1, 1), d = sigmoid(q), q ~ N(0, 0.25)), batch 150. Inputs cycle through
34 different batches (5100 samples, uniform in [0.15, 2.0] like encoded
Yin-Yang points) so the branch predictor cannot memorise one batch.

``bench_core_sweep`` measures the same at sensor sizes, ``bench_thread_scaling``
the speed-up of ``threads=`` on the training step at 784-350-10 (see their docstrings).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable

import numpy as np

from delgrad.runtime import DelayKind, Layer, Network, NeuronParams, backward, forward, warm_up

BATCH = 150
N_BATCHES = 34


def _network(tau_m: float, rng: np.random.Generator) -> Network:
    layers = [Layer(4, 30, "synaptic"), Layer(30, 3, "synaptic")]
    w = [rng.normal(1.0, 1.0, ly.weight_shape) for ly in layers]
    d = [1.0 / (1.0 + np.exp(-rng.normal(0.0, 0.25, ly.delay_shape))) for ly in layers]
    return Network(layers, NeuronParams(tau_m=tau_m, theta=1.0), w, d)


def _rate(step, batches: list[np.ndarray], repeats: int, rounds: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            for t_in in batches:
                step(t_in)
        rates.append(rounds * len(batches) * BATCH / (time.perf_counter() - start))
    return float(np.median(rates))


def bench_core(repeats: int = 7, rounds: int = 4, seed: int = 0) -> dict[str, dict[str, int]]:
    """Median samples/s of forward and forward+backward for tau_m = 2 tau_s and tau_m = tau_s."""
    warm_up()
    rng = np.random.default_rng(seed)
    batches = [rng.uniform(0.15, 2.0, (BATCH, 4)) for _ in range(N_BATCHES)]
    result = {}
    for key, tau_m in (("ratio_2", 2.0), ("ratio_1", 1.0)):
        net = _network(tau_m, np.random.default_rng(seed))
        grad_out = np.full((BATCH, 3), 1.0 / BATCH)

        def fwd(t_in, net=net):
            forward(net, t_in)

        def fwd_bwd(t_in, net=net, grad_out=grad_out):
            times = forward(net, t_in)
            backward(net, t_in, times, grad_out, max_dw_norm=0.2)

        fwd(batches[0])
        fwd_bwd(batches[0])
        result[key] = {
            "forward_per_s": round(_rate(fwd, batches, repeats, rounds)),
            "forward_backward_per_s": round(_rate(fwd_bwd, batches, repeats, rounds)),
        }
    return result


SWEEP_BATCH = 100
SWEEP_BATCHES = 4
#: (label, layer sizes, delay kind); 4-30-3 is the H30_WS case above (batch 150).
SWEEP_SHAPES: tuple[tuple[str, tuple[int, ...], DelayKind], ...] = (
    ("4-30-3 synaptic", (4, 30, 3), "synaptic"),
    ("64-100-10", (64, 100, 10), "none"),
    ("256-128-10", (256, 128, 10), "none"),
    ("784-350-10", (784, 350, 10), "none"),
    ("784-350-10 axonal", (784, 350, 10), "axonal"),
    ("2312-400-10", (2312, 400, 10), "none"),
)


def _sweep_network(sizes: tuple[int, ...], kind: DelayKind, rng: np.random.Generator) -> Network:
    """Weights ~ N(mu, 1.5 mu) with mu = 4 / (expected active inputs of the layer).

    A layer's summed weight is then about 4 (spread +-1.5 / sqrt(active)), so
    V = sum w kappa (kappa peaks at 1/4 for tau_m = 2 tau_s) reaches the
    threshold 1/2 after roughly two thirds of the arrivals: nearly every neuron
    spikes, late enough that the causal sets are large (measured: >= 97 % of
    hidden and output neurons spike from 256 inputs up, 87 % at 64 inputs).
    Axonal delays uniform in [0, 1].
    """
    layers = [Layer(a, b, kind) for a, b in itertools.pairwise(sizes)]
    w = []
    active = 0.25 * sizes[0]
    for layer in layers:
        mu = 4.0 / active
        w.append(rng.normal(mu, 1.5 * mu, layer.weight_shape))
        active = layer.n_out
    d = [rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(tau_m=2.0, theta=1.0), w, d)


def _sweep_inputs(n_in: int, rng: np.random.Generator) -> np.ndarray:
    """(SWEEP_BATCH, n_in): each sample has 20-30 % of inputs active, times in [0.15, 2]."""
    frac = rng.uniform(0.2, 0.3, (SWEEP_BATCH, 1))
    times = rng.uniform(0.15, 2.0, (SWEEP_BATCH, n_in))
    return np.where(rng.uniform(size=(SWEEP_BATCH, n_in)) < frac, times, np.inf)


def _training_step(net: Network, t_in: np.ndarray, threads: int) -> None:
    """Forward + backward of one batch as training runs it (``max_dw_norm`` 0.2,
    dL/dT = 1/B on every output that spiked)."""
    times = forward(net, t_in, threads=threads)
    g = np.where(np.isfinite(times[-1]), 1.0 / len(t_in), 0.0)
    backward(net, t_in, times, g, max_dw_norm=0.2, threads=threads)


def _median_rate(
    step: Callable[[np.ndarray], None], batches: list[np.ndarray], repeats: int, min_s: float
) -> tuple[float, float]:
    """Median samples per wall-clock second and per CPU second of this process.

    On a shared host the CPU rate (``time.process_time``, all threads) leaves
    out the time other processes held the core; with one thread it is what a
    core delivers while it runs this code.
    """
    start = time.perf_counter()
    rounds = 0
    while rounds == 0 or time.perf_counter() - start < min_s / repeats:
        for t_in in batches:
            step(t_in)
        rounds += 1
    n = rounds * sum(len(t) for t in batches)
    wall = []
    cpu = []
    for _ in range(repeats):
        start = time.perf_counter()
        start_cpu = time.process_time()
        for _ in range(rounds):
            for t_in in batches:
                step(t_in)
        cpu.append(n / (time.process_time() - start_cpu))
        wall.append(n / (time.perf_counter() - start))
    return float(np.median(wall)), float(np.median(cpu))


def bench_core_sweep(
    repeats: int = 5, seed: int = 0, min_s: float = 1.0, threads: int = 1
) -> list[dict[str, object]]:
    """Forward and forward+backward throughput at sensor sizes, one row per shape.

    Shapes ``SWEEP_SHAPES``; batch 100 (4-30-3: the H30_WS case, batch 150, all
    4 inputs active); inputs 20-30 % active with times uniform in [0.15, 2];
    tau_m = 2 tau_s; weights from ``_sweep_network``; 4 different batches cycled.
    Each rate is the median of ``repeats`` timed runs of about ``min_s / repeats``
    seconds each, after one untimed run.

    Returns:
        Per shape (keys name their units; ``delgrad bench`` renames
        ``*_per_s`` to ``*_samples_per_s``): samples/s forward and
        forward+backward (``max_dw_norm`` 0.2 as in training), the same per CPU
        second of the process (see ``_median_rate``), ns per active synapse and
        sample (active synapse: a finite input of a layer times that layer's
        n_out, summed over layers and averaged over the samples), and the
        fraction of neurons that spiked per layer.
    """
    warm_up()
    rows: list[dict[str, object]] = []
    for label, sizes, kind in SWEEP_SHAPES:
        rng = np.random.default_rng(seed)
        if sizes == (4, 30, 3):
            net = _network(2.0, rng)
            batches = [rng.uniform(0.15, 2.0, (BATCH, 4)) for _ in range(SWEEP_BATCHES)]
        else:
            net = _sweep_network(sizes, kind, rng)
            batches = [_sweep_inputs(sizes[0], rng) for _ in range(SWEEP_BATCHES)]

        def fwd(t_in, net=net):
            forward(net, t_in, threads=threads)

        def fwd_bwd(t_in, net=net):
            _training_step(net, t_in, threads)

        synapses = 0.0
        spiked = []
        n_samples = 0
        for t_in in batches:
            times = forward(net, t_in)
            pre = t_in
            for layer, t_out in zip(net.layers, times, strict=True):
                synapses += np.isfinite(pre).sum() * layer.n_out
                pre = t_out
            spiked.append([float(np.isfinite(t).mean()) for t in times])
            n_samples += len(t_in)
        synapses /= n_samples
        rate_f, cpu_f = _median_rate(fwd, batches, repeats, min_s)
        rate_fb, cpu_fb = _median_rate(fwd_bwd, batches, repeats, min_s)
        rows.append(
            {
                "shape": label,
                "batch_count": len(batches[0]),
                "threads_count": threads,
                "forward_per_s": round(rate_f),
                "forward_backward_per_s": round(rate_fb),
                "forward_cpu_samples_per_s": round(cpu_f),
                "forward_backward_cpu_samples_per_s": round(cpu_fb),
                "active_synapses_count": round(synapses),
                "forward_ns_per_synapse": round(1e9 / rate_f / synapses, 2),
                "forward_backward_ns_per_synapse": round(1e9 / rate_fb / synapses, 2),
                "spiked_fraction": [round(x, 3) for x in np.mean(spiked, axis=0)],
            }
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(bench_core()))


#: Shapes of ``bench_thread_scaling``: the sensor-scale training step.
SCALING_SHAPES = tuple(row for row in SWEEP_SHAPES if row[1] == (784, 350, 10))


def bench_thread_scaling(
    threads: int = 2, repeats: int = 9, seed: int = 0
) -> list[dict[str, object]]:
    """Speed-up of ``threads`` over one thread for forward + backward (batch 100).

    Shapes ``SCALING_SHAPES`` with the networks and inputs of ``bench_core_sweep``.
    One thread and ``threads`` threads run alternately, ``repeats`` times each
    over the 4 batches, so a neighbour's load on a shared host falls on both
    sides alike; the speed-up is the median of the paired ratios.

    Returns:
        Per shape: samples/s (medians) for one and ``threads`` threads, and the
        median paired speed-up (``speedup_factor``) with its range.
    """
    warm_up()
    rows: list[dict[str, object]] = []
    for label, sizes, kind in SCALING_SHAPES:
        rng = np.random.default_rng(seed)
        net = _sweep_network(sizes, kind, rng)
        batches = [_sweep_inputs(sizes[0], rng) for _ in range(SWEEP_BATCHES)]
        n = sum(len(t) for t in batches)

        def one_round(count: int, net: Network = net, batches: list = batches, n: int = n) -> float:
            start = time.perf_counter()
            for t_in in batches:
                _training_step(net, t_in, count)
            return n / (time.perf_counter() - start)

        one_round(1)
        one_round(threads)
        pairs = [(one_round(1), one_round(threads)) for _ in range(repeats)]
        single = np.array([a for a, _ in pairs])
        multi = np.array([b for _, b in pairs])
        ratios = multi / single
        rows.append(
            {
                "shape": label,
                "threads_count": threads,
                "one_thread_samples_per_s": round(float(np.median(single))),
                "threads_samples_per_s": round(float(np.median(multi))),
                "speedup_factor": round(float(np.median(ratios)), 2),
                "speedup_min_factor": round(float(ratios.min()), 2),
                "speedup_max_factor": round(float(ratios.max()), 2),
            }
        )
    return rows
