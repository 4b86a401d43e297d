"""A world that shifts: transforms of an input stream, pure functions on event arrays.

A :class:`Shift` is what changes (parsed from ``delgrad sensor --shift KEY=VALUE,...``):

* ``translate``: event recordings move by ``(dx, dy)`` pixels (``translate=2`` means
  ``dx = 2``; ``translate=2:1`` both), events leaving the sensor are dropped; trial
  streams (Yin-Yang, trial files) move every channel ``c`` to ``c + dx`` (a row of
  pixels for an image flattened row by row), channels past the last dropped;
* ``polarity=swap``: recordings swap ON and OFF; the Yin-Yang stream swaps each
  coordinate with its complement (channel of ``x`` with that of ``1 - x``, the analogue
  of a contrast inversion); refused for trial files (no polarity);
* ``rate``: keep each event with probability ``rate`` (0 < rate <= 1, seeded);
* ``noise``: add background events, Poisson, ``noise`` per channel (trials) or per
  pixel (recordings) per tau_s of the trial or of the recording (``us_per_tau``);
* ``prior=w0:w1:...``: class weights; a trial of class ``c`` is kept with probability
  ``w_c / max(w)`` (trial streams);
* ``late_class=c``: class ``c`` is held back *before* the shift point and appears
  after it (trial streams).

Everything is seeded by the caller's generator, so a stream with the same seed shifts
the same way twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad.errors import ConfigError

__all__ = ["Shift", "TrialArrays", "parse_shift", "shift_events", "shift_trials"]

_KEYS = ("translate", "polarity", "rate", "noise", "prior", "late_class")


@dataclass(frozen=True)
class Shift:
    """See the module doc; the defaults change nothing."""

    dx: int = 0
    dy: int = 0
    swap_polarity: bool = False
    rate: float = 1.0
    noise: float = 0.0
    prior: tuple[float, ...] = ()
    late_class: int | None = None

    @property
    def changes_events(self) -> bool:
        """Whether events change after the point (not only which trials are sent)."""
        return bool(self.dx or self.dy or self.swap_polarity or self.rate < 1 or self.noise)


def parse_shift(text: str) -> Shift:
    """``KEY=VALUE,...`` (keys :data:`_KEYS`) as a :class:`Shift`.

    Raises:
        ConfigError: an unknown key, a repeated key, or a value of the wrong type or range.
    """
    values: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq or not key:
            raise ConfigError(f"--shift {item!r}: expected KEY=VALUE ({', '.join(_KEYS)})")
        if key not in _KEYS:
            raise ConfigError(f"--shift: unknown key {key!r} (known: {', '.join(_KEYS)})")
        if key in values:
            raise ConfigError(f"--shift: {key} given twice")
        values[key] = value.strip()
    kw: dict[str, object] = {}
    try:
        if "translate" in values:
            parts = [int(v) for v in values["translate"].split(":")]
            if len(parts) not in (1, 2) or any(abs(v) > 10_000 for v in parts):
                raise ValueError
            kw["dx"], kw["dy"] = parts[0], parts[1] if len(parts) == 2 else 0
        if "polarity" in values:
            if values["polarity"] != "swap":
                raise ConfigError(f"--shift: polarity must be 'swap', got {values['polarity']!r}")
            kw["swap_polarity"] = True
        if "rate" in values:
            rate = float(values["rate"])
            if not 0 < rate <= 1:
                raise ConfigError(f"--shift: rate must be in (0, 1], got {rate:g}")
            kw["rate"] = rate
        if "noise" in values:
            noise = float(values["noise"])
            if not 0 <= noise <= 100:
                raise ConfigError(f"--shift: noise must be in 0 .. 100 per tau_s, got {noise:g}")
            kw["noise"] = noise
        if "prior" in values:
            prior = tuple(float(v) for v in values["prior"].split(":"))
            if not prior or min(prior) < 0 or max(prior) <= 0 or len(prior) > 1000:
                raise ConfigError("--shift: prior needs weights >= 0, one of them > 0")
            kw["prior"] = prior
        if "late_class" in values:
            late = int(values["late_class"])
            if late < 0:
                raise ConfigError(f"--shift: late_class must be >= 0, got {late}")
            kw["late_class"] = late
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(
            f"--shift {text!r}: translate takes DX or DX:DY (integers), rate and noise "
            "numbers, prior W0:W1:..., late_class an integer"
        ) from None
    return Shift(**kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrialArrays:
    """Trials in CSR form: ``offsets`` (n + 1,), ``channels`` and ``times`` (events,),
    ``labels`` (n,) or None, ``keep`` (n,) which trials are sent."""

    offsets: np.ndarray
    channels: np.ndarray
    times: np.ndarray
    labels: np.ndarray | None
    keep: np.ndarray


def shift_trials(
    offsets: np.ndarray,
    channels: np.ndarray,
    times: np.ndarray,
    labels: np.ndarray | None,
    shift: Shift,
    rng: np.random.Generator,
    *,
    n_channels: int,
    span: float,
    after: bool,
    complement: int | None = None,
) -> TrialArrays:
    """Apply ``shift`` to trials (before the shift point: ``after`` False, only the late
    class is held back).

    Args:
        offsets, channels, times, labels: the trials (times in units of tau_s).
        shift: what changes.
        rng: the stream's generator.
        n_channels: input channels of the stream.
        span: length of a trial (tau_s) over which noise events fall.
        after: whether these trials are past the shift point.
        complement: channels between a coordinate and its complement (Yin-Yang: 2 per
            copy block), or None where there is no polarity.

    Raises:
        ConfigError: ``polarity=swap`` on a stream without polarity.
    """
    n = len(offsets) - 1
    keep = np.ones(n, dtype=bool)
    if labels is not None:
        if shift.late_class is not None and not after:
            keep &= labels != shift.late_class
        if shift.prior and after:
            w = np.asarray(shift.prior, dtype=np.float64)
            known = (labels >= 0) & (labels < len(w))
            chance = np.ones(n)
            chance[known] = w[labels[known]] / w.max()
            keep &= rng.random(n) < chance
    if not after or not shift.changes_events:
        return TrialArrays(offsets, channels, times, labels, keep)
    trial = np.repeat(np.arange(n), np.diff(offsets))
    ch, t = channels.astype(np.int64), times.astype(np.float64)
    if shift.swap_polarity:
        if complement is None:
            raise ConfigError("--shift polarity=swap: this stream has no polarity")
        block = 2 * complement
        ch = (ch // block) * block + (ch % block + complement) % block
    if shift.dx:
        ch = ch + shift.dx
    inside = (ch >= 0) & (ch < n_channels)
    if shift.rate < 1:
        inside &= rng.random(len(ch)) < shift.rate
    trial, ch, t = trial[inside], ch[inside], t[inside]
    if shift.noise:
        counts = rng.poisson(shift.noise * span * n_channels, size=n)
        trial = np.concatenate([trial, np.repeat(np.arange(n), counts)])
        ch = np.concatenate([ch, rng.integers(0, n_channels, counts.sum())])
        t = np.concatenate([t, rng.uniform(0.0, span, counts.sum())])
    order = np.lexsort((t, trial))
    trial, ch, t = trial[order], ch[order], t[order]
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(trial, minlength=n), out=new_offsets[1:])
    return TrialArrays(new_offsets, ch, t, labels, keep)


def shift_events(
    t_us: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    shift: Shift,
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    us_per_tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``shift``'s event changes to a recording (t_us, x, y, p), time-sorted.

    Raises:
        ConfigError: ``prior`` or ``late_class`` (they need trials, not a recording).
    """
    if shift.prior or shift.late_class is not None:
        raise ConfigError("--shift prior and late_class apply to trial streams, not recordings")
    x = x.astype(np.int64) + shift.dx
    y = y.astype(np.int64) + shift.dy
    p = (1 - p) if shift.swap_polarity else p
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if shift.rate < 1:
        inside &= rng.random(len(x)) < shift.rate
    t_us, x, y, p = t_us[inside], x[inside], y[inside], p[inside]
    if shift.noise and len(t_us):
        span_tau = float(t_us[-1] - t_us[0]) / us_per_tau
        count = int(rng.poisson(shift.noise * span_tau * width * height))
        t_us = np.concatenate([t_us, rng.uniform(t_us[0], t_us[-1], count)])
        x = np.concatenate([x, rng.integers(0, width, count)])
        y = np.concatenate([y, rng.integers(0, height, count)])
        p = np.concatenate([p, rng.integers(0, 2, count)])
        order = np.argsort(t_us, kind="stable")
        t_us, x, y, p = t_us[order], x[order], y[order], p[order]
    return t_us, x, y, p.astype(np.int8)
