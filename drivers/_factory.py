"""Create a driver by name, e.g. from a configuration file."""

from __future__ import annotations

from collections.abc import Callable

from delgrad.drivers._contract import Driver
from delgrad.runtime import ConfigError, ParameterError

#: Names accepted by :func:`driver_from_config`.
DRIVER_NAMES: tuple[str, ...] = ("brainscales2", "emulator-bss2", "emulator-ideal", "recording")


def _emulator(mode: str) -> Callable[..., Driver]:
    def make(**options: object) -> Driver:
        from delgrad.drivers._emulator import EmulatorDriver
        from delgrad.drivers._params import BSS2Params

        params = options.pop("params", None)
        if isinstance(params, dict):
            params = BSS2Params(**params)
        return EmulatorDriver(mode, params=params, **options)  # type: ignore[arg-type]

    return make


def _recording(**options: object) -> Driver:
    from delgrad.drivers._fake import RecordingDriver

    inner = options.pop("inner", None)
    if isinstance(inner, str):
        inner = driver_from_config(inner)
    return RecordingDriver(inner=inner, **options)  # type: ignore[arg-type]


def _brainscales2(**options: object) -> Driver:
    from delgrad.drivers._bss2 import BrainScaleS2Driver
    from delgrad.drivers._params import BSS2Params

    params = options.pop("params", None)
    if isinstance(params, dict):
        params = BSS2Params(**params)
    return BrainScaleS2Driver(params=params, **options)  # type: ignore[arg-type]


_MAKERS: dict[str, Callable[..., Driver]] = {
    "brainscales2": _brainscales2,
    "emulator-bss2": _emulator("bss2"),
    "emulator-ideal": _emulator("ideal"),
    "recording": _recording,
}


def driver_from_config(name: str, **options: object) -> Driver:
    """A new driver by name with keyword options.

    Names: ``"emulator-ideal"``, ``"emulator-bss2"`` (options ``params`` as
    :class:`BSS2Params` or dict, ``chip_seed``), ``"recording"`` (``inner``: a
    driver or a name), ``"brainscales2"`` (see :class:`BrainScaleS2Driver`).

    Raises:
        ConfigError: an unknown name or option, or an invalid option value.
        BackendUnavailableError: ``"brainscales2"`` without the BrainScaleS-2 stack.
    """
    maker = _MAKERS.get(name)
    if maker is None:
        raise ConfigError(f"unknown driver {name!r}; known: {', '.join(DRIVER_NAMES)}")
    try:
        return maker(**options)
    except TypeError as exc:
        raise ConfigError(f"driver {name!r}: {exc}") from exc
    except ParameterError as exc:
        raise ConfigError(f"driver {name!r}: {exc}") from exc
