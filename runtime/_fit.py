"""Do a recipe and a driver fit together? Checked before a service starts.

:func:`fit_problems` compares a training :class:`~delgrad.runtime.Config` with a
driver's :class:`~delgrad.runtime.Capabilities` and returns what does not fit, each
with its fix (an empty list: it fits). Silent before: an ``emulator-bss2`` device
with the software recipe ``yinyang_H30_WA`` (tau_m = 2 tau_s, theta 1) ran a chip
calibrated to tau_m = tau_s, theta 2.6 and sat at chance with no learning step.
"""

from __future__ import annotations

import math

from delgrad.runtime._config import Config
from delgrad.runtime._driver import Capabilities

__all__ = ["fit_problems"]


def fit_problems(config: Config, caps: Capabilities) -> list[str]:
    """What of ``config`` the backend of ``caps`` cannot run, one line each with the fix."""
    problems: list[str] = []
    backend = caps.backend
    net = config.network
    if net.delay not in caps.delay_kinds:
        problems.append(
            f"recipe {config.name} uses {net.delay} delays, {backend} has "
            f"{', '.join(caps.delay_kinds)}: use a recipe with one of those"
        )
    nominal = caps.nominal_neuron
    if nominal is not None:
        mine = config.neuron
        same = all(
            math.isclose(
                getattr(mine, k) / mine.tau_s, getattr(nominal, k) / nominal.tau_s, rel_tol=1e-6
            )
            for k in ("tau_m",)
        ) and math.isclose(mine.theta, nominal.theta, rel_tol=1e-6)
        if not same:
            problems.append(
                f"recipe {config.name} assumes a neuron with tau_m = {mine.tau_m / mine.tau_s:g} "
                f"tau_s and theta = {mine.theta:g}, {backend} is calibrated to tau_m = "
                f"{nominal.tau_m / nominal.tau_s:g} tau_s and theta = {nominal.theta:g}: use a "
                "recipe made for it (e.g. yinyang_hw_W or yinyang_hw_WA, fed with "
                "delgrad sensor --input-repeat 5) or the driver emulator-ideal"
            )
    n_neurons = sum(net.hidden) + net.n_outputs
    if caps.max_neurons is not None and n_neurons > caps.max_neurons:
        problems.append(
            f"recipe {config.name} has {n_neurons} neurons, {backend} hosts at most "
            f"{caps.max_neurons}: use fewer hidden neurons"
        )
    return problems
