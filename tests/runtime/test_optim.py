"""Tests of Adam, the step schedule, weight bumping, clipping and delay parametrisations."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad.runtime import (
    Adam,
    DelayParametrisation,
    ParameterError,
    ParamGroup,
    StepSchedule,
    WeightBumper,
    clip_weights,
)

# ----------------------------------------------------------------------- Adam


def _textbook_adam(params, grads_seq, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba, Algorithm 1, written independently of the implementation."""
    p = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    for t, grads in enumerate(grads_seq, start=1):
        for k, g in enumerate(grads):
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g**2
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            p[k] = p[k] - lr[k] * m_hat / (np.sqrt(v_hat) + eps)
    return p


def _two_groups(rng):
    w = rng.normal(size=(4, 3))
    d = rng.uniform(0.1, 1.0, size=(3,))
    b = rng.normal(size=(2, 5))
    return w, d, b


def test_adam_matches_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    w, d, b = _two_groups(rng)
    start = [w.copy(), d.copy(), b.copy()]
    opt = Adam([ParamGroup("weights", [w, b], lr=0.01), ParamGroup("delays", [d], lr=0.003)])
    grads_seq = [
        [rng.normal(size=w.shape), rng.normal(size=d.shape), rng.normal(size=b.shape)]
        for _ in range(25)
    ]
    for g in grads_seq:
        opt.step([[g[0], g[2]], [g[1]]])
    expected = _textbook_adam(start, grads_seq, lr=[0.01, 0.003, 0.01])
    np.testing.assert_allclose(w, expected[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d, expected[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b, expected[2], rtol=1e-12, atol=1e-14)
    assert opt.step_count == 25


def test_adam_first_step_is_lr_times_sign() -> None:
    p = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.array([0.3, -1e-3, 5.0, 0.0])
    opt = Adam([ParamGroup("p", [p], lr=0.1)])
    opt.step([[g]])
    # m_hat = g, v_hat = g^2 after one step: update lr * g / (|g| + eps)
    expected = np.array([1.0, -2.0, 0.5, 3.0]) - 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-14)
    np.testing.assert_allclose(p, [0.9, -1.9, 0.4, 3.0], rtol=1e-5)


def test_adam_updates_in_place_and_lr_scale() -> None:
    p = np.zeros(3)
    q = np.zeros(3)
    ident_p = p
    opt = Adam([ParamGroup("a", [p], lr=0.1), ParamGroup("b", [q], lr=0.01)])
    opt.lr_scale = 0.5
    assert opt.lr("a") == pytest.approx(0.05)
    opt.step([[np.ones(3)], [np.ones(3)]])
    assert p is ident_p
    np.testing.assert_allclose(p, -0.05, rtol=1e-6)
    np.testing.assert_allclose(q, -0.005, rtol=1e-6)
    opt.set_lr_scale(2.0)
    assert opt.lr_scale == 2.0
    with pytest.raises(ParameterError, match="lr_scale"):
        opt.set_lr_scale(0.0)


def test_adam_minimises_quadratic() -> None:
    target = np.array([[1.0, -2.0], [0.5, 3.0]])
    x = np.zeros((2, 2))
    opt = Adam([ParamGroup("x", [x], lr=0.05)])
    for _ in range(2000):
        opt.step([[2.0 * (x - target)]])
    np.testing.assert_allclose(x, target, atol=1e-3)


def test_adam_state_dict_round_trip_through_npz_is_bit_identical() -> None:
    rng = np.random.default_rng(3)
    w, d, _ = _two_groups(rng)
    opt = Adam(
        [ParamGroup("w", [w], lr=0.02), ParamGroup("d", [d], lr=0.005)],
        betas=(0.8, 0.99),
        eps=1e-6,
    )
    grads = [[[rng.normal(size=w.shape)], [rng.normal(size=d.shape)]] for _ in range(12)]
    for g in grads[:6]:
        opt.step(g)
    opt.lr_scale = 0.7
    buf = io.BytesIO()
    np.savez(buf, **opt.state_dict())
    w2, d2 = w.copy(), d.copy()
    for g in grads[6:]:
        opt.step(g)

    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    fresh = Adam([ParamGroup("w", [w2], lr=1.0), ParamGroup("d", [d2], lr=1.0)])
    fresh.load_state_dict(saved)
    assert fresh.step_count == 6
    assert fresh.lr_scale == 0.7
    assert fresh.lr("d") == pytest.approx(0.005 * 0.7)
    for g in grads[6:]:
        fresh.step(g)
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(d2, d)
    for key, value in opt.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)


