"""A simulated event sensor: the N-MNIST recipe applied to still images.

N-MNIST (Orchard et al. 2015) was recorded by an ATIS camera making three
saccades over each digit on a screen. Here the camera is simulated: each image
is upsampled, placed on a ``width`` x ``height`` sensor and moved along the three
edges of a triangle (one saccade each, linear in time). Every pixel keeps the log
intensity at its last event; when the current log intensity differs from it by
``contrast`` or more, the pixel emits one event per whole multiple (ON when
brighter, OFF when darker), spread evenly over the time step, and its reference
moves by those multiples (the ideal DVS pixel model, without noise or refractory
period). Each image starts on a settled sensor, as N-MNIST's separate recordings
did; images follow one another every ``3 * saccade_us``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from delgrad.errors import ParameterError
from delgrad.runtime.sources._recording import EventRecording, LabelSpans

__all__ = ["SaccadeSensor"]


@dataclass(frozen=True)
class SaccadeSensor:
    """Parameters of the simulated sensor.

    Attributes:
        upsample: image pixels -> sensor pixels per side (8x8 digits x 4 = 32x32).
        margin: free pixels around the image on each side (>= the saccade size).
        saccade_px: size of the triangle's sides, sensor pixels.
        saccade_us: duration of one saccade, microseconds (N-MNIST: about 100 ms).
        steps: time steps per saccade.
        contrast: log-intensity change per event (> 0).
        background: intensity added to every pixel (> 0: log of 0 is undefined;
            also the floor of the screen's darkness).
    """

    upsample: int = 4
    margin: int = 2
    saccade_px: float = 2.0
    saccade_us: float = 100_000.0
    steps: int = 20
    contrast: float = 0.25
    background: float = 0.1

    def __post_init__(self) -> None:
        if self.upsample < 1 or self.steps < 1 or self.margin < 0:
            raise ParameterError("upsample and steps must be >= 1, margin >= 0")
        if not (0 <= self.saccade_px <= self.margin):
            raise ParameterError(
                "saccade_px must be in [0, margin] (the image stays on the sensor)"
            )
        for name in ("saccade_us", "contrast", "background"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ParameterError(f"{name} must be finite and > 0, got {v!r}")

    def sensor_size(self, image_shape: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the sensor for images of ``(rows, cols)``."""
        rows, cols = image_shape
        return cols * self.upsample + 2 * self.margin, rows * self.upsample + 2 * self.margin

    @property
    def sample_us(self) -> float:
        """Duration of one image (three saccades)."""
        return 3.0 * self.saccade_us

    def _path(self) -> NDArray[np.float64]:
        """(3 * steps + 1, 2) image offset (dx, dy) at each step: a triangle A-B-C-A."""
        a = self.saccade_px
        corners = np.array([[0.0, 0.0], [a, 0.0], [a / 2, a * math.sqrt(3) / 2], [0.0, 0.0]])
        s = np.linspace(0.0, 1.0, self.steps + 1)[1:, None]
        legs = [corners[k] + s * (corners[k + 1] - corners[k]) for k in range(3)]
        return np.concatenate([corners[:1], *legs])

    def _render(
        self, pad: NDArray[np.float64], dx: float, dy: float, size: tuple[int, int]
    ) -> NDArray[np.float64]:
        """Log intensity of the sensor with the upsampled, zero-padded image ``pad``
        shifted by (dx, dy)."""
        width, height = size
        # Bilinear shift: sensor pixel (x, y) sees image point (x - m - dx, y - m - dy).
        ys = np.arange(height)[:, None] - self.margin - dy
        xs = np.arange(width)[None, :] - self.margin - dx
        x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
        fx, fy = xs - x0, ys - y0

        def at(yy: NDArray[np.int64], xx: NDArray[np.int64]) -> NDArray[np.float64]:
            yy = np.clip(yy + 1, 0, pad.shape[0] - 1)  # + 1: the pad row/column
            xx = np.clip(xx + 1, 0, pad.shape[1] - 1)
            return pad[yy, xx]

        val = (
            at(y0, x0) * (1 - fx) * (1 - fy)
            + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy
            + at(y0 + 1, x0 + 1) * fx * fy
        )
        out: NDArray[np.float64] = np.log(val + self.background)
        return out

    def events(self, image: NDArray[np.float64], t0_us: float = 0.0) -> EventRecording:
        """Events of one image (values in [0, 1], shape (rows, cols)), starting at ``t0_us``."""
        img = np.asarray(image, dtype=np.float64)
        if img.ndim != 2 or not np.all(np.isfinite(img)) or img.min() < 0:
            raise ParameterError("image must be a finite, non-negative 2-d array")
        size = self.sensor_size((img.shape[0], img.shape[1]))
        path = self._path()
        dt = self.saccade_us / self.steps
        # Upsampled image, zero outside it.
        pad = np.pad(np.kron(img, np.ones((self.upsample, self.upsample))), 1)
        ref = self._render(pad, float(path[0, 0]), float(path[0, 1]), size)
        ts, xs, ys, ps = [], [], [], []
        for k in range(1, path.shape[0]):
            now = self._render(pad, float(path[k, 0]), float(path[k, 1]), size)
            diff = now - ref
            n = np.floor(np.abs(diff) / self.contrast).astype(np.int64)
            yy, xx = np.nonzero(n)
            counts = n[yy, xx]
            if counts.size:
                pol = (diff[yy, xx] > 0).astype(np.int8)
                ref[yy, xx] += np.sign(diff[yy, xx]) * counts * self.contrast
                rep = np.repeat(np.arange(counts.size), counts)
                # j-th of c events of a pixel at (j + 1) / (c + 1) of the step, whole us.
                j = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
                frac = (j + 1) / (counts[rep] + 1)
                ts.append(np.floor(t0_us + (k - 1 + frac) * dt))
                xs.append(xx[rep])
                ys.append(yy[rep])
                ps.append(pol[rep])
        if not ts:
            return EventRecording(
                np.zeros(0),
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros(0, np.int8),
                *size,
            )
        return EventRecording(
            np.concatenate(ts), np.concatenate(xs), np.concatenate(ys), np.concatenate(ps), *size
        )

    def record(
        self, images: NDArray[np.float64], labels: NDArray[np.int64] | None = None
    ) -> EventRecording:
        """One recording of all ``images`` (N, rows, cols), image ``i`` from
        ``i * sample_us``, with one label span per image when ``labels`` is given."""
        imgs = np.asarray(images, dtype=np.float64)
        if imgs.ndim != 3 or imgs.shape[0] < 1:
            raise ParameterError(f"images must be (N >= 1, rows, cols), got {imgs.shape}")
        parts = [self.events(im, i * self.sample_us) for i, im in enumerate(imgs)]
        spans = None
        if labels is not None:
            lab = np.asarray(labels, dtype=np.int64)
            if lab.shape != (imgs.shape[0],):
                raise ParameterError("one label per image")
            starts = np.arange(imgs.shape[0], dtype=np.float64) * self.sample_us
            spans = LabelSpans(starts, starts + np.float64(self.sample_us), lab)
        width, height = self.sensor_size((imgs.shape[1], imgs.shape[2]))
        return EventRecording(
            np.concatenate([p.t_us for p in parts]),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.p for p in parts]),
            width,
            height,
            spans,
        )
