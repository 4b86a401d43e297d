"""Sources whose world shifts at a point (``delgrad sensor --shift SPEC
--shift-after-trials N | --shift-after-pass P``); the transforms are
:mod:`delgrad.runtime.sources`' pure functions, this module only says where they apply.

* :class:`ShiftedSource`: trial streams (Yin-Yang, trial files); the point falls
  exactly between two trials.
* :class:`ShiftedRecording`: the plan of every pass of a recording; the point falls
  at the start of a window.
"""

from __future__ import annotations

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources import (
    EventRecording,
    PixelMapping,
    Shift,
    ShiftRandom,
    TrialLayout,
    choose_trials,
    expected_noise,
    shift_events,
    shift_trials,
)
from delgrad.tools._sensor import TrialBatch, TrialSource, gather_trials
from delgrad.tools._stream import StreamPlan, plan_on_grid, window_grid

__all__ = ["ShiftedRecording", "ShiftedSource"]

#: Source batches pulled at most for one :meth:`ShiftedSource.take` (a prior that
#: leaves out nearly every trial would otherwise pull forever).
_MAX_PULLS = 100_000


class ShiftedSource:
    """``inner``'s trials, shifted from a point on, the late classes held back before it.

    The point is after ``after_trials`` trials sent, or (``after_source_trials``) after
    that many trials of ``inner`` (``--shift-after-pass P``: P times its pass length),
    held-back ones included. Trials a prior or a late class leave out are skipped:
    every :meth:`take` still returns ``n`` trials, with ids counting on from the first
    id of ``inner`` without gaps.

    Args:
        inner: the source.
        shift: what changes.
        layout: what its channels mean (``inner.layout(us_per_tau)``).
        after_trials: trials sent before the point.
        after_source_trials: trials of ``inner`` before the point (instead).
        n_classes: classes of the stream (None: it has no labels).
        seed: the stream's seed (:class:`~delgrad.runtime.sources.ShiftRandom`).
        what: the stream's name in error messages.

    Raises:
        ConfigError: a change this stream cannot make (one line).
    """

    def __init__(
        self,
        inner: TrialSource,
        shift: Shift,
        layout: TrialLayout,
        *,
        after_trials: int = 0,
        after_source_trials: int | None = None,
        n_classes: int | None,
        seed: int = 0,
        what: str = "this stream",
    ) -> None:
        shift.check_classes(n_classes, what)
        if shift.changes_events:
            layout.check(shift, what)
        self.inner = inner
        self.time_unit = inner.time_unit
        self.shift = shift
        self.layout = layout
        self.after_trials = int(after_trials)
        self.after_source_trials = after_source_trials
        self.sent = 0
        self.pulled = 0
        self._rng = ShiftRandom(seed)
        self._next_id: int | None = None

    def _left_before(self, have: int) -> int:
        """Trials of ``inner`` that may still be pulled before the point (<= 0: past it)."""
        if self.after_source_trials is not None:
            return self.after_source_trials - self.pulled
        return self.after_trials - self.sent - have

    def take(self, n: int) -> TrialBatch:
        """The next ``n`` trials (shifted past the point)."""
        parts: list[TrialBatch] = []
        have = 0
        for _ in range(_MAX_PULLS):
            if have >= n:
                break
            left = self._left_before(have)
            # never more pulled than could be sent before the point: it falls exactly
            # between two trials, and nothing pulled is thrown away
            want = min(n - have, left) if left > 0 else n - have
            batch = self.inner.take(want)
            self.pulled += want
            if self._next_id is None:
                self._next_id = int(batch.trial_ids[0])
            part = self._shifted(batch, after=left <= 0)
            parts.append(part)
            have += len(part.trial_ids)
        else:
            raise ConfigError(
                f"--shift leaves out nearly every trial ({have} of {n} after "
                f"{_MAX_PULLS:,} batches)"
            )
        out = _concat(parts)
        first = self._next_id or 0
        self._next_id = first + n
        self.sent += n
        return out._replace(trial_ids=np.arange(first, first + n, dtype=np.int64))

    def _shifted(self, batch: TrialBatch, *, after: bool) -> TrialBatch:
        offsets, channels, times, labels = batch.offsets, batch.channels, batch.times, batch.labels
        rows = np.arange(len(batch.trial_ids))
        if labels is not None and (self.shift.prior or self.shift.late_classes):
            rows = np.flatnonzero(choose_trials(labels, self.shift, self._rng, after=after))
            offsets, channels, times = gather_trials(offsets, channels, times, rows)
            labels = labels[rows]
        if after and self.shift.changes_events:
            got = shift_trials(offsets, channels, times, self.shift, self._rng, layout=self.layout)
            offsets, channels, times = got.offsets, got.channels, got.times
        return TrialBatch(batch.trial_ids[rows], offsets, channels, times, labels)


