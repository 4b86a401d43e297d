"""Create a driver by name, e.g. from a configuration file.

The names are the runtime's one list (``delgrad.runtime.DRIVER_NAMES``); ``"host"``
there means the exact model on the host, which needs no driver.
"""

from __future__ import annotations

from collections.abc import Callable

from delgrad.drivers._bss2 import BrainScaleS2Driver
from delgrad.drivers._chip_params import BSS2Params
from delgrad.drivers._emulator import EmulatorDriver
from delgrad.drivers._fake import RecordingDriver
from delgrad.errors import ConfigError, ParameterError
from delgrad.runtime import DRIVER_NAMES, DriftSpec, Driver


def _chip_params(options: dict[str, object]) -> None:
    params = options.get("params")
    if isinstance(params, dict):
        options["params"] = BSS2Params(**params)
    drift = options.get("drift")
    if isinstance(drift, dict):  # a [driver.drift] table
        options["drift"] = DriftSpec(**drift)


def _emulator(mode: str) -> Callable[..., Driver]:
    def make(**options: object) -> Driver:
        _chip_params(options)
        return EmulatorDriver(mode, **options)  # type: ignore[arg-type]

    return make


def _recording(**options: object) -> Driver:
    inner = options.pop("inner", None)
    if isinstance(inner, str):
        inner = driver_from_config(inner)
    return RecordingDriver(inner=inner, **options)  # type: ignore[arg-type]


def _brainscales2(**options: object) -> Driver:
    _chip_params(options)
    return BrainScaleS2Driver(**options)  # type: ignore[arg-type]


_MAKERS: dict[str, Callable[..., Driver]] = {
    "brainscales2": _brainscales2,
    "emulator-bss2": _emulator("bss2"),
    "emulator-ideal": _emulator("ideal"),
    "recording": _recording,
}
# The names driver_from_config builds: every runtime driver name but "host".
_BUILDABLE: tuple[str, ...] = tuple(n for n in DRIVER_NAMES if n in _MAKERS)


def driver_from_config(name: str, **options: object) -> Driver:
    """A new driver by name with keyword options.

    Names: ``"emulator-ideal"``, ``"emulator-bss2"`` (options ``params`` as
    :class:`BSS2Params` or dict, ``chip_seed``, ``drift`` as
    :class:`~delgrad.runtime.DriftSpec` or dict), ``"recording"`` (``inner``: a
    driver or a name), ``"brainscales2"`` (see :class:`BrainScaleS2Driver`).

    Raises:
        ConfigError: an unknown name or option, or an invalid option value.
        BackendUnavailableError: ``"brainscales2"`` without the BrainScaleS-2 stack.
    """
    maker = _MAKERS.get(name)
    if maker is None:
        raise ConfigError(f"unknown driver {name!r}; known: {', '.join(_BUILDABLE)}")
    try:
        return maker(**options)
    except TypeError as exc:
        raise ConfigError(f"driver {name!r}: {exc}") from exc
    except ParameterError as exc:
        raise ConfigError(f"driver {name!r}: {exc}") from exc
