"""Delay parametrisation: plain delays, or delays bounded by a sigmoid of a raw parameter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError
from delgrad.runtime._checks import finite_positive, is_number


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
        if not is_number(self.shift) or not (math.isfinite(self.shift) and self.shift >= 0):
            raise ParameterError(f"shift must be finite and >= 0, got {self.shift!r}")
        object.__setattr__(self, "shift", float(self.shift))
        object.__setattr__(self, "scale", finite_positive("scale", self.scale))

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
