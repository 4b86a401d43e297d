"""Trial rows: an observed trial packed into one flat float64 row.

A row holds the trial's input times, the spike times of every layer, the observed
arrivals of physical (axonal) delays and, in its last column, the parameter
version it was observed with; so a trial waiting for its label costs one small
array, whatever batch it came in. All times in units of tau_s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from delgrad.runtime import Layer, Observation


class TrialRows:
    """The row layout of one network's trials.

    Args:
        layers: the network's layers (input first).
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.n_inputs = layers[0].n_in
        self.sizes = [ly.n_out for ly in layers]
        self.arrival_sizes = [ly.n_pre if ly.delay == "axonal" else 0 for ly in layers]
        #: columns of a row (the last one: the parameter version)
        self.width = self.n_inputs + sum(self.sizes) + sum(self.arrival_sizes) + 1

    def pack(self, t_in: np.ndarray, observation: Observation, version: int) -> np.ndarray:
        """(B, width) rows: inputs (B, n_inputs), every layer's times, observed
        arrivals, and the parameter ``version`` they were observed with."""
        parts = [t_in, *observation.times]
        for size, arr in zip(self.arrival_sizes, observation.arrivals, strict=True):
            if size:
                parts.append(arr if arr is not None else np.full((len(t_in), size), np.inf))
        parts.append(np.full((len(t_in), 1), float(version)))
        return np.concatenate(parts, axis=1)

    def unobserved(self, t_in: np.ndarray) -> np.ndarray:
        """(B, width) rows of trials not observed yet (every time inf, version -1): a
        step re-observes them on the driver first (``learning.refresh``)."""
        rows = np.full((len(t_in), self.width), np.inf)
        rows[:, : self.n_inputs] = t_in
        rows[:, -1] = -1.0
        return rows

    def unpack(
        self, rows: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
        """Inverse of :meth:`pack`: (t_in, times per layer, arrivals per layer or None)."""
        t_in = rows[:, : self.n_inputs]
        at = self.n_inputs
        times = []
        for size in self.sizes:
            times.append(rows[:, at : at + size])
            at += size
        arrivals: list[np.ndarray | None] = []
        for size in self.arrival_sizes:
            if size:
                arrivals.append(rows[:, at : at + size])
                at += size
            else:
                arrivals.append(None)
        return t_in, times, arrivals

    def output_times(self, rows: np.ndarray) -> np.ndarray:
        """(K, n_outputs) output spike times stored in packed rows."""
        start = self.n_inputs + sum(self.sizes[:-1])
        return rows[:, start : start + self.sizes[-1]]
