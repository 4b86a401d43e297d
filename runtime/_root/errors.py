"""The project's one exception tree.

Every error the project raises on purpose derives from :class:`DelgradError`.
Where the meaning matches a builtin, the subclass inherits it too, so callers
may catch either::

    DelgradError
    ├── ParameterError (ValueError)          bad shape, dtype or value given to an API
    ├── ConfigError (ValueError)             unknown or invalid configuration field
    ├── NetworkFileError (ValueError)        a network or checkpoint file that cannot be read
    ├── ProtocolError (ValueError)           bad bytes on the wire; carries ``reason``
    │   ├── VersionError                     higher major version than this receiver speaks
    │   ├── SchemaError                      unknown schema, missing or ill-typed field
    │   ├── ArrayError                       bad dtype, shape or data length of an array
    │   ├── SizeLimitError                   a size limit was exceeded
    │   └── ChecksumError                    parameter checksum does not match
    ├── TransportError (ConnectionError)     the bus or broker failed
    ├── StorageError (OSError)               a file could not be written (full, read-only, gone)
    └── DriverError (RuntimeError)           a backend failed or was misused
        ├── CapabilityError (ValueError)     a parameter the backend refuses
        └── BackendUnavailableError (ImportError)  the vendor stack is not installed

Each package re-exports the errors its callers meet (``delgrad.runtime``,
``delgrad.protocols``, ``delgrad.drivers``); this module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "ArrayError",
    "BackendUnavailableError",
    "CapabilityError",
    "ChecksumError",
    "ConfigError",
    "DelgradError",
    "DriverError",
    "NetworkFileError",
    "ParameterError",
    "ProtocolError",
    "SchemaError",
    "SizeLimitError",
    "StorageError",
    "TransportError",
    "VersionError",
]


class DelgradError(Exception):
    """Root of every error raised on purpose by delgrad."""


class ParameterError(DelgradError, ValueError):
    """An argument has the wrong shape, dtype or value."""


class StorageError(DelgradError, OSError):
    """A file could not be written: the filesystem is full, read-only, gone or failing."""


class ConfigError(DelgradError, ValueError):
    """A configuration field is unknown, missing or invalid."""


class NetworkFileError(DelgradError, ValueError):
    """A network or checkpoint file is missing, corrupt or of an unknown version."""


class ProtocolError(DelgradError, ValueError):
    """Bytes or a message that do not follow the protocol.

    Attributes:
        reason: Short human-readable cause (also the exception text).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VersionError(ProtocolError):
    """The message has a higher schema major version than this receiver accepts."""


class SchemaError(ProtocolError):
    """Unknown schema name, or a missing or ill-typed field."""


class ArrayError(ProtocolError):
    """An encoded array has a forbidden dtype, a bad shape or a wrong data length."""


class SizeLimitError(ProtocolError):
    """A message, string, container or array exceeds a configured limit."""


class ChecksumError(ProtocolError):
    """A parameter checksum does not match the parameters carried or applied."""


class TransportError(DelgradError, ConnectionError):
    """The transport could not connect, publish or subscribe, or the broker failed."""


class DriverError(DelgradError, RuntimeError):
    """A backend failed, or a driver was used out of order (e.g. ``run`` before ``configure``)."""


class CapabilityError(DriverError, ValueError):
    """A network or input the backend refuses (by its capability's stated rule)."""


class BackendUnavailableError(DriverError, ImportError):
    """The software stack a driver needs is not installed or cannot reach a system."""
