"""The DelGrad authors' hardware-aware networks on the emulated chip.

Input encoding: the authors' configs (experiment_configs/yin_yang_hwAware.yaml)
leave the data set's defaults, early = 0.15, late = 2.0, so t = 0.15 + 1.85 v,
and multiply each of the 4 features 5 times (channel k = feature k // 5).
Recorded test accuracies: 84.9 % (weights only) and 92.8 % (with axonal delays),
measured by the authors under their own noise draws.
"""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.drivers import EmulatorDriver
from delgrad.runtime import Layer, Network, NeuronParams, encode_yinyang, yinyang_split

pytestmark = pytest.mark.reference

# stem: (recorded accuracy, lower bound asserted for the median over 3 chips)
CASES = {"hwAware_W": (0.849, 0.76), "hwAware_WA": (0.928, 0.84)}


def load_hardware_network(path):
    data = np.load(path, allow_pickle=False)
    names = sorted(
        (k for k in data.files if k.endswith("_final")), key=lambda k: int(k[1 : k.index("_")])
    )
    w = [data[k] for k in names if "NeuronLayer" in k]
    d = [data[k][:, 0] for k in names if "DelayLayer" in k]  # axonal, stored (pre, 1)
    kind = "axonal" if d else "none"
    layers = [Layer(x.shape[0], x.shape[1], kind) for x in w]
    return Network(layers, NeuronParams(tau_m=1.0, theta=2.6), w, d or None)


def emulated_accuracies(net, seeds=(0, 1, 2)):
    features, labels = yinyang_split("test")
    t_in = np.repeat(encode_yinyang(features), 5, axis=1)  # channel k = feature k // 5
    accs = []
    for seed in seeds:
        with EmulatorDriver("bss2", chip_seed=seed) as drv:
            drv.configure(net)
            obs = drv.run(t_in)
        out = obs.output
        assert obs.clipped_weights == 0 and obs.clipped_delays == 0
        predicted = np.where(np.all(np.isinf(out), axis=1), -1, np.argmin(out, axis=1))
        accs.append(float(np.mean(predicted == labels)))
    return accs


@pytest.mark.parametrize("stem", sorted(CASES))
def test_hardware_aware_networks_keep_their_accuracy_on_the_emulated_chip(reference, stem):
    recorded, bound = CASES[stem]
    net = load_hardware_network(reference / f"yin_yang_{stem}.npz")
    accs = emulated_accuracies(net)
    median = float(np.median(accs))
    # The emulator is seeded, so these numbers are fixed: about 81 % and 88 %, a few
    # points under the authors' recorded figures. The bound (recorded minus about 9
    # points, far above chance 1/3) guards against an emulator that no longer computes
    # the trained function, not against chip-to-chip spread.
    assert median >= bound, (stem, accs, recorded)
    assert median <= recorded + 0.05
