"""On a real BrainScaleS-2 system only (marker ``hardware``; skipped without the stack):
the delay elements against the authors' map, the first check of docs/hardware.md.

Set DELGRAD_BSS2_CALIBRATION to a calibration file with the delay elements calibrated.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from delgrad.drivers import BrainScaleS2Driver

pytestmark = pytest.mark.hardware

CYCLES = (50, 100, 150, 200, 250)


@pytest.fixture
def chip_driver():
    pytest.importorskip("pynn_brainscales.brainscales2", reason="BrainScaleS-2 stack not installed")
    if not os.environ.get("DELGRAD_BSS2_CALIBRATION"):
        pytest.skip("set DELGRAD_BSS2_CALIBRATION to a calibration file")
    with BrainScaleS2Driver() as drv:
        yield drv


def test_every_delay_element_follows_the_authors_map(chip_driver):
    measured = chip_driver.measure_delays(CYCLES)  # (5, 128) us
    nominal = np.asarray(CYCLES) / 8.0 + 2.0
    fired = np.isfinite(measured).all(axis=0)
    assert fired.mean() >= 0.95, f"{np.count_nonzero(~fired)} of 128 pairs did not always fire"
    # median over pairs within 1.2 us (0.2 tau_s) of tref / 8 + 2 at every setting
    np.testing.assert_allclose(np.nanmedian(measured[:, fired], axis=1), nominal, atol=1.2)