def _concat(parts: list[TrialBatch]) -> TrialBatch:
    """``parts`` as one batch."""
    base = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
    labels = [p.labels for p in parts]
    return TrialBatch(
        np.concatenate([p.trial_ids for p in parts]),
        np.concatenate([[0]] + [p.offsets[1:] + b for p, b in zip(parts, base, strict=True)]),
        np.concatenate([p.channels for p in parts]).astype(np.int64),
        np.concatenate([p.times for p in parts]),
        None if any(x is None for x in labels) else np.concatenate(labels),  # type: ignore[arg-type]
    )


class ShiftedRecording:
    """The plan of every pass of a recording whose world shifts at a point.

    The point is the start of a device window: after ``after_windows`` windows sent
    (the device's trial ids, counted from the stream's start), or at the start of pass
    ``after_pass``; default the stream's start. Before it, the windows of the late
    classes are cut from the time line; from it on, events change
    (:func:`~delgrad.runtime.sources.shift_events`, noise over the rest of the pass)
    and a prior leaves out labelled spans, their windows cut. Every pass past the
    point draws afresh from ``ShiftRandom(seed, pass)``.

    Args:
        rec: the recording, with labels for a prior or late classes.
        mapping: its pixels to channels.
        shift: what changes.
        window_length, window_period: the device's windows, tau_s.
        after_windows: windows sent before the point.
        after_pass: or passes sent before it.
        seed: the stream's seed.

    Raises:
        ConfigError: a change this recording cannot make (one line).
    """

    def __init__(
        self,
        rec: EventRecording,
        mapping: PixelMapping,
        shift: Shift,
        *,
        window_length: float,
        window_period: float = 0.0,
        after_windows: int = 0,
        after_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        self.grid = window_grid(
            rec, mapping.us_per_tau, window_length=window_length, window_period=window_period
        )
        labels = rec.labels
        n_classes = int(labels.label.max()) + 1 if labels is not None and len(labels) else None
        shift.check_classes(n_classes, "the recording")
        if abs(shift.dx) >= rec.width or abs(shift.dy) >= rec.height:
            raise ConfigError(
                f"--shift translate={shift.dx}:{shift.dy} moves every event off the "
                f"{rec.width} x {rec.height} sensor"
            )
        seconds = self.grid.n_windows * self.grid.period_us / 1e6
        expected_noise(
            shift, pixels=rec.width * rec.height, seconds=seconds, what="a pass of the recording"
        )
        self.rec, self.mapping, self.shift, self.seed = rec, mapping, shift, seed
        self.after_windows, self.after_pass = int(after_windows), after_pass
        self.late = np.isin(self.grid.labels, shift.late_classes)
        #: window indices of a pass sent before the point
        self.kept_before = np.flatnonzero(~self.late)
        if not self.kept_before.size:
            raise ConfigError("--shift late_class holds back every window of the recording")
        self._before: StreamPlan | None = None

    def windows_before(self, passes: int) -> int:
        """Windows sent before the point is reached, at most, in ``passes`` passes."""
        return passes * self.kept_before.size

    def start(self, p: int) -> int:
        """The window of pass ``p`` where the shift starts (the pass's window count
        when the whole pass lies before the point)."""
        n = self.grid.n_windows
        if self.after_pass is not None:
            return n if p < self.after_pass else 0
        first, r = divmod(self.after_windows, self.kept_before.size)
        if p != first:
            return n if p < first else 0
        return int(self.kept_before[r])

    def plan(self, p: int) -> StreamPlan:
        """The plan of pass ``p`` (>= 0)."""
        grid, shift = self.grid, self.shift
        k = self.start(p)
        if k >= grid.n_windows:  # before the point: only the late classes cut
            if self._before is None:
                cut = self.late if self.late.any() else None
                self._before = plan_on_grid(self.rec, self.mapping, grid, cut=cut)
            return self._before
        rng = ShiftRandom(self.seed, p)
        rec = self.rec
        if shift.changes_events:
            t_point = grid.origin_us + k * grid.period_us
            end = grid.origin_us + grid.n_windows * grid.period_us
            i = int(np.searchsorted(rec.t_us, t_point, side="left"))
            t, x, y, pol = shift_events(
                rec.t_us[i:], rec.x[i:], rec.y[i:], rec.p[i:], shift, rng,
                width=rec.width, height=rec.height, span_us=(t_point, end),
            )  # fmt: skip
            rec = EventRecording(
                np.concatenate([rec.t_us[:i], t]),
                np.concatenate([rec.x[:i], x]),
                np.concatenate([rec.y[:i], y]),
                np.concatenate([rec.p[:i], pol]),
                rec.width,
                rec.height,
            )
        before = np.arange(grid.n_windows) < k
        cut = before & self.late
        if shift.prior and self.rec.labels is not None:
            sent = choose_trials(self.rec.labels.label, shift, rng, after=True)  # per span
            spans = grid.spans
            cut |= ~before & (spans >= 0) & ~sent[np.maximum(spans, 0)]
        return plan_on_grid(rec, self.mapping, grid, cut=cut if cut.any() else None)
