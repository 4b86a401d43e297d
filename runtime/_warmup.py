"""Compile (or load from numba's cache) every kernel the service and training call,
so the first real batch is fast."""

from __future__ import annotations

from typing import get_args

import numpy as np

from delgrad.runtime._adam import Adam, ParamGroup
from delgrad.runtime._driver import Driver
from delgrad.runtime._network import DelayKind, Layer, Network, backward, forward
from delgrad.runtime._neuron import NeuronParams
from delgrad.runtime._stabilisers import WeightBumper


def warm_up(driver: Driver | None = None) -> None:
    """Run every kernel once on tiny inputs.

    Covers the forward and backward kernels of every delay kind and solver mode
    (tau_m = tau_s, 2 tau_s and another ratio; the shared-order kernels of layers
    without synaptic delays among them), both gradient rules, the optimiser and
    weight bumping; then ``driver.warm_up()`` (e.g. the emulator's kernels), which
    leaves the driver's state as it was.

    Args:
        driver: a driver to warm up too, or None.
    """
    rng = np.random.default_rng(0)
    t_in = rng.uniform(0.1, 1.0, (4, 3))
    for tau_m in (1.0, 2.0, 1.5):
        neuron = NeuronParams(tau_s=1.0, tau_m=tau_m, theta=1.0)
        for kind in get_args(DelayKind):
            layers = [Layer(3, 4, kind), Layer(4, 2, kind)]
            w = [rng.uniform(0.5, 1.5, ly.weight_shape) for ly in layers]
            d = [rng.uniform(0.0, 0.5, ly.delay_shape) for ly in layers]
            net = Network(layers, neuron, w=w, d=d)
            times = forward(net, t_in)
            grad = np.ones((len(t_in), 2))
            backward(net, t_in, times, grad, max_dw_norm=0.2)
            if tau_m == 1.0:
                backward(net, t_in, times, grad, rule="nominal")
    params = [np.zeros((2, 2))]
    Adam([ParamGroup("w", params, 0.01)]).step([[np.ones((2, 2))]])
    WeightBumper().bump(params, [np.full((1, 2), np.inf)])
    if driver is not None:
        driver.warm_up()
