"""``delgrad events trials``: a labelled event recording cut into a trial file, offline.

The recording is read, mapped and windowed as ``delgrad sensor`` streams it and as
the device cuts it (the same options, the service's own windower), and every
labelled window that holds an event becomes a trial: the first spike of each
channel after the window's start, in tau_s. The file is the CSR trial layout
(``offsets``, ``channels``, ``times``, ``labels``, ``time_unit``) that ``delgrad
train`` reads with ``data.dataset = "file"`` and ``delgrad sensor --source`` streams.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime import atomic_write
from delgrad.runtime.service import TrialWindower
from delgrad.runtime.sources import read_events
from delgrad.tools._exit import ExitCode
from delgrad.tools._recording_args import add_recording_arguments, pixel_mapping, recording_part
from delgrad.tools._stream import plan_stream


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``events`` subcommand's arguments."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    trials = sub.add_parser(
        "trials",
        help="cut a labelled recording into a trial file for delgrad train",
        description="Cut a labelled event recording into the device's windows and write "
        "the labelled ones as a trial file (docs/sensors.md, 'Offline').",
    )
    trials.add_argument("recording", help="an event recording (any format of delgrad sensor)")
    trials.add_argument("--out", type=Path, required=True, help="the trial file (.npz)")
    trials.add_argument(
        "--us-per-tau",
        type=float,
        default=6.0,
        metavar="US",
        help="microseconds per tau_s, the device's [ingest] us_per_tau (default 6.0)",
    )
    add_recording_arguments(trials)


def cut_trials(
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The labelled windows of the recording: CSR ``offsets (K+1,)``, ``channels``,
    ``times`` (tau_s after each window's start), ``labels (K,)``, and the number of
    input channels."""
    rec = recording_part(
        args,
        read_events(
            args.recording, labels=args.labels, topic=args.topic, us_per_tau=args.us_per_tau
        ),
    )
    if rec.labels is None or not len(rec.labels):
        raise ConfigError(f"{args.recording}: no labels (a label side file or --labels)")
    mapping = pixel_mapping(args, rec)
    plan = plan_stream(
        rec, mapping, window_length=args.window_length, window_period=args.window_period
    )
    windower = TrialWindower(
        mapping.n_channels,
        length=args.window_length,
        period=args.window_period or args.window_length,
    )
    done = [windower.push(plan.channels, plan.t_us / args.us_per_tau), windower.flush()]
    ids = np.concatenate([d.window_ids for d in done])
    t_in = np.concatenate([d.t_in for d in done])
    label_of = dict(zip(plan.window_ids.tolist(), plan.window_labels.tolist(), strict=True))
    keep = np.array([int(k) in label_of for k in ids], dtype=bool)
    ids, t_in = ids[keep], t_in[keep]
    if not ids.size:
        raise ConfigError(f"{args.recording}: no labelled window holds an event")
    rows, cols = np.nonzero(np.isfinite(t_in))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=ids.size))])
    labels = np.array([label_of[int(k)] for k in ids], dtype=np.int64)
    return offsets, cols.astype(np.int64), t_in[rows, cols], labels, mapping.n_channels


def run(args: argparse.Namespace) -> int:
    """Write the trial file and print one line."""
    try:
        offsets, channels, times, labels, n_channels = cut_trials(args)
    except ConfigError as exc:
        print(f"delgrad events: {exc}", file=sys.stderr)
        return ExitCode.USAGE

    def write(fh: BinaryIO) -> None:
        np.savez(
            fh,
            offsets=offsets,
            channels=channels,
            times=times,
            labels=labels,
            time_unit=np.array("tau_s"),
        )

    atomic_write(args.out, write)
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    print(
        f"wrote {labels.size} trials on {n_channels} channels to {args.out} "
        f"({channels.size} first spikes; {counts.size} classes, {counts.min()} to "
        f"{counts.max()} trials each)"
    )
    return ExitCode.OK
