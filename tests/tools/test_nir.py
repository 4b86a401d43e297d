"""NIR export and import: nir's own checks, an exact round trip (identical spike
times on the Yin-Yang test set) for every delay kind, the mapping of the neuron
parameters, refusals, and both commands through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

from delgrad.errors import NetworkFileError, ParameterError
from delgrad.runtime import (
    Layer,
    Network,
    NeuronParams,
    encode_yinyang,
    forward,
    load_network,
    save_network,
    yinyang_split,
)
from delgrad.tools._nir import from_nir, read_nir, to_nir, write_nir

DELGRAD = [sys.executable, "-m", "delgrad"]


def _net(kind: str, *, tau_m: float = 2.0, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Layer(4, 30, kind), Layer(30, 3, kind)]  # type: ignore[arg-type]
    return Network(
        layers,
        NeuronParams(tau_s=1.0, tau_m=tau_m, theta=1.0, eps=1e-6),
        w=[rng.normal(1.2, 1.0, ly.weight_shape) for ly in layers],
        d=[rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers],
    )


@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic", "none"])
def test_round_trip_gives_identical_spike_times_on_the_yinyang_test_set(tmp_path, kind) -> None:
    net = _net(kind, tau_m=1.0 if kind == "axonal" else 2.0)
    path = write_nir(tmp_path / "net.nir", net, tau_s_seconds=6e-6)
    back = read_nir(path)
    assert back.layers == net.layers and back.neuron == net.neuron
    t_in = encode_yinyang(yinyang_split("test")[0])
    for a, b in zip(forward(net, t_in), forward(back, t_in), strict=True):
        np.testing.assert_array_equal(a, b)  # identical, not close
    assert np.isfinite(forward(net, t_in)[-1]).any()


def test_exported_graph_passes_nirs_own_checks_and_maps_the_parameters(tmp_path) -> None:
    net = _net("synaptic")
    graph = to_nir(net, tau_s_seconds=1e-3)
    graph.validate_structure()
    graph.check_types()
    nir.write(str(tmp_path / "g.nir"), graph)
    read = nir.read(str(tmp_path / "g.nir"))
    read.validate_structure()
    read.check_types()
    kinds = [type(read.nodes[n]).__name__ for n in ("fanout0", "delay0", "affine0", "lif0")]
    assert kinds == ["Affine", "Delay", "Affine", "CubaLIF"]
    lif = read.nodes["lif1"]
    np.testing.assert_allclose(lif.tau_syn, 1e-3)
    np.testing.assert_allclose(lif.tau_mem, 2e-3)
    np.testing.assert_allclose(lif.r, 2e-3)  # R = tau_m in seconds, w_in = 1
    np.testing.assert_allclose(lif.v_threshold, 1.0)
    np.testing.assert_allclose(lif.v_leak, 0.0)
    np.testing.assert_allclose(read.nodes["delay1"].delay, net.d[1].reshape(-1) * 1e-3)
    # Affine(fan-out) -> Delay -> Affine(block) is the synaptic layer: same currents
    x = np.random.default_rng(1).normal(size=4)
    block, fan = read.nodes["affine0"].weight, read.nodes["fanout0"].weight
    np.testing.assert_allclose(block @ fan @ x, net.w[0].T @ x)
    assert read.metadata["first_spike_only"] == 1


def test_other_r_and_w_in_rescale_the_weights() -> None:
    net = _net("dendritic")
    graph = to_nir(net, tau_s_seconds=1e-3)
    for name in ("lif0", "lif1"):
        graph.nodes[name].w_in = graph.nodes[name].w_in * 4.0
        graph.nodes[name].r = graph.nodes[name].r / 4.0
    back = from_nir(graph)
    for a, b in zip(net.w, back.w, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_refusals() -> None:
    layers = [Layer(4, 5, "none", bias_times=(0.9,)), Layer(5, 3, "none")]
    net = Network(layers, NeuronParams(), w=[np.ones(ly.weight_shape) for ly in layers])
    with pytest.raises(ParameterError, match="bias"):
        to_nir(net)
    graph = to_nir(_net("none"))
    graph.nodes["lif1"].tau_mem = np.linspace(1e-3, 2e-3, 3)
    with pytest.raises(NetworkFileError, match="tau_mem"):
        from_nir(graph)


def test_export_and_import_commands(tmp_path: Path) -> None:
    net = _net("synaptic")
    save_network(net, tmp_path / "net.npz")
    out = subprocess.run(
        [*DELGRAD, "export-nir", str(tmp_path / "net.npz"), str(tmp_path / "net.nir")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "4-30-3" in out.stdout and "CubaLIF" in out.stdout
    out = subprocess.run(
        [*DELGRAD, "import-nir", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    back = load_network(tmp_path / "back.npz")
    assert all(np.array_equal(a, b) for a, b in zip(net.d, back.d, strict=True))
    (tmp_path / "bad.nir").write_text("not hdf5")
    out = subprocess.run(
        [*DELGRAD, "import-nir", str(tmp_path / "bad.nir"), str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_export_takes_the_network_of_a_service_checkpoint(tmp_path: Path) -> None:
    from delgrad.runtime import Learner, resolve_config

    learner = Learner(resolve_config("yinyang_H30_WA"))
    arrays = learner.state_arrays()
    arrays["service"] = np.frombuffer(b"{}", dtype=np.uint8)
    np.savez(tmp_path / "service_checkpoint.npz", **arrays)  # type: ignore[arg-type]
    out = subprocess.run(
        [*DELGRAD, "export-nir", str(tmp_path / "service_checkpoint.npz"), str(tmp_path / "a.nir")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    back = read_nir(tmp_path / "a.nir")
    assert back.layers[0].delay == "axonal" and back.layers[0].n_out == 30
    np.testing.assert_array_equal(back.w[0], arrays["net.w0"])
