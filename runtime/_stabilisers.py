"""Training stabilisers: weight bumping of silent neurons (the fastAndDeep / DelGrad
recipe) and weight clipping."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from delgrad.errors import ParameterError
from delgrad.runtime._checks import (
    StateDict,
    check_param_array,
    finite_positive,
    is_number,
    state_scalar,
)
from delgrad.runtime._kernels._updates import add_to_columns


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
        self._start = finite_positive("start", start)
        tol = list(tolerances) if isinstance(tolerances, (tuple, list)) else None
        if not tol:
            raise ParameterError(f"tolerances must be a non-empty sequence, got {tolerances!r}")
        for x in tol:
            if not is_number(x) or not 0.0 <= x <= 1.0:
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
            check_param_array(f"weights[{layer}]", w)
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
                add_to_columns(w, np.asarray(missing.any(axis=0)), self._value)
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
        value = finite_positive("state dict 'value'", state_scalar(d, "value"))
        last = state_scalar(d, "last_layer")
        if last != int(last) or last < -1:
            raise ParameterError(f"state dict 'last_layer' must be an integer >= -1, got {last!r}")
        self._value = value
        self._last_layer = None if last == -1 else int(last)


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
    if not is_number(max_abs) or math.isnan(max_abs) or max_abs <= 0:
        raise ParameterError(f"max_abs must be > 0, got {max_abs!r}")
    np.clip(w, -float(max_abs), float(max_abs), out=w)
    return w
