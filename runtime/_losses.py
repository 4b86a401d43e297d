"""Losses on output spike times, with exact gradients.

All functions take output spike times ``times`` (B, n_out) float64 in units of
tau_s, ``inf`` meaning "no spike", and integer labels (B,). The class of a
sample is the output neuron that spikes first (time-to-first-spike coding).

Conventions shared by both losses:

* A sample whose label neuron is silent contributes loss 0 and no gradient (the
  loss is not defined there; the weight bumper is what revives silent neurons)
  and always counts as wrong.
* Silent non-label neurons contribute nothing: their terms are left out of the
  loss and their gradient entries are 0.
* ``grad`` is the exact derivative of the *batch-mean* loss ``loss.mean()``, so
  it already contains the factor 1/B; it is always finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError

__all__ = [
    "FirstSpikeCrossEntropy",
    "LossResult",
    "ShiftMSELoss",
    "accuracy",
    "cross_entropy_loss",
    "mse_loss",
    "predict",
]

# exp(709.78) is the largest finite double; keep a margin so that alpha * exp(.)
# and its batch mean stay finite too.
_MAX_EXP = 700.0


def _check_times(times: ArrayLike) -> NDArray[np.float64]:
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"times must be a float array, got {type(times).__name__}") from exc
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ParameterError(f"times must have shape (B, n_out) with B, n_out >= 1, got {t.shape}")
    # +inf means "no spike"; NaN and -inf have no meaning.
    if np.isnan(t).any() or np.isneginf(t).any():
        raise ParameterError("times must not contain NaN or -inf (use +inf for 'no spike')")
    return t


def _check_labels(labels: ArrayLike, batch: int, n_out: int) -> NDArray[np.int64]:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != batch:
        raise ParameterError(f"labels must have shape ({batch},), got {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise ParameterError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= n_out):
        bad = lab[(lab < 0) | (lab >= n_out)][0]
        raise ParameterError(f"label {bad} out of range for {n_out} output neurons")
    return lab


def _check_number(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (
        isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and (value > 0 or (allow_zero and value == 0))):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be finite and {bound}, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    _check_number(name, value)


def _label_view(
    times: ArrayLike, labels: ArrayLike
) -> tuple[
    NDArray[np.float64], NDArray[np.int64], NDArray[np.intp], NDArray[np.float64], NDArray[np.bool_]
]:
    """Validated (t (B, n_out), labels (B,), row indices (B,), label-neuron times (B,),
    whether the label neuron fired (B,))."""
    t = _check_times(times)
    lab = _check_labels(labels, t.shape[0], t.shape[1])
    rows = np.arange(t.shape[0])
    t_c = t[rows, lab]
    return t, lab, rows, t_c, np.isfinite(t_c)


def _predict(t: NDArray[np.float64]) -> NDArray[np.int64]:
    # argmin returns the lowest index among ties; rows with no spike get -1.
    pred: NDArray[np.int64] = np.argmin(t, axis=1).astype(np.int64)
    pred[~np.isfinite(t).any(axis=1)] = -1
    return pred


def predict(times: ArrayLike) -> NDArray[np.int64]:
    """Predicted class: the output neuron that spikes first.

    Args:
        times: output spike times (B, n_out), ``inf`` = no spike.

    Returns:
        (B,) int64: index of the earliest spike (lowest index among ties), or -1
        where no output neuron spikes.
    """
    return _predict(_check_times(times))


def accuracy(times: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples whose first output spike is the label neuron's.

    Args:
        times: output spike times (B, n_out), ``inf`` = no spike.
        labels: (B,) integer labels in [0, n_out).

    Returns:
        Accuracy in [0, 1]. A silent label neuron is always wrong.
    """
    t = _check_times(times)
    lab = _check_labels(labels, t.shape[0], t.shape[1])
    return float(np.mean(_predict(t) == lab))


@dataclass(frozen=True)
class LossResult:
    """Per-sample losses and the gradient of their batch mean.

    Attributes:
        loss: (B,) float64, per-sample loss (0 where the label neuron is silent).
        grad: (B, n_out) float64, exact d(mean loss)/d(times), includes 1/B.
        predicted: (B,) int64, earliest output spike, -1 if none spikes.
        correct: (B,) bool, predicted == label (False for a silent label neuron).
    """

    loss: NDArray[np.float64]
    grad: NDArray[np.float64]
    predicted: NDArray[np.int64]
    correct: NDArray[np.bool_]

    @property
    def mean(self) -> float:
        """Batch-mean loss (the quantity ``grad`` differentiates)."""
        return float(self.loss.mean())

    @property
    def accuracy(self) -> float:
        """Fraction of correct samples."""
        return float(self.correct.mean())


