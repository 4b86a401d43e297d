"""Startup: a recipe that does not fit the driver is refused, with the fix."""

from __future__ import annotations

import pytest

from delgrad.drivers import driver_from_config
from delgrad.errors import ConfigError
from delgrad.runtime import Learner, resolve_config
from delgrad.runtime._fit import fit_problems
from delgrad.runtime.service._online import OnlineLearner


def test_software_recipe_on_the_bss2_emulator_is_refused_with_the_fix():
    bss2 = driver_from_config("emulator-bss2")
    problems = fit_problems(resolve_config("yinyang_H30_WA"), bss2.capabilities)
    assert len(problems) == 1
    assert "calibrated to tau_m = 1 tau_s and theta = 2.6" in problems[0]
    assert "yinyang_hw_WA" in problems[0] and "--input-repeat 5" in problems[0]
    with pytest.raises(ConfigError, match="the recipe does not fit the driver"):
        OnlineLearner(Learner(resolve_config("yinyang_H30_WA")), bss2, step_every=10)


def test_synaptic_delays_on_a_chip_without_them():
    bss2 = driver_from_config("emulator-bss2")
    problems = fit_problems(resolve_config("yinyang_H30_WS"), bss2.capabilities)
    assert any("uses synaptic delays" in p for p in problems)


@pytest.mark.parametrize(
    ("driver", "recipe"),
    [
        ("emulator-bss2", "yinyang_hw_WA"),
        ("emulator-bss2", "yinyang_hw_W"),
        ("emulator-ideal", "yinyang_H30_WS"),
        ("emulator-ideal", "digits_events_H100_W"),
    ],
)
def test_fitting_pairs_pass(driver, recipe):
    assert fit_problems(resolve_config(recipe), driver_from_config(driver).capabilities) == []
