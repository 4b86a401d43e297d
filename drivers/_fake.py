"""A driver that records every call, for tests and for users wiring up a runtime."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from delgrad.drivers._emulator import EmulatorDriver
from delgrad.runtime import Capabilities, Driver, Network, Observation, ParameterError


@dataclass
class RecordedCall:
    """One call made on a :class:`RecordingDriver`.

    Attributes:
        method: ``"configure"``, ``"run"`` or ``"close"``.
        network: for ``configure``, a copy of the network as given.
        t_in: for ``run``, a copy of the (B, n_inputs) input batch.
        thread: name of the thread that made the call.
    """

    method: str
    network: Network | None = None
    t_in: np.ndarray | None = None
    thread: str = ""


class RecordingDriver(Driver):
    """Records calls and delegates them to an inner driver (default: the ideal emulator).

    Args:
        inner: the driver that does the work; closed with this one.
        capabilities: capabilities to announce instead of the inner driver's (the
            contract checks in ``configure`` and ``run`` then use these).
    """

    def __init__(
        self, inner: Driver | None = None, capabilities: Capabilities | None = None
    ) -> None:
        super().__init__()
        if inner is None:
            inner = EmulatorDriver("ideal")
        if not isinstance(inner, Driver):
            raise ParameterError(f"inner must be a Driver, got {type(inner).__name__}")
        self.inner = inner
        self._own_caps = capabilities
        self.calls: list[RecordedCall] = []

    @property
    def capabilities(self) -> Capabilities:
        """The announced capabilities (the inner driver's unless overridden)."""
        return self._own_caps if self._own_caps is not None else self.inner.capabilities

    def methods(self) -> list[str]:
        """Names of the recorded calls, in order."""
        return [c.method for c in self.calls]

    def _record(self, call: RecordedCall) -> None:
        call.thread = threading.current_thread().name
        self.calls.append(call)

    def _configure(self, network: Network) -> None:
        self._record(RecordedCall("configure", network=network.copy()))
        self.inner.configure(network)

    def _run(self, t_in: np.ndarray) -> Observation:
        self._record(RecordedCall("run", t_in=t_in.copy()))
        return self.inner.run(t_in)

    def _close(self) -> None:
        self._record(RecordedCall("close"))
        self.inner.close()
