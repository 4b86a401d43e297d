"""Tests of the spike-time losses, prediction and accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from delgrad.runtime import (
    FirstSpikeCrossEntropy,
    LossResult,
    ParameterError,
    ShiftMSELoss,
    accuracy,
    cross_entropy_loss,
    mse_loss,
    predict,
)

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "delgrad_reference"

LOSSES = [
    pytest.param(ShiftMSELoss(), id="mse"),
    pytest.param(ShiftMSELoss(delta_t=0.5), id="mse-0.5"),
    pytest.param(FirstSpikeCrossEntropy(), id="ce"),
    pytest.param(FirstSpikeCrossEntropy(xi=0.5, alpha=0.1, beta=2.0, tau_s=1.5), id="ce-custom"),
]


def _random_times(rng: np.random.Generator, batch: int, n_out: int, p_silent: float):
    times = rng.uniform(0.5, 4.0, size=(batch, n_out))
    times[rng.random((batch, n_out)) < p_silent] = np.inf
    labels = rng.integers(0, n_out, size=batch)
    return times, labels


def _finite_difference(loss, times, labels, h=1e-6):
    fd = np.zeros_like(times)
    for idx in zip(*np.nonzero(np.isfinite(times)), strict=True):
        up = times.copy()
        down = times.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (loss(up, labels).mean - loss(down, labels).mean) / (2 * h)
    return fd


# ------------------------------------------------------------------ known values


def test_mse_hand_computed() -> None:
    res = mse_loss(np.array([[1.0, 1.5, 2.0]]), np.array([0]))
    # residuals 1.5 - 1 - 0.2 = 0.3 and 2 - 1 - 0.2 = 0.8
    assert isinstance(res, LossResult)
    np.testing.assert_allclose(res.loss, [0.5 * (0.3**2 + 0.8**2)], rtol=1e-14)
    np.testing.assert_allclose(res.grad, [[-1.1, 0.3, 0.8]], rtol=1e-14)
    np.testing.assert_array_equal(res.predicted, [0])
    np.testing.assert_array_equal(res.correct, [True])


def test_mse_silent_other_neuron_left_out() -> None:
    res = mse_loss(np.array([[1.0, np.inf, 2.0]]), np.array([0]), delta_t=0.0)
    np.testing.assert_allclose(res.loss, [0.5])
    np.testing.assert_allclose(res.grad, [[-1.0, 0.0, 1.0]])


def test_ce_hand_computed() -> None:
    res = cross_entropy_loss(np.array([[1.0, 2.0]]), np.array([0]))
    # logits -5 and -10; -log softmax_0 = log(1 + e^-5); regulariser 0.005 e^1
    expected = math.log1p(math.exp(-5.0)) + 0.005 * math.e
    np.testing.assert_allclose(res.loss, [expected], rtol=1e-14)
    # dL/dt_i = (delta_ic - p_i) / xi (+ regulariser for c): a later label spike
    # costs, a later competitor spike helps.
    p1 = math.exp(-10.0) / (math.exp(-5.0) + math.exp(-10.0))
    np.testing.assert_allclose(
        res.grad, [[p1 / 0.2 + 0.005 * math.e, -p1 / 0.2]], rtol=1e-12, atol=1e-15
    )


def test_grad_includes_batch_mean() -> None:
    t = np.array([[1.0, 1.5, 2.0]])
    single = mse_loss(t, np.array([0]))
    double = mse_loss(np.vstack([t, t]), np.array([0, 0]))
    np.testing.assert_allclose(double.grad, np.vstack([single.grad, single.grad]) / 2)
    assert double.mean == pytest.approx(single.mean)


# ------------------------------------------------------------ exact gradients


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(loss, seed: int) -> None:
    rng = np.random.default_rng(seed)
    times, labels = _random_times(rng, batch=6, n_out=4, p_silent=0.2)
    # Make sure label neurons of most samples spike so the test has content.
    times[np.arange(5), labels[:5]] = rng.uniform(0.5, 4.0, size=5)
    res = loss(times, labels)
    fd = _finite_difference(loss, times, labels)
    np.testing.assert_allclose(res.grad, fd, rtol=1e-6, atol=1e-8)
    assert np.all(res.grad[~np.isfinite(times)] == 0.0)


@pytest.mark.parametrize("loss", LOSSES)
def test_silent_label_gives_zero_loss_no_gradient_and_wrong(loss) -> None:
    times = np.array([[np.inf, 1.0, 2.0], [1.0, 1.2, 3.0], [np.inf, np.inf, np.inf]])
    labels = np.array([0, 0, 1])
    res = loss(times, labels)
    assert res.loss[0] == 0.0
    assert res.loss[2] == 0.0
    assert np.all(res.grad[0] == 0.0)
    assert np.all(res.grad[2] == 0.0)
    np.testing.assert_array_equal(res.correct, [False, True, False])
    np.testing.assert_array_equal(res.predicted, [1, 0, -1])
    assert res.loss[1] > 0.0
    assert res.accuracy == pytest.approx(1 / 3)


def test_ce_stable_for_large_and_spread_times() -> None:
    times = np.array([[300.0, 0.1, np.inf], [0.1, 900.0, 2000.0], [1e4, np.inf, 1e4 + 1]])
    labels = np.array([0, 0, 0])
    res = cross_entropy_loss(times, labels)
    assert np.all(np.isfinite(res.loss))
    assert np.all(np.isfinite(res.grad))
    # sample 1: the label wins by far, the softmax term is ~0
    assert res.loss[1] == pytest.approx(0.005 * math.exp(0.1), rel=1e-12)
    # sample 0: label far behind, -log softmax ~ (300 - 0.1) / 0.2
    assert res.loss[0] > (300.0 - 0.1) / 0.2


def test_ce_regulariser_pushes_label_earlier() -> None:
    # Only one neuron: softmax term is 0, the gradient is the regulariser's.
    res = cross_entropy_loss(np.array([[2.0]]), np.array([0]), alpha=0.1, beta=0.5)
    np.testing.assert_allclose(res.grad, [[0.1 / 0.5 * math.exp(4.0)]], rtol=1e-14)


# ------------------------------------------------------------- property tests

finite_or_silent = st.one_of(
    st.floats(min_value=0.0, max_value=50.0, allow_nan=False), st.just(math.inf)
)


@st.composite
def batches(draw):
    batch = draw(st.integers(1, 6))
    n_out = draw(st.integers(1, 5))
    times = draw(hnp.arrays(np.float64, (batch, n_out), elements=finite_or_silent))
    labels = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, n_out - 1)))
    return times, labels


@settings(max_examples=200, deadline=None)
@given(data=batches(), which=st.sampled_from(["mse", "ce"]))
def test_outputs_always_finite(data, which: str) -> None:
    times, labels = data
    res = mse_loss(times, labels) if which == "mse" else cross_entropy_loss(times, labels)
    assert res.loss.shape == labels.shape
    assert res.grad.shape == times.shape
    assert np.all(np.isfinite(res.loss))
    assert np.all(np.isfinite(res.grad))
    assert np.all(res.loss >= 0.0)
    np.testing.assert_array_equal(res.predicted, predict(times))
    np.testing.assert_array_equal(res.correct, res.predicted == labels)
    silent_label = ~np.isfinite(times[np.arange(len(labels)), labels])
    assert not np.any(res.correct & silent_label)
    assert np.all(res.grad[~np.isfinite(times)] == 0.0)


@settings(max_examples=200, deadline=None)
@given(data=batches(), shift=st.floats(-20.0, 20.0), delta=st.floats(0.0, 1.0))
def test_mse_shift_invariant(data, shift: float, delta: float) -> None:
    times, labels = data
    base = mse_loss(times, labels, delta_t=delta)
    moved = mse_loss(times + shift, labels, delta_t=delta)
    np.testing.assert_allclose(moved.loss, base.loss, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moved.grad, base.grad, rtol=1e-9, atol=1e-9)
    # Shift invariance in differential form: each row of the gradient sums to 0.
    np.testing.assert_allclose(base.grad.sum(axis=1), 0.0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(data=batches(), shift=st.floats(-20.0, 20.0))
def test_ce_softmax_part_shift_invariant(data, shift: float) -> None:
    times, labels = data
    base = cross_entropy_loss(times, labels, alpha=0.0)
    moved = cross_entropy_loss(times + shift, labels, alpha=0.0)
    np.testing.assert_allclose(moved.loss, base.loss, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------- predict / accuracy


def test_predict_ties_and_silence() -> None:
    times = np.array([[1.0, 1.0, 0.5], [2.0, 1.0, 1.0], [np.inf, np.inf, np.inf], [np.inf, 3.0, 4]])
    np.testing.assert_array_equal(predict(times), [2, 1, -1, 1])
    assert predict(times).dtype == np.int64


def test_accuracy() -> None:
    times = np.array([[1.0, 2.0], [2.0, 1.0], [np.inf, np.inf], [1.0, 1.0]])
    assert accuracy(times, np.array([0, 0, 0, 1])) == pytest.approx(0.25)
    assert accuracy(times, [0, 1, 1, 0]) == pytest.approx(0.75)


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("times", "labels", "match"),
    [
        (np.array([[1.0, np.nan]]), [0], "NaN"),
        (np.array([[1.0, -np.inf]]), [0], "NaN or -inf"),
        (np.array([1.0, 2.0]), [0], "shape"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "shape"),
        (np.array([[1.0, 2.0]]), [2], "label 2"),
        (np.array([[1.0, 2.0]]), [-1], "label -1"),
        (np.array([[1.0, 2.0]]), [0, 1], "labels must have shape"),
        (np.array([[1.0, 2.0]]), [0.0], "integers"),
    ],
)
def test_bad_inputs(times, labels, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        mse_loss(times, labels)
    with pytest.raises(ParameterError, match=match):
        cross_entropy_loss(times, labels)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ShiftMSELoss(delta_t=-0.1), "delta_t"),
        (lambda: ShiftMSELoss(delta_t=math.nan), "delta_t"),
        (lambda: FirstSpikeCrossEntropy(xi=0.0), "xi"),
        (lambda: FirstSpikeCrossEntropy(alpha=-1.0), "alpha"),
        (lambda: FirstSpikeCrossEntropy(beta=math.inf), "beta"),
        (lambda: FirstSpikeCrossEntropy(tau_s=-1.0), "tau_s"),
    ],
)
def test_bad_parameters(make, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        make()


# ------------------------------------------------------------------- reference


@pytest.mark.reference
@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("yin_yang_H30_W.npz", 0.967),
        ("yin_yang_H30_WA.npz", 0.975),
        ("yin_yang_H30_WS.npz", 0.982),
        ("yin_yang_H5_WS.npz", 0.954),
    ],
)
def test_accuracy_of_authors_recorded_outputs(name: str, recorded: float) -> None:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    with np.load(path, allow_pickle=False) as ref:
        times = ref["test_output_times"]
        labels = ref["test_labels"]
    assert accuracy(times, labels) == pytest.approx(recorded, abs=1e-12)
