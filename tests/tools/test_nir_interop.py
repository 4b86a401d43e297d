"""NIR with the ecosystem: ``export-nir --for`` files run by snnTorch, Norse and
Rockpool with their own importers agree with the exact forward pass; networks
built in snnTorch and Norse and exported by them import here at the right scale;
foreign conventions are recognised or refused with one line.

The framework tests need the ``[interop]`` extra and the authors' reference
networks (skip with a reason otherwise); they run a subset of the Yin-Yang test
set at dt = 0.01 tau_s. The full figures: ``python -m delgrad.tools.bench_nir_interop``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

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
    predict,
    save_network,
    yinyang_split,
)
from delgrad.tools._nir import import_nir, read_nir_graph, to_nir
from delgrad.tools._nir_consumers import INHIBITION, to_nir_for

# nirtorch 2.6 deprecates the extract/load functions that snnTorch's and Norse's exporters use
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:nirtorch.*")

DELGRAD = [sys.executable, "-m", "delgrad"]
N_SAMPLES = 300  # of the 1000 test samples; the bench runs all of them
DT = 0.01


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DELGRAD, *args], capture_output=True, text=True, timeout=300)


def _net(kind: str = "none", seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Layer(4, 30, kind), Layer(30, 3, kind)]  # type: ignore[arg-type]
    return Network(
        layers,
        NeuronParams(tau_s=1.0, tau_m=2.0, theta=1.0),
        w=[rng.normal(1.2, 1.0, ly.weight_shape) for ly in layers],
        d=[rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers],
    )


def _inputs(n: int = N_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    x, y = yinyang_split("test")[:2]
    return encode_yinyang(x[:n]), np.asarray(y[:n])


def _same_spike_times(a: Network, b: Network) -> None:
    t_in = _inputs(200)[0]
    for x, y in zip(forward(a, t_in), forward(b, t_in), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)  # w and theta scaled alike


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed: pip install -e '.[interop]' (CI has it)")


# --- export for a consumer: the file (no framework needed) -----------------------------


@pytest.mark.parametrize("consumer", ["snntorch", "norse", "rockpool"])
def test_consumer_file_holds_the_stepped_parameters_and_reads_back_exactly(consumer) -> None:
    net = _net()
    graph = to_nir_for(net, consumer, dt=0.01)
    graph.validate_structure()
    step = {"snntorch": 1e-4, "norse": 1e-3, "rockpool": 1e-3}[consumer]
    lif = graph.nodes["lif1"]
    if consumer == "rockpool":  # the recurrent sub-graph Rockpool maps to LIFTorch(has_rec)
        inner = lif
        assert set(inner.nodes) == {"input", "lif", "w_rec", "output"}
        lif, rec = inner.nodes["lif"], inner.nodes["w_rec"].weight
        np.testing.assert_allclose(lif.tau_mem / (1 + lif.r), step)  # its importer's dt
    else:  # a loop of two Linear nodes back into the lif
        assert ("lif1", "inhibit1") in graph.edges and ("loop1", "lif1") in graph.edges
        rec = graph.nodes["loop1"].weight @ graph.nodes["inhibit1"].weight
        np.testing.assert_allclose(lif.r, lif.tau_mem / step)
    np.testing.assert_allclose(lif.tau_syn, step / 0.01)  # one step is dt = 0.01 tau_s
    np.testing.assert_allclose(lif.w_in, lif.tau_syn / step)
    np.testing.assert_allclose(lif.v_threshold, net.neuron.theta / 0.01)
    strongest = np.abs(net.w[1]).sum(axis=0).max()
    np.testing.assert_allclose(rec, -INHIBITION * strongest * np.eye(3))
    assert graph.metadata["convention"] == consumer and graph.metadata["dt"] == 0.01
    back, convention = import_nir(graph)
    assert convention.name == "delgrad" and convention.first_spikes == "metadata"
    for a, b in zip(net.w, back.w, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.neuron == net.neuron


def test_export_for_a_framework_refuses_delays_naming_framework_and_node(tmp_path) -> None:
    for consumer, kind in (
        ("snntorch", "axonal"),
        ("norse", "synaptic"),
        ("rockpool", "dendritic"),
    ):
        save_network(_net(kind), tmp_path / "net.npz")
        out = _cli(
            "export-nir", str(tmp_path / "net.npz"), str(tmp_path / "x.nir"), "--for", consumer
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.count("\n") == 1, out.stderr
        assert f"{consumer} has no Delay node" in out.stderr and f"{kind} delays" in out.stderr
        assert not (tmp_path / "x.nir").exists()
        for other in ("axonal", "synaptic", "dendritic"):
            with pytest.raises(ParameterError, match=f"{consumer} has no Delay node .*{other}"):
                to_nir_for(_net(other), consumer)
    with pytest.raises(ParameterError, match="dt must be"):
        to_nir_for(_net(), "norse", dt=0.0)


def test_exact_export_is_unchanged_and_dt_belongs_to_the_consumers(tmp_path) -> None:
    net = _net("synaptic")
    save_network(net, tmp_path / "net.npz")
    out = _cli("export-nir", str(tmp_path / "net.npz"), str(tmp_path / "a.nir"))
    assert out.returncode == 0, out.stderr
    assert "as NIR Affine, Delay and CubaLIF nodes, 1 tau_s = 0.001 s" in out.stdout
    read, written = nir.read(str(tmp_path / "a.nir")), to_nir(net)
    assert read.edges == written.edges and read.metadata == written.metadata
    for name, node in written.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(read.nodes[name], field), value)
    out = _cli("export-nir", str(tmp_path / "net.npz"), str(tmp_path / "b.nir"), "--dt", "0.01")
    assert out.returncode == 2 and "--dt is for --for snntorch" in out.stderr
    out = _cli(
        "export-nir", str(tmp_path / "net.npz"), str(tmp_path / "b.nir"), "--for", "snntorch",
        "--tau-s-seconds", "1",
    )  # fmt: skip
    assert out.returncode == 2 and "steps by 0.0001 s" in out.stderr


# --- import of foreign conventions (files written the frameworks' way, by hand) ------------


def _foreign(net: Network, convention: str, *, rec: float | None = None) -> nir.NIRGraph:
    """``net`` as snnTorch's, Norse's or Rockpool's exporter writes it (their sources)."""
    p, nodes, edges, last = net.neuron, {}, [], "input"
    nodes["input"] = nir.Input({"input": np.array([4])})
    for k, w in enumerate(net.w):
        n = w.shape[1]
        ones = np.ones(n)
        if convention == "snntorch":  # Synaptic, dt = 1e-4 s; one step = 0.01 tau_s
            dt, tau_syn = 1e-4, 1e-2
            lif = nir.CubaLIF(tau_syn=ones * tau_syn, tau_mem=ones * p.tau_m * tau_syn,
                              r=ones * p.tau_m * tau_syn / dt, w_in=ones * tau_syn / dt,
                              v_leak=0 * ones, v_threshold=ones * p.theta * tau_syn / dt,
                              v_reset=0 * ones)  # fmt: skip
            weight = w.T
        elif convention == "norse":  # LIFCell, to_nir(dt=1e-3): tau = dt / tau_inv
            lif = nir.CubaLIF(tau_syn=ones * 1e-3 * 5e-3, tau_mem=ones * 1e-3 * 5e-3 * p.tau_m,
                              r=ones, w_in=ones, v_leak=0 * ones, v_threshold=ones * p.theta,
                              v_reset=0 * ones)  # fmt: skip
            weight = w.T * p.tau_m  # LIFCell's current jumps by w and drives tau dv/dt = -v + i
        else:  # rockpool LIFTorch, dt = 1e-3 s, tau_syn = 0.1 s: one step = 0.01 tau_s
            dt, tau_syn = 1e-3, 0.1
            tau_mem = p.tau_m * tau_syn
            lif = nir.CubaLIF(tau_syn=ones * tau_syn, tau_mem=ones * tau_mem,
                              r=ones * tau_mem * np.exp(-dt / tau_mem) / dt, v_leak=0 * ones,
                              v_threshold=ones * p.theta)  # fmt: skip
            weight = w.T * dt / tau_syn
        nodes[f"{k}"] = nir.Linear(weight)
        nodes[f"{k}.lif"] = lif
        edges += [(last, f"{k}"), (f"{k}", f"{k}.lif")]
        if rec is not None:
            nodes[f"{k}.w_rec"] = nir.Linear(rec * np.eye(n))
            edges += [(f"{k}.lif", f"{k}.w_rec"), (f"{k}.w_rec", f"{k}.lif")]
        last = f"{k}.lif"
    nodes["output"] = nir.Output({"output": np.array([3])})
    return nir.NIRGraph(nodes=nodes, edges=[*edges, (last, "output")])


