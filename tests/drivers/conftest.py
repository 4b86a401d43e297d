"""Driver fixtures: every driver the contract suite runs against."""

from __future__ import annotations

import pytest

from delgrad.drivers import BrainScaleS2Driver, EmulatorDriver, RecordingDriver

from ._helpers import FakePyNN, fake_calibration_file

DRIVER_FACTORIES = {
    "emulator-ideal": lambda: EmulatorDriver("ideal"),
    "emulator-bss2": lambda: EmulatorDriver("bss2", chip_seed=3),
    "recording": lambda: RecordingDriver(),
    "recording-bss2": lambda: RecordingDriver(EmulatorDriver("bss2")),
    "brainscales2-fake-pynn": lambda: BrainScaleS2Driver(
        pynn_module=FakePyNN(), calibration=fake_calibration_file()
    ),
}


@pytest.fixture(params=sorted(DRIVER_FACTORIES))
def driver(request):
    """A fresh driver of each kind; closed after the test."""
    drv = DRIVER_FACTORIES[request.param]()
    yield drv
    drv.close()
