"""Shared pieces of the driver tests: small networks and a stand-in for the PyNN module."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from delgrad.runtime import Layer, Network, NeuronParams


def hardware_like_network(seed: int = 0, n_in: int = 8, n_hidden: int = 12) -> Network:
    """A small axonal-delay network that spikes under the BSS2 recipe (tau_m = tau_s, 2.6)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(n_in, n_hidden, "axonal"), Layer(n_hidden, 3, "axonal")]
    w = [rng.uniform(0.3, 2.0, (n_in, n_hidden)), rng.uniform(-0.3, 2.0, (n_hidden, 3))]
    d = [rng.uniform(1.5, 3.0, n_in), rng.uniform(1.5, 3.0, n_hidden)]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d)


def random_network(rng: np.random.Generator, tau_m: float, kinds=("axonal", "axonal", "none"),
                   sizes=(16, 12, 8, 3), bias=(0.4,), theta=2.6) -> Network:  # fmt: skip
    """Random network with weights in the chip's range and delays in its delay range."""
    layers = [
        Layer(sizes[i], sizes[i + 1], kinds[i], bias_times=bias if i == 0 else ())
        for i in range(len(kinds))
    ]
    w = [rng.uniform(-0.6, 2.1, ly.weight_shape) for ly in layers]
    d = [rng.uniform(1.4, 5.5, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(tau_m=tau_m, theta=theta), w, d)


class FakePopulation:
    """Records what the driver does with a population; answers get_data via the fake."""

    def __init__(self, fake: FakePyNN, size: int, celltype: tuple[str, dict]) -> None:
        self.fake = fake
        self.size = size
        self.kind, self.parameters = celltype
        self.recorded: list[str] = []
        self.index = len(fake.populations)

    def record(self, what: list[str]) -> None:
        self.recorded = list(what)
        self.fake.calls.append(("record", self.index))

    def get_data(self, what: str) -> SimpleNamespace:
        assert what == "spikes" and "spikes" in self.recorded
        trains = self.fake.responder(self)
        return SimpleNamespace(segments=[SimpleNamespace(spiketrains=trains)])


class FakePyNN:
    """A stand-in for ``pynn_brainscales.brainscales2`` that records every call.

    Args:
        responder: population -> list of per-neuron spike time arrays (ms); default
            no spikes.
        fail_on_run: raise from ``run`` (to test error handling).
    """

    def __init__(
        self,
        responder: Callable[[FakePopulation], list[np.ndarray]] | None = None,
        fail_on_run: bool = False,
    ) -> None:
        self.responder = responder or (lambda pop: [np.array([]) for _ in range(pop.size)])
        self.fail_on_run = fail_on_run
        self.calls: list[tuple[str, Any]] = []
        self.populations: list[FakePopulation] = []
        self.projections: list[dict[str, Any]] = []
        self.cells = SimpleNamespace(
            HXNeuron=lambda **kw: ("HXNeuron", kw),
            SpikeSourceArray=lambda **kw: ("SpikeSourceArray", kw),
        )
        self.synapses = SimpleNamespace(StaticSynapse=lambda **kw: ("StaticSynapse", kw))
        self.helper = SimpleNamespace(chip_from_file=lambda path: ("calibration", path))

    def setup(self, **kwargs: Any) -> None:
        self.calls.append(("setup", kwargs))
        self.populations.clear()
        self.projections.clear()

    def end(self) -> None:
        self.calls.append(("end", None))

    def run(self, duration: float) -> None:
        self.calls.append(("run", duration))
        if self.fail_on_run:
            raise OSError("no connection to the chip")

    def Population(self, size: int, celltype: tuple[str, dict]) -> FakePopulation:
        pop = FakePopulation(self, size, celltype)
        self.populations.append(pop)
        self.calls.append(("Population", (size, celltype[0])))
        return pop

    def AllToAllConnector(self) -> str:
        return "all-to-all"

    def Projection(self, pre, post, connector, synapse_type, receptor_type):
        _kind, params = synapse_type
        self.projections.append(
            {
                "pre": pre.index,
                "post": post.index,
                "connector": connector,
                "weight": np.asarray(params["weight"]),
                "receptor": receptor_type,
            }
        )
        self.calls.append(("Projection", receptor_type))