@pytest.mark.parametrize("convention", ["snntorch", "norse", "rockpool"])
def test_foreign_conventions_are_recognised_and_read_at_the_right_scale(convention) -> None:
    net = _net()
    back, found = import_nir(_foreign(net, convention))
    assert found.name == convention and found.first_spikes is None
    assert back.neuron.tau_m == pytest.approx(2.0)
    if convention == "rockpool":  # LIFTorch's exact decays differ from Euler by O(dt)
        scale = back.neuron.theta / net.neuron.theta
        for a, b in zip(net.w, back.w, strict=True):
            np.testing.assert_allclose(b / scale, a, rtol=0.02)
        return
    _same_spike_times(net, back)
    ratio = [b / a for a, b in zip(net.w, back.w, strict=True)]
    np.testing.assert_allclose(np.concatenate([r.ravel() for r in ratio]), back.neuron.theta)


def test_a_read_that_was_x1e6_before_now_matches_and_says_which_convention(tmp_path) -> None:
    nir.write(str(tmp_path / "snn.nir"), _foreign(_net(), "snntorch", rec=-1e9))
    out = _cli("import-nir", str(tmp_path / "snn.nir"), str(tmp_path / "b.npz"))
    assert out.returncode == 0, out.stderr
    assert "read as snnTorch's convention (r = tau_mem/dt" in out.stdout
    assert "note:" not in out.stdout  # the self-inhibition says: first spikes only
    back = load_network(tmp_path / "b.npz")
    np.testing.assert_allclose(back.w[0] / back.neuron.theta, _net().w[0], rtol=1e-6)
    nir.write(str(tmp_path / "norse.nir"), _foreign(_net(), "norse"))
    out = _cli("import-nir", str(tmp_path / "norse.nir"), str(tmp_path / "c.npz"))
    assert out.returncode == 0 and "read as Norse's convention" in out.stdout
    assert "note: nothing in the file keeps its neurons from firing again" in out.stdout


