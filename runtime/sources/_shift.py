"""A world that shifts: transforms of an input stream, pure functions on event arrays.

A :class:`~delgrad.runtime.sources.Shift` (``delgrad sensor --shift KEY=VALUE,...``)
says what changes from a point of a stream on. The functions apply it to one stretch
of a stream; the caller says whether that stretch lies before the point or after it:

* :func:`shift_trials`: the events of trials in CSR form (the Yin-Yang generator,
  trial files), whose channels a :class:`TrialLayout` describes;
* :func:`shift_events`: the events of a recording (t in microseconds, x, y, p);
* :func:`choose_trials`: which trials (or labelled spans of a recording) are sent:
  the changed class prior after the point, the late classes held back before it;
* :func:`cut_windows`: a recording's time line without the windows of left-out
  spans, later events moved earlier by whole window periods (windows stay aligned).

Event changes apply in the order translate, polarity, rate, noise (noise events are
neither moved nor thinned). The randomness comes from :class:`ShiftRandom`, one
generator per kind of draw, each consumed in stream order: a stream cut into other
pieces (another ``--batch``) shifts the same way, and the same seed shifts it the
same way twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ConfigError
from delgrad.runtime.sources._shift_spec import Shift

__all__ = [
    "MAX_NOISE_EVENTS",
    "MAX_NOISE_PER_TRIAL",
    "ShiftRandom",
    "TrialArrays",
    "TrialLayout",
    "choose_trials",
    "cut_windows",
    "expected_noise",
    "shift_events",
    "shift_trials",
]

#: Most background events expected in one pass of a recording (they are held in memory).
MAX_NOISE_EVENTS = 10_000_000
#: Most background events expected in one trial (a message of 100 trials then stays
#: under the protocol's 2**20 events).
MAX_NOISE_PER_TRIAL = 10_000


class ShiftRandom:
    """The random streams of a shift, one generator per kind of draw.

    Attributes:
        choose: one draw per trial or span after the point (the prior).
        thin: one draw per event after the point (the rate).
        count: one Poisson draw per trial, or per stretch of a recording (noise).
        where: noise events' places (a recording: x, y and polarity per event).
        when: noise events' times.

    Args:
        seed: the stream's seed (``--seed``).
        key: further integers that tell streams apart (a recording's pass).
    """

    def __init__(self, seed: int, *key: int) -> None:
        # 18 (the issue) keeps these draws apart from a source's own, seeded by ``seed``
        seq = np.random.SeedSequence([int(seed), 18, *(int(k) for k in key)])
        self.choose, self.thin, self.count, self.where, self.when = (
            np.random.default_rng(s) for s in seq.spawn(5)
        )


def choose_trials(
    labels: NDArray[np.int64], shift: Shift, rng: ShiftRandom, *, after: bool
) -> NDArray[np.bool_]:
    """Which trials (or labelled spans) are sent: before the point every one but the
    late classes; after it, a trial of class ``c`` with probability
    ``prior[c] / max(prior)`` (classes without a weight, and label -1, always).

    Args:
        labels: (n,) class per trial, -1 for none.
        shift: the prior and the late classes.
        rng: draws ``rng.choose`` once per trial after the point (with a prior).
        after: whether these trials lie past the point.

    Returns:
        (n,) bool, True for a trial that is sent.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not after:
        return ~np.isin(labels, shift.late_classes)
    keep = np.ones(labels.shape, dtype=bool)
    if shift.prior:
        w = np.asarray(shift.prior, dtype=np.float64)
        known = (labels >= 0) & (labels < w.size)
        chance = np.ones(labels.shape)
        chance[known] = w[labels[known]] / w.max()
        keep &= rng.choose.random(labels.size) < chance
    return keep


@dataclass(frozen=True)
class TrialLayout:
    """What the channels of a trial stream mean, for the event changes.

    Plain channels (``coordinate`` None, trial files): ``translate=DX`` moves channel
    ``c`` to ``c + DX`` (a row of an image flattened row by row), events leaving
    ``[0, n_channels)`` dropped; there are no rows (``DY`` refused) and no polarity.

    Coordinate channels (the Yin-Yang generator): a channel's spike time encodes a
    coordinate ``v`` in [0, 1] of the input point, ``t = t_range[0] + (t_range[1] -
    t_range[0]) * v``; ``coordinate[c]`` says which: 0 ``x``, 1 ``y``, 2 ``1 - x``,
    3 ``1 - y`` (-1: none, left alone). ``translate=DX:DY`` moves the point by ``DX *
    pixel`` along x and ``DY * pixel`` along y, clipped to the square's edge;
    ``polarity=swap`` turns every coordinate ``v`` into ``1 - v`` (the point reflected
    through the centre, the analogue of a contrast inversion).

    Attributes:
        n_channels: input channels of the stream.
        span: length of a trial in the stream's time unit (noise falls in ``[0, span)``).
        span_s: the same length in seconds (noise rates are per second).
        coordinate: (n_channels,) codes as above, or None for plain channels.
        t_range: spike times of the coordinates 0 and 1, in the stream's time unit.
        pixel: coordinate units per translation step (Yin-Yang: 0.01, a 100 x 100 grid).
    """

    n_channels: int
    span: float
    span_s: float
    coordinate: tuple[int, ...] | None = None
    t_range: tuple[float, float] = (0.0, 1.0)
    pixel: float = 0.01

    def __post_init__(self) -> None:
        if self.n_channels < 1 or not (self.span > 0 and self.span_s > 0):
            raise ConfigError("a trial layout needs channels >= 1 and a span > 0")
        if self.coordinate is not None and len(self.coordinate) != self.n_channels:
            raise ConfigError("a trial layout's coordinate codes need one per channel")
        if not self.t_range[1] > self.t_range[0] or not self.pixel > 0:
            raise ConfigError("a trial layout needs t_range[1] > t_range[0] and a pixel > 0")

    def check(self, shift: Shift, what: str) -> None:
        """Refuse event changes this layout cannot make, and noise above the bound.

        Raises:
            ConfigError: one line naming the key and the stream ``what``.
        """
        if self.coordinate is None:
            if shift.swap_polarity:
                raise ConfigError(f"--shift polarity=swap: {what} has no polarity")
            if shift.dy:
                raise ConfigError(
                    f"--shift translate=DX:DY: the channels of {what} have no rows; "
                    "use translate=DX"
                )
            if abs(shift.dx) >= self.n_channels:
                raise ConfigError(
                    f"--shift translate={shift.dx} moves every channel of {what} "
                    f"({self.n_channels}) off the input"
                )
        elif max(abs(shift.dx), abs(shift.dy)) * self.pixel > 1:
            raise ConfigError(
                f"--shift translate: {what} moves at most {round(1 / self.pixel)} steps "
                "(the width of its square)"
            )
        expected_noise(
            shift,
            pixels=self.n_channels,
            seconds=self.span_s,
            what=f"a trial of {what}",
            most=MAX_NOISE_PER_TRIAL,
        )


def expected_noise(
    shift: Shift, *, pixels: int, seconds: float, what: str, most: int = MAX_NOISE_EVENTS
) -> float:
    """Background events ``shift`` adds on ``pixels`` over ``seconds``, expected.

    Raises:
        ConfigError: more than ``most``, one line with the numbers.
    """
    n = shift.noise_hz * pixels * seconds
    if n > most:
        raise ConfigError(
            f"--shift noise={shift.noise_hz:g}: {n:.3g} events expected on {pixels} "
            f"pixels or channels over {seconds:.3g} s of {what}; the most is {most:,}"
        )
    return n


@dataclass(frozen=True)
class TrialArrays:
    """Trials in CSR form: ``offsets`` (n + 1,) int64, ``channels`` (events,) int64
    and ``times`` (events,) float64 in the stream's time unit."""

    offsets: NDArray[np.int64]
    channels: NDArray[np.int64]
    times: NDArray[np.float64]


def shift_trials(
    offsets: NDArray[np.int64],
    channels: NDArray[np.int64],
    times: NDArray[np.float64],
    shift: Shift,
    rng: ShiftRandom,
    *,
    layout: TrialLayout,
) -> TrialArrays:
    """The event changes of ``shift`` on trials past the point (see :class:`TrialLayout`).

    A trial's events keep their order; its noise events follow them.

    Args:
        offsets: (n + 1,) CSR offsets of n trials.
        channels: (events,) input channels.
        times: (events,) event times in the stream's time unit.
        shift: what changes.
        rng: draws ``thin`` once per event (with a rate), ``count`` once per trial and
            ``where``, ``when`` once per noise event (with noise).
        layout: what the channels mean.

    Raises:
        ConfigError: a change the layout cannot make (:meth:`TrialLayout.check`).
    """
    layout.check(shift, "this stream")
    n = len(offsets) - 1
    trial = np.repeat(np.arange(n), np.diff(offsets))
    ch = np.asarray(channels, dtype=np.int64)
    t = np.asarray(times, dtype=np.float64)
    if layout.coordinate is None:
        ch = ch + shift.dx
    elif shift.dx or shift.dy or shift.swap_polarity:
        t = _move_coordinates(ch, t, shift, layout)
    inside = (ch >= 0) & (ch < layout.n_channels)
    if shift.rate < 1:
        inside &= rng.thin.random(ch.size) < shift.rate
    trial, ch, t = trial[inside], ch[inside], t[inside]
    if shift.noise_hz > 0:
        counts = rng.count.poisson(shift.noise_hz * layout.span_s * layout.n_channels, n)
        total = int(counts.sum())
        trial = np.concatenate([trial, np.repeat(np.arange(n), counts)])
        where = np.floor(rng.where.random(total) * layout.n_channels).astype(np.int64)
        ch = np.concatenate([ch, where])
        t = np.concatenate([t, rng.when.random(total) * layout.span])
        order = np.argsort(trial, kind="stable")  # a trial's own events first, then noise
        trial, ch, t = trial[order], ch[order], t[order]
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(trial, minlength=n), out=new_offsets[1:])
    return TrialArrays(new_offsets, ch, t)


