"""From pixels to input channels: region of interest, pooling, polarity, time scale.

``channel = (row * n_cols + col) * n_pol + pol`` where, for an event at pixel
(x, y) inside the region of interest ``[x0, x0 + roi_width) x [y0, y0 + roi_height)``,
``col = (x - x0) // pool_x`` and ``row = (y - y0) // pool_y``; ``n_cols`` and
``n_rows`` are the ROI size divided by the pooling factor, rounded up. ``n_pol``
is 2 with ``polarity = "split"`` (``pol`` = 0 OFF, 1 ON), else 1: "merge" keeps
both polarities in one channel, "on" / "off" keep only that polarity. Events
outside the ROI, or of a dropped polarity, are left out (and counted).

Model time: ``t = (t_us - t0_us) / us_per_tau`` in units of tau_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ConfigError
from delgrad.runtime.sources._recording import EventRecording

__all__ = ["MappedEvents", "PixelMapping"]

Polarity = Literal["merge", "split", "on", "off"]
_POLARITIES = ("merge", "split", "on", "off")


class MappedEvents(NamedTuple):
    """Events as input channels.

    Attributes:
        channels: (m,) int64 input channel in ``[0, n_channels)``.
        t_us: (m,) float64 microseconds (as recorded).
        dropped: events left out (outside the ROI or of a dropped polarity).
    """

    channels: NDArray[np.int64]
    t_us: NDArray[np.float64]
    dropped: int


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PixelMapping:
    """Which input channel a sensor pixel and polarity feed (see the module doc).

    Attributes:
        width, height: sensor size in pixels (>= 1).
        roi: (x0, y0, roi_width, roi_height), or ``None`` for the whole sensor.
        pool: (pool_x, pool_y) pixels per channel along x and y (>= 1).
        polarity: "merge", "split", "on" or "off".
        us_per_tau: microseconds per model time unit tau_s (> 0).

    Raises:
        ConfigError: On a value out of range or a ROI outside the sensor.
    """

    width: int
    height: int
    roi: tuple[int, int, int, int] | None = None
    pool: tuple[int, int] = (1, 1)
    polarity: Polarity = "merge"
    us_per_tau: float = 6.0

    def __post_init__(self) -> None:
        w = _int("width", self.width, 1)
        h = _int("height", self.height, 1)
        roi = (0, 0, w, h) if self.roi is None else tuple(self.roi)
        if len(roi) != 4:
            raise ConfigError(f"roi must be (x0, y0, width, height), got {self.roi!r}")
        x0, y0 = _int("roi x0", roi[0], 0), _int("roi y0", roi[1], 0)
        rw, rh = _int("roi width", roi[2], 1), _int("roi height", roi[3], 1)
        if x0 + rw > w or y0 + rh > h:
            raise ConfigError(f"roi {roi} does not fit the {w} x {h} sensor")
        pool = tuple(self.pool)
        if len(pool) != 2:
            raise ConfigError(f"pool must be (pool_x, pool_y), got {self.pool!r}")
        px, py = _int("pool x", pool[0], 1), _int("pool y", pool[1], 1)
        if self.polarity not in _POLARITIES:
            raise ConfigError(f"polarity must be one of {_POLARITIES}, got {self.polarity!r}")
        us = self.us_per_tau
        if (
            isinstance(us, bool)
            or not isinstance(us, int | float)
            or not (math.isfinite(us) and us > 0)
        ):
            raise ConfigError(f"us_per_tau must be finite and > 0, got {us!r}")
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)
        object.__setattr__(self, "roi", (x0, y0, rw, rh))
        object.__setattr__(self, "pool", (px, py))
        object.__setattr__(self, "us_per_tau", float(us))

    @classmethod
    def for_recording(cls, recording: EventRecording, **options: object) -> PixelMapping:
        """A mapping over the sensor of ``recording`` (options as the fields)."""
        return cls(recording.width, recording.height, **options)  # type: ignore[arg-type]

    @property
    def grid(self) -> tuple[int, int]:
        """(n_cols, n_rows) of pooled cells."""
        assert self.roi is not None  # set in __post_init__
        return -(-self.roi[2] // self.pool[0]), -(-self.roi[3] // self.pool[1])

    @property
    def n_channels(self) -> int:
        """Number of input channels the mapping produces."""
        cols, rows = self.grid
        return cols * rows * (2 if self.polarity == "split" else 1)

    def map(self, recording: EventRecording) -> MappedEvents:
        """Map the events of ``recording`` to channels (times stay in microseconds).

        Raises:
            ConfigError: If the recording's sensor is not the mapping's.
        """
        if (recording.width, recording.height) != (self.width, self.height):
            raise ConfigError(
                f"the mapping is for a {self.width} x {self.height} sensor, the recording "
                f"is {recording.width} x {recording.height}"
            )
        assert self.roi is not None
        x0, y0, rw, rh = self.roi
        dx = recording.x - x0
        dy = recording.y - y0
        keep = (dx >= 0) & (dx < rw) & (dy >= 0) & (dy < rh)
        if self.polarity == "on":
            keep &= recording.p == 1
        elif self.polarity == "off":
            keep &= recording.p == 0
        cols, _ = self.grid
        channel = (dy[keep] // self.pool[1]) * cols + dx[keep] // self.pool[0]
        if self.polarity == "split":
            channel = channel * 2 + recording.p[keep].astype(np.int64)
        return MappedEvents(
            channel.astype(np.int64), recording.t_us[keep], int(keep.size - keep.sum())
        )

    def to_tau(self, t_us: NDArray[np.float64], t0_us: float = 0.0) -> NDArray[np.float64]:
        """Model time ``(t_us - t0_us) / us_per_tau`` in units of tau_s."""
        return (np.asarray(t_us, dtype=np.float64) - t0_us) / self.us_per_tau
