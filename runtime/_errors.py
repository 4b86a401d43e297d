"""The project's exception tree.

Every error the project raises on purpose derives from :class:`DelgradError`.
Where the meaning matches a builtin, the subclass inherits it too, so callers
may catch either::

    DelgradError
    ├── ParameterError (ValueError)      bad shape, dtype or value given to an API
    ├── ConfigError (ValueError)         unknown or invalid configuration field
    ├── NetworkFileError (ValueError)    a network or checkpoint file that cannot be read
    ├── ProtocolError (ValueError)       defined in delgrad.protocols: bad bytes on the wire
    ├── TransportError (ConnectionError) defined in delgrad.protocols: the bus failed
    └── DriverError (RuntimeError)       defined in delgrad.drivers: a backend failed
"""

from __future__ import annotations


class DelgradError(Exception):
    """Root of every error raised on purpose by delgrad."""


class ParameterError(DelgradError, ValueError):
    """An argument has the wrong shape, dtype or value."""


class ConfigError(DelgradError, ValueError):
    """A configuration field is unknown, missing or invalid."""


class NetworkFileError(DelgradError, ValueError):
    """A network or checkpoint file is missing, corrupt or of an unknown version."""
