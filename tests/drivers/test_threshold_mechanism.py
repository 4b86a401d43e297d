"""Why weights-only networks trained with the authors' rule are fragile (issue 13).

Independent of our own training: on the authors' hardware-aware networks, raise
every threshold by one fixed-pattern standard deviation (0.08) on the emulated
chip without trial noise or delay jitter (fixed pattern and quantisation kept).
The weights-only network's label neurons fall silent on many test samples, the
delay network's hardly: its hidden-to-label arrivals are spread 2-4x wider, so
the label crossings it relies on are not the late, near-tangent ones a threshold
offset removes. Measured once outside the project: 10.4 % and 1.6 % (chip 0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from delgrad.drivers import BSS2Params, EmulatorDriver
from delgrad.runtime import encode_yinyang, yinyang_split

from .test_reference import load_hardware_network

pytestmark = pytest.mark.reference

RAISE = 0.08  # one fixed-pattern standard deviation (BSS2Params.threshold_fp_std)


def silent_label_fraction(net, chip_seed: int, raise_by: float) -> float:
    """Fraction of test samples whose label neuron does not spike."""
    base = BSS2Params(threshold_trial_std=0.0, delay_jitter_std=0.0)
    params = replace(base, threshold=base.threshold + raise_by)
    features, labels = yinyang_split("test")
    t_in = np.repeat(encode_yinyang(features), 5, axis=1)
    with EmulatorDriver("bss2", params, chip_seed=chip_seed) as drv:
        drv.configure(net)
        out = drv.run(t_in).output
    return float(np.mean(np.isinf(out[np.arange(len(labels)), labels])))


@pytest.fixture(scope="module")
def fractions(reference):
    result = {}
    for stem in ("hwAware_W", "hwAware_WA"):
        net = load_hardware_network(reference / f"yin_yang_{stem}.npz")
        result[stem] = {
            (seed, r): silent_label_fraction(net, seed, r) for seed in (0, 1, 2) for r in (0, RAISE)
        }
    return result


def test_a_threshold_offset_silences_the_weights_only_networks_labels(fractions):
    w, wa = fractions["hwAware_W"], fractions["hwAware_WA"]
    # chip 0, the measurement quoted in issue 13 (10.4 % and 1.6 %)
    assert w[(0, RAISE)] >= 0.05, w
    assert wa[(0, RAISE)] <= 0.02, wa
    # chips 0-2: medians 13.7 % and 1.6 %; every chip keeps the contrast
    assert np.median([w[(s, RAISE)] for s in (0, 1, 2)]) >= 0.05
    assert np.median([wa[(s, RAISE)] for s in (0, 1, 2)]) <= 0.02
    for s in (0, 1, 2):
        assert w[(s, RAISE)] > 3 * wa[(s, RAISE)], (s, w, wa)
        assert w[(s, RAISE)] > w[(s, 0)], (s, w)  # the offset is the cause
