"""warm_up compiles every kernel a service calls and leaves the driver as it was."""

from __future__ import annotations

import json
import subprocess
import sys

ENTRY_KERNELS = {
    "delgrad.runtime._kernels._forward": ["layer_forward"],
    "delgrad.runtime._kernels._backward": ["layer_backward"],
    "delgrad.runtime._kernels._shared": ["layer_forward_shared", "layer_backward_shared"],
    "delgrad.runtime._kernels._nominal": ["nominal_factors"],
    "delgrad.runtime._kernels._updates": ["adam_update", "add_to_columns"],
    "delgrad.drivers._kernels": ["membrane_layer"],
}

CODE = """
import importlib, json, sys
from delgrad.drivers import driver_from_config
from delgrad.runtime import warm_up
kernels = json.loads(sys.argv[1])
before = {m: {n: len(getattr(importlib.import_module(m), n).signatures) for n in ns}
          for m, ns in kernels.items()}
driver = driver_from_config("emulator-bss2")
warm_up(driver)
after = {m: {n: len(getattr(importlib.import_module(m), n).signatures) for n in ns}
         for m, ns in kernels.items()}
print(json.dumps({"before": before, "after": after, "runs": driver.runs,
                  "configured": driver.network is not None}))
"""


def test_warm_up_compiles_every_entry_kernel_and_leaves_the_driver_alone():
    out = subprocess.run(
        [sys.executable, "-c", CODE, json.dumps(ENTRY_KERNELS)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    # a fresh interpreter has compiled nothing; warm_up compiled each entry kernel
    assert all(n == 0 for ns in result["before"].values() for n in ns.values())
    missing = [
        f"{m}.{n}" for m, ns in result["after"].items() for n, count in ns.items() if not count
    ]
    assert not missing, f"not warmed up: {missing}"
    assert result["runs"] == 0 and not result["configured"]