def test_foreign_files_refused_with_one_line_naming_the_convention(tmp_path) -> None:
    weak = _foreign(_net(), "snntorch", rec=-5.0)
    with pytest.raises(NetworkFileError, match=r"snnTorch's convention .*not a first-spike"):
        import_nir(weak)
    graph = _foreign(_net(), "snntorch", rec=-1e9)
    graph.nodes["0.w_rec"] = nir.Linear(-1e9 * np.ones((30, 30)))
    with pytest.raises(NetworkFileError, match="recurrent weight between neurons"):
        import_nir(graph)
    graph = _foreign(_net(), "snntorch")
    graph.nodes["1"] = nir.Affine(graph.nodes["1"].weight, np.ones(3))
    nir.write(str(tmp_path / "bias.nir"), graph)
    out = _cli("import-nir", str(tmp_path / "bias.nir"), str(tmp_path / "x.npz"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "snnTorch's convention" in out.stderr and "1: Affine with a bias" in out.stderr
    mixed = _foreign(_net(), "snntorch")
    mixed.nodes["1.lif"] = _foreign(_net(), "norse").nodes["1.lif"]
    with pytest.raises(NetworkFileError, match=r"different conventions \(norse, snntorch\)"):
        import_nir(mixed)


# --- the frameworks themselves ------------------------------------------------------------


@pytest.fixture(scope="module")
def yinyang_w(reference) -> Network:
    from tests.runtime.test_reference import load_reference

    return load_reference(reference / "yin_yang_H30_W.npz", "none", eps=1e-6)[0]


@pytest.mark.reference
@pytest.mark.parametrize("framework", ["snntorch", "norse", "rockpool"])
def test_framework_runs_our_export_with_its_own_importer(tmp_path, yinyang_w, framework) -> None:
    _needs(framework)
    from delgrad.tools._nir_run import run_file

    save_network(yinyang_w, tmp_path / "w.npz")
    out = _cli(
        "export-nir", str(tmp_path / "w.npz"), str(tmp_path / "w.nir"), "--for", framework,
        "--dt", str(DT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    t_in, labels = _inputs()
    theirs = predict(run_file(framework, tmp_path / "w.nir", t_in, dt=DT))
    ours = predict(forward(yinyang_w, t_in)[-1])
    assert abs(np.mean(theirs == labels) - np.mean(ours == labels)) <= 0.01
    assert np.mean(theirs == ours) >= 0.97


@pytest.mark.reference
@pytest.mark.parametrize("framework", ["snntorch", "norse"])
def test_network_built_and_exported_in_the_framework_imports_here(
    tmp_path, yinyang_w, framework
) -> None:
    _needs(framework)
    import torch

    from delgrad.tools._nir_run import norse_network, run_module, snntorch_network

    t_in, labels = _inputs()
    if framework == "snntorch":
        from snntorch.export_nir import export_to_nir

        module = snntorch_network(yinyang_w, DT)
        theirs = predict(run_module(framework, module, t_in, 3, dt=DT))
        graph = export_to_nir(module, torch.zeros(4))
    else:
        import norse.torch

        module = norse_network(yinyang_w, DT)
        theirs = predict(run_module(framework, module, t_in, 3, dt=DT))
        graph = norse.torch.to_nir(module, torch.zeros(4))
    nir.write(str(tmp_path / "theirs.nir"), graph)
    out = _cli("import-nir", str(tmp_path / "theirs.nir"), str(tmp_path / "here.npz"))
    assert out.returncode == 0, out.stderr
    assert {"snntorch": "snnTorch's", "norse": "Norse's"}[framework] in out.stdout
    ours = predict(forward(load_network(tmp_path / "here.npz"), t_in)[-1])
    assert abs(np.mean(ours == labels) - np.mean(theirs == labels)) <= 0.01
    assert np.mean(ours == theirs) >= 0.97
    assert read_nir_graph(tmp_path / "theirs.nir").metadata.get("format") is None
