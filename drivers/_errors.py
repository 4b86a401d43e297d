"""Errors of the driver layer.

::

    DelgradError
    └── DriverError (RuntimeError)                 a backend failed or was misused
        ├── CapabilityError (ValueError)           a parameter the backend refuses
        └── BackendUnavailableError (ImportError)  the vendor stack is not installed
"""

from __future__ import annotations

from delgrad.runtime import DelgradError


class DriverError(DelgradError, RuntimeError):
    """A backend failed, or a driver was used out of order (e.g. ``run`` before ``configure``)."""


class CapabilityError(DriverError, ValueError):
    """A network or input the backend refuses (by its capability's stated rule)."""


class BackendUnavailableError(DriverError, ImportError):
    """The software stack a driver needs is not installed or cannot reach a system."""