@dataclass(frozen=True)
class ShiftMSELoss:
    """The shift-invariant MSE loss of DelGrad.

    Per sample with label c: ``L = 1/2 * sum_{i != c} (t_i - t_c - delta_t)^2``,
    i.e. every other neuron should spike ``delta_t`` after the label neuron; only
    time differences matter, so adding a constant to all times leaves L unchanged.
    Terms of silent non-label neurons are left out (they already spike "after").

    Attributes:
        delta_t: target lead of the label neuron, units of tau_s (>= 0).
    """

    delta_t: float = 0.2

    def __post_init__(self) -> None:
        _check_number("delta_t", self.delta_t, allow_zero=True)

    def __call__(self, times: ArrayLike, labels: ArrayLike) -> LossResult:
        """Evaluate on times (B, n_out) and labels (B,); see :class:`LossResult`."""
        t, lab, rows, t_c, live = _label_view(times, labels)
        batch = t.shape[0]
        # Residuals of the other neurons; zero wherever the term is left out.
        use = np.isfinite(t) & live[:, None]
        use[rows, lab] = False
        t_c_safe = np.where(live, t_c, 0.0)
        resid = np.where(use, t - t_c_safe[:, None] - float(self.delta_t), 0.0)
        loss = 0.5 * np.sum(resid * resid, axis=1)
        grad = resid / batch
        grad[rows, lab] = -resid.sum(axis=1) / batch
        pred = _predict(t)
        return LossResult(loss=loss, grad=grad, predicted=pred, correct=pred == lab)


@dataclass(frozen=True)
class FirstSpikeCrossEntropy:
    """First-spike cross-entropy with a late-spike regulariser (Göltz et al. 2021).

    Per sample with label c:
    ``L = -log softmax(-t / (xi tau_s))_c + alpha * exp(t_c / (beta tau_s))``.
    Silent neurons get zero softmax weight. The regulariser's exponent is capped
    at 700 (a label spike 700 beta tau_s late) so the loss stays finite; beyond
    the cap its gradient is that of the capped (constant) term, i.e. zero.

    Attributes:
        xi: softmax temperature as a factor of tau_s (> 0).
        alpha: weight of the regulariser (>= 0).
        beta: time constant of the regulariser as a factor of tau_s (> 0).
        tau_s: synaptic time constant in model units (> 0; 1 in this project).
    """

    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0
    tau_s: float = 1.0

    def __post_init__(self) -> None:
        _check_positive("xi", self.xi)
        _check_positive("beta", self.beta)
        _check_positive("tau_s", self.tau_s)
        _check_number("alpha", self.alpha, allow_zero=True)

    def __call__(self, times: ArrayLike, labels: ArrayLike) -> LossResult:
        """Evaluate on times (B, n_out) and labels (B,); see :class:`LossResult`."""
        t, lab, rows, t_c, live = _label_view(times, labels)
        batch = t.shape[0]
        finite = np.isfinite(t) & live[:, None]
        tau_soft = float(self.xi) * float(self.tau_s)
        tau_reg = float(self.beta) * float(self.tau_s)
        # Logits z = -t / (xi tau_s); silent neurons (and dead rows) are masked
        # out before exponentiation so no inf - inf can arise.
        z = np.where(finite, -np.where(finite, t, 0.0) / tau_soft, -np.inf)
        z_max = np.where(live, np.max(z, axis=1), 0.0)
        e = np.exp(z - z_max[:, None])
        s = e.sum(axis=1)
        s = np.where(live, s, 1.0)
        p = e / s[:, None]
        log_sum = z_max + np.log(s)
        z_c = np.where(live, z[rows, lab], 0.0)
        u = np.where(live, t_c, 0.0) / tau_reg
        u_capped = np.minimum(u, _MAX_EXP)
        reg = float(self.alpha) * np.exp(u_capped)
        loss = np.where(live, log_sum - z_c + reg, 0.0)
        # dL/dt_i = (p_i - [i == c]) * (-1 / (xi tau_s)) + [i == c] dreg/dt_c.
        onehot = np.zeros_like(t)
        onehot[rows, lab] = 1.0
        grad = np.where(finite, -(p - onehot) / tau_soft, 0.0)
        dreg = np.where(live & (u < _MAX_EXP), reg / tau_reg, 0.0)
        grad[rows, lab] += dreg
        grad /= batch
        pred = _predict(t)
        return LossResult(loss=loss, grad=grad, predicted=pred, correct=pred == lab)


def mse_loss(times: ArrayLike, labels: ArrayLike, *, delta_t: float = 0.2) -> LossResult:
    """Shift-invariant MSE loss; shorthand for ``ShiftMSELoss(delta_t)(times, labels)``."""
    return ShiftMSELoss(delta_t=delta_t)(times, labels)


def cross_entropy_loss(
    times: ArrayLike,
    labels: ArrayLike,
    *,
    xi: float = 0.2,
    alpha: float = 0.005,
    beta: float = 1.0,
    tau_s: float = 1.0,
) -> LossResult:
    """First-spike cross-entropy; shorthand for ``FirstSpikeCrossEntropy(...)(times, labels)``."""
    return FirstSpikeCrossEntropy(xi=xi, alpha=alpha, beta=beta, tau_s=tau_s)(times, labels)
