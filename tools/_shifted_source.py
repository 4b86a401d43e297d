"""A trial source whose world shifts after a given number of trials (``delgrad sensor
--shift SPEC --shift-after N``); the transforms are :mod:`delgrad.runtime.sources`'."""

from __future__ import annotations

import numpy as np

from delgrad.runtime.sources import Shift, shift_trials
from delgrad.tools._sensor import TrialBatch, TrialSource

__all__ = ["ShiftedSource"]


class ShiftedSource:
    """``inner``'s trials, shifted from trial ``after`` on (the late class held back
    before it). Trials a prior or the late class leave out are skipped: every
    :meth:`take` still returns ``n`` trials, with ids counting on without gaps.

    Args:
        inner: the source.
        shift: what changes.
        after: trials sent before the shift point.
        n_channels: input channels of the stream.
        span: length of a trial in the source's time unit (noise falls in it).
        complement: channel distance of a coordinate's complement (Yin-Yang), or None.
        seed: the shift's random stream.
    """

    def __init__(
        self,
        inner: TrialSource,
        shift: Shift,
        *,
        after: int,
        n_channels: int,
        span: float,
        complement: int | None = None,
        seed: int = 0,
    ) -> None:
        self.inner = inner
        self.time_unit = inner.time_unit
        self.shift = shift
        self.after = int(after)
        self.n_channels = int(n_channels)
        self.span = float(span)
        self.complement = complement
        self.sent = 0
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 18]))
        self._next_id: int | None = None

    def take(self, n: int) -> TrialBatch:
        """The next ``n`` trials (shifted past the point)."""
        parts: list[TrialBatch] = []
        have = 0
        for _ in range(100_000):  # bounded: a prior of 1e-4 still fills a batch
            if have >= n:
                break
            before = self.after - self.sent - have  # trials still to send unshifted
            want = min(n - have, before) if before > 0 else n - have
            batch = self.inner.take(want)
            if self._next_id is None:
                self._next_id = int(batch.trial_ids[0])
            # never more delivered than pulled: the point falls exactly between trials
            part = self._shifted(batch, 0, len(batch.trial_ids), after=before <= 0)
            parts.append(part)
            have += len(part.trial_ids)
        else:
            raise RuntimeError("the shift leaves out (almost) every trial")
        out = _concat(parts, n)
        first = self._next_id or 0
        self._next_id = first + n
        self.sent += n
        return out._replace(trial_ids=np.arange(first, first + n, dtype=np.int64))

    def _shifted(self, batch: TrialBatch, lo: int, hi: int, after: bool) -> TrialBatch:
        off = batch.offsets[lo : hi + 1]
        channels = batch.channels[off[0] : off[-1]]
        times = batch.times[off[0] : off[-1]]
        labels = None if batch.labels is None else batch.labels[lo:hi]
        got = shift_trials(
            off - off[0],
            channels,
            times,
            labels,
            self.shift,
            self._rng,
            n_channels=self.n_channels,
            span=self.span,
            after=after,
            complement=self.complement,
        )
        keep = np.flatnonzero(got.keep)
        starts, ends = got.offsets[keep], got.offsets[keep + 1]
        spans = [np.arange(a, b) for a, b in zip(starts, ends, strict=True)]
        index = np.concatenate(spans).astype(np.int64) if spans else np.zeros(0, np.int64)
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        return TrialBatch(
            batch.trial_ids[lo:hi][keep],
            offsets,
            got.channels[index],
            got.times[index],
            None if got.labels is None else got.labels[keep],
        )


def _concat(parts: list[TrialBatch], n: int) -> TrialBatch:
    """The first ``n`` trials of ``parts`` as one batch."""
    ids, offsets, channels, times, labels = [], [np.zeros(1, dtype=np.int64)], [], [], []
    base, count = 0, 0
    for part in parts:
        k = min(len(part.trial_ids), n - count)
        if k <= 0:
            continue
        ids.append(part.trial_ids[:k])
        offsets.append(part.offsets[1 : k + 1] + base)
        channels.append(part.channels[: part.offsets[k]])
        times.append(part.times[: part.offsets[k]])
        if part.labels is not None:
            labels.append(part.labels[:k])
        base += int(part.offsets[k])
        count += k
    return TrialBatch(
        np.concatenate(ids),
        np.concatenate(offsets),
        np.concatenate(channels).astype(np.int64),
        np.concatenate(times),
        np.concatenate(labels) if len(labels) == len(ids) else None,
    )
