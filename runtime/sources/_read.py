"""One entry point: :func:`read_events` picks the reader by the file's suffix."""

from __future__ import annotations

import os
from pathlib import Path

from delgrad.errors import ConfigError
from delgrad.runtime.sources._arrays import read_csv, read_npy, read_npz
from delgrad.runtime.sources._faery import read_aedat4, read_evt
from delgrad.runtime.sources._recording import (
    LABEL_FILE_SUFFIX,
    EventRecording,
    read_label_file,
)
from delgrad.runtime.sources._rosbag import read_rosbag

__all__ = ["SOURCE_FORMATS", "read_events"]

#: Suffix (or "ROS 2 bag directory") -> what is read, and with which library.
SOURCE_FORMATS: dict[str, str] = {
    ".npy": "tonic-style structured array (numpy)",
    ".npz": "tonic-style structured array or fields, NIR padded or CSR trials (numpy)",
    ".csv": "CSV with a header naming t, x, y, p (numpy)",
    ".aedat4": "iniVation AEDAT4 (faery)",
    ".raw": "Prophesee EVT 2.0 / 3.0 (faery)",
    ".mcap": "ROS 2 bag, MCAP storage (rosbags)",
    ".db3": "ROS 2 bag, SQLite 3 storage (rosbags)",
    "bag directory": "ROS 2 bag directory with metadata.yaml (rosbags)",
}


def read_events(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    topic: str | None = None,
    sensor_size: tuple[int, int] | None = None,
    trial_period_us: float | None = None,
    us_per_tau: float = 6.0,
) -> EventRecording:
    """Read an event recording of any supported format (:data:`SOURCE_FORMATS`).

    Labels come from ``labels`` (a label side file), else from the file's own
    trial labels (trial files), else from ``FILE.labels.csv`` beside it, if any.

    Args:
        path: The recording.
        labels: A label side file (CSV ``start_us,end_us,label``).
        topic: The event topic of a ROS 2 bag.
        sensor_size: (width, height) where the file does not say.
        trial_period_us: Spacing of trials of a trial file (``.npz``).
        us_per_tau: Microseconds per tau_s for trial files in ``tau_s``.

    Raises:
        ConfigError: Unknown suffix, missing library, missing or malformed file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        if not (p / "metadata.yaml").is_file():
            raise ConfigError(f"{path}: a directory, but no ROS 2 bag (no metadata.yaml)")
        rec = read_rosbag(p, topic=topic, sensor_size=sensor_size)
    elif suffix == ".npy":
        rec = read_npy(p, sensor_size=sensor_size)
    elif suffix == ".npz":
        rec = read_npz(
            p, sensor_size=sensor_size, trial_period_us=trial_period_us, us_per_tau=us_per_tau
        )
    elif suffix == ".csv":
        rec = read_csv(p, sensor_size=sensor_size)
    elif suffix == ".aedat4":
        rec = read_aedat4(p)
    elif suffix == ".raw":
        rec = read_evt(p, sensor_size=sensor_size)
    elif suffix in (".mcap", ".db3"):
        rec = read_rosbag(p, topic=topic, sensor_size=sensor_size)
    else:
        known = ", ".join(SOURCE_FORMATS)
        raise ConfigError(f"{path}: unknown event file type {suffix!r}; known: {known}")
    if labels is not None:
        return rec.with_labels(read_label_file(labels))
    side = p.with_name(p.name + LABEL_FILE_SUFFIX)
    if rec.labels is None and side.is_file():
        return rec.with_labels(read_label_file(side))
    return rec
