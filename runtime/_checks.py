"""Small argument checks shared by the optimiser, stabilisers and delay parametrisation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from delgrad.errors import ParameterError

#: Optimiser and stabiliser state as saved in checkpoints.
StateDict = dict[str, "np.ndarray | float | int"]


def is_number(value: object) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_positive(name: str, value: object) -> float:
    """``value`` as a float; ParameterError unless finite and > 0."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_param_array(where: str, p: object) -> np.ndarray:
    """``p`` itself; ParameterError unless a writable C-contiguous float64 array."""
    # Parameters are updated in place through a flat view, which only exists for
    # writable C-contiguous float64 arrays.
    if not isinstance(p, np.ndarray):
        raise ParameterError(f"{where} must be a numpy array, got {type(p).__name__}")
    if p.dtype != np.float64:
        raise ParameterError(f"{where} must be float64, got {p.dtype}")
    if not p.flags.c_contiguous or not p.flags.writeable:
        raise ParameterError(f"{where} must be a writable C-contiguous array")
    return p


def state_scalar(d: Mapping[str, object], key: str) -> float:
    """The numeric scalar ``d[key]`` of a state dict; ParameterError if absent or not one."""
    if key not in d:
        raise ParameterError(f"state dict lacks {key!r}")
    value = np.asarray(d[key])
    if value.shape != () or value.dtype.kind not in "iuf":
        raise ParameterError(f"state dict entry {key!r} must be a numeric scalar, got {d[key]!r}")
    return float(value)
