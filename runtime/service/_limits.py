"""Documented bounds of a device's learning state: the largest parameter magnitude and
the range of the learning-rate factor, and the check of state arrays against them.

A learning step whose result breaks a bound is rolled back; a checkpoint is only
written from, and only restored to, state within them.
"""

from __future__ import annotations

import numpy as np

#: Largest magnitude a weight or delay may take (units of the recipe; far beyond any
#: trained network): a step that leaves a parameter beyond it is rejected.
MAX_ABS_PARAMETER = 1e6
#: Range of the factor on the recipe's learning rates (``lr`` command, checkpoints).
LR_SCALE_MIN = 1e-6
LR_SCALE_MAX = 100.0


def state_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why learner state arrays (:meth:`OnlineLearner.state_arrays`) are not valid
    parameters to run or keep, or None: every numeric array finite, and weights and
    delays (``net.*``) at most :data:`MAX_ABS_PARAMETER` in magnitude, the learning
    rate factor (``adam.lr_scale``) within :data:`LR_SCALE_MIN` .. :data:`LR_SCALE_MAX`."""
    if "adam.lr_scale" in arrays:
        scale = float(np.asarray(arrays["adam.lr_scale"]))
        if not LR_SCALE_MIN <= scale <= LR_SCALE_MAX:
            return f"adam.lr_scale is {scale:.3g} (range {LR_SCALE_MIN:g} .. {LR_SCALE_MAX:g})"
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu" or not arr.size:
            continue
        if not np.all(np.isfinite(arr)):
            return f"{key} is not finite"
        if key.startswith("net.") and arr.dtype.kind == "f":
            biggest = float(np.abs(arr).max())
            if biggest > MAX_ABS_PARAMETER:
                return f"{key} reaches {biggest:.3g} (bound {MAX_ABS_PARAMETER:g})"
    return None
