"""Readers for numpy files and CSV: tonic-style structured arrays, the NIR padded
event layout and CSR trial files, read with numpy alone (never unpickling).

Structured arrays (``.npy``, or one inside an ``.npz``) follow tonic's
convention: fields ``t`` (microseconds), ``x``, ``y``, ``p`` for cameras, or
``t``, ``x``, ``p`` for one-dimensional sensors; ``on`` or ``polarity`` is read
as ``p``, and a polarity of -1 or 0 is OFF. An ``.npz`` may instead hold the
fields as separate 1-d arrays ``t``, ``x``, (``y``), ``p``. A ``.csv`` has a header
naming the same columns.

Trial files (``.npz``): the NIR padded layout ``channels``/``times`` (T, N) (also
spelled ``idx``/``time``) with channel -1 and time ``inf`` in empty slots, or CSR
``offsets``/``channels``/``times``; optional ``labels`` (T,) and a scalar
``time_unit`` ("tau_s", the default, or "us"). Their trials are laid end to end,
trial ``i`` starting at ``i * trial_period_us``, with one label span per trial.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ConfigError
from delgrad.runtime.sources._recording import EventRecording, LabelSpans

__all__ = ["read_csv", "read_npy", "read_npz"]

_POLARITY_NAMES = ("p", "on", "polarity")


def _fail(path: str | os.PathLike[str], why: str) -> ConfigError:
    return ConfigError(f"{path}: {why}")


def _from_fields(
    path: str | os.PathLike[str],
    fields: dict[str, np.ndarray],
    sensor_size: tuple[int, int] | None,
) -> EventRecording:
    """Build a recording from named 1-d columns (t, x, [y], p)."""
    names = set(fields)
    pol = next((n for n in _POLARITY_NAMES if n in names), None)
    if "t" not in names or "x" not in names or pol is None:
        raise _fail(
            path,
            f"needs fields t, x, y, p (camera) or t, x, p (1-d sensor); found {sorted(names)}",
        )
    t = fields["t"]
    if t.dtype.kind not in "iuf":
        raise _fail(path, f"field 't' must be numeric microseconds, got {t.dtype}")
    n = t.shape[0] if t.ndim == 1 else -1
    cols = {k: fields[k] for k in ("x", "y", pol) if k in fields}
    for k, a in cols.items():
        if a.ndim != 1 or a.shape[0] != n:
            raise _fail(path, f"field {k!r} must be 1-d with one entry per event")
        if a.dtype.kind not in "iub":
            raise _fail(path, f"field {k!r} must be integers, got {a.dtype}")
    x = cols["x"].astype(np.int64)
    y = cols["y"].astype(np.int64) if "y" in cols else np.zeros(n, np.int64)
    p = (cols[pol].astype(np.int64) > 0).astype(np.int8)
    if sensor_size is None:
        width = int(x.max()) + 1 if n > 0 else 1
        height = int(y.max()) + 1 if n > 0 else 1
    else:
        width, height = sensor_size
    try:
        return EventRecording(t, x, y, p, width, height)
    except ConfigError as exc:
        raise _fail(path, str(exc)) from None


def _structured(
    path: str | os.PathLike[str], arr: np.ndarray, sensor_size: tuple[int, int] | None
) -> EventRecording:
    if arr.dtype.names is None or arr.ndim != 1:
        raise _fail(
            path,
            f"expected a 1-d structured array with fields t, x, y, p; got {arr.dtype} "
            f"of shape {arr.shape}",
        )
    return _from_fields(path, {n: arr[n] for n in arr.dtype.names}, sensor_size)


def read_npy(
    path: str | os.PathLike[str], *, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read a tonic-style structured ``.npy`` file.

    Args:
        path: The file.
        sensor_size: (width, height); default: one more than the largest x and y.

    Raises:
        ConfigError: If the file is missing, pickled or not a structured event array.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except EOFError:  # numpy's word for an empty file
        raise _fail(path, "the file is empty (no .npy header)") from None
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not a readable .npy event array ({exc})") from None
    return _structured(path, arr, sensor_size)


def _trials(
    path: str | os.PathLike[str],
    a: dict[str, np.ndarray],
    trial_period_us: float | None,
    us_per_tau: float,
) -> EventRecording:
    """NIR padded or CSR trials laid end to end (x = channel)."""
    ch_key, t_key = ("channels", "times") if "channels" in a else ("idx", "time")
    ch, t = a[ch_key], a[t_key]
    if ch.dtype.kind not in "iu" or t.dtype.kind not in "iuf":
        raise _fail(path, f"{ch_key!r} must be integers and {t_key!r} numeric")
    if "offsets" in a:
        off = a["offsets"]
        if off.ndim != 1 or ch.ndim != 1 or t.shape != ch.shape or off.dtype.kind not in "iu":
            raise _fail(path, "CSR layout needs 1-d integer 'offsets' and 1-d channels/times")
        off = off.astype(np.int64)
        if off.size < 2 or off[0] != 0 or off[-1] != ch.size or np.any(np.diff(off) < 0):
            raise _fail(path, "'offsets' must rise from 0 to len(channels), >= 1 trial")
        channels, times = ch.astype(np.int64), t.astype(np.float64)
        if not np.all(np.isfinite(times)) or (channels.size and channels.min() < 0):
            raise _fail(path, "CSR times must be finite and channels >= 0")
        trial = np.repeat(np.arange(off.size - 1), np.diff(off))
        n_trials = off.size - 1
    else:
        if ch.ndim != 2 or ch.shape != t.shape or ch.shape[0] < 1:
            raise _fail(path, f"padded layout needs {ch_key!r} and {t_key!r} of one (T, N) shape")
        tf = t.astype(np.float64)
        if np.any(np.isnan(tf)) or np.any(ch < -1):
            raise _fail(path, "padded layout: times must not be NaN, channels must be >= -1")
        valid = (ch >= 0) & np.isfinite(tf)
        channels, times = ch[valid].astype(np.int64), tf[valid]
        trial = np.nonzero(valid)[0]
        n_trials = ch.shape[0]
    unit = "tau_s"
    if "time_unit" in a:
        u = a["time_unit"]
        if u.shape != () or u.dtype.kind not in "US" or str(u.item()) not in ("tau_s", "us"):
            raise _fail(path, "'time_unit' must be the scalar string 'tau_s' or 'us'")
        unit = str(u.item())
    if times.size and times.min() < 0:
        raise _fail(path, "trial event times must be >= 0")
    t_us = times * (us_per_tau if unit == "tau_s" else 1.0)
    if trial_period_us is None:
        longest = float(t_us.max()) if t_us.size else 0.0
        trial_period_us = float(max(1.0, math.ceil(longest * 1.25)))
    elif t_us.size and t_us.max() >= trial_period_us:
        raise _fail(path, f"an event at {t_us.max()} us does not fit a {trial_period_us} us trial")
    starts = np.arange(n_trials, dtype=np.float64) * trial_period_us
    labels = None
    if "labels" in a:
        lab = a["labels"]
        if lab.shape != (n_trials,) or lab.dtype.kind not in "iu":
            raise _fail(path, f"'labels' must be {n_trials} integers (one per trial)")
        keep = lab >= 0
        labels = LabelSpans(
            starts[keep], starts[keep] + trial_period_us, lab[keep].astype(np.int64)
        )
    width = int(channels.max()) + 1 if channels.size else 1
    if channels.size and channels.max() >= 1 << 32:
        raise _fail(path, "channels must be < 2**32")
    zeros = np.zeros(channels.size, np.int64)
    return EventRecording(
        starts[trial] + t_us, channels, zeros, zeros.astype(np.int8), width, 1, labels
    )


def read_npz(
    path: str | os.PathLike[str],
    *,
    sensor_size: tuple[int, int] | None = None,
    trial_period_us: float | None = None,
    us_per_tau: float = 6.0,
) -> EventRecording:
    """Read an ``.npz``: a tonic-style structured array, tonic fields as separate
    arrays, or NIR padded / CSR trials (see the module doc).

    Args:
        path: The file.
        sensor_size: (width, height) of a camera recording; default from the data.
        trial_period_us: Spacing of the trials of a trial file; default 1.25 times
            the latest event time, rounded up to a microsecond.
        us_per_tau: Microseconds per tau_s, for trial files in ``tau_s``.

    Raises:
        ConfigError: If the file is missing, unreadable or holds none of the layouts.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(path, f"not a readable .npz file ({exc or 'empty'})") from None
    if ("channels" in a and "times" in a) or ("idx" in a and "time" in a):
        return _trials(path, a, trial_period_us, us_per_tau)
    structured = [k for k, v in a.items() if v.dtype.names is not None]
    if len(structured) == 1:
        return _structured(path, a[structured[0]], sensor_size)
    if "t" in a and "x" in a:
        return _from_fields(path, a, sensor_size)
    raise _fail(
        path,
        "holds no event layout: expected one structured array with fields t, x, y, p "
        "(tonic), arrays t, x, y, p, or trials as 'channels'/'times' (NIR padded, or "
        f"CSR with 'offsets'); found {sorted(a)}",
    )


def read_csv(
    path: str | os.PathLike[str], *, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read a CSV event file whose header names the columns t, x, (y), p (any order;
    ``on`` or ``polarity`` for p), one event per row.

    Raises:
        ConfigError: If the file is missing, has no such header or holds non-numbers.
    """
    try:
        with open(path) as fh:
            header = fh.readline()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not a readable CSV file ({exc})") from None
    names = [h.strip().lower() for h in header.split(",")]
    if "t" not in names:
        raise _fail(path, f"the first line must name the columns, e.g. t,x,y,p; got {header!r}")
    try:
        data: NDArray[np.float64] = np.loadtxt(
            path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2
        )
    except ValueError as exc:
        raise _fail(path, f"rows must be numbers ({exc})") from None
    if data.shape[0] and data.shape[1] != len(names):
        raise _fail(path, f"rows have {data.shape[1]} columns, the header names {len(names)}")
    fields: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        col = data[:, i] if data.shape[0] else np.zeros(0)
        if name == "t":
            fields[name] = col
            continue
        if not np.array_equal(col, np.round(col)):
            raise _fail(path, f"column {name!r} must hold integers")
        fields[name] = col.astype(np.int64)
    return _from_fields(Path(path), fields, sensor_size)
