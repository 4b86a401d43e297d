"""Checkpoints: the service's state saved to and restored from files, atomically.

Each checkpoint is one ``.npz``: the learner's arrays (network, raw delays,
optimiser, bumping state) and a ``service`` entry, the JSON of the update
number, the envelope sequence numbers per topic (for the record), the learner's
step and bump counts, the counters and the mode. It is written to a temporary
file and renamed, so a crash leaves old or new files, never a torn one. Saving
and loading run in the learner's worker thread, between learning steps.

Only valid state is written: every array finite, weights and delays within
bounds (:func:`~._limits.state_problem`); otherwise the save is refused
(``checkpoints.refused``). The newest ``keep`` checkpoints are kept:
``service_checkpoint.npz`` (newest), ``service_checkpoint.1.npz``, ... A load
takes the newest one that reads, parses, holds valid state and fits the
network; a corrupt or invalid one is skipped with a logged reason
(``checkpoints.skipped``), so a restart never needs a hand to delete files.

Counters are restored once, at start (:meth:`Checkpoints.load` with
``counters=True``): a ``reset`` returns parameters, optimiser and mode to the
checkpoint but leaves the counters and every sequence number counting on. The
update number continues above the saved one and the high-water file
(:mod:`delgrad.runtime.service._param_stream`); envelope numbers continue in a
new boot epoch (:mod:`delgrad.runtime.service._outbox`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import DelgradError, ParameterError, StorageError
from delgrad.runtime.service._continual import DegradationState
from delgrad.runtime.service._limits import state_problem
from delgrad.runtime.service._online import OnlineLearner
from delgrad.runtime.service._outbox import Outbox
from delgrad.runtime.service._param_stream import ParameterStream
from delgrad.runtime.service._replay import ReplayBuffer
from delgrad.runtime.service._run_state import RunState, is_mode
from delgrad.runtime.service._stats import Counters
from delgrad.runtime.service._storage import Storage

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "service_checkpoint.npz"
#: Largest counter value restored from a checkpoint (a bound against absurd files).
MAX_COUNTER = 1 << 62


def checkpoint_paths(folder: Path, keep: int) -> list[Path]:
    """The checkpoint files of ``folder``, newest first (they may not exist)."""
    stem = CHECKPOINT_NAME.removesuffix(".npz")
    return [folder / CHECKPOINT_NAME] + [folder / f"{stem}.{i}.npz" for i in range(1, keep)]


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The learner arrays and the service state of one checkpoint file, checked:
    it reads, its arrays are valid state (:func:`~._limits.state_problem`) and its
    numbers and counters are in range.

    Raises:
        ParameterError: unreadable, malformed or invalid (the message says which).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        state = json.loads(bytes(arrays.pop("service")).decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"unreadable: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise ParameterError("service state is not a map")
    problem = state_problem(arrays)
    if problem is not None:
        raise ParameterError(f"invalid parameters: {problem}")
    for key in ("param_seq", "steps", "bumps"):
        value = state.get(key)
        if type(value) is not int or not 0 <= value <= MAX_COUNTER:
            raise ParameterError(f"service state {key} is {value!r}")
    counters = state.get("counters", {})
    if (
        not isinstance(counters, dict)
        or len(counters) > 512
        or not all(
            isinstance(k, str) and type(v) is int and 0 <= v <= MAX_COUNTER
            for k, v in counters.items()
        )
    ):
        raise ParameterError("service state counters are malformed")
    if "mode" in state and not is_mode(state["mode"]):
        raise ParameterError(f"service state mode is {state['mode']!r}")
    return arrays, state


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint file ``path`` could not be restored, or None if it can
    (without a learner: the network's fit is checked on load)."""
    try:
        read_checkpoint(path)
    except ParameterError as exc:
        return str(exc)
    return None


