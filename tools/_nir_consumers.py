"""NIR files that snnTorch, Norse and Rockpool run as they are (``export-nir --for``).

The exact export (:func:`delgrad.tools._nir.to_nir`) reads a spike as a pulse of
unit area (a Dirac delta): the synaptic current jumps by ``w_in w / tau_syn``.
These three frameworks step time by ``dt`` and feed a spike as the value 1 for one
step, an area of ``dt``; their importers also fix or derive ``dt`` from the file.
A consumer file is therefore written for one step ``dt`` (in tau_s):

==========  ===========================  ==========================================
consumer    step of its importer         what the file holds for that step
==========  ===========================  ==========================================
snntorch    1e-4 s (fixed in             r = tau_mem / step, w_in = tau_syn / step
            ``import_from_nir``)         (the form snnTorch's own exporter writes)
norse       1e-3 s (``from_nir``'s       the same
            default ``dt``)
rockpool    tau_mem / (1 + r) (its       r = tau_mem / step - 1, w_in = tau_syn / step
            ``from_nir`` derives it)     (Rockpool reads neither r nor w_in otherwise)
==========  ===========================  ==========================================

With one tau_s = ``step / dt`` seconds, the stepped current is the exact one and
the stepped membrane is the exact one times ``tau_s / dt``, hence
``v_threshold = theta tau_s / dt``. First spikes only: none of the three importers
reads ``v_reset`` or any refractory setting, but all run a recurrent connection,
so every neuron inhibits itself by ``-INHIBITION x`` (its largest summed input
weight) one step after it fires; that keeps it below threshold for at least
``tau_m ln(1e6)`` (about 14 tau_m, longer than any trial), and its first spike is
untouched. snnTorch and Norse take this as a loop ``lif{k} -> inhibit{k} ->
loop{k} -> lif{k}`` of two ``Linear`` nodes (snnTorch's importer turns a two-node
loop into a recurrent sub-graph that nirtorch 2.6 cannot run), Rockpool as the
four-node sub-graph (Input, CubaLIF, Linear, Output) its importer maps to a
recurrent ``LIFTorch``. None of the three importers has a ``Delay`` node, so
networks with delays are refused for them.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from delgrad.errors import ParameterError
from delgrad.runtime import Network
from delgrad.tools._nir import FORMAT, to_nir

__all__ = ["CONSUMERS", "DEFAULT_DT", "INHIBITION", "STEP_SECONDS", "to_nir_for"]

CONSUMERS = ("exact", "snntorch", "norse", "rockpool")
#: The step of each framework's importer in seconds (Rockpool's is read from r).
STEP_SECONDS = {"snntorch": 1e-4, "norse": 1e-3, "rockpool": 1e-3}
#: Default step of a consumer file, in tau_s.
DEFAULT_DT = 0.01
#: Self-inhibition after a spike, in units of the neuron's largest summed |input weight|.
INHIBITION = 1e6
#: What each importer maps (read from their sources), for the refusal of delays.
_IMPORTER_NODES = {
    "snntorch": "snntorch.import_nir.import_from_nir maps Affine, Linear, Conv2d, Flatten, "
    "AvgPool2d, IF, LIF and CubaLIF",
    "norse": "norse.torch.from_nir maps Affine, Linear, Conv2d, Flatten, IF, LIF, CubaLIF "
    "and SumPool2d",
    "rockpool": "rockpool.nn.modules.torch.nir.from_nir maps Affine, Linear, LI, LIF, "
    "CubaLIF and a recurrent CubaLIF sub-graph",
}


def _box_lif(lif: nir.CubaLIF, consumer: str, step: float) -> nir.CubaLIF:
    """The exact CubaLIF ``lif`` for an importer that steps by ``step`` seconds."""
    tau_syn = np.asarray(lif.tau_syn, dtype=np.float64)
    tau_mem = np.asarray(lif.tau_mem, dtype=np.float64)
    # the exact file's gain r * w_in is tau_mem; the stepped one's is tau_mem * tau_syn / step
    gain = tau_syn / step
    r = tau_mem / step - (1.0 if consumer == "rockpool" else 0.0)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=r,
        v_leak=np.zeros_like(tau_mem),
        v_threshold=np.asarray(lif.v_threshold, dtype=np.float64) * gain,
        v_reset=np.zeros_like(tau_mem),
        w_in=gain,
    )


def to_nir_for(net: Network, consumer: str, *, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of ``net`` that ``consumer``'s own importer runs at step ``dt``.

    Args:
        net: a network without delays or bias inputs.
        consumer: ``"snntorch"``, ``"norse"`` or ``"rockpool"``.
        dt: the time step in units of tau_s, in (0, 0.5].

    Raises:
        ParameterError: an unknown consumer, a bad ``dt``, a network with delays
            (the importer has no Delay node) or with bias inputs.
    """
    if consumer not in STEP_SECONDS:
        raise ParameterError(f"unknown consumer {consumer!r}; one of {', '.join(CONSUMERS)}")
    if not (np.isfinite(dt) and 0 < dt <= 0.5):
        raise ParameterError(f"dt must be in (0, 0.5] tau_s, got {dt!r}")
    delayed = sorted({ly.delay for ly in net.layers} - {"none"})
    if delayed:
        raise ParameterError(
            f"{consumer} has no Delay node ({_IMPORTER_NODES[consumer]}); this network has "
            f"{'/'.join(delayed)} delays: export it with --for exact, or a network without delays"
        )
    step = STEP_SECONDS[consumer]
    unit = step / (dt * net.neuron.tau_s)
    exact = to_nir(net, tau_s_seconds=unit)
    nodes: dict[str, Any] = {}
    loops: dict[str, list[tuple[str, str]]] = {}
    for name, node in exact.nodes.items():
        if not isinstance(node, nir.CubaLIF):
            nodes[name] = node
            continue
        k = int(name[3:])
        lif = _box_lif(node, consumer, step)
        n = int(lif.tau_mem.size)
        strength = INHIBITION * max(1.0, float(np.abs(net.w[k]).sum(axis=0).max()))
        inhibit = nir.Linear(-strength * np.eye(n))
        if consumer == "rockpool":
            size = {"input": np.array([n])}
            nodes[name] = nir.NIRGraph(
                nodes={
                    "input": nir.Input(size),
                    "lif": lif,
                    "w_rec": inhibit,
                    "output": nir.Output({"output": np.array([n])}),
                },
                edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            )
        else:
            nodes[name] = lif
            nodes[f"inhibit{k}"] = inhibit
            nodes[f"loop{k}"] = nir.Linear(np.eye(n))
            loops[name] = [(name, f"inhibit{k}"), (f"inhibit{k}", f"loop{k}"), (f"loop{k}", name)]
    edges: list[tuple[str, str]] = []
    for edge in exact.edges:
        # each loop right after the edge into its lif: nirtorch's executor (Norse) traces
        # depth first in edge order and returns the last node it runs, which must be Output
        edges += [edge, *loops.get(edge[1], [])]
    metadata = {
        **exact.metadata,
        "format": FORMAT,
        "convention": consumer,
        "dt": float(dt),
        "step_seconds": step,
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    graph.infer_types()
    return graph
