"""Parameter publishing: retained snapshots, deltas after steps, and the sequence high-water.

Subscribers keep a replica of the parameters the driver runs: a full retained
snapshot (``params/latest``) at start, on request and every
``publish.snapshot_every`` deltas, and a delta (``params/delta``) every
``publish.delta_every`` optimiser steps or bumps, at most one per
``publish.delta_interval_ms``. Each delta advances the update number ``seq``.

Deltas are encoded off the inference loop's path (issue 24): a step hands its
parameters over (:meth:`ParameterStream.after_steps` returns at once) and the
stream's own task (:meth:`ParameterStream.loop`) encodes them in a thread of its
own (quantising and the BLAKE2b checksum release the GIL) and publishes. At most
one set of parameters waits: if steps come faster than deltas can be encoded,
the waiting set is replaced by the newer one, and the next delta covers all their
steps (error feedback makes a delta the change from what subscribers hold to the
newest parameters, so nothing is lost). An asyncio lock keeps a snapshot from
reading the encoder while a delta is made.

With a checkpoint folder, every snapshot also writes a small high-water file: a
number above every update number that can be published before the next
snapshot, so after a crash the numbers continue *above* it and
never go backwards for a subscriber (docs/runtime.md, "Restarts").

When the high-water cannot be written (full, read-only or vanished folder, see
:mod:`~._storage`), the numbers still never go backwards after a restart:

* each record carries the boot epoch it was written in, ``{"param_seq": H, "epoch": E}``;
* a boot that fails to write it renames the old record to
  ``sequence_highwater.unrecorded.json`` (a rename needs no free space) and from then
  publishes at most :data:`UNRECORDED_BUDGET` - 1 updates above ``H``; further deltas
  are withheld (``params.withheld``) until a record is written again, when they are
  merged into the next one;
* a boot that finds that marker, or cannot write a record itself, starts at
  ``H + UNRECORDED_BUDGET * max(1, epoch - E)``, above everything such earlier boots
  may have published (boot epochs grow at every start, :func:`~._outbox.next_boot_epoch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from delgrad.protocols import DeltaEncoder
from delgrad.protocols import NeuronParams as WireNeuron
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._run_config import PublishSection
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._storage import Storage
from delgrad.runtime.service._worker import Worker

HIGHWATER_NAME = "sequence_highwater.json"
UNRECORDED_NAME = "sequence_highwater.unrecorded.json"
#: Updates a boot may publish above its last recorded high-water while none can be written.
UNRECORDED_BUDGET = 1 << 20

Layers = Sequence[Mapping[str, np.ndarray]]


class ParameterStream:
    """Snapshots and deltas of the online learner's parameters.

    Args:
        online: whose parameters (read on the event loop, or copies from the worker).
        outbox: where they are published.
        config: the ``[publish]`` section.
        folder: the checkpoint folder for the high-water file, or None.
        storage: the write path (and its health); counters: ``params.withheld``.
        epoch: this boot's epoch (:func:`~._outbox.next_boot_epoch`).
    """

    def __init__(
        self,
        online: OnlineLearner,
        outbox: Outbox,
        config: PublishSection,
        folder: Path | None,
        *,
        storage: Storage,
        counters: Counters,
        epoch: int = 0,
    ) -> None:
        self._online = online
        self._outbox = outbox
        self._config = config
        self._storage = storage
        self._counters = counters
        self._epoch = epoch
        self._folder = folder
        self._steps_since_delta = 0
        self._deltas_since_snapshot = 0
        self._unrecorded = False  # the last high-water write failed
        self._limit = MAX_UNRECORDED  # the highest number this boot may publish unrecorded
        self._lock = asyncio.Lock()  # one delta or snapshot at a time reads the encoder
        self._due: Layers | None = None  # parameters whose delta is due (the newest wins)
        self._wake = asyncio.Event()
        self._encoding = Worker("delgrad-params", nice=10)  # yields to the kernels
        start = self._boot_start() if folder is not None else 0
        self._encoder = DeltaEncoder(
            online.published_layers(), seq=start, encoding=config.delta_encoding
        )
        if folder is not None:
            self._write_highwater()
            if self._unrecorded:  # nothing can be recorded: above every unrecorded range
                self._encoder = DeltaEncoder(
                    online.published_layers(),
                    seq=self._jumped(start),
                    encoding=config.delta_encoding,
                )
                self._limit = self._encoder.seq + UNRECORDED_BUDGET - 1

    @property
    def seq(self) -> int:
        """The update number of the parameters last published."""
        return self._encoder.seq

    async def snapshot(self) -> None:
        """Publish a full retained snapshot now (and write the high-water file), after
        the delta being encoded, if any."""
        async with self._lock:
            await self._snapshot()

    async def _snapshot(self) -> None:
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
        the parameters, not changed afterwards; default: a copy of the current ones);
        when a delta is due, hand them to :meth:`loop` and return at once."""
        if not steps:
            return
        self._steps_since_delta += steps
        if self._steps_since_delta < self._config.delta_every:
            return
        self._steps_since_delta = 0
        self._due = layers if layers is not None else self._online.published_copy()
        self._wake.set()

    async def loop(self, stop: asyncio.Event) -> None:
        """Publish the deltas handed over by :meth:`after_steps` until ``stop`` is set
        (seen between deltas, never during one: a delta encoded is published), at
        least ``publish.delta_interval_ms`` apart."""
        interval_s = self._config.delta_interval_ms / 1000.0
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            await self.publish_due()
            if interval_s > 0 and not stop.is_set():
                # steps meanwhile replace the parameters due: one delta covers them
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)

    def wake(self) -> None:
        """Let :meth:`loop` see the stop flag."""
        self._wake.set()

    async def publish_due(self) -> None:
        """Encode and publish the delta that is due, if any (and a snapshot when
        ``snapshot_every`` deltas have gone out)."""
        async with self._lock:
            current, self._due = self._due, None
            if current is None:
                return
            if self._unrecorded and self._storage.due():
                self._write_highwater()
            if self._encoder.seq + 1 > self._limit:  # nothing recorded covers it: merged later
                self._counters.inc("params.withheld")
                return
            encoder = self._encoder
            delta = await self._encoding.call(lambda: encoder.delta(current))
            if encoder is not self._encoder:  # resumed meanwhile: its snapshot re-syncs
                return
            await self._outbox.publish("params/delta", delta)
            self._deltas_since_snapshot += 1
            if self._deltas_since_snapshot >= self._config.snapshot_every:
                await self._snapshot()

    def close(self) -> None:
        """Stop the encoding thread (after the delta it is making, if any)."""
        self._encoding.shutdown(wait=True)

    def retry(self) -> None:
        """Write the high-water again if the last write failed and its backoff elapsed."""
        if self._unrecorded and self._storage.due():
            self._write_highwater()

    def _record_paths(self) -> tuple[Path, Path]:
        assert self._folder is not None
        return self._folder / HIGHWATER_NAME, self._folder / UNRECORDED_NAME

    def _write_highwater(self) -> None:
        if self._folder is None:
            return
        path, marker = self._record_paths()
        # at most snapshot_every deltas of delta_every steps each until the next snapshot
        value = self._encoder.seq + self._config.snapshot_every * self._config.delta_every + 1
        data = json.dumps({"param_seq": value, "epoch": self._epoch}).encode()
        if self._storage.write(path, lambda fh: fh.write(data), what="sequence high-water"):
            if self._unrecorded or marker.exists():
                marker.unlink(missing_ok=True)  # superseded: this record is above its range
            self._unrecorded = False
            self._limit = MAX_UNRECORDED
            return
        if not self._unrecorded:
            self._unrecorded = True
            recorded = _read_record(path)
            base = recorded[0] if recorded is not None else self._encoder.seq
            self._limit = max(base, self._encoder.seq) + UNRECORDED_BUDGET - 1
            try:  # tell the next boot that this one may publish unrecorded numbers
                if path.exists():
                    path.replace(marker)
            except OSError:
                pass  # read-only: the next boot that cannot write jumps anyway

    def _boot_start(self) -> int:
        """The first update number of this boot: above the high-water record, and above
        every unrecorded range of earlier boots when a marker says there were some."""
        path, marker = self._record_paths()
        start = 0
        recorded = _read_record(path)
        if recorded is not None:
            start = recorded[0]
        if marker.exists():
            return max(start, self._jumped(start))
        return start

    def _jumped(self, floor: int) -> int:
        path, marker = self._record_paths()
        # no record at all counts as (0, epoch 0): each such boot gets its own range
        records = [r for r in (_read_record(marker), _read_record(path)) if r is not None]
        best = floor
        for value, epoch in records or [(0, 0)]:
            best = max(best, value + UNRECORDED_BUDGET * max(1, self._epoch - epoch))
        return best

    def resume(self, seq: int) -> None:
        """Continue above update number ``seq`` (from a checkpoint) and above this boot's
        start, from the current parameters: the snapshot published next re-syncs every
        subscriber."""
        seq = max(seq, self._encoder.seq) + 1  # a reset never goes back either
        limit = self._limit
        self._due = None  # of parameters before the reset: the next snapshot re-syncs
        self._encoder = DeltaEncoder(
            self._online.published_layers(), seq=seq, encoding=self._config.delta_encoding
        )
        self._limit = limit if not self._unrecorded else max(limit, seq + UNRECORDED_BUDGET - 1)


#: No limit: while high-water records are written, every number is covered.
MAX_UNRECORDED = 1 << 63


def _read_record(path: Path) -> tuple[int, int] | None:
    """``(param_seq, epoch)`` of a high-water record, or None (absent, torn, foreign)."""
    try:
        state = json.loads(path.read_text())
        return int(state["param_seq"]), int(state.get("epoch", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
