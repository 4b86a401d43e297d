"""Trial files for offline training: the CSR layout that ``delgrad events trials``
writes (``offsets (T+1,)``, ``channels (E,)``, ``times (E,)`` in tau_s after each
trial's start, ``labels (T,)``, optionally ``time_unit = "tau_s"``), read as the
first spike of each input channel."""

from __future__ import annotations

import os
import zipfile

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ConfigError, ParameterError
from delgrad.runtime._events import first_spike_inputs


def read_trial_file(
    path: str | os.PathLike[str], n_inputs: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Input times ``(T, n_inputs)`` (tau_s, ``inf`` for a silent channel) and labels
    ``(T,)`` of a trial file.

    Raises:
        ConfigError: If the file is missing or unreadable, not in the CSR layout, in
            microseconds, unlabelled, or has channels at or above ``n_inputs``.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such trial file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a readable trial file ({exc or 'empty'})") from None
    missing = [k for k in ("offsets", "channels", "times", "labels") if k not in a]
    if missing:
        raise ConfigError(
            f"{path}: a trial file for training holds offsets, channels, times and labels "
            f"(missing {', '.join(missing)}; delgrad events trials writes one)"
        )
    if "time_unit" in a and str(a["time_unit"]) != "tau_s":
        raise ConfigError(f"{path}: times must be in tau_s for training, got {a['time_unit']}")
    labels = np.asarray(a["labels"])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.size + 1 != a["offsets"].size:
        raise ConfigError(f"{path}: 'labels' must be one integer per trial")
    if labels.size and labels.min() < 0:
        raise ConfigError(f"{path}: every trial needs a label >= 0 for training")
    try:
        first = first_spike_inputs(a["offsets"], a["channels"], a["times"], n_inputs)
    except ParameterError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if first.ignored:
        raise ConfigError(
            f"{path}: {first.ignored} events on channels >= {n_inputs} (the network's "
            "inputs) or at non-finite times"
        )
    return first.t_in, labels.astype(np.int64)
