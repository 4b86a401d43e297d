"""Trial files: the ``.npz`` layouts that ``delgrad sensor --source`` streams and
``delgrad train`` reads (``data.dataset = "file"``), checked in one place.

* CSR (what ``delgrad events trials`` writes): ``offsets (T+1,)`` int rising from 0
  to E, ``channels (E,)`` int >= 0, ``times (E,)`` finite, after each trial's start;
* padded: ``channels (T, N)`` int (-1 = none) and ``times (T, N)`` (inf/NaN-free
  padding marked by channel -1 or an infinite time);

optional ``labels (T,)`` int (>= 0, or -1 for unknown) and a scalar string
``time_unit`` (``"tau_s"``, the default, or ``"us"``). For training,
:func:`read_trial_file` reads the first spike of each input channel.
"""

from __future__ import annotations

import os
import zipfile
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ConfigError, ParameterError
from delgrad.runtime._events import first_spike_inputs

__all__ = ["TrialArrays", "load_trial_arrays", "read_trial_file"]

#: ``time_unit`` values of a trial file
_TIME_UNITS = ("tau_s", "us")


class TrialArrays(NamedTuple):
    """A checked trial file in CSR form.

    Attributes:
        offsets: (T+1,) int64, trial t's events are ``offsets[t]:offsets[t+1]``.
        channels: (E,) int64 channel per event, 0 .. 2**32-1.
        times: (E,) float64 finite event times in ``time_unit`` after the trial's start.
        labels: (T,) int64 (-1 = unknown), or None for an unlabelled file.
        time_unit: ``"tau_s"`` or ``"us"``.
    """

    offsets: NDArray[np.int64]
    channels: NDArray[np.int64]
    times: NDArray[np.float64]
    labels: NDArray[np.int64] | None
    time_unit: str


def load_trial_arrays(path: str | os.PathLike[str]) -> TrialArrays:
    """Read and check a trial file (either layout) as :class:`TrialArrays`.

    Raises:
        ConfigError: one line naming the file: missing, unreadable, or arrays that
            break the layout.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a readable .npz file ({exc or 'empty'})") from None

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{path}: {why}")

    if "channels" not in a or "times" not in a:
        raise fail("needs arrays 'channels' and 'times' (and 'offsets' for CSR)")
    ch, t = a["channels"], a["times"]
    if ch.dtype.kind not in "iu":
        raise fail(f"'channels' must be integers, got {ch.dtype}")
    if t.dtype.kind not in "iuf":
        raise fail(f"'times' must be numeric, got {t.dtype}")
    if "offsets" in a:
        off = a["offsets"]
        if off.ndim != 1 or ch.ndim != 1 or t.ndim != 1 or off.dtype.kind not in "iu":
            raise fail("CSR layout needs 1-d integer 'offsets' and 1-d channels/times")
        off = off.astype(np.int64)
        if off.size < 2 or off[0] != 0 or off[-1] != ch.size or np.any(np.diff(off) < 0):
            raise fail("'offsets' must rise from 0 to len(channels), >= 1 trial")
        if t.shape != ch.shape:
            raise fail("'times' and 'channels' must have the same length")
        times = t.astype(np.float64)
        if not np.all(np.isfinite(times)):
            raise fail("CSR 'times' must be finite")
        channels = ch.astype(np.int64)
        if channels.size and channels.min() < 0:
            raise fail("CSR 'channels' must be >= 0")
    else:
        if ch.ndim != 2 or ch.shape != t.shape or ch.shape[0] < 1:
            raise fail("padded layout needs 'channels' and 'times' of one (T, N) shape")
        tf = t.astype(np.float64)
        if np.any(np.isnan(tf)) or np.any(ch < -1):
            raise fail("padded layout: times must not be NaN, channels must be >= -1")
        valid = (ch >= 0) & np.isfinite(tf)
        off = np.zeros(ch.shape[0] + 1, dtype=np.int64)
        np.cumsum(valid.sum(axis=1), out=off[1:])
        channels, times = ch[valid].astype(np.int64), tf[valid]  # row-major order
    if channels.size and channels.max() >= 1 << 32:
        raise fail("channels must be < 2**32")
    n = off.size - 1
    labels = None
    if "labels" in a:
        lab = a["labels"]
        if lab.shape != (n,) or lab.dtype.kind not in "iu":
            raise fail(f"'labels' must be {n} integers (one per trial)")
        labels = lab.astype(np.int64)
        if labels.size and (labels.min() < -1 or labels.max() > np.iinfo(np.int32).max):
            raise fail("'labels' must be in -1 .. 2**31-1 (-1: unknown)")
    unit = "tau_s"
    if "time_unit" in a:
        u = a["time_unit"]
        if u.shape != () or u.dtype.kind not in "US" or str(u.item()) not in _TIME_UNITS:
            raise fail("'time_unit' must be the scalar string 'tau_s' or 'us'")
        unit = str(u.item())
    return TrialArrays(off, channels, times, labels, unit)


def read_trial_file(
    path: str | os.PathLike[str], n_inputs: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Input times ``(T, n_inputs)`` (tau_s, ``inf`` for a silent channel) and labels
    ``(T,)`` of a trial file, for training.

    Raises:
        ConfigError: If the file is missing or unreadable (:func:`load_trial_arrays`),
            in microseconds, unlabelled, or has channels at or above ``n_inputs``.
    """
    trials = load_trial_arrays(path)
    if trials.labels is None:
        raise ConfigError(
            f"{path}: a trial file for training needs 'labels', one per trial "
            "(delgrad events trials writes them)"
        )
    if trials.time_unit != "tau_s":
        raise ConfigError(f"{path}: times must be in tau_s for training, got {trials.time_unit}")
    if trials.labels.size and trials.labels.min() < 0:
        raise ConfigError(f"{path}: every trial needs a label >= 0 for training")
    try:
        first = first_spike_inputs(trials.offsets, trials.channels, trials.times, n_inputs)
    except ParameterError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if first.ignored:
        raise ConfigError(
            f"{path}: {first.ignored} events on channels >= {n_inputs} (the network's "
            "inputs) or at non-finite times"
        )
    return first.t_in, trials.labels
