"""Networks to and from the Neuromorphic Intermediate Representation (NIR).

NIR (neuroir.org; read by snnTorch, Norse, jaxsnn, Lava, Rockpool, SpiNNaker2,
...) describes a network as a graph of nodes with time in seconds. A DelGrad
network becomes a chain, per layer::

    none       Affine(w.T) -> CubaLIF
    axonal     Delay(d, pre) -> Affine(w.T) -> CubaLIF
    dendritic  Affine(w.T) -> Delay(d, post) -> CubaLIF
    synaptic   Affine(fan-out, pre*post x pre) -> Delay(d.ravel(), pre*post)
               -> Affine(block w, post x pre*post) -> CubaLIF

between one ``Input`` (the input channels) and one ``Output``. The synaptic form
is exact because a delay commutes with the linear maps around it: the fan-out
copies spike ``i`` to synapse ``(i, j)`` (row ``i * post + j``), the delay
shifts it by ``d[i, j]``, the block matrix weighs it by ``w[i, j]`` onto ``j``.

Parameter mapping (docs/model.md; one tau_s is ``tau_s_seconds`` seconds):

============  ===========================================  ======================
NIR           value                                        why
============  ===========================================  ======================
tau_syn       tau_s * tau_s_seconds                        seconds
tau_mem       tau_m * tau_s_seconds                        seconds
v_threshold   theta                                        the authors' C_m =
                                                           tau_s = 1, E_l = 0:
                                                           tau_m dV/dt = -V +
                                                           tau_m I crosses theta
v_leak        0                                            E_l = 0
r             tau_m * tau_s_seconds (= tau_mem)            R = 1/g_l in seconds
                                                           (g_l = tau_s/tau_m)
w_in          1                                            I jumps by w/tau_syn
v_reset       0                                            see below
Delay.delay   d * tau_s_seconds                            seconds
Affine        w.T (out x in), bias 0                       NIR's (out, in) order
============  ===========================================  ======================

DelGrad uses only each neuron's first spike (time-to-first-spike coding); a NIR
simulator that resets and fires again gives the same first spikes only if later
spikes do not reach a neuron before its own first spike, so first-spike-only
simulation is asked for in the graph metadata (``first_spike_only = 1``).
Networks with bias inputs (``bias_times``) are refused: NIR has no node for a
spike at a fixed time. Importing accepts graphs of this form (also with other
``r``, ``w_in`` or ``v_leak``: the weights are rescaled) whose neurons share one
tau_s, tau_m and threshold, and files in the conventions of snnTorch, Norse and
Rockpool, converted first (:mod:`delgrad.tools._nir_conventions`). Files that
those frameworks' importers run: :mod:`delgrad.tools._nir_consumers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np

from delgrad.errors import NetworkFileError, ParameterError
from delgrad.runtime import Layer, Network, NeuronParams
from delgrad.tools._nir_conventions import FORMAT, MIN_INHIBITION, Convention, normalise

__all__ = [
    "DEFAULT_TAU_S_SECONDS",
    "from_nir",
    "import_nir",
    "read_nir",
    "read_nir_graph",
    "to_nir",
    "write_nir",
    "write_nir_graph",
]

#: Seconds per tau_s when not given (BrainScaleS-2's 1 tau_s = 6 us would be 6e-6;
#: 1 ms suits software simulators stepping at 0.01-0.1 ms).
DEFAULT_TAU_S_SECONDS = 1e-3


def to_nir(net: Network, *, tau_s_seconds: float = DEFAULT_TAU_S_SECONDS) -> nir.NIRGraph:
    """The NIR graph of ``net`` (see the module docstring for the mapping).

    Raises:
        ParameterError: ``tau_s_seconds`` not > 0, or a layer with bias inputs.
    """
    if not (np.isfinite(tau_s_seconds) and tau_s_seconds > 0):
        raise ParameterError(f"tau_s_seconds must be finite and > 0, got {tau_s_seconds!r}")
    p = net.neuron
    unit = float(tau_s_seconds)
    nodes: dict[str, Any] = {"input": nir.Input({"input": np.array([net.layers[0].n_in])})}
    edges: list[tuple[str, str]] = []
    last = "input"

    def add(name: str, node: Any) -> None:
        nonlocal last
        nodes[name] = node
        edges.append((last, name))
        last = name

    for k, (ly, w, d) in enumerate(zip(net.layers, net.w, net.d, strict=True)):
        if ly.bias_times:
            raise ParameterError(
                f"layer {k} has bias inputs (bias_times {ly.bias_times}); NIR has no node "
                "for a spike at a fixed time, so such networks are not exported"
            )
        w = np.asarray(w, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        pre, post = w.shape
        exact = {"delay_tau_s": d.reshape(-1).copy()}  # the seconds are rounded
        if ly.delay == "axonal":
            add(f"delay{k}", nir.Delay(d * unit, metadata=exact))
        if ly.delay == "synaptic":
            fan = np.zeros((pre * post, pre))
            fan[np.arange(pre * post), np.repeat(np.arange(pre), post)] = 1.0
            add(f"fanout{k}", nir.Affine(fan, np.zeros(pre * post)))
            add(f"delay{k}", nir.Delay(d.reshape(-1) * unit, metadata=exact))
            block = np.zeros((post, pre * post))
            block[np.tile(np.arange(post), pre), np.arange(pre * post)] = w.reshape(-1)
            add(f"affine{k}", nir.Affine(block, np.zeros(post)))
        else:
            add(f"affine{k}", nir.Affine(w.T.copy(), np.zeros(post)))
        if ly.delay == "dendritic":
            add(f"delay{k}", nir.Delay(d * unit, metadata=exact))
        ones = np.ones(post)
        add(
            f"lif{k}",
            nir.CubaLIF(
                tau_syn=ones * p.tau_s * unit,
                tau_mem=ones * p.tau_m * unit,
                r=ones * p.tau_m * unit,
                v_leak=np.zeros(post),
                v_threshold=ones * p.theta,
                v_reset=np.zeros(post),
                w_in=ones,
            ),
        )
    add("output", nir.Output({"output": np.array([net.layers[-1].n_out])}))
    metadata = {
        "format": FORMAT,
        "tau_s_seconds": unit,
        "first_spike_only": 1,
        "eps": float(p.eps),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _chain(graph: nir.NIRGraph) -> list[tuple[str, Any]]:
    """The nodes from the one Input to the one Output, in order."""
    nxt: dict[str, str] = {}
    for src, dst in graph.edges:
        if src in nxt:
            raise NetworkFileError(f"node {src!r} has two successors: not a DelGrad chain")
        nxt[src] = dst
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(starts) != 1:
        raise NetworkFileError(f"expected one Input node, found {len(starts)}")
    out, name, seen = [], starts[0], set()
    while name in nxt:
        if name in seen:
            raise NetworkFileError("the graph has a cycle")
        seen.add(name)
        name = nxt[name]
        out.append((name, graph.nodes[name]))
    if not out or not isinstance(out[-1][1], nir.Output):
        raise NetworkFileError("the chain from the Input does not end in an Output")
    return out[:-1]


def _same(values: np.ndarray, what: str) -> float:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(flat == flat[0]):
        raise NetworkFileError(f"{what} differs between neurons; DelGrad needs one value")
    return float(flat[0])


def _delay(node: nir.Delay, unit: float) -> np.ndarray:
    """Delays in units of tau_s: the exact copy :func:`to_nir` keeps in the node's
    metadata when it matches the seconds, else seconds / ``unit``."""
    from_seconds = np.asarray(node.delay, dtype=np.float64) / unit
    exact = (node.metadata or {}).get("delay_tau_s")
    if exact is not None:
        exact = np.asarray(exact, dtype=np.float64).reshape(from_seconds.shape)
        if np.allclose(exact, from_seconds, rtol=1e-9, atol=1e-12):
            return exact
    return from_seconds


def from_nir(graph: nir.NIRGraph) -> Network:
    """The DelGrad network of a NIR graph (see :func:`import_nir`)."""
    return import_nir(graph)[0]


def _check_self_inhibition(name: str, rec: np.ndarray, w: np.ndarray) -> None:
    """A recurrent weight is accepted only as "fire once": diagonal and strong."""
    if rec.shape != (w.shape[1], w.shape[1]) or np.any(rec != np.diag(np.diag(rec))):
        raise NetworkFileError(
            f"{name}: a recurrent weight between neurons; DelGrad has no recurrent connections"
        )
    need = MIN_INHIBITION * max(1.0, float(np.abs(w).sum(axis=0).max()))
    if np.any(np.diag(rec) > -need):
        raise NetworkFileError(
            f"{name}: self-connection {float(np.diag(rec).max()):g} is not a first-spike "
            f"self-inhibition (<= -{need:g}, {MIN_INHIBITION:g} x the summed input weights); "
            "DelGrad has no recurrent connections"
        )


def import_nir(graph: nir.NIRGraph) -> tuple[Network, Convention]:
    """The DelGrad network of a NIR graph, and the convention the file was read in.

    Accepts the form :func:`to_nir` writes (also from other tools), the files of
    ``export-nir --for`` and those snnTorch, Norse and Rockpool write
    (:mod:`delgrad.tools._nir_conventions`).

    Raises:
        NetworkFileError: another structure, or neuron parameters DelGrad cannot
            hold; for a foreign convention the message names it.
    """
    graph, convention = normalise(graph)
    try:
        return _from_exact(graph, convention), convention
    except NetworkFileError as exc:
        if convention.name == "delgrad":
            raise
        raise NetworkFileError(f"{convention.label}: {exc}") from None


def _from_exact(graph: nir.NIRGraph, convention: Convention) -> Network:
    meta = graph.metadata or {}
    chain = _chain(graph)
    layers: list[Layer] = []
    ws: list[np.ndarray] = []
    ds: list[np.ndarray] = []
    neurons: list[tuple[float, float, float]] = []
    pending: list[tuple[str, Any]] = []
    unit = float(meta["tau_s_seconds"]) if "tau_s_seconds" in meta else None
    for name, node in chain:
        if not isinstance(node, nir.CubaLIF):
            if not isinstance(node, nir.Affine | nir.Delay):
                raise NetworkFileError(
                    f"node {name!r} is a {type(node).__name__}; expected Affine, Delay or CubaLIF"
                )
            pending.append((name, node))
            continue
        kinds = "".join("A" if isinstance(n, nir.Affine) else "D" for _, n in pending)
        tau_syn = _same(node.tau_syn, f"{name}.tau_syn")
        tau_mem = _same(node.tau_mem, f"{name}.tau_mem")
        unit = tau_syn if unit is None else unit
        scale = _same(np.asarray(node.r) * np.asarray(node.w_in), f"{name}.r * w_in") / tau_mem
        v_leak = _same(node.v_leak, f"{name}.v_leak")
        theta = _same(node.v_threshold, f"{name}.v_threshold") - v_leak
        neurons.append((tau_syn / unit, tau_mem / unit, theta))
        nodes = [n for _, n in pending]
        w: np.ndarray
        d: np.ndarray
        if kinds == "A":
            w, kind, d = nodes[0].weight.T, "none", np.zeros(0)
        elif kinds == "DA":
            w, kind, d = nodes[1].weight.T, "axonal", _delay(nodes[0], unit)
        elif kinds == "AD":
            w, kind, d = nodes[0].weight.T, "dendritic", _delay(nodes[1], unit)
        elif kinds == "ADA":
            fan, delay, block = nodes[0].weight, _delay(nodes[1], unit), nodes[2].weight
            post, n_syn = block.shape
            pre = fan.shape[1]
            if n_syn != pre * post or fan.shape[0] != n_syn:
                raise NetworkFileError(f"{name}: fan-out and block shapes do not match")
            rows = np.arange(n_syn)
            if not np.array_equal(fan[rows, rows // post], np.ones(n_syn)) or fan.sum() != n_syn:
                raise NetworkFileError(f"{name}: the fan-out matrix is not i -> (i, j)")
            w = block[rows % post, rows].reshape(pre, post)
            kind, d = "synaptic", delay.reshape(pre, post)
        else:
            raise NetworkFileError(
                f"the nodes before {name!r} ({', '.join(n for n, _ in pending)}) are not one "
                "of Affine, Delay-Affine, Affine-Delay, Affine-Delay-Affine"
            )
        for key, n in pending:
            if isinstance(n, nir.Affine) and np.any(np.asarray(n.bias) != 0):
                raise NetworkFileError(f"{key}: Affine with a bias; DelGrad has no bias current")
        if name in convention.recurrent:
            _check_self_inhibition(name, convention.recurrent[name], np.asarray(w))
        w = np.asarray(w, dtype=np.float64) * scale
        layers.append(Layer(int(w.shape[0]), int(w.shape[1]), kind))  # type: ignore[arg-type]
        ws.append(np.ascontiguousarray(w))
        ds.append(np.ascontiguousarray(np.asarray(d, dtype=np.float64)))
        pending = []
    if pending or not layers:
        raise NetworkFileError("the graph does not end in a CubaLIF layer")
    if len(set(neurons)) != 1:
        raise NetworkFileError(f"layers have different neuron parameters {sorted(set(neurons))}")
    tau_s, tau_m, theta = neurons[0]
    neuron = NeuronParams(tau_s=tau_s, tau_m=tau_m, theta=theta, eps=float(meta.get("eps", 0.0)))
    return Network(layers, neuron, w=ws, d=ds)


def write_nir_graph(path: str | Path, graph: nir.NIRGraph) -> Path:
    """Write ``graph`` as a NIR file (HDF5) after NIR's own checks (nir >= 1.0.8 has
    them; older releases write the same file unchecked); returns the path."""
    for check in ("validate_structure", "check_types"):
        if hasattr(graph, check):
            getattr(graph, check)()
    nir.write(str(path), graph)
    return Path(path)


def write_nir(
    path: str | Path, net: Network, *, tau_s_seconds: float = DEFAULT_TAU_S_SECONDS
) -> Path:
    """Write ``net`` as a NIR file (HDF5) after NIR's own checks; returns the path."""
    return write_nir_graph(path, to_nir(net, tau_s_seconds=tau_s_seconds))


def read_nir_graph(path: str | Path) -> nir.NIRGraph:
    """The graph of a NIR file.

    Raises:
        NetworkFileError: missing or unreadable file.
    """
    try:
        return nir.read(str(path))
    except FileNotFoundError:
        raise NetworkFileError(f"{path}: no such file") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise NetworkFileError(f"{path}: not a readable NIR file ({exc})") from exc


def read_nir(path: str | Path) -> Network:
    """Read a NIR file written by :func:`write_nir` (or any form :func:`import_nir` takes).

    Raises:
        NetworkFileError: missing or unreadable file, or another structure.
    """
    return from_nir(read_nir_graph(path))
