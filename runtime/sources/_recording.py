"""The one in-memory layout of a recorded event stream, and its label annotations.

Every reader in :mod:`delgrad.runtime.sources` returns an :class:`EventRecording`:
four flat arrays of one length ``n`` in time order,

* ``t_us`` (n,) float64: event time in microseconds (integers up to 2**53 are exact),
* ``x`` (n,) int64 and ``y`` (n,) int64: pixel column and row (``y`` is 0 for
  one-dimensional sensors such as a cochlea, whose channel is ``x``),
* ``p`` (n,) int8: polarity, 1 = ON (brighter), 0 = OFF,

plus the sensor size ``width`` x ``height`` and optional :class:`LabelSpans`
(a class per time interval). Sources whose events already are input channels
(the NIR padded layout, CSR trial files) use ``x`` = channel, ``y`` = ``p`` = 0.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ConfigError

__all__ = ["EventRecording", "LabelSpans", "read_label_file", "write_label_file"]

LABEL_FILE_SUFFIX = ".labels.csv"
log = logging.getLogger(__name__)
_LABEL_HEADER = ("start_us", "end_us", "label")


@dataclass(frozen=True)
class LabelSpans:
    """Class labels of time intervals of a recording.

    Attributes:
        start_us: (k,) float64 interval starts, microseconds.
        end_us: (k,) float64 interval ends (exclusive, > start), microseconds.
        label: (k,) int64 class index >= 0.
    """

    start_us: NDArray[np.float64]
    end_us: NDArray[np.float64]
    label: NDArray[np.int64]

    def __post_init__(self) -> None:
        start = np.asarray(self.start_us, dtype=np.float64).reshape(-1)
        end = np.asarray(self.end_us, dtype=np.float64).reshape(-1)
        label = np.asarray(self.label)
        if label.dtype.kind not in "iu":
            raise ConfigError(f"labels must be integers, got dtype {label.dtype}")
        label = label.astype(np.int64).reshape(-1)
        if not start.shape == end.shape == label.shape:
            raise ConfigError("label spans need start_us, end_us and label of one length")
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end))):
            raise ConfigError("label span times must be finite")
        if np.any(end <= start):
            raise ConfigError("every label span must end after it starts")
        if label.size and (label.min() < 0 or label.max() > np.iinfo(np.int32).max):
            raise ConfigError("labels must be in 0 .. 2**31-1")
        object.__setattr__(self, "start_us", start)
        object.__setattr__(self, "end_us", end)
        object.__setattr__(self, "label", label)

    def __len__(self) -> int:
        return int(self.label.size)

    def index_at(self, t_us: ArrayLike) -> NDArray[np.int64]:
        """Index of the span holding each time (the last span that starts at or before
        it and ends after it), -1 where no span does. Same shape as ``t_us``."""
        t = np.asarray(t_us, dtype=np.float64)
        if not len(self):
            return np.full(t.shape, -1, dtype=np.int64)
        order = np.argsort(self.start_us, kind="stable")
        starts = self.start_us[order]
        i = np.searchsorted(starts, t, side="right") - 1
        ok = i >= 0
        j = order[np.where(ok, i, 0)]
        ok &= self.end_us[j] > t
        return np.where(ok, j, -1).astype(np.int64)

    def at(self, t_us: ArrayLike) -> NDArray[np.int64]:
        """Label of the span holding each time (see :meth:`index_at`), -1 where no span
        does. Same shape as ``t_us``."""
        i = self.index_at(t_us)
        if not len(self):
            return i
        return np.where(i >= 0, self.label[np.maximum(i, 0)], -1).astype(np.int64)

    def shifted(self, offset_us: float) -> LabelSpans:
        """The same spans ``offset_us`` later."""
        return LabelSpans(self.start_us + offset_us, self.end_us + offset_us, self.label)


@dataclass(frozen=True)
class EventRecording:
    """A recorded event stream in the one layout of this package (see the module doc).

    Arrays are validated and stably sorted by time on construction.

    Attributes:
        t_us: (n,) float64 microseconds, non-decreasing, finite.
        x: (n,) int64 column in ``[0, width)``.
        y: (n,) int64 row in ``[0, height)``.
        p: (n,) int8 polarity, 0 or 1.
        width: sensor width in pixels (channels for one-dimensional sensors), >= 1.
        height: sensor height, >= 1.
        labels: class per time interval, or ``None``.

    Raises:
        ConfigError: On arrays of different lengths, non-finite times, coordinates
            outside the sensor or polarities other than 0 and 1.
    """

    t_us: NDArray[np.float64]
    x: NDArray[np.int64]
    y: NDArray[np.int64]
    p: NDArray[np.int8]
    width: int
    height: int
    labels: LabelSpans | None = None

    def __post_init__(self) -> None:
        t = np.asarray(self.t_us)
        if t.dtype.kind not in "iuf":
            raise ConfigError(f"event times must be numeric, got dtype {t.dtype}")
        t = t.astype(np.float64).reshape(-1)
        cols = []
        for name in ("x", "y", "p"):
            a = np.asarray(getattr(self, name))
            if a.dtype.kind not in "iub":
                raise ConfigError(f"event field {name!r} must be integers, got dtype {a.dtype}")
            cols.append(a.astype(np.int64).reshape(-1))
        x, y, p = cols
        if not t.size == x.size == y.size == p.size:
            raise ConfigError(
                f"event fields differ in length: t {t.size}, x {x.size}, y {y.size}, p {p.size}"
            )
        if not np.all(np.isfinite(t)):
            raise ConfigError("event times must be finite")
        width, height = int(self.width), int(self.height)
        if width < 1 or height < 1:
            raise ConfigError(f"sensor size must be >= 1 x 1, got {width} x {height}")
        if x.size:
            if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
                raise ConfigError(
                    f"events outside the {width} x {height} sensor: x in "
                    f"[{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]"
                )
            if p.min() < 0 or p.max() > 1:
                raise ConfigError("polarities must be 0 (OFF) or 1 (ON)")
        if t.size > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t, x, y, p = t[order], x[order], y[order], p[order]
        object.__setattr__(self, "t_us", t)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "p", p.astype(np.int8))
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)

    def __len__(self) -> int:
        return int(self.t_us.size)

    @property
    def duration_us(self) -> float:
        """Time from the first to the last event (0 for fewer than two events)."""
        return float(self.t_us[-1] - self.t_us[0]) if self.t_us.size > 1 else 0.0

    def with_labels(self, labels: LabelSpans | None) -> EventRecording:
        """The same events with other labels."""
        return EventRecording(self.t_us, self.x, self.y, self.p, self.width, self.height, labels)

    def between(self, start_us: float, end_us: float) -> EventRecording:
        """The events in ``[start_us, end_us)`` and the label spans that lie inside it
        (times unchanged, so a part streamed keeps its place on the recording's clock).

        Raises:
            ConfigError: If the part is empty or ``end_us <= start_us``.
        """
        if not end_us > start_us:
            raise ConfigError(
                f"the part must end after it starts, got {start_us:g} .. {end_us:g} us"
            )
        keep = (self.t_us >= start_us) & (self.t_us < end_us)
        if not keep.any():
            raise ConfigError(
                f"no event in {start_us:.0f} .. {end_us:.0f} us (the recording has events in "
                f"{self.t_us[0]:.0f} .. {self.t_us[-1]:.0f} us)"
                if len(self)
                else "the recording holds no events"
            )
        labels = self.labels
        if labels is not None:
            inside = (labels.start_us >= start_us) & (labels.end_us <= end_us)
            labels = LabelSpans(
                labels.start_us[inside], labels.end_us[inside], labels.label[inside]
            )
        return EventRecording(
            self.t_us[keep],
            self.x[keep],
            self.y[keep],
            self.p[keep],
            self.width,
            self.height,
            labels,
        )

    def samples(self, first: int, stop: int) -> EventRecording:
        """Samples (label spans, in time order) ``first .. stop - 1`` and their events.

        Raises:
            ConfigError: Without labels, or outside ``0 .. number of spans``.
        """
        if self.labels is None or not len(self.labels):
            raise ConfigError("a range of samples needs labels (a label side file)")
        n = len(self.labels)
        if not 0 <= first < stop <= n:
            raise ConfigError(f"samples {first}:{stop} are not within the recording's 0:{n}")
        order = np.argsort(self.labels.start_us, kind="stable")
        return self.between(
            float(self.labels.start_us[order[first]]), float(self.labels.end_us[order[stop - 1]])
        )


def _label_path(recording: str | os.PathLike[str]) -> Path:
    path = Path(recording)
    return path.with_name(path.name + LABEL_FILE_SUFFIX)


def read_label_file(path: str | os.PathLike[str]) -> LabelSpans:
    """Read a label side file: CSV whose header names ``start_us``, ``end_us`` and
    ``label`` (in any order; an ``index`` column may come too and is ignored), one span
    per row, times in microseconds on the recording's clock.

    Spans must not overlap (one labelled twice with different classes is named as a
    conflict); both are refused with their line numbers. Gaps between spans are
    allowed (windows in them get no label) and logged once with their count.

    Raises:
        ConfigError: If the file is missing or malformed.
    """
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such label file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: not a readable label file ({exc})") from None
    header = [c.strip() for c in rows[0]] if rows else []
    unknown = sorted(set(header) - {*_LABEL_HEADER, "index"})
    if not set(_LABEL_HEADER) <= set(header) or unknown or len(set(header)) < len(header):
        raise ConfigError(
            f"{path}: a label file starts with the header {','.join(_LABEL_HEADER)} "
            f"(or index,{','.join(_LABEL_HEADER)}); got {','.join(header) or 'nothing'}"
        )
    cols = [header.index(name) for name in _LABEL_HEADER]
    lines, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ConfigError(
                f"{path}, line {line}: {len(row)} fields, the header has {len(header)}"
            )
        try:
            values.append([float(row[c]) for c in cols])
        except ValueError as exc:
            raise ConfigError(f"{path}, line {line}: label rows must be numbers ({exc})") from None
        lines.append(line)
    data = np.array(values, dtype=np.float64).reshape(-1, 3)
    bad = np.flatnonzero(data[:, 2] != np.round(data[:, 2]))
    if bad.size:
        raise ConfigError(f"{path}, line {lines[bad[0]]}: labels must be integers")
    try:
        spans = LabelSpans(data[:, 0], data[:, 1], data[:, 2].astype(np.int64))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check_spans(path, spans, np.array(lines, dtype=np.int64))
    return spans


def _check_spans(path: str | os.PathLike[str], spans: LabelSpans, lines: NDArray[np.int64]) -> None:
    """Refuse overlapping spans (naming a conflict) and log the gaps between them."""
    if len(spans) < 2:
        return
    order = np.argsort(spans.start_us, kind="stable")
    start, end, label = spans.start_us[order], spans.end_us[order], spans.label[order]
    # each span against the latest end of those before it (catches spans inside others)
    reach = np.maximum.accumulate(end)
    hit = np.flatnonzero(start[1:] < reach[:-1])
    if hit.size:
        b = int(hit[0]) + 1
        a = int(np.flatnonzero(end[:b] > start[b])[-1])
        la, lb = int(lines[order[a]]), int(lines[order[b]])
        what = "overlap"
        if start[a] == start[b] and end[a] == end[b]:
            what = "conflict" if label[a] != label[b] else "repeat"
        raise ConfigError(
            f"{path}, lines {min(la, lb)} and {max(la, lb)}: spans {what} "
            f"({start[a]:.0f}-{end[a]:.0f} us label {label[a]}, "
            f"{start[b]:.0f}-{end[b]:.0f} us label {label[b]}); a time has one label"
        )
    gaps = start[1:] - reach[:-1]
    if np.any(gaps > 0):
        big = int(np.argmax(gaps))
        log.warning(
            "%s: %d gaps between label spans, the largest %.0f us before line %d: windows "
            "whose middle falls in one get no label (they are inferred, not learned from)",
            path,
            int(np.count_nonzero(gaps > 0)),
            float(gaps[big]),
            int(lines[order[big + 1]]),
        )


def write_label_file(path: str | os.PathLike[str], labels: LabelSpans) -> Path:
    """Write ``labels`` as a label side file (see :func:`read_label_file`); returns the path."""
    out = Path(path)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_LABEL_HEADER)
        for s, e, lab in zip(labels.start_us, labels.end_us, labels.label, strict=True):
            w.writerow([repr(float(s)), repr(float(e)), int(lab)])
    return out
