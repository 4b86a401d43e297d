"""Errors of the wire protocol and the message bus.

::

    DelgradError
    ├── ProtocolError (ValueError)       bad bytes on the wire; carries ``reason``
    │   ├── VersionError                 higher major version than this receiver speaks
    │   ├── SchemaError                  unknown schema, missing or ill-typed field
    │   ├── ArrayError                   bad dtype, shape or data length of an array
    │   ├── SizeLimitError               a size limit was exceeded
    │   └── ChecksumError                parameter checksum does not match
    └── TransportError (ConnectionError) the bus or broker failed
"""

from __future__ import annotations

from delgrad.runtime._errors import DelgradError


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
