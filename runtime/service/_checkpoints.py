"""Checkpoints: the service's state saved to and restored from one file, atomically.

One ``.npz`` per device folder: the learner's arrays (network, raw delays,
optimiser, bumping state) and a ``service`` entry, the JSON of the update number,
the envelope sequence numbers per topic, the learner's step and bump counts,
the counters and the mode. It is written to a temporary file and renamed over
the previous one, so a crash leaves the old or the new checkpoint, never a
torn one. Saving and loading run in the worker thread, between batches.

On load, envelope sequence numbers continue from the saved ones plus
:data:`SEQ_RESERVE` (numbers published after the save are below that), and the
update number continues above the saved one and the high-water file
(:mod:`delgrad.runtime.service._param_stream`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.runtime._atomic import atomic_write
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._run_state import RunState
from delgrad.runtime.service._stats import Counters

CHECKPOINT_NAME = "service_checkpoint.npz"
#: Envelope sequence numbers reserved per topic beyond the last saved value, so
#: numbers stay increasing across a crash (see docs/runtime.md, "Restarts").
SEQ_RESERVE = 1 << 32


class Checkpoints:
    """Saves and restores the state of one service in ``folder``.

    Args:
        folder: the checkpoint folder (created on the first save).
        online, params, outbox, counters, state: the parts whose state is kept.
    """

    def __init__(
        self,
        folder: Path,
        *,
        online: OnlineLearner,
        params: ParameterStream,
        outbox: Outbox,
        counters: Counters,
        state: RunState,
    ) -> None:
        self.path = folder / CHECKPOINT_NAME
        self._online = online
        self._params = params
        self._outbox = outbox
        self._counters = counters
        self._state = state

    def _service_state(self) -> dict[str, Any]:
        return {
            "param_seq": self._params.seq,
            "publisher_seq": self._outbox.sequences(),
            **self._online.counters(),  # steps, bumps
            "counters": self._counters.as_dict(),
            "mode": self._state.mode,
        }

    def save(self) -> Path:
        """Write the checkpoint atomically (worker thread); returns its path."""
        arrays = self._online.state_arrays()
        state = self._service_state()
        arrays["service"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        path = atomic_write(self.path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
        self._counters.inc("checkpoints.written")
        return path

    def load(self) -> bool:
        """Restore the checkpoint if there is one (worker thread). Returns whether."""
        if not self.path.is_file():
            return False
        with np.load(self.path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        state = json.loads(bytes(arrays.pop("service")).decode())
        self._online.restore(arrays, steps=int(state["steps"]), bumps=int(state["bumps"]))
        self._state.set_mode(state.get("mode", self._state.mode))
        # Continue above every number published before the restart: the snapshot
        # published at start then re-syncs every subscriber.
        self._params.resume(int(state["param_seq"]))
        self._outbox.restore_sequences(
            {t: int(v) + SEQ_RESERVE for t, v in state["publisher_seq"].items()}
        )
        for key, value in state["counters"].items():
            self._counters.inc(key, int(value))
        return True
