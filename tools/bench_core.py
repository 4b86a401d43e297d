"""Core kernel throughput: forward and forward+backward samples/s (one core).

Network: 4-30-3 with synaptic delays, initialised as the DelGrad H30_WS recipe
(w ~ N(1, 1), d = sigmoid(q), q ~ N(0, 0.25)), batch 150. Inputs cycle through
34 different batches (5100 samples, uniform in [0.15, 2.0] like encoded
Yin-Yang points) so the branch predictor cannot memorise one batch.
"""

from __future__ import annotations

import json
import time

import numpy as np

from delgrad.runtime import Layer, Network, NeuronParams, backward, forward, warm_up

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


def bench_core(repeats: int = 7, rounds: int = 4, seed: int = 0) -> dict[str, dict[str, float]]:
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


if __name__ == "__main__":
    print(json.dumps(bench_core()))
