"""What a world that shifts changes: :class:`Shift`, parsed by :func:`parse_shift`
from ``delgrad sensor --shift KEY=VALUE,...`` (keys :data:`SHIFT_KEYS`), every value
checked for type and range with one line of error. The transforms that apply it
are in :mod:`delgrad.runtime.sources._shift`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from delgrad.errors import ConfigError

__all__ = ["SHIFT_KEYS", "Shift", "parse_shift"]

#: The keys of ``--shift``, in the order of the docs.
SHIFT_KEYS = ("translate", "polarity", "rate", "noise", "prior", "late_class")
_MAX_TRANSLATE = 10_000
_MAX_NOISE_HZ = 1e9
_MAX_CLASSES = 1000


@dataclass(frozen=True)
class Shift:
    """What changes (the defaults change nothing).

    Attributes:
        dx, dy: translation in pixels, columns and rows (trial streams: see
            :class:`TrialLayout`).
        swap_polarity: ON and OFF swap (recordings); a coordinate ``v`` becomes
            ``1 - v`` (coordinate channels of a trial stream).
        rate: fraction of events kept, each with this probability, in (0, 1].
        noise_hz: background events per second per pixel (recordings) or per
            channel (trial streams), Poisson, uniform in time and place.
        prior: class weights; a trial of class ``c`` is kept with probability
            ``prior[c] / max(prior)`` (empty: every trial).
        late_classes: classes held back before the point (sent after it).
    """

    dx: int = 0
    dy: int = 0
    swap_polarity: bool = False
    rate: float = 1.0
    noise_hz: float = 0.0
    prior: tuple[float, ...] = ()
    late_classes: tuple[int, ...] = ()

    @property
    def changes_events(self) -> bool:
        """Whether events change after the point (not only which trials are sent)."""
        return bool(self.dx or self.dy or self.swap_polarity or self.rate < 1 or self.noise_hz > 0)

    def check_classes(self, n_classes: int | None, what: str) -> None:
        """Refuse a prior or late class that does not fit a stream of ``n_classes``
        classes (``None``: the stream has no labels); ``what`` names the stream.

        Raises:
            ConfigError: one line naming the key and the stream's classes.
        """
        if not (self.prior or self.late_classes):
            return
        if n_classes is None:
            raise ConfigError(f"--shift prior and late_class need labels; {what} has none")
        if self.prior and len(self.prior) != n_classes:
            raise ConfigError(
                f"--shift prior has {len(self.prior)} weights; {what} has {n_classes} classes"
            )
        outside = [c for c in self.late_classes if c >= n_classes]
        if outside:
            raise ConfigError(
                f"--shift late_class={outside[0]}: {what} has classes 0..{n_classes - 1}"
            )
        if len(set(self.late_classes)) >= n_classes:
            raise ConfigError(f"--shift late_class holds back every class of {what}")


def _parse_translate(value: str) -> dict[str, object]:
    try:
        parts = [int(v) for v in value.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or any(abs(v) > _MAX_TRANSLATE for v in parts):
        raise ConfigError(
            f"--shift translate={value}: translate takes DX or DX:DY, whole pixels "
            f"with |DX|, |DY| <= {_MAX_TRANSLATE}"
        )
    return {"dx": parts[0], "dy": parts[1] if len(parts) == 2 else 0}


def _parse_polarity(value: str) -> dict[str, object]:
    if value != "swap":
        raise ConfigError(f"--shift polarity={value}: polarity takes only 'swap'")
    return {"swap_polarity": True}


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def _parse_rate(value: str) -> dict[str, object]:
    rate = _float(value)
    if not 0 < rate <= 1:
        raise ConfigError(
            f"--shift rate={value}: rate is the fraction of events kept, in (0, 1] "
            "(no events are made up; noise=HZ adds some)"
        )
    return {"rate": rate}


def _parse_noise(value: str) -> dict[str, object]:
    noise = _float(value)
    if not 0 <= noise <= _MAX_NOISE_HZ:
        raise ConfigError(
            f"--shift noise={value}: noise is background events per second per pixel "
            f"(recordings) or per channel (trial streams), in [0, 1e9]"
        )
    return {"noise_hz": noise}


def _parse_prior(value: str) -> dict[str, object]:
    prior = tuple(_float(v) for v in value.split(":"))
    ok = all(0 <= w < math.inf for w in prior) and max(prior) > 0
    if not ok or len(prior) > _MAX_CLASSES:
        raise ConfigError(
            f"--shift prior={value}: prior takes one weight per class, W0:W1:..., "
            "finite numbers >= 0, one of them > 0"
        )
    return {"prior": prior}


def _parse_late(value: str) -> dict[str, object]:
    try:
        classes = tuple(int(v) for v in value.split(":"))
    except ValueError:
        classes = (-1,)
    if min(classes) < 0 or max(classes) >= _MAX_CLASSES or len(set(classes)) != len(classes):
        raise ConfigError(
            f"--shift late_class={value}: late_class takes a class C or C1:C2:... "
            f"(different integers in 0..{_MAX_CLASSES - 1})"
        )
    return {"late_classes": classes}


_PARSERS = {
    "translate": _parse_translate,
    "polarity": _parse_polarity,
    "rate": _parse_rate,
    "noise": _parse_noise,
    "prior": _parse_prior,
    "late_class": _parse_late,
}


def parse_shift(text: str) -> Shift:
    """``KEY=VALUE,...`` (keys :data:`SHIFT_KEYS`) as a :class:`Shift`.

    Raises:
        ConfigError: one line: an unknown or repeated key, or a value of the wrong
            type or out of range, with what the key takes.
    """
    seen: set[str] = set()
    kw: dict[str, object] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ConfigError(
                f"--shift {item.strip()!r}: expected KEY=VALUE ({', '.join(SHIFT_KEYS)})"
            )
        if key not in _PARSERS:
            raise ConfigError(f"--shift: unknown key {key!r} (known: {', '.join(SHIFT_KEYS)})")
        if key in seen:
            raise ConfigError(f"--shift: {key} given twice")
        seen.add(key)
        kw.update(_PARSERS[key](value))
    return Shift(**kw)  # type: ignore[arg-type]
