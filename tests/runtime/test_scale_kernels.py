"""Sensor-scale exactness: shared-order kernels, 256-input networks, threads.

The shared-order kernels (``_kernels._shared``, layers without synaptic
delays) are checked against the general kernels on random layers and on a
784-input network (written once without and once with synaptic delays), and
256-input networks against the independent membrane integration and finite
differences; batches split across threads give the same results.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os

import numpy as np
import pytest

from delgrad.runtime import Layer, Network, NeuronParams, ParameterError, backward, forward
from delgrad.runtime import _network as network_module
from delgrad.runtime._kernels._backward import layer_backward
from delgrad.runtime._kernels._forward import layer_forward
from delgrad.runtime._kernels._shared import layer_backward_shared, layer_forward_shared
from delgrad.runtime._network import BACKWARD_SPLIT, FORWARD_SPLIT

from ._helpers import membrane_spike

MODES = [(2, 2.0), (1, 1.0)]  # (mode, tau_m): MODE_DOUBLE, MODE_EQUAL


def sensor_network(rng, sizes, delay, tau_m, *, active=0.25):
    """Weights ~ N(mu, 1.5 mu), mu = 4 / active inputs: most neurons fire after many arrivals."""
    layers = [Layer(a, b, delay) for a, b in itertools.pairwise(sizes)]
    w = []
    n_active = active * sizes[0]
    for layer in layers:
        mu = 4.0 / n_active
        w.append(rng.normal(mu, 1.5 * mu, layer.weight_shape))
        n_active = layer.n_out
    d = [rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(tau_m=tau_m, theta=1.0), w, d)


def sensor_inputs(rng, batch, n_in, active=0.25):
    t = rng.uniform(0.15, 2.0, (batch, n_in))
    return np.where(rng.uniform(size=t.shape) < active, t, np.inf)


@pytest.mark.parametrize(("mode", "tau_m"), MODES)
@pytest.mark.parametrize("kind", ["none", "axonal", "dendritic"])
def test_shared_kernels_match_the_general_kernels(mode, tau_m, kind):
    rng = np.random.default_rng(10 * mode + len(kind))
    worst_t = worst_g = 0.0
    for trial in range(150):
        n_pre, n_post, batch = rng.integers(1, 40), rng.integers(1, 20), rng.integers(1, 6)
        scale = 4.0 / (0.6 * n_pre + 1.0) * rng.uniform(0.5, 3.0)
        w = rng.normal(scale, 1.5 * scale, (n_pre, n_post))
        t = np.where(
            rng.uniform(size=(batch, n_pre)) < 0.6, rng.uniform(0, 2, (batch, n_pre)), np.inf
        )
        if trial % 7 == 0:
            t[0] = rng.uniform(0.0, 300.0, n_pre)  # wide span: handed to the general kernel
        d_ax = rng.uniform(0, 1, n_pre) if kind == "axonal" else np.zeros(n_pre)
        d_den = rng.uniform(0, 1, n_post) if kind == "dendritic" else np.zeros(n_post)
        eps = 1e-6 if trial % 3 == 0 and kind != "dendritic" else 0.0
        ref = np.empty((batch, n_post))
        new = np.empty((batch, n_post))
        z2 = np.zeros((n_pre, n_post))
        layer_forward(t, w, z2, d_ax, d_den, 1.0, tau_m, 1.0, eps, mode, ref)
        layer_forward_shared(t, w, d_ax, d_den, 1.0, tau_m, 1.0, eps, mode, new)
        np.testing.assert_array_equal(np.isinf(new), np.isinf(ref))
        fin = np.isfinite(ref)
        if fin.any():
            worst_t = max(worst_t, float(np.max(np.abs(new[fin] - ref[fin]))))
        g = rng.normal(size=(batch, n_post))
        for max_dw in (0.0, 0.3):
            a = [np.zeros((n_pre, n_post)), z2.copy(), np.zeros(n_pre), np.zeros(n_post)]
            a.append(np.zeros((batch, n_pre)))
            n_a = layer_backward(t, w, z2, d_ax, d_den, ref, g, 1.0, tau_m, mode, max_dw, *a)
            b = [np.zeros((n_pre, n_post)), np.zeros(n_pre), np.zeros(n_post)]
            b.append(np.zeros((batch, n_pre)))
            n_b = layer_backward_shared(t, w, d_ax, d_den, ref, g, 1.0, tau_m, mode, max_dw, *b)
            assert n_a == n_b
            for x, y in ((a[0], b[0]), (a[2], b[1]), (a[3], b[2]), (a[4], b[3])):
                worst_g = max(
                    worst_g,
                    float(np.max(np.abs(x - y), initial=0.0)) / (1 + np.abs(x).max(initial=0.0)),
                )
    assert worst_t < 1e-12
    assert worst_g < 1e-12


@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize("tau_m", [2.0, 1.0])
@pytest.mark.parametrize("kind", ["none", "axonal"])
def test_784_inputs_agree_with_the_same_network_as_synaptic_delays(kind, tau_m, eps):
    """The same network written with synaptic delays runs the general kernels."""
    rng = np.random.default_rng(784 + len(kind))
    shared = sensor_network(rng, [784, 120, 10], kind, tau_m)
    shared = Network(shared.layers, NeuronParams(tau_m=tau_m, eps=eps), shared.w, shared.d)
    layers = [Layer(ly.n_in, ly.n_out, "synaptic") for ly in shared.layers]
    d_syn = [
        np.broadcast_to(d[:, None], ly.weight_shape)
        if kind == "axonal"
        else np.zeros(ly.weight_shape)
        for d, ly in zip(shared.d, shared.layers, strict=True)
    ]
    general = Network(layers, shared.neuron, shared.w, d_syn)
    t_in = sensor_inputs(rng, 12, 784)
    times = forward(shared, t_in)
    ref = forward(general, t_in)
    for a, b in zip(times, ref, strict=True):
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
        fin = np.isfinite(b)
        assert np.max(np.abs(a[fin] - b[fin])) < 1e-12
    assert np.isfinite(times[0]).mean() > 0.9
    g = np.where(np.isfinite(ref[-1]), rng.normal(size=ref[-1].shape), 0.0)
    got = backward(shared, t_in, ref, g, max_dw_norm=0.5)
    want = backward(general, t_in, ref, g, max_dw_norm=0.5)
    assert got.dropped == want.dropped
    scale = np.abs(want.t_in).max()
    np.testing.assert_allclose(got.t_in, want.t_in, rtol=1e-11, atol=1e-13 * scale)
    for a, b in zip(got.layers, want.layers, strict=True):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-11, atol=1e-13 * np.abs(b.w).max())
        if kind == "axonal":  # dL/dd_ax[i] = sum_j dL/dd_syn[i, j]
            np.testing.assert_allclose(
                a.d, b.d.sum(axis=1), rtol=1e-10, atol=1e-12 * np.abs(b.d).max()
            )


@pytest.mark.parametrize("tau_m", [2.0, 1.0])
@pytest.mark.parametrize("kind", ["none", "axonal", "synaptic"])
def test_256_inputs_match_the_membrane_integration(tau_m, kind):
    rng = np.random.default_rng(256 + int(tau_m) + len(kind))
    net = sensor_network(rng, [256, 40, 5], kind, tau_m)
    t_in = sensor_inputs(rng, 3, 256)
    times = forward(net, t_in)
    assert np.isfinite(times[0]).mean() > 0.8
    t_pre = t_in
    checked = 0
    for index, layer in enumerate(net.layers):
        d_syn, d_ax, d_den = net.delay_arrays(index)
        for b in range(t_in.shape[0]):
            for j in range(0, layer.n_out, 3 if index == 0 else 1):
                arrivals = t_pre[b] + d_ax + d_syn[:, j] + d_den[j]
                ref, margin = membrane_spike(
                    arrivals, net.w[index][:, j], tau_s=1.0, tau_m=tau_m, theta=1.0
                )
                if abs(margin) < 1e-6:
                    continue  # tangent to threshold: either answer is right
                if np.isinf(ref):
                    assert np.isinf(times[index][b, j])
                else:
                    assert times[index][b, j] == pytest.approx(ref, abs=1e-9)
                checked += 1
        t_pre = times[index]
    assert checked > 40


H = 1e-6


def _loss(net, t_in, coeff):
    out = forward(net, t_in)[-1]
    return float(np.sum(np.where(np.isfinite(out), coeff * out, 0.0)))


@pytest.mark.parametrize(("kind", "tau_m"), [("none", 2.0), ("axonal", 2.0), ("axonal", 1.0)])
def test_256_inputs_match_finite_differences(kind, tau_m):
    rng = np.random.default_rng(7 + len(kind))
    net = sensor_network(rng, [256, 32, 4], kind, tau_m)
    t_in = sensor_inputs(rng, 4, 256)
    coeff = rng.normal(size=(4, 4))
    times = forward(net, t_in)
    grads = backward(net, t_in, times, np.where(np.isfinite(times[-1]), coeff, 0.0))
    base = _loss(net, t_in, coeff)
    checked = []

    def check(analytic, plus, minus):
        fd = (plus - minus) / (2 * H)
        fwd, bwd = (plus - base) / H, (base - minus) / H
        if abs(fwd - bwd) <= 1e-4 * (abs(fd) + 1e-3):  # smooth here
            assert abs(analytic - fd) <= 1e-6 * abs(fd) + 1e-8 * (1 + abs(base)), (analytic, fd)
            checked.append(1)
        else:
            checked.append(0)

    for index in range(len(net.layers)):
        for arrays, grad in ((net.w, grads.layers[index].w), (net.d, grads.layers[index].d)):
            param = arrays[index]
            if param.size == 0:
                continue
            # entries that matter: rows of inputs that spiked in some sample
            nonzero = np.flatnonzero(grad)
            picks = rng.choice(nonzero, size=min(nonzero.size, 10), replace=False)
            for flat in picks:
                pos = np.unravel_index(flat, param.shape)
                old = param[pos]
                param[pos] = old + H
                plus = _loss(net, t_in, coeff)
                param[pos] = old - H
                minus = _loss(net, t_in, coeff)
                param[pos] = old
                check(grad[pos], plus, minus)
    finite = np.argwhere(np.isfinite(t_in))
    for b, i in finite[rng.choice(len(finite), size=12, replace=False)]:
        old = t_in[b, i]
        t_in[b, i] = old + H
        plus = _loss(net, t_in, coeff)
        t_in[b, i] = old - H
        minus = _loss(net, t_in, coeff)
        t_in[b, i] = old
        check(grads.t_in[b, i], plus, minus)
    assert np.mean(checked) > 0.8


def test_a_batch_is_split_only_where_each_part_is_worth_a_thread(monkeypatch):
    tiny = sensor_network(np.random.default_rng(0), [20, 30, 3], "axonal", 2.0)
    big = sensor_network(np.random.default_rng(0), [784, 350, 10], "none", 2.0)
    # measured: tiny batches ran 3-9x slower on two threads, sensor-sized ones faster
    assert FORWARD_SPLIT.chunks(tiny, 40, 2) == BACKWARD_SPLIT.chunks(tiny, 40, 2) == 1
    assert BACKWARD_SPLIT.chunks(tiny, 1024, 8) == 1
    assert FORWARD_SPLIT.chunks(tiny, 1024, 2) == 2  # 2.6 ms of forward: two 1.3 ms parts
    assert FORWARD_SPLIT.chunks(big, 150, 2) == BACKWARD_SPLIT.chunks(big, 150, 2) == 2
    assert BACKWARD_SPLIT.chunks(big, 40, 2) == 1
    assert FORWARD_SPLIT.chunks(big, 10_000, 3) == 3  # never more than asked for
    assert FORWARD_SPLIT.chunks(big, 1, 4) == 1
    # and the passes use what it says: no thread is handed a part of a tiny batch
    calls = []
    monkeypatch.setattr(
        network_module, "_run_chunks", lambda fn, n, k: calls.append(k) or [fn(0, n)]
    )
    t_in = sensor_inputs(np.random.default_rng(1), 40, 20)
    times = forward(tiny, t_in, threads=2)
    backward(tiny, t_in, times, np.ones((40, 3)), threads=2)
    assert calls == []


@pytest.mark.usefixtures("always_split")
@pytest.mark.parametrize("kind", ["none", "axonal", "dendritic", "synaptic"])
def test_threads_give_the_same_results(kind):
    rng = np.random.default_rng(3)
    net = sensor_network(rng, [128, 30, 5], kind, 2.0)
    t_in = sensor_inputs(rng, 37, 128)
    times = forward(net, t_in)
    g = np.where(np.isfinite(times[-1]), rng.normal(size=times[-1].shape), 0.0)
    one = backward(net, t_in, times, g, max_dw_norm=0.5)
    for threads in (2, 3, 8, 100):
        again = forward(net, t_in, threads=threads)
        for a, b in zip(times, again, strict=True):
            np.testing.assert_array_equal(a, b)  # per-sample work: bit for bit
        many = backward(net, t_in, times, g, max_dw_norm=0.5, threads=threads)
        np.testing.assert_array_equal(many.t_in, one.t_in)
        assert many.dropped == one.dropped
        for a, b in zip(one.layers, many.layers, strict=True):
            # summed over row chunks in row order: equal up to rounding
            np.testing.assert_allclose(b.w, a.w, rtol=1e-12, atol=1e-14 * np.abs(a.w).max())
            np.testing.assert_allclose(
                b.d, a.d, rtol=1e-12, atol=1e-14 * (1 + np.abs(a.d).max(initial=0))
            )
        repeat = backward(net, t_in, times, g, max_dw_norm=0.5, threads=threads)
        for a, b in zip(many.layers, repeat.layers, strict=True):
            np.testing.assert_array_equal(a.w, b.w)  # deterministic for a thread count
            np.testing.assert_array_equal(a.d, b.d)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(threads):
    net = sensor_network(np.random.default_rng(0), [4, 3], "none", 2.0)
    t_in = np.ones((2, 4))
    with pytest.raises(ParameterError, match="threads"):
        forward(net, t_in, threads=threads)
    with pytest.raises(ParameterError, match="threads"):
        backward(net, t_in, forward(net, t_in), np.ones((2, 3)), threads=threads)


def _forward_in_child(net, t_in, queue):
    queue.put(forward(net, t_in, threads=2)[0])


@pytest.mark.usefixtures("always_split")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threads_work_in_a_forked_child():
    """The parent's thread pool does not survive fork; the child must not wait on it."""
    rng = np.random.default_rng(5)
    net = sensor_network(rng, [64, 20], "none", 2.0)
    t_in = sensor_inputs(rng, 9, 64)
    want = forward(net, t_in, threads=2)[0]  # the parent now has a pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forward_in_child, args=(net, t_in, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=10)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, want)
