"""AEDAT4 (iniVation) and Prophesee EVT 2.0 / 3.0 ``.raw`` recordings, read with faery.

faery (the neuromorphic-paris/aestream team's Rust decoder with Python wheels,
maintained) decodes both families into one numpy layout (``t`` us, ``x``, ``y``,
``on``) and reads the sensor size from the file header. It is imported here
only, inside the reader, so that the rest of delgrad works without it.

Known limit (faery 0.7.1, tested in ``tests/runtime/sources/test_simulate.py`` as a
strict xfail): an EVT 3.0 round trip through faery's encoder and decoder gets
event times at or past 2**24 us (16.78 s, where EVT 3.0's 24-bit time wraps)
wrong; whether real camera files are affected (decoder) or only faery-written
ones (encoder) is not isolated. EVT 2.0 and AEDAT4 are exact.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources._recording import EventRecording

__all__ = ["read_aedat4", "read_evt"]

INSTALL_HINT = "pip install 'delgrad-runtime[sensors]' (or pip install faery)"


def _faery_read(path: str | os.PathLike[str], what: str, **options: object) -> EventRecording:
    try:
        import faery  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(f"{path}: reading {what} needs faery: {INSTALL_HINT}") from exc
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        stream = faery.events_stream_from_file(Path(path), **options)
        width, height = stream.dimensions()
        packets = [np.asarray(packet) for packet in stream]
    except (RuntimeError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable {what} file ({exc})") from exc
    events = np.concatenate(packets) if packets else np.zeros(0, dtype=faery.EVENTS_DTYPE)
    try:
        return EventRecording(
            events["t"].astype(np.float64),
            events["x"],
            events["y"],
            events["on"].astype(np.int8),
            int(width),
            int(height),
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_aedat4(path: str | os.PathLike[str], *, track_id: int | None = None) -> EventRecording:
    """Read the events of an AEDAT4 file (DV software, dv-processing).

    Args:
        path: The ``.aedat4`` file.
        track_id: The event stream to read; default the file's first event stream.

    Raises:
        ConfigError: If faery is missing, or the file is missing or malformed.
    """
    return _faery_read(path, "AEDAT4", track_id=track_id)


def read_evt(
    path: str | os.PathLike[str], *, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read a Prophesee ``.raw`` file (EVT 2.0 or 3.0, as its header says).

    Args:
        path: The ``.raw`` file.
        sensor_size: (width, height) when the header does not give it.

    Raises:
        ConfigError: If faery is missing, or the file is missing or malformed (a file
            without an EVT header is refused rather than guessed at).
    """
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"% evt " not in head and b"format EVT" not in head:
        raise ConfigError(f"{path}: no Prophesee EVT header ('% evt 2.0' / '% evt 3.0')")
    options: dict[str, object] = {}
    if sensor_size is not None:
        options["dimensions_fallback"] = tuple(sensor_size)
    return _faery_read(path, "EVT", **options)
