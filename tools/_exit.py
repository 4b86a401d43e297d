"""The exit codes of every ``delgrad`` command (one table, docs/getting-started.md).

====  =====================  ==========================================================
code  name                   when
====  =====================  ==========================================================
0     OK                     done; also a service, monitor or sensor stopped by Ctrl-C
                             or SIGTERM (that is how they are meant to end)
1     FAILED                 the job ran and failed: the service stopped on an error,
                             a device refused a command, messages were not delivered
2     USAGE                  bad arguments, configuration, input file or checkpoint
                             (nothing was started; the message says what to change)
3     UNREACHABLE            the broker cannot be reached, refused us, or its port is
                             taken (for the embedded broker); a study's Dask scheduler
                             cannot be reached or runs other versions
4     TIMEOUT                no answer in time (``delgrad cmd`` without a reply)
130   INTERRUPTED            a batch job (train, sweep, bench) stopped by Ctrl-C
====  =====================  ==========================================================

:func:`exit_code_for` maps the project's errors onto the table; the dispatcher in
:mod:`delgrad.tools._cli` uses it for any error a command lets through.
"""

from __future__ import annotations

from enum import IntEnum

from delgrad.errors import (
    ConfigError,
    DelgradError,
    NetworkFileError,
    ParameterError,
    TransportError,
)

__all__ = ["ExitCode", "exit_code_for"]


class ExitCode(IntEnum):
    """Process exit codes shared by every command (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    TIMEOUT = 4
    INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of an error that ends a command."""
    if isinstance(exc, TransportError):
        return ExitCode.UNREACHABLE
    if isinstance(exc, ConfigError | NetworkFileError | ParameterError):
        return ExitCode.USAGE
    if isinstance(exc, TimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, DelgradError):
        return ExitCode.FAILED
    return ExitCode.FAILED