def test_adam_state_dict_arrays_are_copies() -> None:
    p = np.zeros(2)
    opt = Adam([ParamGroup("p", [p], lr=0.1)])
    opt.step([[np.ones(2)]])
    state = opt.state_dict()
    state["p.0.exp_avg"][:] = 99.0
    assert opt.state_dict()["p.0.exp_avg"][0] != 99.0


def test_adam_load_state_dict_rejects_mismatch() -> None:
    opt = Adam([ParamGroup("p", [np.zeros(2)], lr=0.1)])
    state = opt.state_dict()
    other = Adam([ParamGroup("p", [np.zeros(3)], lr=0.1)])
    with pytest.raises(ParameterError, match="shape"):
        other.load_state_dict(state)
    renamed = Adam([ParamGroup("q", [np.zeros(2)], lr=0.1)])
    with pytest.raises(ParameterError, match=r"q\.lr"):
        renamed.load_state_dict(state)
    incomplete = dict(state)
    del incomplete["step"]
    with pytest.raises(ParameterError, match="step"):
        opt.load_state_dict(incomplete)


def test_adam_bad_gradient_leaves_state_untouched() -> None:
    p = np.ones(3)
    q = np.ones(2)
    opt = Adam([ParamGroup("p", [p], lr=0.1), ParamGroup("q", [q], lr=0.1)])
    with pytest.raises(ParameterError, match="shape"):
        opt.step([[np.ones(3)], [np.ones(3)]])
    with pytest.raises(ParameterError, match="not finite"):
        opt.step([[np.ones(3)], [np.array([1.0, np.nan])]])
    with pytest.raises(ParameterError, match="2 lists"):
        opt.step([[np.ones(3)]])
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(q, 1.0)
    assert opt.step_count == 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ParamGroup("p", [np.zeros(3, dtype=np.float32)], lr=0.1), "float64"),
        (lambda: ParamGroup("p", [np.zeros((3, 4))[:, ::2]], lr=0.1), "contiguous"),
        (lambda: ParamGroup("p", [np.zeros(3)], lr=0.0), "lr"),
        (lambda: ParamGroup("", [np.zeros(3)], lr=0.1), "name"),
        (lambda: ParamGroup("a/b", [np.zeros(3)], lr=0.1), "name"),
        (lambda: Adam([]), "non-empty"),
        (
            lambda: Adam(
                [ParamGroup("p", [np.zeros(1)], 0.1), ParamGroup("p", [np.zeros(1)], 0.1)]
            ),
            "unique",
        ),
        (lambda: Adam([ParamGroup("p", [np.zeros(1)], 0.1)], betas=(0.9, 1.0)), "betas"),
        (lambda: Adam([ParamGroup("p", [np.zeros(1)], 0.1)], eps=0.0), "eps"),
    ],
)
def test_adam_bad_construction(make, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        make()


def test_adam_rejects_shared_arrays() -> None:
    w = np.zeros((3, 3))
    with pytest.raises(ParameterError, match="share memory"):
        Adam([ParamGroup("a", [w], lr=0.1), ParamGroup("b", [w[0]], lr=0.1)])


# -------------------------------------------------------------------- schedule


def test_step_schedule() -> None:
    s = StepSchedule()
    assert s.factor(0) == 1.0
    assert s.factor(19) == 1.0
    assert s.factor(20) == pytest.approx(0.95)
    assert s.factor(45) == pytest.approx(0.95**2)
    assert StepSchedule(gamma=0.5, step_size=1).factor(3) == pytest.approx(0.125)
    with pytest.raises(ParameterError, match="epoch"):
        s.factor(-1)
    with pytest.raises(ParameterError, match="step_size"):
        StepSchedule(step_size=0)
    with pytest.raises(ParameterError, match="gamma"):
        StepSchedule(gamma=-0.1)


# -------------------------------------------------------------- weight bumping


def _net():
    w0 = np.zeros((4, 5))
    w1 = np.zeros((5, 3))
    return [w0, w1]


def _times(batch, n, silent):
    t = np.ones((batch, n))
    for b, j in silent:
        t[b, j] = np.inf
    return t


def test_bumper_hidden_layer_first_and_doubling() -> None:
    weights = _net()
    bumper = WeightBumper(start=0.001, tolerances=(0.3, 0.0))
    # hidden: 4 of 10 entries missing (0.4 > 0.3), neurons 1 and 3 affected;
    # output also misses, but the hidden layer comes first.
    hidden = _times(2, 5, [(0, 1), (1, 1), (0, 3), (1, 3)])
    out = _times(2, 3, [(0, 0)])
    assert bumper.bump(weights, [hidden, out]) == 0
    expected = np.zeros((4, 5))
    expected[:, [1, 3]] = 0.001
    np.testing.assert_array_equal(weights[0], expected)
    np.testing.assert_array_equal(weights[1], 0.0)
    assert bumper.value == 0.001
    # Same layer again: the value doubles.
    assert bumper.bump(weights, [hidden, out]) == 0
    expected[:, [1, 3]] += 0.002
    np.testing.assert_allclose(weights[0], expected, rtol=0, atol=1e-18)
    assert bumper.value == 0.002
    # Hidden fine now, output misses one spike (> 0.0): switch layer, reset value.
    ok_hidden = _times(2, 5, [(0, 1)])  # 0.1 <= 0.3
    assert bumper.bump(weights, [ok_hidden, out]) == 1
    assert bumper.value == 0.001
    assert bumper.last_layer == 1
    expected1 = np.zeros((5, 3))
    expected1[:, 0] = 0.001
    np.testing.assert_array_equal(weights[1], expected1)
    # Nothing missing: None, value reset, weights untouched.
    before = [w.copy() for w in weights]
    assert bumper.bump(weights, [ok_hidden, _times(2, 3, [])]) is None
    assert bumper.value == 0.001
    assert bumper.last_layer is None
    for w, b in zip(weights, before, strict=True):
        np.testing.assert_array_equal(w, b)
    # After a call without bump, the same layer starts again at `start`.
    assert bumper.bump(weights, [ok_hidden, out]) == 1
    assert bumper.value == 0.001


def test_bumper_fraction_equal_to_tolerance_is_tolerated() -> None:
    bumper = WeightBumper(start=0.5, tolerances=(0.25, 0.5))
    weights = _net()
    hidden = _times(2, 2, [(0, 0)])  # exactly 0.25 missing
    weights[0] = np.zeros((4, 2))
    weights[1] = np.zeros((2, 3))
    out = _times(2, 3, [(0, 0), (0, 1), (1, 2)])  # exactly 0.5
    assert bumper.bump(weights, [hidden, out]) is None


def test_bumper_tolerance_mapping() -> None:
    b = WeightBumper(tolerances=(0.3, 0.1))
    assert [b.tolerance(layer, 4) for layer in range(4)] == [0.3, 0.3, 0.3, 0.1]
    b3 = WeightBumper(tolerances=(0.3, 0.2, 0.0))
    assert [b3.tolerance(layer, 3) for layer in range(3)] == [0.3, 0.2, 0.0]
    one = WeightBumper(tolerances=(0.05,))
    assert [one.tolerance(layer, 3) for layer in range(3)] == [0.05, 0.05, 0.05]
    assert b.tolerance(0, 1) == 0.1  # a single layer is the output layer


def test_bumper_state_dict_round_trip() -> None:
    weights = _net()
    hidden = _times(1, 5, [(0, 2), (0, 4)])
    out = _times(1, 3, [])
    bumper = WeightBumper(start=0.01, tolerances=(0.3, 0.0))
    bumper.bump(weights, [hidden, out])
    bumper.bump(weights, [hidden, out])
    state = bumper.state_dict()
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    fresh = WeightBumper(start=0.01, tolerances=(0.3, 0.0))
    fresh.load_state_dict(loaded)
    assert fresh.value == pytest.approx(0.02)
    assert fresh.last_layer == 0
    assert fresh.bump(weights, [hidden, out]) == 0
    assert fresh.value == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b.bump([np.zeros((4, 5))], []), "one times array"),
        (lambda b: b.bump([np.zeros((4, 5))], [np.ones((2, 4))]), "layer 0"),
        (lambda b: b.bump([np.zeros((4, 5), dtype=np.float32)], [np.ones((2, 5))]), "float64"),
        (lambda b: b.bump([np.zeros((4, 5))], [np.full((2, 5), np.nan)]), "NaN"),
        (lambda b: b.load_state_dict({"value": 0.1}), "last_layer"),
    ],
)
def test_bumper_bad_inputs(call, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        call(WeightBumper())


def test_bumper_bad_construction() -> None:
    with pytest.raises(ParameterError, match="start"):
        WeightBumper(start=0.0)
    with pytest.raises(ParameterError, match="tolerances"):
        WeightBumper(tolerances=())
    with pytest.raises(ParameterError, match="tolerances"):
        WeightBumper(tolerances=(0.3, 1.5))


# ---------------------------------------------------------------------- clipping


def test_clip_weights_in_place() -> None:
    w = np.array([[-3.0, 0.5], [2.0, -0.1]])
    out = clip_weights(w, 1.0)
    assert out is w
    np.testing.assert_array_equal(w, [[-1.0, 0.5], [1.0, -0.1]])
    with pytest.raises(ParameterError, match="max_abs"):
        clip_weights(w, 0.0)
    with pytest.raises(ParameterError, match="float64"):
        clip_weights(np.zeros(2, dtype=np.float32), 1.0)


# ------------------------------------------------------------------------ delays


def test_plain_delays() -> None:
    p = DelayParametrisation()
    raw = np.array([0.3, -0.2, 1.5])
    np.testing.assert_array_equal(p.effective(raw), raw)
    np.testing.assert_array_equal(p.raw_gradient(raw, [1.0, 2.0, 3.0]), [1.0, 2.0, 3.0])
    p.project(raw)
    np.testing.assert_array_equal(raw, [0.3, 0.0, 1.5])
    np.testing.assert_array_equal(p.raw_from_effective(raw), raw)
    with pytest.raises(ParameterError, match=">= 0"):
        p.raw_from_effective([-0.1])


def test_bounded_delays_range_and_projection_is_noop() -> None:
    p = DelayParametrisation("bounded", shift=2.0, scale=1.5)
    raw = np.array([-800.0, -3.0, 0.0, 3.0, 800.0])
    d = p.effective(raw)
    assert np.all((d >= 2.0) & (d <= 3.5))
    assert d[2] == pytest.approx(2.75)
    assert np.all(np.diff(d) >= 0)
    before = raw.copy()
    p.project(raw)
    np.testing.assert_array_equal(raw, before)


def test_bounded_gradient_matches_finite_differences() -> None:
    p = DelayParametrisation("bounded", shift=0.5, scale=2.0)
    rng = np.random.default_rng(1)
    raw = rng.normal(scale=2.0, size=(3, 4))
    coeff = rng.normal(size=raw.shape)

    def loss(q):  # a nonlinear function of the delays
        d = p.effective(q)
        return float(np.sum(coeff * d**2))

    grad_d = 2.0 * coeff * p.effective(raw)
    analytic = p.raw_gradient(raw, grad_d)
    h = 1e-6
    fd = np.zeros_like(raw)
    for idx in np.ndindex(raw.shape):
        up, down = raw.copy(), raw.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (loss(up) - loss(down)) / (2 * h)
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    q=st.floats(-15.0, 15.0),
    shift=st.floats(0.0, 5.0),
    scale=st.floats(0.1, 5.0),
)
def test_bounded_round_trip(q: float, shift: float, scale: float) -> None:
    p = DelayParametrisation("bounded", shift=shift, scale=scale)
    d = p.effective(np.array([q]))
    back = p.raw_from_effective(d)
    # Rounding in d is amplified by 1 / (s (1 - s)) when inverting.
    s = 1.0 / (1.0 + math.exp(-q))
    tol = 1e-14 * (shift + scale) / (scale * s * (1.0 - s)) + 1e-12
    np.testing.assert_allclose(back, [q], rtol=0, atol=tol)
    np.testing.assert_allclose(p.effective(back), d, rtol=1e-13, atol=1e-13)


def test_bounded_endpoints_give_finite_raw() -> None:
    p = DelayParametrisation("bounded", shift=1.0, scale=2.0)
    raw = p.raw_from_effective([1.0, 3.0])
    assert np.all(np.isfinite(raw))
    assert raw[0] < -30 and raw[1] > 30
    with pytest.raises(ParameterError, match="bounded delays"):
        p.raw_from_effective([0.9])
    with pytest.raises(ParameterError, match="bounded delays"):
        p.raw_from_effective([3.01])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sigmoid"}, "kind"),
        ({"kind": "bounded", "scale": 0.0}, "scale"),
        ({"kind": "bounded", "shift": -1.0}, "shift"),
        ({"kind": "bounded", "shift": math.inf}, "shift"),
    ],
)
def test_delay_parametrisation_validation(kwargs, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        DelayParametrisation(**kwargs)


def test_delay_methods_validate() -> None:
    p = DelayParametrisation("bounded")
    with pytest.raises(ParameterError, match="grad_d"):
        p.raw_gradient(np.zeros(3), np.zeros(2))
    with pytest.raises(ParameterError, match="finite"):
        p.effective([np.nan])
    with pytest.raises(ParameterError, match="float64"):
        p.project(np.zeros(2, dtype=np.float32))
