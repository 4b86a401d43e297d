"""Chip in the loop: the one adapter between a learner and a driver.

Offline training (as a :class:`~delgrad.runtime.Trainer` observer) and the online
service use the same object: it runs batches on the driver and reloads the
learner's parameters into the driver only when their version changed, so a
driver always runs the current parameters, and never changes them mid-batch.
"""

from __future__ import annotations

import numpy as np

from delgrad.runtime._driver import Driver, Observation
from delgrad.runtime._network import Network


class DriverObserver:
    """Runs batches on ``driver`` with the parameters of version ``version``.

    Args:
        driver: the backend (see :class:`~delgrad.runtime.Driver`); not closed here.
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._loaded: tuple[int, int] | None = None  # (id of the network, version)

    def observe(self, net: Network, t_in: np.ndarray, version: int) -> Observation:
        """Configure the driver if ``(net, version)`` changed, then run one batch.

        Args:
            net: the parameters to run (the learner's forward copy).
            t_in: (B, n_inputs) input spike times, units of tau_s.
            version: the learner's parameter version.
        """
        self.load(net, version)
        return self.driver.run(t_in)

    def load(self, net: Network, version: int) -> None:
        """Configure the driver with ``net`` unless it holds ``(net, version)`` already."""
        key = (id(net), int(version))
        if key != self._loaded:
            self.driver.configure(net)
            self._loaded = key

    def __call__(
        self, net: Network, t_in: np.ndarray, version: int
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """The :class:`~delgrad.runtime.Observer` form: (times per layer, arrivals per layer)."""
        observation = self.observe(net, t_in, version)
        return observation.times, observation.arrivals
