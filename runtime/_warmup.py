"""Compile (or load from cache) every kernel once, so the first real call is fast."""

from __future__ import annotations

import numpy as np

from delgrad.runtime._kernels._backward import layer_backward
from delgrad.runtime._kernels._forward import layer_forward
from delgrad.runtime._kernels._modes import MODE_DOUBLE, MODE_EQUAL, MODE_GENERAL


def warm_up() -> None:
    """Run each kernel on a tiny batch for every solver mode."""
    t = np.array([[0.1, 0.5]])
    w = np.full((2, 1), 3.0)
    z2, z1 = np.zeros((2, 1)), np.zeros(2)
    zo = np.zeros(1)
    for mode, tau_m in ((MODE_EQUAL, 1.0), (MODE_DOUBLE, 2.0), (MODE_GENERAL, 1.5)):
        out = np.empty((1, 1))
        layer_forward(t, w, z2, z1, zo, 1.0, tau_m, 1.0, 0.0, mode, out)
        layer_backward(
            t,
            w,
            z2,
            z1,
            zo,
            out,
            np.ones((1, 1)),
            1.0,
            tau_m,
            mode,
            0.0,
            np.zeros((2, 1)),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros(1),
            np.zeros((1, 2)),
        )
