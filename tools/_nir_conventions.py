"""Where a NIR file comes from, and its neurons in NIR's own (exact) convention.

NIR reads a spike as a pulse of unit area: ``tau_syn dI/dt = -I + w_in S`` makes
the current jump by ``w_in w / tau_syn``. The frameworks write other things
(read from their exporters and importers):

=========  =================================================  =========================
source     how its CubaLIF nodes are recognised               the exact gain r * w_in
=========  =================================================  =========================
delgrad    metadata ``format`` (``convention`` for --for)     as written / as below
snntorch   r = tau_mem / 1e-4 s, w_in = tau_syn / 1e-4 s       r w_in dt (a spike is
           (its exporter's fixed step dt = 1e-4 s)            the value 1 for one step)
norse      r = 1, w_in = 1 (its exporter writes                r tau_syn (LIFCell adds
           tau = dt / tau_inv: both taus dt times too small,  w to the current; only
           their ratio is right)                              tau_mem / tau_syn matters)
rockpool   w_in = 1, r = tau_mem exp(-dt / tau_mem) / dt       tau_mem tau_syn / dt
           with dt = tau_mem / (1 + r) (as its importer)      (LIFTorch adds the
                                                              current to v every step)
nir        anything else                                      r w_in
=========  =================================================  =========================

First spikes: DelGrad keeps each neuron's first spike. A file says its neurons
fire once by metadata (``first_spike_only``), by a self-inhibition loop (a
diagonal recurrent weight of at least ``MIN_INHIBITION`` x the neuron's summed
input weights, as ``export-nir --for`` and an snnTorch ``RSynaptic`` write) or by
a reset far below rest (``v_reset <= -MIN_INHIBITION |v_threshold - v_leak|``);
without one of these, the source lets neurons fire again and the import says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from delgrad.errors import NetworkFileError

__all__ = ["FORMAT", "MIN_INHIBITION", "Convention", "normalise"]

#: ``format`` in the metadata of every file this project writes.
FORMAT = "delgrad-nir-1"

#: A self-connection or reset at least this strong (relative to the neuron's
#: summed |input weights| or threshold) is read as "fires once".
MIN_INHIBITION = 1e3
_SNNTORCH_STEP = 1e-4
_LABELS = {
    "delgrad": "this project's exact convention (spikes as unit-area pulses)",
    "snntorch": "snnTorch's convention (r = tau_mem/dt, w_in = tau_syn/dt, dt = 1e-4 s)",
    "norse": "Norse's convention (r = 1, w_in = 1: a spike adds w to the current; "
    "tau written as dt/tau_inv, only tau_mem/tau_syn used)",
    "rockpool": "Rockpool's convention (r = tau_mem exp(-dt/tau_mem)/dt, "
    "dt = tau_mem/(1 + r), w_in unused)",
    "nir": "NIR's own convention (spikes as unit-area pulses)",
}


@dataclass
class Convention:
    """What :func:`normalise` found.

    Attributes:
        name: ``delgrad``, ``snntorch``, ``norse``, ``rockpool`` or ``nir``.
        first_spikes: how the file says neurons fire once, or ``None`` (they may
            fire again in the source).
        recurrent: per CubaLIF node, its self-connection weights (n,), to be
            checked against the layer's input weights.
    """

    name: str
    first_spikes: str | None = None
    recurrent: dict[str, np.ndarray] = field(default_factory=dict)
    written_for: str = ""

    @property
    def label(self) -> str:
        """One line naming the convention."""
        if self.written_for:
            return f"this project's export for {self.written_for}"
        return _LABELS[self.name]


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _inline_subgraphs(nodes: dict[str, Any], recurrent: dict[str, np.ndarray]) -> None:
    """Replace 4-node recurrent CubaLIF sub-graphs (Rockpool's form) by their CubaLIF."""
    for name, node in list(nodes.items()):
        if not isinstance(node, nir.NIRGraph):
            continue
        inner = list(node.nodes.values())
        lifs = [n for n in inner if isinstance(n, nir.CubaLIF)]
        weights = [n for n in inner if isinstance(n, nir.Linear | nir.Affine)]
        if len(inner) != 4 or len(lifs) != 1 or len(weights) != 1:
            raise NetworkFileError(
                f"node {name!r} is a sub-graph other than a recurrent CubaLIF; "
                "DelGrad has no such layer"
            )
        recurrent[name] = _affine(name, weights[0])
        nodes[name] = lifs[0]


def _affine(name: str, node: Any) -> np.ndarray:
    weight = np.asarray(node.weight, dtype=np.float64)
    if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
        raise NetworkFileError(f"{name}: recurrent Affine with a bias; DelGrad has no bias current")
    return weight


def _strip_loops(
    nodes: dict[str, Any], edges: list[tuple[str, str]], recurrent: dict[str, np.ndarray]
) -> list[tuple[str, str]]:
    """Remove loops ``lif -> Linear/Affine ... -> lif``, keeping their product per lif."""
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    drop: set[str] = set()
    for name, node in nodes.items():
        if not isinstance(node, nir.CubaLIF):
            continue
        for start in succ.get(name, []):
            path, cur = [], start
            while (
                isinstance(nodes.get(cur), nir.Linear | nir.Affine)
                and len(succ.get(cur, [])) == 1
                and len(pred.get(cur, [])) == 1
                and cur not in path
            ):
                path.append(cur)
                cur = succ[cur][0]
            if path and cur == name:
                product = np.eye(_arr(node.tau_mem).size)
                for step in path:
                    product = _affine(step, nodes[step]) @ product
                recurrent[name] = product
                drop.update(path)
    for name in drop:
        del nodes[name]
    return [(a, b) for a, b in edges if a not in drop and b not in drop]


def _detect(node: nir.CubaLIF, meta: dict[str, Any]) -> str:
    tau_syn, tau_mem = _arr(node.tau_syn), _arr(node.tau_mem)
    r, w_in = _arr(node.r), _arr(node.w_in)
    if meta.get("format") == FORMAT:
        return str(meta.get("convention", "delgrad"))
    if np.allclose(r * _SNNTORCH_STEP, tau_mem, rtol=1e-3) and np.allclose(
        w_in * _SNNTORCH_STEP, tau_syn, rtol=1e-3
    ):
        return "snntorch"
    if np.all(r == 1) and np.all(w_in == 1):
        return "norse"
    if np.all(w_in == 1) and np.all(r > 1):
        step = tau_mem / (1 + r)
        if np.allclose(r, tau_mem * np.exp(-step / tau_mem) / step, rtol=1e-3):
            return "rockpool"
    return "nir"


def _exact_gain(node: nir.CubaLIF, name: str, convention: str) -> np.ndarray:
    """``r * w_in`` of the exact (unit-area) reading of ``node`` written in ``convention``."""
    tau_syn, tau_mem = _arr(node.tau_syn), _arr(node.tau_mem)
    r, w_in = _arr(node.r), _arr(node.w_in)
    if convention in ("snntorch", "stepped"):
        return r * w_in * (tau_mem / r)
    if convention == "norse":
        return r * tau_syn
    if convention == "rockpool":
        if np.any(_arr(node.v_leak) != 0):
            raise NetworkFileError(
                f"{_LABELS['rockpool']}: {name}.v_leak is a bias current there; "
                "DelGrad has no bias current"
            )
        return tau_syn * (1 + r)  # tau_mem tau_syn / dt with dt = tau_mem / (1 + r)
    return r * w_in


def normalise(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, Convention]:
    """``graph`` with its neurons in the exact convention, and where it came from.

    A file of this project's exact export is returned as it is. Sub-graphs and
    loops that are self-connections are removed (see :class:`Convention`),
    ``Linear`` becomes ``Affine`` with a zero bias, and every CubaLIF gets
    ``r`` = its exact gain and ``w_in`` = 1.

    Raises:
        NetworkFileError: layers in different conventions, or a sub-graph that is
            not a recurrent CubaLIF.
    """
    meta = dict(graph.metadata or {})
    if meta.get("format") == FORMAT and meta.get("convention", "exact") == "exact":
        marked = "metadata" if meta.get("first_spike_only") == 1 else None
        return graph, Convention("delgrad", marked)
    nodes = dict(graph.nodes)
    recurrent: dict[str, np.ndarray] = {}
    _inline_subgraphs(nodes, recurrent)
    edges = _strip_loops(nodes, list(graph.edges), recurrent)
    found = {n: _detect(node, meta) for n, node in nodes.items() if isinstance(node, nir.CubaLIF)}
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        raise NetworkFileError(f"layers follow different conventions ({', '.join(kinds)})")
    rule = kinds[0] if kinds else "nir"
    written_for = ""
    if meta.get("format") == FORMAT:  # export-nir --for: snntorch and norse are both stepped
        written_for = f"{rule} at dt = {float(meta.get('dt', 0)):g} tau_s"
        rule = "rockpool" if rule == "rockpool" else "stepped"
    name = "delgrad" if written_for else rule
    resets = []
    for key, node in list(nodes.items()):
        if isinstance(node, nir.Linear) and not isinstance(node, nir.Affine):
            weight = np.asarray(node.weight, dtype=np.float64)
            nodes[key] = nir.Affine(weight, np.zeros(weight.shape[0]))
        if not isinstance(node, nir.CubaLIF):
            continue
        gain = _exact_gain(node, key, rule)
        v_threshold = _arr(node.v_threshold)
        if "step_seconds" in meta:  # export-nir --for: back to the network's own w and theta
            back = _arr(node.tau_syn) / float(meta["step_seconds"])
            gain, v_threshold = gain / back, v_threshold / back
        rest = np.abs(_arr(node.v_threshold) - _arr(node.v_leak))
        resets.append(bool(np.all(_arr(node.v_reset) <= -MIN_INHIBITION * rest)))
        n = _arr(node.tau_mem).size
        nodes[key] = nir.CubaLIF(
            tau_syn=_arr(node.tau_syn),
            tau_mem=_arr(node.tau_mem),
            r=np.broadcast_to(gain, (n,)).copy(),
            v_leak=np.broadcast_to(_arr(node.v_leak), (n,)).copy(),
            v_threshold=np.broadcast_to(v_threshold, (n,)).copy(),
            v_reset=np.broadcast_to(_arr(node.v_reset), (n,)).copy(),
            w_in=np.ones(n),
        )
    first: str | None = None
    if meta.get("first_spike_only") == 1:
        first = "metadata"
    elif found and set(recurrent) == set(found):
        first = "self-inhibition"
    elif resets and all(resets):
        first = "v_reset"
    meta.pop("first_spike_only", None)
    out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    return out, Convention(name, first, recurrent, written_for)
