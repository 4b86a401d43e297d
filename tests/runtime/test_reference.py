"""Outside truth: the DelGrad authors' trained networks and recorded spike times."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.runtime import Layer, Network, NeuronParams, forward

pytestmark = pytest.mark.reference

CASES = {  # file stem: (delay kind, recorded test accuracy)
    "H30_W": ("none", 0.967),
    "H30_WA": ("axonal", 0.975),
    "H30_WS": ("synaptic", 0.982),
    "H5_WS": ("synaptic", 0.954),
}


def load_reference(path, kind, eps):
    data = np.load(path, allow_pickle=False)
    names = sorted(
        (k for k in data.files if k.endswith("_final")), key=lambda k: int(k[1 : k.index("_")])
    )
    w = [data[k] for k in names if "NeuronLayer" in k]
    d = [data[k] for k in names if "DelayLayer" in k]
    if kind == "axonal":
        d = [x[:, 0] for x in d]  # stored as (pre, 1)
    layers = [Layer(x.shape[0], x.shape[1], kind) for x in w]
    net = Network(layers, NeuronParams(tau_m=2.0, theta=1.0, eps=eps), w, d or None)
    return net, data


def yinyang_test_times(data):
    """The standard test inputs, regenerated independently of delgrad's own generator."""
    rng = np.random.RandomState(40)
    feats = []
    for _ in range(1000):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2)
            if np.hypot(x - 0.5, y - 0.5) > 0.5:
                continue
            dr, dl = np.hypot(x - 0.75, y - 0.5), np.hypot(x - 0.25, y - 0.5)
            cls = (
                2
                if (dr < 0.1 or dl < 0.1)
                else int(dr <= 0.1 or 0.1 < dl <= 0.25 or (y > 0.5 and dr > 0.25))
            )
            if cls == goal:
                break
        feats.append([x, y, 1 - x, 1 - y])
    return 0.15 + 1.85 * np.array(feats)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_recorded_output_times_and_accuracy(reference, stem):
    kind, accuracy = CASES[stem]
    net, data = load_reference(reference / f"yin_yang_{stem}.npz", kind, eps=1e-6)
    out = forward(net, yinyang_test_times(data))[-1]
    recorded = data["test_output_times"]
    np.testing.assert_array_equal(np.isinf(out), np.isinf(recorded))
    finite = np.isfinite(recorded)
    assert np.max(np.abs(out[finite] - recorded[finite])) < 1e-10
    predicted = np.argmin(out, axis=1)
    assert np.mean(predicted == data["test_labels"]) == pytest.approx(accuracy, abs=1e-12)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_exact_model_without_eps_keeps_the_spike_pattern(reference, stem):
    kind, _ = CASES[stem]
    net, data = load_reference(reference / f"yin_yang_{stem}.npz", kind, eps=0.0)
    out = forward(net, yinyang_test_times(data))[-1]
    recorded = data["test_output_times"]
    np.testing.assert_array_equal(np.isinf(out), np.isinf(recorded))
    finite = np.isfinite(recorded)
    assert np.max(np.abs(out[finite] - recorded[finite])) < 1e-4
