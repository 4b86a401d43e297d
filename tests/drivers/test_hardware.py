"""On a real BrainScaleS-2 system only (marker ``hardware``; skipped without the stack).

Set DELGRAD_BSS2_CALIBRATION to a calibration file targeting tau_m = tau_s = 6 us.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from delgrad.drivers import BrainScaleS2Driver
from delgrad.runtime import Layer, Network, NeuronParams

pytestmark = pytest.mark.hardware


@pytest.fixture
def chip_driver():
    pytest.importorskip("pynn_brainscales.brainscales2", reason="BrainScaleS-2 stack not installed")
    calibration = os.environ.get("DELGRAD_BSS2_CALIBRATION")
    if not calibration:
        pytest.skip("set DELGRAD_BSS2_CALIBRATION to a calibration file")
    with BrainScaleS2Driver(calibration=calibration) as drv:
        yield drv


def test_delay_elements_realise_their_delays(chip_driver):
    net = Network([Layer(4, 1, "axonal")], NeuronParams(tau_m=1.0, theta=2.6),
                  [np.zeros((4, 1))], [np.array([1.5, 2.0, 3.0, 5.0])])  # fmt: skip
    chip_driver.configure(net)
    t_in = np.tile([0.5, 1.0, 1.5, 2.0], (20, 1))
    obs = chip_driver.run(t_in)
    measured = np.median(obs.arrivals[0] - t_in, axis=0)
    np.testing.assert_allclose(measured, chip_driver.applied.d[0], atol=0.2)