class Checkpoints:
    """Saves and restores the state of one service in ``folder``.

    Args:
        folder: the checkpoint folder (created on the first save).
        online, params, outbox, counters, state: the parts whose state is kept.
        keep: how many checkpoints are kept (>= 1), newest first.
        storage: the write path; a failed write is a ``storage`` warning, not a crash.
        replay: the replay buffer, saved beside the learner (``replay.*`` arrays) and
            restored if it fits; a checkpoint without one loads as before.
        degradation: the degradation detector's history and the learning-rate
            policy's factors (``degradation.*`` arrays), restored at start only.
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
        keep: int = 3,
        storage: Storage | None = None,
        replay: ReplayBuffer | None = None,
        degradation: DegradationState | None = None,
    ) -> None:
        self.folder = folder
        self._replay = replay
        self._degradation = degradation
        self._storage = storage if storage is not None else Storage(counters)
        self.path = folder / CHECKPOINT_NAME
        self.keep = max(1, int(keep))
        self._online = online
        self._params = params
        self._outbox = outbox
        self._counters = counters
        self._state = state

    @property
    def paths(self) -> list[Path]:
        """The checkpoint files, newest first (they may not exist)."""
        return checkpoint_paths(self.folder, self.keep)

    def _service_state(self) -> dict[str, Any]:
        return {
            "param_seq": self._params.seq,
            "publisher_seq": self._outbox.sequences(),
            **self._online.counters(),  # steps, bumps
            "counters": self._counters.as_dict(),
            "mode": self._state.mode,
        }

    def save(self) -> Path:
        """Write a checkpoint atomically (worker thread) and keep the newest ``keep``;
        returns its path.

        Raises:
            ParameterError: if the learner's state is not valid (nothing is written).
            StorageError: the folder cannot be written (counted in ``storage.failures``
                and ``checkpoints.failed``; the older checkpoints stay as they were).
        """
        arrays = self._online.state_arrays()
        problem = state_problem(arrays)
        if problem is not None:
            self._counters.inc("checkpoints.refused")
            raise ParameterError(f"checkpoint refused: {problem}")
        if self._replay is not None:
            arrays.update(self._replay.state_arrays())
        if self._degradation is not None:
            arrays.update(self._degradation.state_arrays())
        state = self._service_state()
        arrays["service"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        try:
            self._storage.write_or_raise(
                self.path,
                lambda fh: self._rotate_then_write(fh, arrays),
                what="checkpoint",
            )
        except StorageError:
            self._counters.inc("checkpoints.failed")
            raise
        self._counters.inc("checkpoints.written")
        return self.path

    def _rotate_then_write(self, fh: Any, arrays: dict[str, np.ndarray]) -> None:
        # Into the temporary file first: a full disk fails here, before any rotation,
        # so the older checkpoints stay where they were.
        np.savez(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        paths = self.paths
        # shift the older ones down; the newest is linked, not moved, to the next
        # name, so the newest name always holds a complete checkpoint (the old one
        # until the rename of the new one over it)
        for older, newer in zip(reversed(paths[2:]), reversed(paths[1:-1]), strict=True):
            if newer.is_file():
                os.replace(newer, older)
        if len(paths) > 1 and paths[0].is_file():
            paths[1].unlink(missing_ok=True)
            try:
                os.link(paths[0], paths[1])
            except OSError:  # no hard links here: a copy
                shutil.copyfile(paths[0], paths[1])

    def load(self, *, counters: bool = True) -> bool:
        """Restore the newest valid checkpoint (worker thread). Returns whether one was.

        Args:
            counters: add the checkpoint's counters to this process's (at start);
                False for a ``reset``, which must not count anything twice.
        """
        for path in self.paths:
            if not path.is_file():
                continue
            before = {k: np.array(v, copy=True) for k, v in self._online.state_arrays().items()}
            try:
                arrays, state = read_checkpoint(path)
                replayed = {k: arrays.pop(k) for k in list(arrays) if k.startswith("replay.")}
                judged = {k: arrays.pop(k) for k in list(arrays) if k.startswith("degradation.")}
                self._online.restore(arrays, steps=state["steps"], bumps=state["bumps"])
                if self._replay is not None and replayed and not self._replay.restore(replayed):
                    log.warning("the checkpoint's replay buffer does not fit this one: not kept")
                if counters and self._degradation is not None:  # at start, not on a reset
                    self._degradation.restore(judged)
            except (DelgradError, ValueError, KeyError, TypeError) as exc:
                self._online.restore(before, steps=self._online.steps, bumps=self._online.bumps)
                self._counters.inc("checkpoints.skipped")
                log.warning("checkpoint %s skipped (%s); trying the previous one", path, exc)
                continue
            self._state.set_mode(state.get("mode", self._state.mode))
            # Continue above every number published before: the snapshot published
            # next re-syncs every subscriber.
            self._params.resume(state["param_seq"])
            if counters:
                for key, value in state["counters"].items():
                    self._counters.inc(key, value)
            if path != self.path:
                log.warning("restored the older checkpoint %s", path)
            return True
        return False