def _move_coordinates(
    ch: NDArray[np.int64], t: NDArray[np.float64], shift: Shift, layout: TrialLayout
) -> NDArray[np.float64]:
    """Times of coordinate channels after translation and swap (see TrialLayout)."""
    assert layout.coordinate is not None
    code = np.asarray(layout.coordinate, dtype=np.int64)[ch]
    t0, t1 = layout.t_range
    v = (t - t0) / (t1 - t0)
    step = np.where(code % 2 == 0, shift.dx, shift.dy) * layout.pixel
    v = np.clip(v + np.where(code < 2, step, -step), 0.0, 1.0)  # 1 - x moves against x
    if shift.swap_polarity:
        v = 1.0 - v
    return np.where(code >= 0, t0 + (t1 - t0) * v, t)


def shift_events(
    t_us: NDArray[np.float64],
    x: NDArray[np.int64],
    y: NDArray[np.int64],
    p: NDArray[np.int8],
    shift: Shift,
    rng: ShiftRandom,
    *,
    width: int,
    height: int,
    span_us: tuple[float, float],
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int8]]:
    """The event changes of ``shift`` on a stretch of a recording, in time order.

    Events move ``dx`` columns and ``dy`` rows (those leaving the ``width`` x ``height``
    sensor are dropped), ON and OFF swap, each is kept with probability ``rate``;
    ``noise_hz`` per pixel adds Poisson events uniform over ``span_us`` and the sensor,
    of either polarity. The result is sorted by time (stable).

    Args:
        t_us, x, y, p: (n,) the events, sorted by time.
        shift: what changes.
        rng: draws ``thin`` once per event (with a rate); ``count`` once, ``where``
            three times per noise event (x, y, polarity) and ``when`` once.
        width, height: the sensor.
        span_us: (start, end) of the stretch, microseconds, where noise falls.

    Raises:
        ConfigError: noise of more than :data:`MAX_NOISE_EVENTS` expected events.
    """
    xs = np.asarray(x, dtype=np.int64) + shift.dx
    ys = np.asarray(y, dtype=np.int64) + shift.dy
    ps = np.asarray(p, dtype=np.int8)
    ps = (1 - ps).astype(np.int8) if shift.swap_polarity else ps
    ts = np.asarray(t_us, dtype=np.float64)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    if shift.rate < 1:
        inside &= rng.thin.random(xs.size) < shift.rate
    ts, xs, ys, ps = ts[inside], xs[inside], ys[inside], ps[inside]
    start, end = span_us
    if shift.noise_hz > 0 and end > start:
        lam = expected_noise(
            shift, pixels=width * height, seconds=(end - start) / 1e6, what="the recording"
        )
        k = int(rng.count.poisson(lam))
        u = rng.where.random((k, 3))
        ts = np.concatenate([ts, start + rng.when.random(k) * (end - start)])
        xs = np.concatenate([xs, np.floor(u[:, 0] * width).astype(np.int64)])
        ys = np.concatenate([ys, np.floor(u[:, 1] * height).astype(np.int64)])
        ps = np.concatenate([ps, (u[:, 2] < 0.5).astype(np.int8)])
        order = np.argsort(ts, kind="stable")
        ts, xs, ys, ps = ts[order], xs[order], ys[order], ps[order]
    return ts, xs, ys, ps


def cut_windows(
    t_us: NDArray[np.float64], cut: NDArray[np.bool_], *, period_us: float
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """A time line without the windows ``cut``.

    Window ``k`` owns ``[k * period_us, (k + 1) * period_us)``; the events of a cut
    window go, every later event moves earlier by ``period_us`` per cut window before
    it, so the windows kept stay aligned and are renumbered without gaps. (With
    windows longer than their period, a kept window next to a cut one sees events
    that followed the cut.)

    Args:
        t_us: (n,) microseconds since window 0's start, sorted (>= 0; an event past
            the last window counts as the last window's).
        cut: (k,) bool, True for a window to leave out.
        period_us: window period, microseconds.

    Returns:
        (n,) bool which events stay, and their new times (the kept ones only).
    """
    t = np.asarray(t_us, dtype=np.float64)
    cut = np.asarray(cut, dtype=bool)
    window = np.clip((t // period_us).astype(np.int64), 0, cut.size - 1)
    keep = ~cut[window]
    cut_before: NDArray[np.int64] = np.cumsum(cut) - cut  # cut windows before each
    return keep, t[keep] - cut_before[window[keep]] * period_us
