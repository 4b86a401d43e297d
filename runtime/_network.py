"""Feed-forward spiking networks: layer structure, effective parameters, forward and backward."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar, get_args

import numpy as np

from delgrad.errors import ParameterError
from delgrad.runtime._kernels._backward import layer_backward
from delgrad.runtime._kernels._forward import layer_forward
from delgrad.runtime._kernels._modes import MODE_DOUBLE, MODE_EQUAL
from delgrad.runtime._kernels._shared import layer_backward_shared, layer_forward_shared
from delgrad.runtime._neuron import NeuronParams
from delgrad.runtime._nominal import BackwardRule, check_rule, nominal_scale

DelayKind = Literal["none", "synaptic", "axonal", "dendritic"]
DELAY_KINDS: tuple[str, ...] = get_args(DelayKind)


@dataclass(frozen=True)
class Layer:
    """Structure of one all-to-all projection onto ``n_out`` LIF neurons.

    Attributes:
        n_in: presynaptic neurons (the previous layer's size or the input channels).
        n_out: neurons of this layer.
        delay: which transmission delays the layer has: one per synapse
            (``"synaptic"``, shape (n_pre, n_out)), one per presynaptic neuron
            (``"axonal"``, (n_pre,)), one per postsynaptic neuron (``"dendritic"``,
            (n_out,)), or ``"none"`` ((0,)).
        bias_times: spike times (model units) of extra, always-on inputs appended
            after the ``n_in`` real ones; their weights are the last rows of ``w``.
    """

    n_in: int
    n_out: int
    delay: DelayKind = "none"
    bias_times: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"Layer.{name} must be an integer >= 1, got {value!r}")
        if self.delay not in DELAY_KINDS:
            raise ParameterError(f"Layer.delay must be one of {DELAY_KINDS}, got {self.delay!r}")
        times = tuple(float(t) for t in self.bias_times)
        if not all(math.isfinite(t) for t in times):
            raise ParameterError(f"Layer.bias_times must be finite, got {self.bias_times!r}")
        object.__setattr__(self, "bias_times", times)

    @property
    def n_pre(self) -> int:
        """Presynaptic inputs including bias inputs (rows of ``w``)."""
        return self.n_in + len(self.bias_times)

    @property
    def weight_shape(self) -> tuple[int, int]:
        """Shape of the weight matrix, (n_pre, n_out)."""
        return (self.n_pre, self.n_out)

    @property
    def delay_shape(self) -> tuple[int, ...]:
        """Shape of the delay array for this layer's delay kind."""
        return {
            "none": (0,),
            "synaptic": (self.n_pre, self.n_out),
            "axonal": (self.n_pre,),
            "dendritic": (self.n_out,),
        }[self.delay]


@dataclass
class LayerGradient:
    """Gradients of one layer: ``w`` (n_pre, n_out) and ``d`` (the layer's delay shape)."""

    w: np.ndarray
    d: np.ndarray


@dataclass
class Gradients:
    """Result of :func:`backward`.

    Attributes:
        layers: one :class:`LayerGradient` per layer (summed over the batch).
        t_in: (B, n_inputs) dL/d(input spike times).
        dropped: (sample, neuron) weight gradients dropped by ``max_dw_norm``, per layer.
    """

    layers: list[LayerGradient]
    t_in: np.ndarray
    dropped: list[int] = field(default_factory=list)


def _as_param(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, order="C", copy=True)
    if arr.shape != shape:
        raise ParameterError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{what} must be finite")
    return arr


class Network:
    """A feed-forward network holding effective weights and delays per layer.

    Args:
        layers: the layer structure; ``layers[l].n_in == layers[l-1].n_out``.
        neuron: neuron parameters shared by all layers.
        w: per layer, weights of shape ``layer.weight_shape``.
        d: per layer, effective delays (model units) of shape ``layer.delay_shape``;
            zeros when omitted.

    Attributes ``w`` and ``d`` are lists of float64 arrays that optimisers update
    in place; the forward and backward passes read them on every call.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        neuron: NeuronParams,
        w: Sequence[np.ndarray],
        d: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.layers: tuple[Layer, ...] = tuple(layers)
        if not self.layers:
            raise ParameterError("a Network needs at least one layer")
        for prev, nxt in zip(self.layers, self.layers[1:], strict=False):
            if nxt.n_in != prev.n_out:
                raise ParameterError(
                    f"layer sizes do not chain: n_out={prev.n_out} feeds n_in={nxt.n_in}"
                )
        if not isinstance(neuron, NeuronParams):
            raise ParameterError(f"neuron must be NeuronParams, got {type(neuron).__name__}")
        self.neuron = neuron
        if len(w) != len(self.layers):
            raise ParameterError(f"need {len(self.layers)} weight arrays, got {len(w)}")
        self.w = [
            _as_param(wl, ly.weight_shape, f"w[{i}]")
            for i, (wl, ly) in enumerate(zip(w, self.layers, strict=True))
        ]
        if d is None:
            d = [np.zeros(ly.delay_shape) for ly in self.layers]
        if len(d) != len(self.layers):
            raise ParameterError(f"need {len(self.layers)} delay arrays, got {len(d)}")
        self.d = [
            _as_param(dl, ly.delay_shape, f"d[{i}]")
            for i, (dl, ly) in enumerate(zip(d, self.layers, strict=True))
        ]
        self._zeros = [
            (np.zeros((ly.n_pre, ly.n_out)), np.zeros(ly.n_pre), np.zeros(ly.n_out))
            for ly in self.layers
        ]

    @property
    def n_inputs(self) -> int:
        """Input channels of the first layer."""
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        """Neurons of the last layer."""
        return self.layers[-1].n_out

    def n_parameters(self) -> int:
        """Number of trainable values (weights plus delays)."""
        return int(sum(wl.size + dl.size for wl, dl in zip(self.w, self.d, strict=True)))

    def copy(self) -> Network:
        """Deep copy (parameters are copied)."""
        return Network(self.layers, self.neuron, self.w, self.d)

    def delay_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(d_syn (n_pre, n_out), d_ax (n_pre,), d_den (n_out,)) of layer ``index``.

        The layer's own delay array is returned as is (no copy); the other two are zeros.
        """
        d_syn, d_ax, d_den = self._zeros[index]
        kind = self.layers[index].delay
        if kind == "synaptic":
            d_syn = self.d[index]
        elif kind == "axonal":
            d_ax = self.d[index]
        elif kind == "dendritic":
            d_den = self.d[index]
        return d_syn, d_ax, d_den

    def layer_input(self, index: int, t_pre: np.ndarray) -> np.ndarray:
        """Presynaptic times of layer ``index`` with its bias inputs appended, (B, n_pre)."""
        bias = self.layers[index].bias_times
        if not bias:
            return t_pre
        out = np.empty((t_pre.shape[0], t_pre.shape[1] + len(bias)))
        out[:, : t_pre.shape[1]] = t_pre
        out[:, t_pre.shape[1] :] = bias
        return out

    def forward(self, t_in: np.ndarray, *, threads: int = 1) -> list[np.ndarray]:
        """Spike times of every layer; see :func:`forward`."""
        return forward(self, t_in, threads=threads)

    def backward(
        self,
        t_in: np.ndarray,
        times: Sequence[np.ndarray],
        grad_out: np.ndarray,
        *,
        max_dw_norm: float | None = None,
        arrivals: Sequence[np.ndarray | None] | None = None,
        threads: int = 1,
        rule: BackwardRule = "observed",
    ) -> Gradients:
        """Exact gradients; see :func:`backward`."""
        return backward(
            self,
            t_in,
            times,
            grad_out,
            max_dw_norm=max_dw_norm,
            arrivals=arrivals,
            threads=threads,
            rule=rule,
        )


def _check_times(t: np.ndarray, shape1: int, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(t, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != shape1:
        raise ParameterError(f"{what} must have shape (B, {shape1}), got {arr.shape}")
    if np.isnan(arr).any() or np.isneginf(arr).any():
        raise ParameterError(f"{what} contains nan or -inf (use +inf for a silent neuron)")
    return arr


def _check_threads(threads: object) -> int:
    if not isinstance(threads, int | np.integer) or isinstance(threads, bool) or threads < 1:
        raise ParameterError(f"threads must be an integer >= 1, got {threads!r}")
    return int(threads)


_T = TypeVar("_T")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads: work submitted
    # there would wait forever, so the child starts a pool of its own.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


@dataclass(frozen=True)
class SplitCost:
    """Estimated single-thread seconds of one pass: ``rows * (row_s + synapse_s *
    synapses)``; a batch is split only into chunks of at least ``min_chunk_s``.

    Handing a chunk to a pool thread and waiting for it costs 0.1-0.3 ms on a
    2-core host, and the backward pass sums every chunk's weight gradients; below
    these sizes a split was slower than one thread (measured 2026-12-06 on this
    2-core host: yinyang_hw_WA, 40 trials, backward 47 us on one thread, 415 us
    on two; 784-350-10, 150 trials, 13.5 ms and 11.2 ms).
    """

    row_s: float
    synapse_s: float
    min_chunk_s: float

    def chunks(self, net: Network, n_rows: int, threads: int) -> int:
        """How many row ranges a batch of ``n_rows`` is split into (1 .. threads)."""
        synapses = sum(layer.n_pre * layer.n_out for layer in net.layers)
        seconds = n_rows * (self.row_s + self.synapse_s * synapses)
        return max(1, min(threads, n_rows, int(seconds / self.min_chunk_s)))


#: When forward and backward passes are split over threads (fitted to one-thread
#: times of yinyang_H30_WS, yinyang_hw_WA, 784-350-10 and 2312-400-10).
FORWARD_SPLIT = SplitCost(row_s=2.5e-6, synapse_s=0.22e-9, min_chunk_s=0.5e-3)
BACKWARD_SPLIT = SplitCost(row_s=1.5e-6, synapse_s=0.3e-9, min_chunk_s=2.5e-3)


def _run_chunks(fn: Callable[[int, int], _T], n_rows: int, threads: int) -> list[_T]:
    """``fn(lo, hi)`` over ``threads`` contiguous row ranges; results in row order.

    The kernels are compiled ``nogil``, so pool threads run them truly in
    parallel. Chunk 0 runs on the calling thread. The ranges depend only on
    ``n_rows`` and ``threads``, and callers reduce the results in this order,
    so a given thread count always gives the same bits.
    """
    k = max(1, min(threads, n_rows))
    bounds = [n_rows * c // k for c in range(k + 1)]
    if k == 1:
        return [fn(0, n_rows)]
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < k - 1:  # grow on demand, never at import
            _pool = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="delgrad-kernel")
        pool = _pool
    futures = [pool.submit(fn, bounds[c], bounds[c + 1]) for c in range(1, k)]
    first = fn(bounds[0], bounds[1])
    return [first] + [f.result() for f in futures]


def _shared_order(layer: Layer, p: NeuronParams) -> bool:
    """Whether the layer's arrival order is the same for all its neurons and a
    closed form applies: then the shared-order kernels run (``_kernels._shared``)."""
    if layer.delay == "synaptic" or p.mode not in (MODE_DOUBLE, MODE_EQUAL):
        return False
    # eps is added in absolute time, which the dendritic shift does not keep.
    return layer.delay != "dendritic" or p.eps == 0.0


def forward(net: Network, t_in: np.ndarray, *, threads: int = 1) -> list[np.ndarray]:
    """First-spike times of every layer.

    Args:
        net: the network.
        t_in: (B, n_inputs) input spike times in units of tau_s; inf = no spike.
        threads: split the batch into at most this many row ranges computed in
            parallel, where each is worth a thread (:data:`FORWARD_SPLIT`; the result
            does not depend on it).

    Returns:
        One array (B, n_out) per layer, inf where a neuron does not fire.

    Raises:
        ParameterError: on a wrong shape, nan / -inf times or threads < 1.
    """
    t = _check_times(t_in, net.n_inputs, "t_in")
    threads = FORWARD_SPLIT.chunks(net, len(t), _check_threads(threads))
    times = [np.empty((t.shape[0], layer.n_out)) for layer in net.layers]
    if threads == 1:
        _forward_rows(net, t, times)
    else:
        _run_chunks(
            lambda lo, hi: _forward_rows(net, t[lo:hi], [x[lo:hi] for x in times]), len(t), threads
        )
    return times


def _forward_rows(net: Network, t: np.ndarray, outs: list[np.ndarray]) -> None:
    p = net.neuron
    for index, layer in enumerate(net.layers):
        out = outs[index]
        d_syn, d_ax, d_den = net.delay_arrays(index)
        if _shared_order(layer, p):
            layer_forward_shared(
                net.layer_input(index, t),
                net.w[index],
                d_ax,
                d_den,
                p.tau_s,
                p.tau_m,
                p.theta,
                p.eps,
                p.mode,
                out,
            )
        else:
            layer_forward(
                net.layer_input(index, t),
                net.w[index],
                d_syn,
                d_ax,
                d_den,
                p.tau_s,
                p.tau_m,
                p.theta,
                p.eps,
                p.mode,
                out,
            )
        t = out


def backward(
    net: Network,
    t_in: np.ndarray,
    times: Sequence[np.ndarray],
    grad_out: np.ndarray,
    *,
    max_dw_norm: float | None = None,
    arrivals: Sequence[np.ndarray | None] | None = None,
    threads: int = 1,
    rule: BackwardRule = "observed",
) -> Gradients:
    """Exact DelGrad gradients from spike times alone.

    Args:
        net: the network whose parameters define the ideal model.
        t_in: (B, n_inputs) input spike times.
        times: per layer (B, n_out) spike times, from :func:`forward` or observed
            on a chip (the gradient is then evaluated at the observed times).
        grad_out: (B, n_outputs) dL/d(output spike times).
        max_dw_norm: if given, per (sample, neuron) weight gradients with an entry
            above this magnitude are dropped (the DelGrad authors' stabiliser).
        arrivals: optional, per layer, observed arrival times (B, n_pre) of an
            axonal-delay layer's inputs (t_pre + d as measured on a chip). The
            gradient is then evaluated at those arrivals, and dL/d(arrival) flows
            both to the delay and to the presynaptic time, as if arrival = t + d.
        threads: split the batch into at most this many row ranges computed in
            parallel, where each is worth a thread (:data:`BACKWARD_SPLIT`); their
            parameter gradients are summed in row order, so results for different
            splits agree up to rounding (and are identical for the same count and
            batch size).
        rule: ``"observed"`` (1/V'(T) at the observed times, no threshold needed)
            or ``"nominal"``: the DelGrad authors' hardware rule, 1/(a(1 + W0(z)))
            at the configured theta over the observed causal set, 0 where W0 is
            undefined; tau_m == tau_s only (``delgrad.runtime._nominal``).

    Returns:
        :class:`Gradients` with dL/dw and dL/dd per layer and dL/dt_in.
    """
    t0 = _check_times(t_in, net.n_inputs, "t_in")
    if len(times) != len(net.layers):
        raise ParameterError(f"need spike times of {len(net.layers)} layers, got {len(times)}")
    n_batch = t0.shape[0]
    ts = [np.ascontiguousarray(t, dtype=np.float64) for t in times]
    for index, (t, layer) in enumerate(zip(ts, net.layers, strict=True)):
        if t.shape != (n_batch, layer.n_out):
            raise ParameterError(f"times[{index}] must have shape {(n_batch, layer.n_out)}")
    g = np.ascontiguousarray(grad_out, dtype=np.float64)
    if g.shape != (n_batch, net.n_outputs):
        raise ParameterError(f"grad_out must have shape {(n_batch, net.n_outputs)}, got {g.shape}")
    max_dw = 0.0 if max_dw_norm is None else float(max_dw_norm)
    threads = BACKWARD_SPLIT.chunks(net, n_batch, _check_threads(threads))
    rule = check_rule(rule, net.neuron)
    if arrivals is not None and len(arrivals) != len(net.layers):
        raise ParameterError(f"arrivals needs one entry per layer, got {len(arrivals)}")
    observed: list[np.ndarray | None] = [None] * len(net.layers)
    for index, layer in enumerate(net.layers):
        obs = None if arrivals is None else arrivals[index]
        if obs is not None:
            if layer.delay != "axonal":
                raise ParameterError(f"arrivals[{index}] given for a {layer.delay!r} layer")
            obs = np.ascontiguousarray(obs, dtype=np.float64)
            if obs.shape != (n_batch, layer.n_pre):
                raise ParameterError(f"arrivals[{index}] must have shape {(n_batch, layer.n_pre)}")
            observed[index] = obs
    g_in = np.empty((n_batch, net.n_inputs))

    def rows(lo: int, hi: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
        obs = [None if x is None else x[lo:hi] for x in observed]
        return _backward_rows(
            net, t0[lo:hi], [t[lo:hi] for t in ts], g[lo:hi], max_dw, obs, g_in[lo:hi], rule
        )

    # One thread: no closure and no slices (a few us per call at 4-30-3).
    parts = (
        [_backward_rows(net, t0, ts, g, max_dw, observed, g_in, rule)]
        if threads == 1
        else _run_chunks(rows, n_batch, threads)
    )
    if len(parts) > 1:
        # Sum the chunks' weight gradients into chunk 0's arrays (this call's
        # own), each element over the chunks in row order, so the result is
        # the same bits for a given thread count. The rows of the sum are split
        # across the threads too: for 784 x 350 weights it is ~1/10 of a call.
        def reduce_rows(lo: int, hi: int) -> None:
            for index in range(len(net.layers)):
                gw = parts[0][index][0]
                a, b = gw.shape[0] * lo // len(parts), gw.shape[0] * hi // len(parts)
                for part in parts[1:]:
                    gw[a:b] += part[index][0][a:b]

        _run_chunks(reduce_rows, len(parts), len(parts))
    grads = []
    dropped = []
    for index in range(len(net.layers)):
        gw, gd, n_drop = parts[0][index]
        for part in parts[1:]:  # fixed (row) order, as the weights
            gd += part[index][1]
            n_drop += part[index][2]
        grads.append(LayerGradient(w=gw, d=gd))
        dropped.append(n_drop)
    return Gradients(layers=grads, t_in=g_in, dropped=dropped)


def _backward_rows(
    net: Network,
    t0: np.ndarray,
    ts: list[np.ndarray],
    g: np.ndarray,
    max_dw: float,
    observed: list[np.ndarray | None],
    g_in: np.ndarray,
    rule: BackwardRule = "observed",
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Backward pass over one row range; returns per layer (dL/dw, dL/dd, dropped)
    summed over these rows, and writes dL/dt_in of these rows into ``g_in``."""
    p = net.neuron
    n_batch = t0.shape[0]
    result: list[tuple[np.ndarray, np.ndarray, int]] = [None] * len(net.layers)  # type: ignore[list-item]
    for index in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[index]
        t_pre = net.layer_input(index, t0 if index == 0 else ts[index - 1])
        d_syn, d_ax, d_den = net.delay_arrays(index)
        obs = observed[index]
        if obs is not None:
            t_pre = obs
            d_ax = net._zeros[index][1]
        gw = np.zeros(layer.weight_shape)
        gax = np.zeros(layer.n_pre)
        gden = np.zeros(layer.n_out)
        gt = np.zeros((n_batch, layer.n_pre))
        if rule == "nominal":  # the authors' denominator: rescale this layer's dL/dT
            g = g * nominal_scale(t_pre, net.w[index], (d_syn, d_ax, d_den), ts[index], p)
        if _shared_order(layer, p):
            gsyn = gw  # unused: no synaptic delays
            n_drop = layer_backward_shared(
                t_pre,
                net.w[index],
                d_ax,
                d_den,
                ts[index],
                g,
                p.tau_s,
                p.tau_m,
                p.mode,
                max_dw,
                gw,
                gax,
                gden,
                gt,
            )
        else:
            gsyn = np.zeros((layer.n_pre, layer.n_out))
            n_drop = layer_backward(
                t_pre,
                net.w[index],
                d_syn,
                d_ax,
                d_den,
                ts[index],
                g,
                p.tau_s,
                p.tau_m,
                p.mode,
                max_dw,
                gw,
                gsyn,
                gax,
                gden,
                gt,
            )
        gd = {"none": np.zeros(0), "synaptic": gsyn, "axonal": gax, "dendritic": gden}
        result[index] = (gw, gd[layer.delay], n_drop)
        g = np.ascontiguousarray(gt[:, : layer.n_in])
    g_in[:] = g
    return result
