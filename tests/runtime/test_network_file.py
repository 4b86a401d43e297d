"""Network files: round trip, atomic writes, clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import (
    Layer,
    Network,
    NetworkFileError,
    NeuronParams,
    ParameterError,
    load_network,
    save_network,
)


def make_net():
    rng = np.random.default_rng(0)
    layers = [Layer(4, 5, "axonal", bias_times=(0.9,)), Layer(5, 3, "synaptic")]
    return Network(
        layers,
        NeuronParams(tau_m=1.5, theta=1.2, eps=1e-6),
        [rng.normal(size=ly.weight_shape) for ly in layers],
        [rng.uniform(size=ly.delay_shape) for ly in layers],
    )


def test_round_trip_is_exact(tmp_path):
    net = make_net()
    path = save_network(net, tmp_path / "net.npz")
    back = load_network(path)
    assert back.layers == net.layers and back.neuron == net.neuron
    for a, b in zip(net.w + net.d, back.w + back.d, strict=True):
        np.testing.assert_array_equal(a, b)
    t = np.random.default_rng(1).uniform(0, 2, (10, 4))
    np.testing.assert_array_equal(net.forward(t)[-1], back.forward(t)[-1])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_overwrite_keeps_a_valid_file(tmp_path):
    path = tmp_path / "net.npz"
    save_network(make_net(), path)
    with pytest.raises(RuntimeError):
        from delgrad.runtime import atomic_write

        def boom(fh):
            fh.write(b"partial")
            raise RuntimeError("disk full")

        atomic_write(path, boom)
    load_network(path)  # the old file is intact


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_corrupt_files_raise_typed_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(NetworkFileError):
        load_network(path)


def test_missing_file_and_foreign_npz(tmp_path):
    with pytest.raises(NetworkFileError):
        load_network(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(NetworkFileError, match="manifest"):
        load_network(tmp_path / "other.npz")


def test_invalid_parameters_are_refused():
    with pytest.raises(ParameterError, match="chain"):
        Network([Layer(4, 5), Layer(6, 3)], NeuronParams(), [np.zeros((4, 5)), np.zeros((6, 3))])
    with pytest.raises(ParameterError, match="shape"):
        Network([Layer(4, 5, "axonal")], NeuronParams(), [np.zeros((4, 5))], [np.zeros(5)])
    with pytest.raises(ParameterError, match="finite"):
        Network([Layer(2, 1)], NeuronParams(), [np.array([[np.nan], [1.0]])])
    with pytest.raises(ParameterError, match="tau_m"):
        NeuronParams(tau_m=-1.0)
    with pytest.raises(ParameterError, match="delay"):
        Layer(2, 2, "sideways")  # type: ignore[arg-type]
    net = Network([Layer(2, 1)], NeuronParams(), [np.ones((2, 1))])
    with pytest.raises(ParameterError, match="nan"):
        net.forward(np.array([[np.nan, 0.0]]))
    with pytest.raises(ParameterError, match="shape"):
        net.forward(np.zeros((3, 5)))
