"""Parameter publishing: retained snapshots, deltas after steps, and the sequence high-water.

Subscribers keep a replica of the parameters the driver runs: a full retained
snapshot (``params/latest``) at start, on request and every
``publish.snapshot_every`` deltas, and a delta (``params/delta``) every
``publish.delta_every`` optimiser steps or bumps. Each delta advances the update
number ``seq``. With a checkpoint folder, every snapshot also writes a small
high-water file: a number above every update number that can be published
before the next snapshot, so after a crash the numbers continue *above* it and
never go backwards for a subscriber (docs/runtime.md, "Restarts").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from delgrad.protocols import DeltaEncoder
from delgrad.protocols import NeuronParams as WireNeuron
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._run_config import PublishSection

HIGHWATER_NAME = "sequence_highwater.json"

Layers = Sequence[Mapping[str, np.ndarray]]


class ParameterStream:
    """Snapshots and deltas of the online learner's parameters.

    Args:
        online: whose parameters (read on the event loop, or copies from the worker).
        outbox: where they are published.
        config: the ``[publish]`` section.
        folder: the checkpoint folder for the high-water file, or None.
    """

    def __init__(
        self, online: OnlineLearner, outbox: Outbox, config: PublishSection, folder: Path | None
    ) -> None:
        self._online = online
        self._outbox = outbox
        self._config = config
        self._highwater = folder / HIGHWATER_NAME if folder is not None else None
        self._encoder = DeltaEncoder(online.published_layers(), encoding=config.delta_encoding)
        self._steps_since_delta = 0
        self._deltas_since_snapshot = 0

    @property
    def seq(self) -> int:
        """The update number of the parameters last published."""
        return self._encoder.seq

    async def snapshot(self) -> None:
        """Publish a full retained snapshot now (and write the high-water file)."""
        summary = self._online.network_summary()
        neuron = summary.neuron
        snapshot = self._encoder.snapshot(
            layer_sizes=summary.layer_sizes,
            neuron=WireNeuron(neuron.tau_s, neuron.tau_m, neuron.theta),
            delay_kinds=summary.delay_kinds,
        )
        self._deltas_since_snapshot = 0
        await self._outbox.publish("params/latest", snapshot)
        self._write_highwater()

    async def after_steps(self, steps: int, layers: Layers | None = None) -> None:
        """Account ``steps`` optimiser steps or bumps that led to ``layers`` (a copy of
        the parameters; default: the current ones) and publish what is due."""
        if not steps:
            return
        self._steps_since_delta += steps
        if self._steps_since_delta < self._config.delta_every:
            return
        self._steps_since_delta = 0
        current = layers if layers is not None else self._online.published_layers()
        await self._outbox.publish("params/delta", self._encoder.delta(current))
        self._deltas_since_snapshot += 1
        if self._deltas_since_snapshot >= self._config.snapshot_every:
            await self.snapshot()

    def _write_highwater(self) -> None:
        if self._highwater is None:
            return
        # at most snapshot_every deltas of delta_every steps each until the next snapshot
        state = {
            "param_seq": self._encoder.seq
            + self._config.snapshot_every * self._config.delta_every
            + 1
        }
        atomic_write(self._highwater, lambda fh: fh.write(json.dumps(state).encode()))

    def resume(self, seq: int) -> None:
        """Continue above update number ``seq`` (from a checkpoint) and above the
        high-water file, from the current parameters: the snapshot published next
        re-syncs every subscriber."""
        seq = max(seq, self._encoder.seq)  # a reset never goes back either
        if self._highwater is not None and self._highwater.is_file():
            try:
                seq = max(seq, int(json.loads(self._highwater.read_text())["param_seq"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a torn or foreign file: the checkpoint's number and ours
        self._encoder = DeltaEncoder(
            self._online.published_layers(), seq=seq + 1, encoding=self._config.delta_encoding
        )
