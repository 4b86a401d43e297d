"""``delgrad digits``: the scikit-learn digits beside the spiking recipes.

* ``delgrad digits baseline``: non-spiking baselines (logistic regression and a
  small MLP, scikit-learn) on the same split as the ``digits_*`` recipes.
* ``delgrad digits events --out DIR``: an N-MNIST-style event version (a simulated
  sensor making three saccades over each upsampled digit, see
  :class:`~delgrad.runtime.sources.SaccadeSensor`), written per split as AEDAT4
  (faery) and as a ROS 2 bag (rosbags), each with a label side file
  (``FILE.labels.csv``: ``start_us,end_us,label``, one span per digit).
* ``delgrad digits trials --out DIR``: the frame version as trial files
  (``digits_SPLIT.npz``, NIR padded ``channels``/``times`` in tau_s with ``labels``)
  for ``delgrad sensor --source`` (trial-framed ``spikes`` messages).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime import DIGITS_SPLITS, digits_split, encode_digits
from delgrad.runtime.sources import (
    PixelMapping,
    SaccadeSensor,
    write_aedat4,
    write_label_file,
    write_rosbag,
)

#: The mapping the event recipes use: the 32x32 image area of the 36x36 sensor,
#: 4x4 pooling, ON and OFF kept apart -> 8 x 8 x 2 = 128 input channels.
EVENT_ROI = (2, 2, 32, 32)
EVENT_POOL = (4, 4)


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``digits`` subcommand's arguments."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    base = sub.add_parser("baseline", help="logistic regression and MLP test accuracy")
    base.add_argument("--seeds", type=int, default=5, help="MLP seeds (median reported)")
    ev = sub.add_parser("events", help="write the N-MNIST-style event version")
    ev.add_argument("--out", required=True, type=Path, help="output folder")
    ev.add_argument(
        "--split", action="append", choices=sorted(DIGITS_SPLITS), help="default: all three"
    )
    ev.add_argument("--limit", type=int, default=0, help="first N digits per split (0 = all)")
    ev.add_argument("--saccade-ms", type=float, default=100.0, help="one saccade (default 100)")
    ev.add_argument("--contrast", type=float, default=0.25, help="log-intensity step per event")
    ev.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage")
    ev.add_argument(
        "--message",
        choices=("dvs", "evt3"),
        default="dvs",
        help="bag messages: dvs_msgs/EventArray (default) or event_camera_msgs/EventPacket "
        "evt3 (faery 0.7.1 gets EVT 3.0 times past 2**24 us wrong: only for runs < 16.7 s)",
    )
    ev.add_argument("--force", action="store_true", help="overwrite existing files")
    tr = sub.add_parser("trials", help="write the frame version as NIR padded trial files")
    tr.add_argument("--out", required=True, type=Path, help="output folder")
    tr.add_argument("--t-early", type=float, default=0.15, help="spike time of full ink")
    tr.add_argument("--t-late", type=float, default=2.0, help="spike time of background")


def _baseline(seeds: int) -> int:
    try:
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
        from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]
    except ImportError:
        print("needs scikit-learn: pip install 'delgrad-runtime[sensors]'", file=sys.stderr)
        return 1
    x_tr, y_tr = digits_split("train")
    x_te, y_te = digits_split("test")
    logreg = LogisticRegression(max_iter=5000).fit(x_tr, y_tr).score(x_te, y_te)
    mlp = [
        MLPClassifier(hidden_layer_sizes=(100,), max_iter=2000, random_state=s)
        .fit(x_tr, y_tr)
        .score(x_te, y_te)
        for s in range(seeds)
    ]
    out = {
        "logistic_regression": logreg,
        "mlp_64_100_10_median": float(np.median(mlp)),
        "mlp_64_100_10": mlp,
        "train": int(y_tr.size),
        "test": int(y_te.size),
    }
    print(json.dumps(out, indent=1))
    return 0


def _events(args: argparse.Namespace) -> int:
    sensor = SaccadeSensor(saccade_us=args.saccade_ms * 1000.0, contrast=args.contrast)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in args.split or ["train", "validation", "test"]:
        features, labels = digits_split(split)
        if args.limit > 0:
            features, labels = features[: args.limit], labels[: args.limit]
        aedat = args.out / f"digits_{split}.aedat4"
        bag = args.out / f"digits_{split}_bag"
        for path in (aedat, bag):
            if path.exists() and not args.force:
                print(f"{path} exists (use --force)", file=sys.stderr)
                return 2
        if bag.exists():
            shutil.rmtree(bag)
        start = time.perf_counter()
        rec = sensor.record(features.reshape(-1, 8, 8), labels)
        assert rec.labels is not None
        write_aedat4(aedat, rec)
        write_label_file(aedat.with_name(aedat.name + ".labels.csv"), rec.labels)
        write_rosbag(bag, rec, storage=args.storage, message=args.message)
        write_label_file(bag.with_name(bag.name + ".labels.csv"), rec.labels)
        print(
            f"{split}: {labels.size} digits, {len(rec)} events, {rec.width}x{rec.height} sensor, "
            f"{sensor.sample_us / 1e3:.0f} ms per digit -> {aedat}, {bag} "
            f"({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    mapping = PixelMapping(36, 36, roi=EVENT_ROI, pool=EVENT_POOL, polarity="split")
    print(
        f"input mapping: roi {EVENT_ROI}, pool {EVENT_POOL}, polarity split -> "
        f"{mapping.n_channels} channels; one digit per {sensor.sample_us:.0f} us window"
    )
    return 0


def _trials(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    for split in DIGITS_SPLITS:
        features, labels = digits_split(split)  # type: ignore[arg-type]
        times = encode_digits(features, t_early=args.t_early, t_late=args.t_late)
        channels = np.broadcast_to(np.arange(times.shape[1]), times.shape)
        path = args.out / f"digits_{split}.npz"
        np.savez(path, channels=channels, times=times, labels=labels, time_unit=np.array("tau_s"))
        print(f"{split}: {labels.size} trials of {times.shape[1]} input spikes -> {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen action. Returns 0 on success, 1 on a missing library, 2 on bad use."""
    try:
        if args.action == "baseline":
            return _baseline(args.seeds)
        if args.action == "trials":
            return _trials(args)
        return _events(args)
    except ConfigError as exc:
        print(f"delgrad digits: {exc}", file=sys.stderr)
        return 1
