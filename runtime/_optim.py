"""Optimiser, learning-rate schedule and training stabilisers.

* :class:`Adam` over named parameter groups with per-group learning rates,
  updating the network's arrays in place.
* :class:`StepSchedule`, the step decay of the learning rate per epoch.
* :class:`WeightBumper`, which revives silent neurons by raising their input
  weights (the recipe of the fastAndDeep / DelGrad training code).
* :func:`clip_weights` and :class:`DelayParametrisation` (plain or
  sigmoid-bounded delays).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.runtime._errors import ParameterError
from delgrad.runtime._kernels._updates import adam_update, add_to_columns

__all__ = [
    "Adam",
    "DelayParametrisation",
    "ParamGroup",
    "StepSchedule",
    "WeightBumper",
    "clip_weights",
]

StateDict = dict[str, "np.ndarray | float | int"]


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_positive(name: str, value: object) -> float:
    if not _is_number(value) or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _check_param_array(where: str, p: object) -> np.ndarray:
    # Parameters are updated in place through a flat view, which only exists for
    # writable C-contiguous float64 arrays.
    if not isinstance(p, np.ndarray):
        raise ParameterError(f"{where} must be a numpy array, got {type(p).__name__}")
    if p.dtype != np.float64:
        raise ParameterError(f"{where} must be float64, got {p.dtype}")
    if not p.flags.c_contiguous or not p.flags.writeable:
        raise ParameterError(f"{where} must be a writable C-contiguous array")
    return p


def _scalar(d: Mapping[str, object], key: str) -> float:
    if key not in d:
        raise ParameterError(f"state dict lacks {key!r}")
    value = np.asarray(d[key])
    if value.shape != () or value.dtype.kind not in "iuf":
        raise ParameterError(f"state dict entry {key!r} must be a numeric scalar, got {d[key]!r}")
    return float(value)


# --------------------------------------------------------------------------- Adam


@dataclass(frozen=True)
class ParamGroup:
    """Parameters sharing one learning rate.

    Attributes:
        name: unique name of the group (used as key prefix in state dicts; no '/').
        params: the parameter arrays, float64, C-contiguous, updated in place.
        lr: learning rate (> 0).
    """

    name: str
    params: Sequence[np.ndarray]
    lr: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ParameterError(
                f"group name must be a non-empty str without '/', got {self.name!r}"
            )
        if isinstance(self.params, np.ndarray) or not isinstance(self.params, Sequence):
            raise ParameterError(f"params of group {self.name!r} must be a list of arrays")
        for k, p in enumerate(self.params):
            _check_param_array(f"param {k} of group {self.name!r}", p)
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "lr", _finite_positive(f"lr of group {self.name!r}", self.lr))


class Adam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam semantics, no weight decay.

    ``step(grads)`` updates the groups' arrays in place. The effective learning
    rate of a group is ``group.lr * lr_scale``; set ``lr_scale`` from a schedule
    once per epoch.

    Args:
        groups: parameter groups; names unique, no array in two groups.
        betas: decay rates (beta1, beta2) of the moment estimates, each in [0, 1).
        eps: term added to the denominator (> 0).
    """

    def __init__(
        self,
        groups: Sequence[ParamGroup],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        groups = list(groups)
        if not groups or not all(isinstance(g, ParamGroup) for g in groups):
            raise ParameterError("groups must be a non-empty list of ParamGroup")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ParameterError(f"group names must be unique, got {names}")
        flat = [(g.name, k, p) for g in groups for k, p in enumerate(g.params)]
        for a in range(len(flat)):
            for b in range(a + 1, len(flat)):
                # An array updated twice per step would silently get a double step.
                if np.shares_memory(flat[a][2], flat[b][2]):
                    raise ParameterError(
                        f"param {flat[a][1]} of group {flat[a][0]!r} and param {flat[b][1]} "
                        f"of group {flat[b][0]!r} share memory"
                    )
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ParameterError(f"betas must be a pair, got {betas!r}")
        for b in betas:
            if not _is_number(b) or not 0.0 <= b < 1.0:
                raise ParameterError(f"betas must lie in [0, 1), got {betas!r}")
        self._groups = groups
        self._lrs = [g.lr for g in groups]
        self._beta1 = float(betas[0])
        self._beta2 = float(betas[1])
        self._eps = _finite_positive("eps", eps)
        self._lr_scale = 1.0
        self._step = 0
        self._exp_avg = [[np.zeros_like(p) for p in g.params] for g in groups]
        self._exp_avg_sq = [[np.zeros_like(p) for p in g.params] for g in groups]

    @property
    def groups(self) -> list[ParamGroup]:
        """The parameter groups (do not modify)."""
        return list(self._groups)

    @property
    def step_count(self) -> int:
        """Number of steps taken so far."""
        return self._step

    @property
    def lr_scale(self) -> float:
        """Factor applied to every group's learning rate (1 initially)."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, factor: float) -> None:
        self._lr_scale = _finite_positive("lr_scale", factor)

    def set_lr_scale(self, factor: float) -> None:
        """Set the factor applied to every group's learning rate (> 0)."""
        self.lr_scale = factor

    def lr(self, name: str) -> float:
        """Effective learning rate of group ``name`` (base lr times lr_scale)."""
        for g, lr in zip(self._groups, self._lrs, strict=True):
            if g.name == name:
                return lr * self._lr_scale
        raise ParameterError(f"no group named {name!r}")

    def step(self, grads: Sequence[Sequence[ArrayLike]]) -> None:
        """Take one step, updating all parameters in place.

        Args:
            grads: one list per group (in group order) with one gradient per
                parameter, each of the parameter's shape, finite.
        """
        if isinstance(grads, np.ndarray) or len(grads) != len(self._groups):
            raise ParameterError(
                f"grads must be a list of {len(self._groups)} lists (one per group)"
            )
        checked: list[list[np.ndarray]] = []
        # Validate everything before touching any state, so a bad gradient
        # leaves parameters and moments untouched.
        for g, gg in zip(self._groups, grads, strict=True):
            if isinstance(gg, np.ndarray) or len(gg) != len(g.params):
                raise ParameterError(
                    f"grads for group {g.name!r} must be a list of {len(g.params)} arrays"
                )
            row = []
            for k, (p, gk) in enumerate(zip(g.params, gg, strict=True)):
                a = np.ascontiguousarray(gk, dtype=np.float64)
                if a.shape != p.shape:
                    raise ParameterError(
                        f"grad {k} of group {g.name!r} has shape {a.shape}, expected {p.shape}"
                    )
                if not np.isfinite(a).all():
                    raise ParameterError(f"grad {k} of group {g.name!r} is not finite")
                row.append(a)
            checked.append(row)
        self._step += 1
        bias_correction1 = 1.0 - self._beta1**self._step
        bias_correction2_sqrt = math.sqrt(1.0 - self._beta2**self._step)
        for gi, g in enumerate(self._groups):
            step_size = self._lrs[gi] * self._lr_scale / bias_correction1
            for k, p in enumerate(g.params):
                adam_update(
                    p.reshape(-1),
                    checked[gi][k].reshape(-1),
                    self._exp_avg[gi][k].reshape(-1),
                    self._exp_avg_sq[gi][k].reshape(-1),
                    step_size,
                    self._beta1,
                    self._beta2,
                    bias_correction2_sqrt,
                    self._eps,
                )

    def state_dict(self) -> StateDict:
        """Optimiser state as a flat dict of arrays and scalars (npz-friendly).

        Keys: ``step``, ``lr_scale``, ``beta1``, ``beta2``, ``eps``,
        ``{group}.lr``, ``{group}.{k}.exp_avg``, ``{group}.{k}.exp_avg_sq``.
        The parameters themselves are not included. Arrays are copies.
        """
        d: StateDict = {
            "step": self._step,
            "lr_scale": self._lr_scale,
            "beta1": self._beta1,
            "beta2": self._beta2,
            "eps": self._eps,
        }
        for gi, g in enumerate(self._groups):
            d[f"{g.name}.lr"] = self._lrs[gi]
            for k in range(len(g.params)):
                d[f"{g.name}.{k}.exp_avg"] = self._exp_avg[gi][k].copy()
                d[f"{g.name}.{k}.exp_avg_sq"] = self._exp_avg_sq[gi][k].copy()
        return d

    def load_state_dict(self, d: Mapping[str, object]) -> None:
        """Restore state saved by :meth:`state_dict` (e.g. read back from an npz).

        The optimiser must have groups of the same names and parameter shapes.
        Hyperparameters (betas, eps, group lrs, lr_scale) are restored too.
        """
        step = _scalar(d, "step")
        if step < 0 or step != int(step):
            raise ParameterError(f"state dict 'step' must be an integer >= 0, got {step!r}")
        beta1 = _scalar(d, "beta1")
        beta2 = _scalar(d, "beta2")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ParameterError(f"state dict betas must lie in [0, 1), got {(beta1, beta2)}")
        eps = _finite_positive("state dict 'eps'", _scalar(d, "eps"))
        lr_scale = _finite_positive("state dict 'lr_scale'", _scalar(d, "lr_scale"))
        lrs = [
            _finite_positive(f"state dict '{g.name}.lr'", _scalar(d, f"{g.name}.lr"))
            for g in self._groups
        ]
        moments: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        for g in self._groups:
            pair: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
            for k, p in enumerate(g.params):
                for which, out in (("exp_avg", pair[0]), ("exp_avg_sq", pair[1])):
                    key = f"{g.name}.{k}.{which}"
                    if key not in d:
                        raise ParameterError(f"state dict lacks {key!r}")
                    a = np.array(d[key], dtype=np.float64, copy=True, order="C")
                    if a.shape != p.shape:
                        raise ParameterError(
                            f"state dict {key!r} has shape {a.shape}, expected {p.shape}"
                        )
                    if not np.isfinite(a).all() or (which == "exp_avg_sq" and (a < 0).any()):
                        raise ParameterError(f"state dict {key!r} holds invalid values")
                    out.append(a)
            moments.append(pair)
        expected = {"step", "lr_scale", "beta1", "beta2", "eps"}
        for g in self._groups:
            expected.add(f"{g.name}.lr")
            for k in range(len(g.params)):
                expected.update((f"{g.name}.{k}.exp_avg", f"{g.name}.{k}.exp_avg_sq"))
        extra = sorted(set(d) - expected)
        if extra:
            raise ParameterError(f"state dict has unknown keys {extra} (different groups?)")
        # Everything validated: commit.
        self._step = int(step)
        self._beta1, self._beta2, self._eps = beta1, beta2, eps
        self._lr_scale = lr_scale
        self._lrs = lrs
        self._exp_avg = [m for m, _ in moments]
        self._exp_avg_sq = [v for _, v in moments]


# ----------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class StepSchedule:
    """Step decay: the learning rate is scaled by ``gamma ** (epoch // step_size)``.

    Attributes:
        gamma: decay factor per step (> 0).
        step_size: epochs between decays (>= 1).
    """

    gamma: float = 0.95
    step_size: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _finite_positive("gamma", self.gamma))
        s = self.step_size
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ParameterError(f"step_size must be an integer >= 1, got {s!r}")

    def factor(self, epoch: int) -> float:
        """Learning-rate factor for ``epoch`` (0-based, >= 0)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ParameterError(f"epoch must be an integer >= 0, got {epoch!r}")
        return float(self.gamma ** (int(epoch) // int(self.step_size)))


# ------------------------------------------------------------------ weight bumping


class WeightBumper:
    """Raise the input weights of silent neurons until they spike again.

    ``bump`` checks the layers in order; the first layer whose fraction of
    missing spikes (``inf`` entries of its (B, n) times) exceeds its tolerance
    gets ``value`` added to the input weights of every neuron that was silent in
    at least one sample. The value starts at ``start`` and doubles on each
    consecutive call that bumps the same layer again; it returns to ``start``
    when another layer is bumped or a call bumps nothing.

    Args:
        start: first bump value (> 0), in weight units.
        tolerances: maximal tolerated fraction of missing spikes, in [0, 1].
            With one entry per layer, layer l uses ``tolerances[l]``; with fewer,
            every hidden layer uses the first entry; the output layer always uses
            the last entry.
    """

    def __init__(self, start: float = 0.0005, tolerances: Sequence[float] = (0.3, 0.0)) -> None:
        self._start = _finite_positive("start", start)
        tol = list(tolerances) if isinstance(tolerances, (tuple, list)) else None
        if not tol:
            raise ParameterError(f"tolerances must be a non-empty sequence, got {tolerances!r}")
        for x in tol:
            if not _is_number(x) or not 0.0 <= x <= 1.0:
                raise ParameterError(f"tolerances must lie in [0, 1], got {tolerances!r}")
        self._tolerances = tuple(float(x) for x in tol)
        self._value = self._start
        self._last_layer: int | None = None

    @property
    def start(self) -> float:
        """First bump value."""
        return self._start

    @property
    def tolerances(self) -> tuple[float, ...]:
        """Tolerated missing-spike fractions as given."""
        return self._tolerances

    @property
    def value(self) -> float:
        """Value of the most recent bump (``start`` before any or after a reset)."""
        return self._value

    @property
    def last_layer(self) -> int | None:
        """Layer bumped by the most recent call, or None."""
        return self._last_layer

    def tolerance(self, layer: int, n_layers: int) -> float:
        """Tolerance used for ``layer`` of a network with ``n_layers`` layers."""
        if not 0 <= layer < n_layers:
            raise ParameterError(f"layer {layer} out of range for {n_layers} layers")
        tol = self._tolerances
        if layer == n_layers - 1:
            return tol[-1]
        return tol[layer] if layer < len(tol) - 1 else tol[0]

    def bump(self, weights: Sequence[np.ndarray], times: Sequence[ArrayLike]) -> int | None:
        """Check the layers and bump the first one that misses too many spikes.

        Args:
            weights: per layer l, the (n_in_l, n_out_l) float64 input weights,
                changed in place.
            times: per layer l, its (B, n_out_l) spike times, ``inf`` = no spike.

        Returns:
            Index of the bumped layer (skip the gradient step for this batch), or
            None when every layer is within tolerance.
        """
        if len(weights) != len(times) or not weights:
            raise ParameterError(
                f"need one times array per weight array, got {len(weights)} and {len(times)}"
            )
        n_layers = len(weights)
        checked_t = []
        for layer, (w, t) in enumerate(zip(weights, times, strict=True)):
            _check_param_array(f"weights[{layer}]", w)
            ta = np.asarray(t, dtype=np.float64)
            if w.ndim != 2 or ta.ndim != 2 or ta.shape[0] < 1 or ta.shape[1] != w.shape[1]:
                raise ParameterError(
                    f"layer {layer}: weights {w.shape} need times (B >= 1, {w.shape[-1]}), "
                    f"got {ta.shape}"
                )
            if np.isnan(ta).any():
                raise ParameterError(f"times of layer {layer} contain NaN")
            checked_t.append(ta)
        for layer, (w, ta) in enumerate(zip(weights, checked_t, strict=True)):
            missing = ~np.isfinite(ta)
            if missing.mean() > self.tolerance(layer, n_layers):
                self._value = self._value * 2.0 if self._last_layer == layer else self._start
                self._last_layer = layer
                add_to_columns(w, missing.any(axis=0), self._value)
                return layer
        self._value = self._start
        self._last_layer = None
        return None

    def state_dict(self) -> StateDict:
        """State for checkpoints: ``value`` and ``last_layer`` (-1 for None)."""
        return {
            "value": self._value,
            "last_layer": -1 if self._last_layer is None else self._last_layer,
        }

    def load_state_dict(self, d: Mapping[str, object]) -> None:
        """Restore state saved by :meth:`state_dict`."""
        value = _finite_positive("state dict 'value'", _scalar(d, "value"))
        last = _scalar(d, "last_layer")
        if last != int(last) or last < -1:
            raise ParameterError(f"state dict 'last_layer' must be an integer >= -1, got {last!r}")
        self._value = value
        self._last_layer = None if last == -1 else int(last)


# ------------------------------------------------------------- clipping and delays


def clip_weights(w: np.ndarray, max_abs: float) -> np.ndarray:
    """Clip weights to [-max_abs, max_abs] in place.

    Args:
        w: float64 weights of any shape, changed in place.
        max_abs: bound (> 0; ``inf`` allowed and does nothing).

    Returns:
        ``w`` itself.
    """
    if not isinstance(w, np.ndarray) or w.dtype != np.float64 or not w.flags.writeable:
        raise ParameterError("w must be a writable float64 numpy array")
    if not _is_number(max_abs) or math.isnan(max_abs) or max_abs <= 0:
        raise ParameterError(f"max_abs must be > 0, got {max_abs!r}")
    np.clip(w, -float(max_abs), float(max_abs), out=w)
    return w


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # exp of a non-positive number only: no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# Bounds on sigmoid(q) used when inverting, so boundary delays map to finite q.
_S_MIN = 1e-15
_S_MAX = 1.0 - 1e-15


@dataclass(frozen=True)
class DelayParametrisation:
    """How trainable raw parameters map to delays (units of tau_s).

    * ``"plain"``: the raw value is the delay; :meth:`project` clips it to >= 0
      after each optimiser step.
    * ``"bounded"``: ``d = shift + scale * sigmoid(q)``, so delays stay in
      (shift, shift + scale) without projection.

    Attributes:
        kind: ``"plain"`` or ``"bounded"``.
        shift: lower bound of bounded delays (>= 0), units of tau_s.
        scale: width of the bounded range (> 0), units of tau_s.
    """

    kind: Literal["plain", "bounded"] = "plain"
    shift: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("plain", "bounded"):
            raise ParameterError(f"kind must be 'plain' or 'bounded', got {self.kind!r}")
        if not _is_number(self.shift) or not (math.isfinite(self.shift) and self.shift >= 0):
            raise ParameterError(f"shift must be finite and >= 0, got {self.shift!r}")
        object.__setattr__(self, "shift", float(self.shift))
        object.__setattr__(self, "scale", _finite_positive("scale", self.scale))

    @staticmethod
    def _array(name: str, x: ArrayLike) -> NDArray[np.float64]:
        a = np.asarray(x, dtype=np.float64)
        if np.isnan(a).any() or np.isinf(a).any():
            raise ParameterError(f"{name} must be finite")
        return a

    def effective(self, raw: ArrayLike) -> NDArray[np.float64]:
        """Delays (any shape, float64, new array) from raw parameters of that shape."""
        q = self._array("raw", raw)
        if self.kind == "plain":
            return q.copy()
        return self.shift + self.scale * _sigmoid(q)

    def raw_gradient(self, raw: ArrayLike, grad_d: ArrayLike) -> NDArray[np.float64]:
        """Chain rule: dL/draw from dL/dd (both the shape of ``raw``)."""
        q = self._array("raw", raw)
        g = self._array("grad_d", grad_d)
        if g.shape != q.shape:
            raise ParameterError(f"grad_d has shape {g.shape}, expected {q.shape}")
        if self.kind == "plain":
            return g.copy()
        s = _sigmoid(q)
        return g * (self.scale * s * (1.0 - s))

    def raw_from_effective(self, d: ArrayLike) -> NDArray[np.float64]:
        """Raw parameters giving delays ``d`` (inverse of :meth:`effective`).

        For ``"bounded"`` the delays must lie in [shift, shift + scale]; the
        endpoints map to large but finite raw values (sigmoid clipped to
        [1e-15, 1 - 1e-15]). For ``"plain"`` the delays must be >= 0.
        """
        a = self._array("d", d)
        if self.kind == "plain":
            if (a < 0).any():
                raise ParameterError(f"plain delays must be >= 0, got min {a.min()!r}")
            return a.copy()
        lo, hi = self.shift, self.shift + self.scale
        if (a < lo).any() or (a > hi).any():
            raise ParameterError(
                f"bounded delays must lie in [{lo}, {hi}], got [{a.min()}, {a.max()}]"
            )
        s = np.clip((a - self.shift) / self.scale, _S_MIN, _S_MAX)
        return np.log(s) - np.log1p(-s)

    def project(self, raw: np.ndarray) -> None:
        """Make raw parameters valid after an optimiser step, in place.

        ``"plain"``: clip to >= 0; ``"bounded"``: nothing to do.
        """
        if not isinstance(raw, np.ndarray) or raw.dtype != np.float64 or not raw.flags.writeable:
            raise ParameterError("raw must be a writable float64 numpy array")
        if self.kind == "plain":
            np.maximum(raw, 0.0, out=raw)
