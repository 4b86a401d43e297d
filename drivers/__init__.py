"""Drivers: trial-based backends that run a DelGrad network and observe its spike times.

* :class:`Driver` – the contract: ``configure(network)``, ``run(t_in) -> Observation``,
  ``capabilities``, ``close()``.
* :class:`EmulatorDriver` – ``"ideal"`` (the core's analytic model) or ``"bss2"``
  (an emulated BrainScaleS-2 chip, :class:`BSS2Params`; optionally drifting,
  :class:`~delgrad.runtime.DriftSpec`, seen through :class:`DriftState`).
* :class:`BrainScaleS2Driver` – a real chip through ``pynn_brainscales`` (imported
  lazily; importing this package never needs it).
* :class:`RecordingDriver` – records calls and delegates (tests, wiring).
* :func:`calibrate_bss2_chip` – the DelGrad calibration of a BrainScaleS-2 chip
  (``delgrad bss2 calibrate``), with the stack's modules in a :class:`BSS2Stack`.
"""

from delgrad.drivers._bss2 import BrainScaleS2Driver, import_pynn
from delgrad.drivers._bss2_calibrate import BSS2Stack, calibrate_bss2_chip
from delgrad.drivers._bss2_io import (
    ChipConfig,
    LayerConfig,
    first_spikes,
    pack_trials,
    translate_network,
)
from delgrad.drivers._chip_params import BSS2Params
from delgrad.drivers._drift import DriftState
from delgrad.drivers._emulator import EmulatorDriver, EmulatorMode
from delgrad.drivers._factory import driver_from_config
from delgrad.drivers._fake import RecordedCall, RecordingDriver
from delgrad.errors import BackendUnavailableError, CapabilityError, DriverError
from delgrad.runtime import (
    DRIVER_NAMES,
    RANGE_RULES,
    Capabilities,
    Driver,
    Observation,
    RangeRule,
)

__all__ = [
    "DRIVER_NAMES",
    "RANGE_RULES",
    "BSS2Params",
    "BSS2Stack",
    "BackendUnavailableError",
    "BrainScaleS2Driver",
    "Capabilities",
    "CapabilityError",
    "ChipConfig",
    "DriftState",
    "Driver",
    "DriverError",
    "EmulatorDriver",
    "EmulatorMode",
    "LayerConfig",
    "Observation",
    "RangeRule",
    "RecordedCall",
    "RecordingDriver",
    "calibrate_bss2_chip",
    "driver_from_config",
    "first_spikes",
    "import_pynn",
    "pack_trials",
    "translate_network",
]
