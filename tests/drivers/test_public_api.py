"""The public surface of delgrad.drivers, its error tree and the factory."""

from __future__ import annotations

import pytest

import delgrad.drivers as drv
from delgrad.runtime import ConfigError, DelgradError

EXPECTED = {
    "BSS2Params",
    "BackendUnavailableError",
    "BrainScaleS2Driver",
    "Capabilities",
    "CapabilityError",
    "ChipConfig",
    "DRIVER_NAMES",
    "DriftState",
    "Driver",
    "DriverError",
    "EmulatorDriver",
    "EmulatorMode",
    "LayerConfig",
    "Observation",
    "RANGE_RULES",
    "RangeRule",
    "RecordedCall",
    "RecordingDriver",
    "BSS2Stack",
    "calibrate_bss2_chip",
    "driver_from_config",
    "first_spikes",
    "import_pynn",
    "pack_trials",
    "translate_network",
}


def test_all_is_complete_and_unique():
    assert len(drv.__all__) == len(set(drv.__all__))  # order: ruff RUF022
    assert set(drv.__all__) == EXPECTED
    for name in drv.__all__:
        assert hasattr(drv, name), name


def test_errors_form_one_tree():
    assert issubclass(drv.DriverError, DelgradError) and issubclass(drv.DriverError, RuntimeError)
    assert issubclass(drv.CapabilityError, drv.DriverError)
    assert issubclass(drv.CapabilityError, ValueError)
    assert issubclass(drv.BackendUnavailableError, drv.DriverError)
    assert issubclass(drv.BackendUnavailableError, ImportError)


def test_factory_makes_every_named_driver():
    from ._helpers import FakePyNN, fake_calibration_file

    made = {
        "emulator-ideal": drv.driver_from_config("emulator-ideal"),
        "emulator-bss2": drv.driver_from_config(
            "emulator-bss2", chip_seed=4, params={"threshold_trial_std": 0.0}
        ),
        "recording": drv.driver_from_config("recording", inner="emulator-bss2"),
        "brainscales2": drv.driver_from_config(
            "brainscales2", pynn_module=FakePyNN(), calibration=fake_calibration_file()
        ),
    }
    assert set(made) == set(drv.DRIVER_NAMES) - {"host"}  # "host" needs no driver
    assert made["emulator-ideal"].mode == "ideal"
    assert made["emulator-bss2"].chip_seed == 4
    assert made["emulator-bss2"].params.threshold_trial_std == 0.0
    assert made["recording"].capabilities.backend == "emulator-bss2"
    assert isinstance(made["brainscales2"], drv.BrainScaleS2Driver)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("chip", {}),
        ("emulator-bss2", {"colour": "red"}),
        ("emulator-bss2", {"chip_seed": -3}),
        ("emulator-bss2", {"params": {"tau_s_us": -1.0}}),
    ],
)
def test_factory_rejects_unknown_names_and_options(name, options):
    with pytest.raises(ConfigError):
        drv.driver_from_config(name, **options)


def test_factory_builds_every_runtime_driver_name_but_host():
    from delgrad.drivers._factory import _MAKERS

    assert set(_MAKERS) == set(drv.DRIVER_NAMES) - {"host"}
